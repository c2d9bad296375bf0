// Rows to model values for the SQL stores (SQLite, PostgreSQL), which share one column layout.
// A row that cannot be decoded is reported in `bad`, for the store to quarantine.
#pragma once

#include "../core/json_limits.hpp"

#include <asched/data_store.hpp>
#include <asched/error.hpp>
#include <asched/model.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace asched::detail {

/// A row that could not be decoded.
struct BadRow {
    const char *kind; ///< "task", "schedule", "job", "result"
    std::string id;
    std::string data;
    std::string error;
};

/// Whether a row's JSON document carries a format version newer than this build reads: such a
/// row was written by a newer asched sharing the store, and is skipped, never quarantined.
inline bool written_by_newer_version(const std::string &data) noexcept {
    try {
        const auto j = parse_stored_json(data);
        const auto it = j.is_object() ? j.find("version") : j.end();
        return it != j.end() && it->is_number_integer() &&
               it->template get<std::int64_t>() > json_format_version;
    } catch (...) {
        return false;
    }
}

/// The ids of rows a newer asched wrote, which this store leaves alone. Each is warned about
/// once; cleanup() forgets them, so a row is looked at again once per cleanup interval.
class NewerRows {
  public:
    /// Records `b` if a newer version wrote it; true if so (the caller then skips it).
    template <class Log> bool skip(const BadRow &b, Log &&log) {
        if (!written_by_newer_version(b.data))
            return false;
        std::lock_guard lock(mutex_);
        if (seen_.insert(std::string(b.kind) + '\0' + b.id).second) {
            log(fmt::format("{} '{}' was written by a newer asched ({}); this node leaves it "
                            "alone and skips it",
                            b.kind, b.id, b.error));
            if (std::string_view(b.kind) == "schedule")
                schedules_.push_back(b.id);
        }
        return true;
    }
    /// The schedule ids to leave out of acquisition, as a JSON array text.
    std::string schedule_ids() const {
        std::lock_guard lock(mutex_);
        return nlohmann::json(schedules_).dump();
    }
    void forget() {
        std::lock_guard lock(mutex_);
        seen_.clear();
        schedules_.clear();
    }

  private:
    mutable std::mutex mutex_;
    std::set<std::string> seen_;
    std::vector<std::string> schedules_;
};

template <class T> std::optional<T> decode_json(const std::string &data, std::string &error) {
    try {
        return parse_stored_json(data).get<T>();
    } catch (const std::exception &e) {
        error = e.what();
        return std::nullopt;
    }
}

// `Row` reads column i: is_null(i), int64(i), text(i), opt_text(i), time(i), opt_time(i).

/// Columns: id, data, max_running_jobs, running_jobs.
template <class Row> std::optional<Task> task_row(const Row &s, std::vector<BadRow> &bad) {
    std::string error;
    auto t = decode_json<Task>(s.text(1), error);
    if (!t) {
        bad.push_back({"task", s.text(0), s.text(1), error});
        return std::nullopt;
    }
    t->running_jobs = int(s.int64(3));
    return t;
}

/// Columns: id, data, paused, next_fire_time, last_fire_time, trigger_state, acquired_by,
/// acquired_until, lease_token.
template <class Row> std::optional<Schedule> schedule_row(const Row &s, std::vector<BadRow> &bad) {
    std::string error;
    auto sched = decode_json<Schedule>(s.text(1), error);
    if (sched && !s.is_null(5)) {
        try {
            sched->trigger_state = parse_stored_json(s.text(5));
        } catch (const std::exception &e) {
            error = std::string("trigger_state: ") + e.what();
            sched.reset();
        }
    }
    if (!sched) {
        bad.push_back({"schedule", s.text(0), s.text(1), error});
        return std::nullopt;
    }
    sched->paused = s.boolean(2);
    sched->next_fire_time = s.opt_time(3);
    sched->last_fire_time = s.opt_time(4);
    sched->acquired_by = s.opt_text(6);
    sched->acquired_until = s.opt_time(7);
    sched->lease_token = std::uint64_t(s.int64(8));
    return sched;
}

