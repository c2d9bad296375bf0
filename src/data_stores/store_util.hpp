// Steps every data store shares: publishing an operation's events, a result for a job that
// ended without running to completion.
#pragma once

#include <asched/data_store.hpp>
#include <asched/error.hpp>
#include <asched/event_broker.hpp>
#include <asched/model.hpp>

#include <asio/awaitable.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace asched::detail {

/// Publishes `events` in order, after the store's change is committed.
inline asio::awaitable<void> publish_all(std::shared_ptr<EventBroker> broker,
                                         std::vector<Event> events) {
    if (!broker || events.empty())
        co_return;
    co_await broker->publish_batch(std::move(events));
}

/// One try of a store operation in its own transaction: its value and the events to publish
/// after commit, or its failure and whether running it again may succeed (a deadlock, a
/// connection found dead before the transaction began).
template <class R> struct Attempt {
    std::optional<R> out;
    std::vector<Event> events;
    std::exception_ptr failure;
    bool retry = false;
};

/// Runs `once(attempt)` (attempt 0, 1, ...) until it succeeds or fails for good, then
/// publishes its events on the broker `broker()` names at that moment (none once the store
/// has stopped) and returns its value; rethrows the last failure. Named
/// locals and one co_return outside the loop: GCC 12 mishandles temporaries and returns around
/// co_await.
template <class R>
asio::awaitable<R> run_attempts(std::function<asio::awaitable<Attempt<R>>(int)> once,
                                std::function<std::shared_ptr<EventBroker>()> broker) {
    Attempt<R> a;
    for (int attempt = 0;; ++attempt) {
        auto call = once(attempt);
        auto outcome = co_await std::move(call);
        a = std::move(outcome);
        if (!a.failure || !a.retry)
            break;
    }
    if (a.failure)
        std::rethrow_exception(a.failure);
    co_await publish_all(broker(), std::move(a.events));
    R value = std::move(*a.out);
    co_return value;
}

/// The result a store records for `job` when it ends at `at` without a return value
/// (abandoned, missed its start deadline).
inline JobResult store_result(const Job &job, JobOutcome outcome, time_point at,
                              std::optional<std::string> message) {
    JobResult r;
    r.job_id = job.id;
    r.task_id = job.task_id;
    r.schedule_id = job.schedule_id;
    r.attempt = job.attempt;
    r.outcome = outcome;
    r.finished_at = at;
    r.expires_at = at + job.result_expiration_time;
    r.exception_message = std::move(message);
    return r;
}

/// The JobReleased event for `job`'s attempt ending with `result`, released by
/// `scheduler_id`; `retry_at` when the job goes on with another attempt.
inline JobReleased released_event(const Job &job, const JobResult &result,
                                  const std::string &scheduler_id,
                                  std::optional<time_point> retry_at = std::nullopt) {
    return JobReleased{result.finished_at,    job.id,
                       scheduler_id,          job.task_id,
                       job.schedule_id,       job.scheduled_fire_time,
                       result.started_at,     result.outcome,
                       result.exception_type, result.exception_message,
                       job.attempt,           retry_at};
}

/// A number in [0, 1] for a retry's jitter.
inline double retry_uniform01() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

/// When `job`'s attempt that ended as `result` is tried again: the next attempt's start, or
/// nullopt (no policy, attempts used up, or an outcome the policy does not retry).
inline std::optional<time_point> retry_time(const Job &job, const JobResult &result) {
    if (!job.retry || job.attempt >= job.retry->max_attempts || !job.retry->retries(result.outcome))
        return std::nullopt;
    return result.finished_at + job.retry->delay_before(job.attempt + 1, retry_uniform01());
}

/// The history record of `job`'s attempt that ended as `result`.
inline JobHistoryRecord history_record(const Job &job, const JobResult &result,
                                       const std::string &worker,
                                       std::optional<time_point> retry_at) {
    return JobHistoryRecord{job.id,
                            job.attempt,
                            job.task_id,
                            job.schedule_id,
                            result.outcome,
                            job.scheduled_fire_time,
                            result.started_at,
                            result.finished_at,
                            worker,
                            result.exception_type,
                            result.exception_message,
                            retry_at};
}

/// Page cursors: "<finished_at in microseconds>.<sequence>", opaque to callers.
inline std::string history_cursor(time_point finished_at, std::int64_t seq) {
    return std::to_string(finished_at.time_since_epoch().count()) + "." + std::to_string(seq);
}
/// Throws Error(invalid_argument) naming the cursor when it is not one of ours.
std::pair<std::int64_t, std::int64_t> parse_history_cursor(const std::string &cursor);
/// Throws Error(invalid_argument) for a limit outside 1..10,000.
void check_history_filter(const JobHistoryFilter &filter);

/// check()'s finding for a task whose running counter disagrees with its leased jobs.
inline std::string running_counter_problem(const std::string &task_id, std::int64_t counter,
                                           std::int64_t leased) {
    return "task '" + task_id + "': running_jobs is " + std::to_string(counter) + " but " +
           std::to_string(leased) + " of its jobs are leased (the concurrency cap counts wrong)";
}

/// start()'s refusal, with `migrate = false`, of a schema it would have to create or migrate.
inline Error unmigrated_schema(const std::string &where, int version, int known) {
    return Error(errc::store_failure,
                 version == 0 ? where + " holds no asched schema (run `asched store migrate` or "
                                        "start a scheduler on it)"
                              : where + " has asched schema version " + std::to_string(version) +
                                    ", older than this build's " + std::to_string(known) +
                                    ": run `asched store migrate`");
}

/// How long cleanup() keeps a dead worker's row, for operators to see who died and when.
inline constexpr duration dead_worker_retention = std::chrono::hours(1);

/// register_worker()'s rule: `worker` may take its identity's row `current` (if any).
inline bool may_register(const std::optional<WorkerInfo> &current, const WorkerInfo &worker,
                         const std::optional<std::string> &replaces, time_point now) {
    return !current || !current->live_at(now) || current->boot_id == worker.boot_id ||
           (replaces && *replaces == current->boot_id);
}
/// renew_worker()'s rule: no row, a dead one, or our own.
inline bool may_renew(const std::optional<WorkerInfo> &current, const WorkerInfo &worker,
                      time_point now) {
    return !current || !current->live_at(now) || current->boot_id == worker.boot_id;
}
/// The stored row for `worker` registered or renewed at `now`; started_at is kept from
/// `current` when it is the same boot.
WorkerInfo worker_row_at(const std::optional<WorkerInfo> &current, WorkerInfo worker,
                         time_point now, duration lease);
/// Error(identity_in_use) describing the live scheduler `holder` that has the identity.
Error identity_in_use(const WorkerInfo &holder, time_point now);

} // namespace asched::detail