/// Columns: id, task_id, schedule_id, scheduled_fire_time, jitter, start_deadline,
/// result_expiration, created_at, args, metadata, acquired_by, acquired_until, lease_token,
/// timeout, attempt, retry, earliest_start.
template <class Row> std::optional<Job> job_row(const Row &s, std::vector<BadRow> &bad) {
    using nlohmann::json;
    Job job;
    job.id = s.text(0);
    const std::string args = s.text(8), metadata = s.text(9);
    try {
        // The common empty values skip the parser.
        job.args = args == "[]" ? json::array() : parse_stored_json(args);
        job.metadata = metadata == "{}" ? json::object() : parse_stored_json(metadata);
        if (!job.args.is_array())
            throw Error(errc::deserialization, "job: field 'args': not a JSON array");
        if (!job.metadata.is_object())
            throw Error(errc::deserialization, "job: field 'metadata': not a JSON object");
    } catch (const std::exception &e) {
        bad.push_back(
            {"job", job.id, fmt::format("args={} metadata={}", args, metadata), e.what()});
        return std::nullopt;
    }
    job.task_id = s.text(1);
    job.schedule_id = s.opt_text(2);
    job.scheduled_fire_time = s.opt_time(3);
    job.jitter = duration(s.int64(4));
    job.start_deadline = s.opt_time(5);
    job.result_expiration_time = duration(s.int64(6));
    job.created_at = s.time(7);
    job.acquired_by = s.opt_text(10);
    job.acquired_until = s.opt_time(11);
    job.lease_token = std::uint64_t(s.int64(12));
    if (!s.is_null(13))
        job.timeout = duration(s.int64(13));
    job.attempt = unsigned(s.int64(14));
    if (!s.is_null(15)) {
        try {
            const nlohmann::json policy = parse_stored_json(s.text(15));
            job.retry = policy.get<RetryPolicy>();
        } catch (const std::exception &e) {
            bad.push_back({"job", job.id, s.text(15), std::string("retry: ") + e.what()});
            return std::nullopt;
        }
    }
    if (job.attempt > 1)
        job.retry_at = s.time(16); // a retry's start is its backoff time
    return job;
}

/// A job's timeout as stored: microseconds, or NULL for no limit.
inline std::optional<std::int64_t> timeout_value(const Job &job) {
    return job.timeout ? std::optional<std::int64_t>(job.timeout->count()) : std::nullopt;
}

/// History columns: seq, job_id, attempt, task_id, schedule_id, outcome,
/// scheduled_fire_time, started_at, finished_at, worker, exception_type, exception_message,
/// retry_at. A record with an outcome this build does not know is skipped (nullopt).
template <class Row> std::optional<JobHistoryRecord> history_row(const Row &s) {
    JobHistoryRecord r;
    try {
        r.outcome = enum_from_string<JobOutcome>(s.text(5));
    } catch (const Error &) {
        return std::nullopt;
    }
    r.job_id = s.text(1);
    r.attempt = unsigned(s.int64(2));
    r.task_id = s.text(3);
    r.schedule_id = s.opt_text(4);
    r.scheduled_fire_time = s.opt_time(6);
    r.started_at = s.opt_time(7);
    r.finished_at = s.time(8);
    r.worker = s.text(9);
    r.exception_type = s.opt_text(10);
    r.exception_message = s.opt_text(11);
    r.retry_at = s.opt_time(12);
    return r;
}

/// Worker registry columns: identity, boot_id, host, pid, process_scope, role, task_ids (a JSON
/// array), started_at, last_seen, expires_at. A damaged task list or role reads as empty / both:
/// the row is for display and liveness, which the times decide.
#define ASCHED_WORKER_COLUMNS                                                                      \
    "identity, boot_id, host, pid, process_scope, role, task_ids, started_at, last_seen, "         \
    "expires_at"
template <class Row> WorkerInfo worker_row(const Row &s) {
    WorkerInfo w;
    w.identity = s.text(0);
    w.boot_id = s.text(1);
    w.host = s.text(2);
    w.pid = s.int64(3);
    w.process_scope = s.text(4);
    try {
        w.role = enum_from_string<SchedulerRole>(s.text(5));
        const auto ids = parse_stored_json(s.text(6));
        for (const auto &id : ids)
            w.task_ids.push_back(id.template get<std::string>());
    } catch (const std::exception &) {
    }
    w.started_at = s.time(7);
    w.last_seen = s.time(8);
    w.expires_at = s.time(9);
    return w;
}
inline std::string task_ids_text(const WorkerInfo &w) {
    return nlohmann::json(w.task_ids).dump();
}

/// A job's retry policy as stored: JSON, or NULL for none.
inline std::optional<std::string> retry_text(const Job &job) {
    return job.retry ? std::optional<std::string>(nlohmann::json(*job.retry).dump()) : std::nullopt;
}

/// A job's args and metadata as stored: the common empty values without the serializer.
inline std::string args_text(const Job &job) {
    return job.args.is_array() && job.args.empty() ? std::string("[]") : job.args.dump();
}
inline std::string metadata_text(const Job &job) {
    return job.metadata.is_object() && job.metadata.empty() ? std::string("{}")
                                                            : job.metadata.dump();
}

// ---- batch records: rows as JSON objects, for the server-side readers of the network SQL
// stores (PostgreSQL's jsonb_to_recordset, MariaDB's JSON_TABLE): one parameter per batch.

inline nlohmann::json opt_json(const std::optional<time_point> &t) {
    return t ? nlohmann::json(t->time_since_epoch().count()) : nlohmann::json(nullptr);
}
inline nlohmann::json opt_json(const std::optional<std::string> &s) {
    return s ? nlohmann::json(*s) : nlohmann::json(nullptr);
}

/// A job's row.
inline nlohmann::json job_record_json(const Job &job) {
    using nlohmann::json;
    return json{{"id", job.id},
                {"task_id", job.task_id},
                {"schedule_id", opt_json(job.schedule_id)},
                {"scheduled_fire_time", opt_json(job.scheduled_fire_time)},
                {"jitter", job.jitter.count()},
                {"earliest_start", job.earliest_start().time_since_epoch().count()},
                {"start_deadline", opt_json(job.start_deadline)},
                {"result_expiration", job.result_expiration_time.count()},
                {"created_at", job.created_at.time_since_epoch().count()},
                {"args", args_text(job)},
                {"metadata", metadata_text(job)},
                {"timeout", job.timeout ? json(job.timeout->count()) : json(nullptr)},
                {"attempt", job.attempt},
                {"retry", job.retry ? json(json(*job.retry).dump()) : json(nullptr)}};
}

/// The job_history row of `job`'s attempt that ended as `result` on `worker`.
inline nlohmann::json history_record_json(const Job &job, const JobResult &result,
                                          const std::string &worker,
                                          const std::optional<time_point> &retry_at) {
    return nlohmann::json{{"job_id", job.id},
                          {"attempt", job.attempt},
                          {"task_id", job.task_id},
                          {"schedule_id", opt_json(job.schedule_id)},
                          {"outcome", to_string(result.outcome)},
                          {"scheduled_fire_time", opt_json(job.scheduled_fire_time)},
                          {"started_at", opt_json(result.started_at)},
                          {"finished_at", result.finished_at.time_since_epoch().count()},
                          {"worker", worker},
                          {"exception_type", opt_json(result.exception_type)},
                          {"exception_message", opt_json(result.exception_message)},
                          {"retry_at", opt_json(retry_at)}};
}

/// The results row of `job`'s `result`.
inline nlohmann::json result_record_json(const Job &job, const JobResult &result) {
    return nlohmann::json{{"job_id", result.job_id},
                          {"schedule_id", opt_json(job.schedule_id)},
                          {"scheduled_fire_time", opt_json(job.scheduled_fire_time)},
                          {"expires_at", result.expires_at.time_since_epoch().count()},
                          {"data", nlohmann::json(result).dump()}};
}

} // namespace asched::detail
