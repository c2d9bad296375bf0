// PostgresDataStore: every operation is one READ COMMITTED transaction on a pooled,
// non-blocking connection; rows are leased with FOR UPDATE SKIP LOCKED.
#include "../../core/fault_points.hpp"
#include "../../pq/pg.hpp"
#include "../row_codec.hpp"
#include "../store_util.hpp"
#include "../transacted_store.hpp"

#include <asched/data_stores/postgres_data_store.hpp>
#include <asched/policies.hpp>

#include <asio/this_coro.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <unordered_map>

namespace asched {

using detail::opt_json;
using nlohmann::json;
using pg::param;

namespace {

// Migration k (1-based) brings the schema from version k-1 to k. Never edit one that shipped.
// "{S}" is the schema. Times are microseconds since the Unix epoch (bigint), as in SQLite.
constexpr const char *migrations[] = {
    // 1: the first schema.
    R"sql(
CREATE SEQUENCE {S}.lease_tokens;
CREATE TABLE {S}.tasks (
    id text PRIMARY KEY,
    data text NOT NULL,
    max_running_jobs integer,
    running_jobs integer NOT NULL DEFAULT 0
);
CREATE TABLE {S}.schedules (
    id text PRIMARY KEY,
    task_id text NOT NULL,
    data text NOT NULL,
    paused boolean NOT NULL,
    next_fire_time bigint,
    last_fire_time bigint,
    trigger_state text,
    acquired_by text,
    acquired_until bigint,
    lease_token bigint NOT NULL
);
CREATE INDEX schedules_due ON {S}.schedules (next_fire_time) WHERE NOT paused AND next_fire_time IS NOT NULL;
CREATE INDEX schedules_leased ON {S}.schedules (acquired_until) WHERE acquired_until IS NOT NULL;
CREATE TABLE {S}.jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- creation order
    id text NOT NULL UNIQUE,
    task_id text NOT NULL,
    schedule_id text,
    scheduled_fire_time bigint,
    jitter bigint NOT NULL,
    earliest_start bigint NOT NULL,
    start_deadline bigint,
    result_expiration bigint NOT NULL,
    created_at bigint NOT NULL,
    args text NOT NULL,     -- JSON array
    metadata text NOT NULL, -- JSON object
    acquired_by text,
    acquired_until bigint,
    lease_token bigint NOT NULL DEFAULT 0
);
-- One job per fire: the key that makes a retried or crashed release harmless.
CREATE UNIQUE INDEX jobs_fire ON {S}.jobs (schedule_id, scheduled_fire_time);
CREATE INDEX jobs_queue ON {S}.jobs (task_id, earliest_start, seq) WHERE acquired_by IS NULL;
CREATE INDEX jobs_leased ON {S}.jobs (acquired_until) WHERE acquired_until IS NOT NULL;
CREATE INDEX jobs_holder ON {S}.jobs (acquired_by) WHERE acquired_by IS NOT NULL;
CREATE TABLE {S}.results (
    job_id text PRIMARY KEY,
    schedule_id text,
    scheduled_fire_time bigint,
    expires_at bigint NOT NULL,
    data text NOT NULL
);
CREATE INDEX results_expiry ON {S}.results (expires_at);
CREATE TABLE {S}.quarantine (
    kind text NOT NULL,
    id text NOT NULL,
    data text,
    error text NOT NULL,
    quarantined_at bigint NOT NULL,
    PRIMARY KEY (kind, id)
);
)sql",
    // 2: job timeouts and cancel requests.
    R"sql(
ALTER TABLE {S}.jobs ADD COLUMN timeout bigint; -- microseconds; NULL: no limit
ALTER TABLE {S}.jobs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
)sql",
    // 3: retries and the job history.
    R"sql(
ALTER TABLE {S}.jobs ADD COLUMN attempt integer NOT NULL DEFAULT 1;
ALTER TABLE {S}.jobs ADD COLUMN retry text; -- JSON RetryPolicy; NULL: never retried
CREATE TABLE {S}.job_history (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id text NOT NULL,
    attempt integer NOT NULL,
    task_id text NOT NULL,
    schedule_id text,
    outcome text NOT NULL,
    scheduled_fire_time bigint,
    started_at bigint,
    finished_at bigint NOT NULL,
    worker text NOT NULL,
    exception_type text,
    exception_message text,
    retry_at bigint
);
CREATE INDEX job_history_recent ON {S}.job_history (finished_at, seq);
CREATE INDEX job_history_task ON {S}.job_history (task_id, finished_at, seq);
CREATE INDEX job_history_schedule ON {S}.job_history (schedule_id, finished_at, seq);
)sql",
    // 4: the worker registry.
    R"sql(
CREATE TABLE {S}.workers (
    identity text PRIMARY KEY,
    boot_id text NOT NULL,
    host text NOT NULL,
    pid bigint NOT NULL,
    process_scope text NOT NULL,
    role text NOT NULL,
    task_ids text NOT NULL, -- JSON array
    started_at bigint NOT NULL,
    last_seen bigint NOT NULL,
    expires_at bigint NOT NULL
);
)sql",
};
constexpr int known_version = int(std::size(migrations));
static_assert(known_version == PostgresDataStore::schema_version);

#define ASCHED_SCHEDULE_COLUMNS                                                                    \
    "id, data, paused, next_fire_time, last_fire_time, trigger_state, acquired_by, "               \
    "acquired_until, "                                                                             \
    "lease_token"
// job_row() reads these; queries append seq (17) where they need it.
#define ASCHED_JOB_COLUMNS                                                                         \
    "id, task_id, schedule_id, scheduled_fire_time, jitter, start_deadline, result_expiration, "   \
    "created_at, args, metadata, acquired_by, acquired_until, lease_token, timeout, attempt, "     \
    "retry, earliest_start"

// The job columns of jsonb_to_recordset() for a batch insert.
#define ASCHED_JOB_RECORD                                                                          \
    "id text, task_id text, schedule_id text, scheduled_fire_time bigint, jitter bigint, "         \
    "earliest_start bigint, start_deadline bigint, result_expiration bigint, created_at bigint, "  \
    "args text, metadata text, timeout bigint, attempt integer, retry text"

// One row of a Result, read like a SQLite statement (what row_codec.hpp expects).
struct Row {
    const pg::Result &r;
    int row;
    bool is_null(int c) const { return r.is_null(row, c); }
    std::int64_t int64(int c) const { return r.int64(row, c); }
    bool boolean(int c) const { return r.boolean(row, c); }
    std::string text(int c) const { return r.text(row, c); }
    std::optional<std::string> opt_text(int c) const { return r.opt_text(row, c); }
    time_point time(int c) const { return r.time(row, c); }
    std::optional<time_point> opt_time(int c) const { return r.opt_time(row, c); }
};

struct Unit {};

} // namespace

struct detail::PostgresStoreImpl : detail::SqlStoreState<PostgresDataStoreOptions, pg::Pool> {
    PostgresStoreImpl() : SqlStoreState("postgres") {}

    // Runs `op(session, args...)` in one transaction: TransactedStore's calls.
    template <class Op, class... A>
    static auto run(std::shared_ptr<PostgresStoreImpl> impl, Op op, A... args);
};

namespace {

using Impl = detail::PostgresStoreImpl;

struct Session;
asio::awaitable<std::set<std::string>> insert_jobs(Session &s,
                                                   const std::vector<const Job *> &jobs);

// What one operation works with: its connection, the transaction's now, and what it collects
// to apply before commit and publish after it.
struct Session {
    Impl &store;
    pg::Connection &conn;
    time_point now{};
    std::vector<Event> events;
    std::map<std::string, int> running_delta; // tasks.running_jobs changes, applied once per task
    json results = json::array();             // results to store, in one statement
    json history = json::array();             // history records to store, in one statement
    bool releasing = false; // the release of fired schedules: its fault points apply

    // A fault point where the connection may be dropped (ASCHED_FAULTPOINTS=...=drop): closes
    // it and fails as a lost connection does, so the caller cannot tell whether the server
    // got (or committed) what was sent.
    void fault(const char *point) {
        if (!detail::fault_point(point))
            return;
        conn.close();
        throw pg::QueryError(
            fmt::format("postgres: the connection was dropped at fault point {}", point), "", true);
    }

    asio::awaitable<pg::Result> q(const char *sql, pg::Params params) {
        return conn.query(store.sql(sql), std::move(params), store.options.query_timeout);
    }

    void log(LogLevel level, std::string message) { store.log(level, std::move(message)); }

    asio::awaitable<void> quarantine(std::vector<detail::BadRow> bad, bool row_still_there) {
        for (auto &b : bad) {
            if (store.newer.skip(b,
                                 [this](std::string m) { log(LogLevel::warning, std::move(m)); }))
                continue;
            auto call1 = q("INSERT INTO {S}.quarantine (kind, id, data, error, quarantined_at) "
                           "VALUES ($1, $2, $3, $4, $5) "
                           "ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data, error = "
                           "excluded.error, "
                           "quarantined_at = excluded.quarantined_at",
                           {param(std::string(b.kind)), param(b.id), param(b.data), param(b.error),
                            param(now)});
            co_await std::move(call1);
            if (row_still_there) {
                const std::string_view k = b.kind;
                auto call2 = q(k == "task"       ? "DELETE FROM {S}.tasks WHERE id = $1"
                               : k == "schedule" ? "DELETE FROM {S}.schedules WHERE id = $1"
                               : k == "job"      ? "DELETE FROM {S}.jobs WHERE id = $1"
                                                 : "DELETE FROM {S}.results WHERE job_id = $1",
                               {param(b.id)});
                co_await std::move(call2);
            }
            log(LogLevel::error,
                fmt::format("postgres store: {} '{}' cannot be decoded and was moved to the "
                            "quarantine table: {}",
                            b.kind, b.id, b.error));
            events.push_back(RecordQuarantined{now, b.kind, b.id, b.error});
        }
    }

    // Frees the task slot (if the job held one), queues the result (if it outlives its finish)
    // and the JobReleased event. The job row is the caller's to delete.
    // With `retry_at` the job goes on (the caller keeps or re-inserts its row): no result.
    void finish(const Job &job, const JobResult &result, const std::string &scheduler_id,
                bool held_slot, std::optional<time_point> retry_at = std::nullopt) {
        if (held_slot)
            --running_delta[job.task_id];
        events.push_back(detail::released_event(job, result, scheduler_id, retry_at));
        history.push_back(detail::history_record_json(job, result, scheduler_id, retry_at));
        if (retry_at)
            return;
        if (result.expires_at > result.finished_at)
            results.push_back(detail::result_record_json(job, result));
    }

    // Jobs already deleted by `deleted` (DELETE ... RETURNING job columns), finished as
    // abandoned with `why`.
    // A job whose policy retries `abandoned` is inserted again as its next attempt.
    asio::awaitable<void> abandon(pg::Result deleted, std::string why_prefix) {
        std::vector<detail::BadRow> bad;
        std::vector<Job> again;
        for (int i = 0; i < deleted.rows(); ++i) {
            auto job = detail::job_row(Row{deleted, i}, bad);
            if (!job)
                continue;
            const std::string holder = job->acquired_by.value_or("");
            const auto result = detail::store_result(
                *job, JobOutcome::abandoned, now,
                why_prefix.empty() ? fmt::format("the lease of worker '{}' expired", holder)
                                   : why_prefix);
            const auto retry_at = detail::retry_time(*job, result);
            finish(*job, result, holder, true, retry_at);
            if (retry_at) {
                Job next = std::move(*job);
                ++next.attempt;
                next.retry_at = retry_at;
                next.start_deadline.reset();
                next.acquired_by.reset();
                next.acquired_until.reset();
                again.push_back(std::move(next));
            }
        }
        co_await quarantine(std::move(bad), false);
        if (!again.empty()) {
            std::vector<const Job *> rows;
            for (const auto &j : again)
                rows.push_back(&j);
            auto insert = insert_jobs(*this, rows);
            co_await std::move(insert);
        }
    }

    asio::awaitable<void> abandon_expired_job_leases() {
        // Rows another node is finishing right now are skipped, never waited for.
        auto call3 =
            q("DELETE FROM {S}.jobs WHERE seq IN (SELECT seq FROM {S}.jobs WHERE acquired_until "
              "<= $1 FOR UPDATE SKIP LOCKED) RETURNING " ASCHED_JOB_COLUMNS,
              {param(now)});
        auto deleted = co_await std::move(call3);
        std::string why; // the holder's lease expired: said per job
        co_await abandon(std::move(deleted), std::move(why));
    }

    // Applies what finish() and the operation collected; the last step before COMMIT.
    asio::awaitable<void> flush() {
        if (!history.empty()) {
            auto call = q("INSERT INTO {S}.job_history (job_id, attempt, task_id, schedule_id, "
                          "outcome, scheduled_fire_time, started_at, finished_at, worker, "
                          "exception_type, exception_message, retry_at) "
                          "SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(job_id text, attempt "
                          "integer, task_id text, schedule_id text, outcome text, "
                          "scheduled_fire_time bigint, started_at bigint, finished_at bigint, "
                          "worker text, exception_type text, exception_message text, retry_at "
                          "bigint)",
                          {param(history.dump())});
            co_await std::move(call);
            history = json::array();
        }
        if (!results.empty()) {
            auto call4 =
                q("INSERT INTO {S}.results (job_id, schedule_id, scheduled_fire_time, expires_at, "
                  "data) "
                  "SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(job_id text, schedule_id text, "
                  "scheduled_fire_time bigint, expires_at bigint, data text) "
                  "ON CONFLICT (job_id) DO UPDATE SET expires_at = excluded.expires_at, data = "
                  "excluded.data",
                  {param(results.dump())});
            co_await std::move(call4);
            results = json::array();
        }
        json deltas = json::array();
        for (const auto &[task, delta] : running_delta) // sorted by task id: one lock order
            if (delta != 0)
                deltas.push_back(json{{"id", task}, {"d", delta}});
        running_delta.clear();
        if (!deltas.empty()) {
            auto call5 =
                q("UPDATE {S}.tasks t SET running_jobs = greatest(0, t.running_jobs + x.d) FROM "
                  "jsonb_to_recordset($1::jsonb) AS x(id text, d integer) WHERE t.id = x.id",
                  {param(deltas.dump())});
            co_await std::move(call5);
        }
    }
};

template <class R, class Op, class... A>
asio::awaitable<detail::Attempt<R>> attempt_once(std::shared_ptr<Impl> impl, int attempt, Op op,
                                                 A... args) {
    const auto timeout = impl->options.query_timeout;
    detail::Attempt<R> a;
    auto conn = co_await impl->connections().acquire(timeout);
    Session s{*impl, *conn};
    bool began = false;
    try {
        if (impl->options.database_clock) {
            const auto sent = impl->context.clock->now();
            auto now = co_await conn->exec(
                "BEGIN; SELECT floor(extract(epoch FROM now()) * 1000000)::bigint", timeout);
            const auto received = impl->context.clock->now();
            s.now = now.time(0, 0);
            impl->clock_offset_us =
                (s.now - (sent + (received - sent) / 2)).count(); // duration: microseconds
        } else {
            co_await conn->exec("BEGIN", timeout);
            s.now = impl->context.clock->now();
        }
        began = true;
        auto call = op(s, args...);
        auto value = co_await std::move(call);
        a.out.emplace(std::move(value));
        co_await s.flush();
        if (s.releasing)
            s.fault("release.before_commit");
        co_await conn->exec("COMMIT", timeout);
        if (s.releasing)
            s.fault("release.after_commit_before_ack");
        a.events = std::move(s.events);
    } catch (const pg::QueryError &e) {
        a.failure = std::current_exception();
        a.retry = attempt < 5 && (e.retryable() || (!began && e.connection_lost()));
    } catch (...) {
        a.failure = std::current_exception();
    }
    if (a.failure && !conn->broken() && conn->in_transaction()) {
        try {
            co_await conn->exec("ROLLBACK", timeout);
        } catch (...) {
            conn->close();
        }
    }
    co_return a;
}

// Runs `op(session, args...)` in one transaction and publishes its events after COMMIT. A
// deadlock or serialization failure runs it again; so does a pooled connection found dead
// before the transaction began (the server restarted meanwhile).
template <class R, class Op, class... A>
asio::awaitable<R> transact(std::shared_ptr<Impl> impl, Op op, A... args) {
    return detail::run_attempts<R>(
        [impl, op, args...](int attempt) { return attempt_once<R>(impl, attempt, op, args...); },
        [impl] { return impl->context.broker; });
}

} // namespace

template <class Op, class... A>
auto detail::PostgresStoreImpl::run(std::shared_ptr<PostgresStoreImpl> impl, Op op, A... args) {
    using R = typename std::invoke_result_t<Op, Session &, A &...>::value_type;
    return transact<R>(std::move(impl), op, std::move(args)...);
}

namespace {

// ---- the operations ---------------------------------------------------------------------------

asio::awaitable<Unit> op_add_task(Session &s, Task task) {
    auto call6 =
        s.q("INSERT INTO {S}.tasks (id, data, max_running_jobs) VALUES ($1, $2, $3) ON CONFLICT "
            "(id) DO "
            "UPDATE SET data = excluded.data, max_running_jobs = excluded.max_running_jobs "
            "RETURNING (xmax = 0)",
            {param(task.id), param(json(task).dump()),
             task.max_running_jobs ? param(std::int64_t(*task.max_running_jobs)) : std::nullopt});
    auto r = co_await std::move(call6);
    if (r.boolean(0, 0))
        s.events.push_back(TaskAdded{s.now, task.id});
    else
        s.events.push_back(TaskUpdated{s.now, task.id});
    co_return Unit{};
}

asio::awaitable<Unit> op_remove_task(Session &s, std::string task_id) {
    auto call7 = s.q("DELETE FROM {S}.tasks WHERE id = $1", {param(task_id)});
    auto r = co_await std::move(call7);
    if (r.affected() == 0)
        throw Error(errc::task_lookup, fmt::format("task '{}' not found", task_id));
    s.events.push_back(TaskRemoved{s.now, task_id});
    co_return Unit{};
}

asio::awaitable<std::vector<Task>> op_get_tasks(Session &s, std::optional<std::string> id) {
    auto call =
        id ? s.q("SELECT id, data, max_running_jobs, running_jobs FROM {S}.tasks WHERE id = $1",
                 {param(*id)})
           : s.q("SELECT id, data, max_running_jobs, running_jobs FROM {S}.tasks ORDER BY id", {});
    auto r = co_await std::move(call);
    std::vector<detail::BadRow> bad;
    std::vector<Task> out;
    for (int i = 0; i < r.rows(); ++i)
        if (auto t = detail::task_row(Row{r, i}, bad))
            out.push_back(std::move(*t));
    auto call8 = s.quarantine(std::move(bad), true);
    co_await std::move(call8);
    co_return out;
}

asio::awaitable<std::vector<Schedule>>
op_get_schedules(Session &s, std::optional<std::vector<std::string>> ids) {
    auto call = ids ? s.q("SELECT " ASCHED_SCHEDULE_COLUMNS
                          " FROM {S}.schedules WHERE id = ANY($1::text[]) ORDER BY id",
                          {pg::text_array(*ids)})
                    : s.q("SELECT " ASCHED_SCHEDULE_COLUMNS " FROM {S}.schedules ORDER BY id", {});
    auto r = co_await std::move(call);
    std::vector<detail::BadRow> bad;
    std::vector<Schedule> out;
    for (int i = 0; i < r.rows(); ++i)
        if (auto sched = detail::schedule_row(Row{r, i}, bad))
            out.push_back(std::move(*sched));
    auto call9 = s.quarantine(std::move(bad), true);
    co_await std::move(call9);
    co_return out;
}

asio::awaitable<void> require_task(Session &s, std::string id) {
    auto call10 = s.q("SELECT 1 FROM {S}.tasks WHERE id = $1", {param(id)});
    auto r = co_await std::move(call10);
    if (r.rows() == 0)
        throw Error(errc::task_lookup, fmt::format("task '{}' not found", id));
}

asio::awaitable<bool> op_add_schedule(Session &s, Schedule schedule, ConflictPolicy policy) {
    co_await require_task(s, schedule.task_id);
    schedule.acquired_by.reset();
    schedule.acquired_until.reset();
    const char *insert =
        policy == ConflictPolicy::replace
            ? "INSERT INTO {S}.schedules (id, task_id, data, paused, next_fire_time, "
              "last_fire_time, trigger_state, "
              "acquired_by, acquired_until, lease_token) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, "
              "NULL, "
              "nextval('{S}.lease_tokens')) ON CONFLICT (id) DO UPDATE SET task_id = "
              "excluded.task_id, "
              "data = excluded.data, paused = excluded.paused, next_fire_time = "
              "excluded.next_fire_time, "
              "last_fire_time = excluded.last_fire_time, trigger_state = excluded.trigger_state, "
              "acquired_by = NULL, acquired_until = NULL, lease_token = excluded.lease_token "
              "RETURNING (xmax = 0)"
            : "INSERT INTO {S}.schedules (id, task_id, data, paused, next_fire_time, "
              "last_fire_time, trigger_state, "
              "acquired_by, acquired_until, lease_token) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, "
              "NULL, "
              "nextval('{S}.lease_tokens')) ON CONFLICT (id) DO NOTHING RETURNING true";
    // A replace takes a new token: the holder of the old definition's lease cannot release.
    auto call11 = s.q(
        insert,
        {param(schedule.id), param(schedule.task_id), param(json(schedule).dump()),
         param(schedule.paused), param(schedule.next_fire_time), param(schedule.last_fire_time),
         schedule.trigger_state.is_null() ? std::nullopt : param(schedule.trigger_state.dump())});
    auto r = co_await std::move(call11);
    if (r.rows() == 0) {
        if (policy == ConflictPolicy::exception)
            throw Error(errc::conflicting_id,
                        fmt::format("schedule '{}' already exists", schedule.id));
        co_return false;
    }
    if (r.boolean(0, 0))
        s.events.push_back(
            ScheduleAdded{s.now, schedule.id, schedule.task_id, schedule.next_fire_time});
    else
        s.events.push_back(
            ScheduleUpdated{s.now, schedule.id, schedule.task_id, schedule.next_fire_time});
    co_return true;
}

asio::awaitable<Unit> op_remove_schedules(Session &s, std::vector<std::string> ids) {
    auto call12 = s.q("DELETE FROM {S}.schedules WHERE id = ANY($1::text[]) RETURNING id, task_id",
                      {pg::text_array(ids)});
    auto r = co_await std::move(call12);
    // In the order asked for.
    std::map<std::string, std::string> removed;
    for (int i = 0; i < r.rows(); ++i)
        removed.emplace(r.text(i, 0), r.text(i, 1));
    for (const auto &id : ids)
        if (auto it = removed.find(id); it != removed.end()) {
            s.events.push_back(ScheduleRemoved{s.now, id, it->second, false});
            removed.erase(it);
        }
    co_return Unit{};
}

asio::awaitable<std::vector<Schedule>> op_acquire_schedules(Session &s, std::string scheduler_id,
                                                            duration lease, std::size_t limit) {
    // Due, unpaused, and free or with an expired lease; rows another node is taking are
    // skipped, never waited for.
    auto call13 = s.q(
        "UPDATE {S}.schedules SET acquired_by = $2, acquired_until = $3, lease_token = "
        "nextval('{S}.lease_tokens') "
        "WHERE id IN (SELECT id FROM {S}.schedules WHERE NOT paused AND next_fire_time <= $1 AND "
        "(acquired_until IS NULL OR acquired_until <= $1) AND "
        "id NOT IN (SELECT jsonb_array_elements_text($5::jsonb)) ORDER BY next_fire_time "
        "LIMIT $4 FOR UPDATE SKIP LOCKED) "
        "RETURNING " ASCHED_SCHEDULE_COLUMNS,
        {param(s.now), param(scheduler_id), param(s.now + lease), param(limit),
         param(s.store.newer.schedule_ids())});
    auto r = co_await std::move(call13);
    std::vector<detail::BadRow> bad;
    std::vector<Schedule> out;
    for (int i = 0; i < r.rows(); ++i)
        if (auto sched = detail::schedule_row(Row{r, i}, bad))
            out.push_back(std::move(*sched));
    // A row a newer asched wrote is handed back untouched, for a node that reads it.
    for (const auto &b : bad)
        if (detail::written_by_newer_version(b.data)) {
            auto unlease = s.q("UPDATE {S}.schedules SET acquired_by = NULL, acquired_until = NULL "
                               "WHERE id = $1",
                               {param(b.id)});
            co_await std::move(unlease);
        }
    auto call14 = s.quarantine(std::move(bad), true);
    co_await std::move(call14);
    std::sort(out.begin(), out.end(), [](const Schedule &a, const Schedule &b) {
        return std::tie(a.next_fire_time, a.id) < std::tie(b.next_fire_time, b.id);
    });
    co_return out;
}

// Inserts `jobs` (one statement, in order) whose task exists; returns the ids inserted.
// Existing ids and second jobs for one fire are skipped.
asio::awaitable<std::set<std::string>> insert_jobs(Session &s,
                                                   const std::vector<const Job *> &jobs) {
    std::set<std::string> inserted;
    if (jobs.empty())
        co_return inserted;
    json records = json::array();
    for (const Job *job : jobs)
        records.push_back(detail::job_record_json(*job));
    auto call15 =
        s.q("INSERT INTO {S}.jobs (id, task_id, schedule_id, scheduled_fire_time, jitter, "
            "earliest_start, "
            "start_deadline, result_expiration, created_at, args, metadata, timeout, attempt, "
            "retry) "
            "SELECT x.* FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(j, n) "
            "CROSS JOIN LATERAL jsonb_to_record(e.j) AS x(" ASCHED_JOB_RECORD ") "
            "WHERE EXISTS (SELECT 1 FROM {S}.tasks t WHERE t.id = x.task_id) ORDER BY e.n "
            "ON CONFLICT DO NOTHING RETURNING id",
            {param(records.dump())});
    auto r = co_await std::move(call15);
    for (int i = 0; i < r.rows(); ++i)
        inserted.insert(r.text(i, 0));
    for (const Job *job : jobs)
        if (inserted.contains(job->id))
            s.events.push_back(JobAdded{s.now, job->id, job->task_id, job->schedule_id});
    co_return inserted;
}

asio::awaitable<Unit> op_release_schedules(Session &s, std::string scheduler_id,
                                           std::vector<ScheduleRelease> releases) {
    if (releases.empty())
        co_return Unit{};
    s.releasing = true;
    json records = json::array();
    for (const auto &r : releases)
        records.push_back(json{
            {"id", r.schedule_id},
            {"token", r.lease_token},
            {"last", opt_json(r.last_fire_time)},
            {"next", opt_json(r.next_fire_time)},
            {"state", r.trigger_state.is_null() ? json(nullptr) : json(r.trigger_state.dump())}});
    // Only the holder of the current lease may release: the fencing token decides.
    auto call16 = s.q("UPDATE {S}.schedules s SET acquired_by = NULL, acquired_until = NULL, "
                      "last_fire_time = coalesce(x.last, s.last_fire_time), next_fire_time = "
                      "x.next, trigger_state = x.state "
                      "FROM jsonb_to_recordset($1::jsonb) AS x(id text, token bigint, last bigint, "
                      "next bigint, state text) "
                      "WHERE s.id = x.id AND s.acquired_by = $2 AND s.lease_token = x.token "
                      "RETURNING s.id, s.task_id",
                      {param(records.dump()), param(scheduler_id)});
    auto updated = co_await std::move(call16);
    std::map<std::string, std::string> accepted;
    for (int i = 0; i < updated.rows(); ++i)
        accepted.emplace(updated.text(i, 0), updated.text(i, 1));
    std::vector<const Job *> jobs;
    for (const auto &r : releases) {
        if (!accepted.contains(r.schedule_id)) {
            s.log(LogLevel::info,
                  fmt::format("schedule '{}': release by '{}' refused (lease lost, schedule "
                              "changed or removed meanwhile)",
                              r.schedule_id, scheduler_id));
            continue;
        }
        for (const auto &job : r.jobs)
            jobs.push_back(&job);
    }
    auto inserted = co_await insert_jobs(s, jobs);
    if (!inserted.empty())
        s.fault("release.after_job_insert");
    if (inserted.size() < jobs.size()) {
        std::vector<std::string> task_ids;
        for (const Job *job : jobs)
            if (!inserted.contains(job->id))
                task_ids.push_back(job->task_id);
        auto call17 =
            s.q("SELECT id FROM {S}.tasks WHERE id = ANY($1::text[])", {pg::text_array(task_ids)});
        auto known = co_await std::move(call17);
        std::set<std::string> tasks;
        for (int i = 0; i < known.rows(); ++i)
            tasks.insert(known.text(i, 0));
        for (const Job *job : jobs)
            if (!inserted.contains(job->id) && !tasks.contains(job->task_id))
                s.log(LogLevel::error,
                      fmt::format("schedule '{}': job not created: task '{}' not found",
                                  job->schedule_id.value_or(""), job->task_id));
    }
    for (const auto &r : releases)
        if (auto it = accepted.find(r.schedule_id); it != accepted.end())
            s.events.push_back(ScheduleUpdated{s.now, r.schedule_id, it->second, r.next_fire_time});
    co_return Unit{};
}

asio::awaitable<std::optional<time_point>> op_next_schedule_run_time(Session &s) {
    auto call18 =
        s.q("SELECT least((SELECT min(next_fire_time) FROM {S}.schedules WHERE NOT paused AND "
            "acquired_by IS NULL AND next_fire_time IS NOT NULL AND "
            "id NOT IN (SELECT jsonb_array_elements_text($1::jsonb))), (SELECT min(acquired_until) "
            "FROM {S}.schedules WHERE acquired_until IS NOT NULL))",
            {param(s.store.newer.schedule_ids())});
    auto r = co_await std::move(call18);
    co_return r.opt_time(0, 0);
}

asio::awaitable<Unit> op_add_jobs(Session &s, std::vector<Job> jobs) {
    std::vector<std::string> task_ids;
    for (auto &job : jobs) {
        job.acquired_by.reset();
        job.acquired_until.reset();
        task_ids.push_back(job.task_id);
    }
    auto call19 =
        s.q("SELECT id FROM {S}.tasks WHERE id = ANY($1::text[])", {pg::text_array(task_ids)});
    auto known = co_await std::move(call19);
    std::set<std::string> tasks;
    for (int i = 0; i < known.rows(); ++i)
        tasks.insert(known.text(i, 0));
    for (const auto &id : task_ids)
        if (!tasks.contains(id))
            throw Error(errc::task_lookup, fmt::format("task '{}' not found", id));
    std::vector<const Job *> pointers;
    for (const auto &job : jobs)
        pointers.push_back(&job);
    auto inserted = co_await insert_jobs(s, pointers);
    for (const auto &job : jobs)
        if (!inserted.contains(job.id))
            throw Error(
                errc::conflicting_id,
                fmt::format(
                    "job '{}': a job with this id, or for this schedule and fire time, exists",
                    job.id));
    co_return Unit{};
}

asio::awaitable<std::vector<Job>> op_get_jobs(Session &s,
                                              std::optional<std::vector<std::string>> ids) {
    auto call = ids ? s.q("SELECT " ASCHED_JOB_COLUMNS
                          " FROM {S}.jobs WHERE id = ANY($1::text[]) ORDER BY seq",
                          {pg::text_array(*ids)})
                    : s.q("SELECT " ASCHED_JOB_COLUMNS " FROM {S}.jobs ORDER BY seq", {});
    auto r = co_await std::move(call);
    std::vector<detail::BadRow> bad;
    std::vector<Job> out;
    for (int i = 0; i < r.rows(); ++i)
        if (auto j = detail::job_row(Row{r, i}, bad))
            out.push_back(std::move(*j));
    auto call20 = s.quarantine(std::move(bad), true);
    co_await std::move(call20);
    co_return out;
}

asio::awaitable<JobAcquisition> op_acquire_jobs(Session &s, std::string scheduler_id,
                                                duration lease, std::size_t limit,
                                                std::vector<std::string> task_ids) {
    co_await s.abandon_expired_job_leases();
    JobAcquisition out;
    std::sort(task_ids.begin(), task_ids.end());
    task_ids.erase(std::unique(task_ids.begin(), task_ids.end()), task_ids.end());
    // Free slots per task. A capped task's row stays locked until commit: the cap holds across
    // nodes. Uncapped tasks are not locked (their counter is updated at the end).
    auto call21 = s.q("SELECT id, max_running_jobs IS NOT NULL FROM {S}.tasks WHERE id = "
                      "ANY($1::text[]) ORDER BY id",
                      {pg::text_array(task_ids)});
    auto tasks = co_await std::move(call21);
    std::map<std::string, std::int64_t> slots;
    std::vector<std::string> capped;
    for (int i = 0; i < tasks.rows(); ++i) {
        if (tasks.boolean(i, 1))
            capped.push_back(tasks.text(i, 0));
        else
            slots.emplace(tasks.text(i, 0), std::int64_t(limit));
    }
    if (!capped.empty()) {
        auto call22 = s.q(
            "SELECT id, max_running_jobs, running_jobs FROM {S}.tasks WHERE id = ANY($1::text[]) "
            "ORDER BY id FOR NO KEY UPDATE",
            {pg::text_array(capped)});
        auto locked = co_await std::move(call22);
        for (int i = 0; i < locked.rows(); ++i) {
            // Read again under the lock (the cap may have changed meanwhile).
            const std::int64_t free =
                locked.is_null(i, 1)
                    ? std::int64_t(limit)
                    : std::max<std::int64_t>(0, locked.int64(i, 1) - locked.int64(i, 2));
            if (free > 0)
                slots.emplace(locked.text(i, 0), std::min<std::int64_t>(free, std::int64_t(limit)));
        }
    }
    // Rounds: each locks the oldest startable candidates of every task with free slots;
    // jobs past their deadline are released and the round repeats.
    for (bool again = true; again && out.jobs.size() < limit && !slots.empty();) {
        again = false;
        json wanted = json::array();
        for (const auto &[id, free] : slots)
            if (free > 0)
                wanted.push_back(json{{"id", id}, {"n", free}});
        if (wanted.empty())
            break;
        auto call23 = s.q("SELECT j.* FROM jsonb_to_recordset($1::jsonb) AS t(id text, n bigint) "
                          "CROSS JOIN LATERAL "
                          "(SELECT " ASCHED_JOB_COLUMNS ", seq FROM {S}.jobs WHERE task_id = t.id "
                          "AND acquired_by IS NULL AND earliest_start <= $2 ORDER BY "
                          "earliest_start, seq LIMIT t.n "
                          "FOR UPDATE SKIP LOCKED) AS j",
                          {param(wanted.dump()), param(s.now)});
        auto r = co_await std::move(call23);
        struct Candidate {
            time_point earliest;
            std::int64_t seq;
            Job job;
        };
        std::vector<Candidate> candidates;
        std::vector<detail::BadRow> bad;
        for (int i = 0; i < r.rows(); ++i)
            if (auto j = detail::job_row(Row{r, i}, bad))
                candidates.push_back({r.time(i, 16), r.int64(i, 17), std::move(*j)});
        again = !bad.empty();
        auto call24 = s.quarantine(std::move(bad), true);
        co_await std::move(call24);
        std::sort(candidates.begin(), candidates.end(), [](const Candidate &a, const Candidate &b) {
            return std::tie(a.earliest, a.seq) < std::tie(b.earliest, b.seq);
        });
        std::vector<std::string> missed;
        json take = json::array();
        std::vector<Job> taken;
        for (auto &c : candidates) {
            auto &free = slots[c.job.task_id];
            if (out.jobs.size() + taken.size() >= limit || free == 0)
                continue;
            if (missed_deadline(c.job, s.now)) {
                s.finish(c.job,
                         detail::store_result(c.job, JobOutcome::missed_start_deadline, s.now,
                                              fmt::format("start deadline {} passed",
                                                          format_time(*c.job.start_deadline))),
                         scheduler_id, false);
                missed.push_back(c.job.id);
                again = true;
                continue;
            }
            --free;
            take.push_back(c.seq);
            taken.push_back(std::move(c.job));
        }
        if (!missed.empty()) {
            auto call25 =
                s.q("DELETE FROM {S}.jobs WHERE id = ANY($1::text[])", {pg::text_array(missed)});
            co_await std::move(call25);
        }
        if (taken.empty())
            continue;
        auto call26 = s.q("UPDATE {S}.jobs SET acquired_by = $2, acquired_until = $3, "
                          "lease_token = nextval('{S}.lease_tokens') WHERE seq IN (SELECT "
                          "jsonb_array_elements_text($1::jsonb)::bigint) RETURNING id, lease_token",
                          {param(take.dump()), param(scheduler_id), param(s.now + lease)});
        auto leased = co_await std::move(call26);
        std::map<std::string, std::uint64_t> tokens;
        for (int i = 0; i < leased.rows(); ++i)
            tokens.emplace(leased.text(i, 0), std::uint64_t(leased.int64(i, 1)));
        for (auto &job : taken) {
            job.acquired_by = scheduler_id;
            job.acquired_until = s.now + lease;
            job.lease_token = tokens.at(job.id);
            ++s.running_delta[job.task_id];
            s.events.push_back(JobAcquired{s.now, job.id, scheduler_id, job.task_id,
                                           job.schedule_id, job.scheduled_fire_time});
            out.jobs.push_back(std::move(job));
        }
    }
    if (!slots.empty()) {
        std::vector<std::string> ids;
        for (const auto &[id, free] : slots)
            ids.push_back(id);
        auto call27 =
            s.q("SELECT min(earliest_start) FROM {S}.jobs WHERE task_id = ANY($1::text[]) AND "
                "acquired_by IS NULL AND earliest_start > $2",
                {pg::text_array(ids), param(s.now)});
        auto next = co_await std::move(call27);
        out.next_ready_time = next.opt_time(0, 0);
    }
    co_return out;
}

asio::awaitable<std::vector<bool>> op_release_jobs(Session &s, std::string scheduler_id,
                                                   std::vector<JobRelease> releases) {
    json ended = json::array(), retried = json::array();
    std::vector<std::optional<time_point>> retry_at;
    for (const auto &[job, result] : releases) {
        retry_at.push_back(detail::retry_time(job, result));
        if (retry_at.back())
            retried.push_back(json{{"id", job.id},
                                   {"token", job.lease_token},
                                   {"at", retry_at.back()->time_since_epoch().count()}});
        else
            ended.push_back(json{{"id", job.id}, {"token", job.lease_token}});
    }
    // Only the holder of the current lease may release: the fencing token decides.
    std::set<std::string> gone;
    if (!ended.empty()) {
        auto call28 = s.q(
            "DELETE FROM {S}.jobs j USING jsonb_to_recordset($1::jsonb) AS x(id text, token "
            "bigint) "
            "WHERE j.id = x.id AND j.acquired_by = $2 AND j.lease_token = x.token RETURNING j.id",
            {param(ended.dump()), param(scheduler_id)});
        auto deleted = co_await std::move(call28);
        for (int i = 0; i < deleted.rows(); ++i)
            gone.insert(deleted.text(i, 0));
    }
    if (!retried.empty()) {
        // The same row becomes the next attempt, due after its backoff.
        auto call = s.q("UPDATE {S}.jobs j SET attempt = j.attempt + 1, earliest_start = x.at, "
                        "start_deadline = NULL, acquired_by = NULL, acquired_until = NULL, "
                        "cancel_requested = false FROM jsonb_to_recordset($1::jsonb) AS x(id text, "
                        "token bigint, at bigint) WHERE j.id = x.id AND j.acquired_by = $2 AND "
                        "j.lease_token = x.token RETURNING j.id",
                        {param(retried.dump()), param(scheduler_id)});
        auto requeued = co_await std::move(call);
        for (int i = 0; i < requeued.rows(); ++i)
            gone.insert(requeued.text(i, 0));
    }
    std::size_t index = 0;
    std::vector<bool> applied;
    for (auto &[job, result] : releases) {
        const auto next = retry_at[index++];
        if (!gone.contains(job.id)) {
            s.log(LogLevel::warning,
                  fmt::format("job '{}': release by '{}' refused (its lease expired or passed to "
                              "another worker)",
                              job.id, scheduler_id));
            applied.push_back(false);
            continue;
        }
        s.finish(job, result, scheduler_id, true, next);
        applied.push_back(true);
    }
    co_return applied;
}

asio::awaitable<std::optional<JobResult>> op_get_job_result(Session &s, std::string job_id) {
    auto call29 = s.q("SELECT data FROM {S}.results WHERE job_id = $1 AND expires_at > $2",
                      {param(job_id), param(s.now)});
    auto r = co_await std::move(call29);
    if (r.rows() == 0)
        co_return std::nullopt;
    std::string error;
    auto out = detail::decode_json<JobResult>(r.text(0, 0), error);
    if (!out) {
        auto call30 = s.quarantine({detail::BadRow{"result", job_id, r.text(0, 0), error}}, true);
        co_await std::move(call30);
    }
    co_return out;
}

// One statement, so one snapshot even under READ COMMITTED.
asio::awaitable<JobStatus> op_get_job_status(Session &s, std::string job_id) {
    auto call = s.q("SELECT (SELECT data FROM {S}.results WHERE job_id = $1 AND expires_at > $2), "
                    "EXISTS (SELECT 1 FROM {S}.jobs WHERE id = $1)",
                    {param(job_id), param(s.now)});
    auto r = co_await std::move(call);
    JobStatus out;
    if (!r.is_null(0, 0)) {
        std::string error;
        out.result = detail::decode_json<JobResult>(r.text(0, 0), error);
        if (!out.result) {
            auto q = s.quarantine({detail::BadRow{"result", job_id, r.text(0, 0), error}}, true);
            co_await std::move(q);
        }
    }
    out.pending = !out.result && r.text(0, 1) == "t";
    co_return out;
}

// Renews the leases of `ids` held by `scheduler_id` and not yet expired (another node may
// hold an expired one by now); returns the jobs among them with a cancellation requested.
asio::awaitable<std::vector<std::string>> op_extend_leases(Session &s, bool jobs,
                                                           std::string scheduler_id,
                                                           std::vector<std::string> ids,
                                                           duration lease) {
    const char *sql = jobs ? "UPDATE {S}.jobs SET acquired_until = $3 WHERE id = ANY($1::text[]) "
                             "AND acquired_by = $2 AND acquired_until > $4 "
                             "RETURNING id, cancel_requested"
                           : "UPDATE {S}.schedules SET acquired_until = $3 WHERE id = "
                             "ANY($1::text[]) AND acquired_by = $2 AND acquired_until > $4 "
                             "RETURNING id, false";
    auto call31 =
        s.q(sql, {pg::text_array(ids), param(scheduler_id), param(s.now + lease), param(s.now)});
    auto r = co_await std::move(call31);
    std::vector<std::string> flagged;
    for (int i = 0; i < r.rows(); ++i)
        if (r.boolean(i, 1))
            flagged.push_back(r.text(i, 0));
    co_return flagged;
}

// One statement per indexed filter; $1 task or schedule, $2 outcome, $3 since, $4 until,
// $5/$6 the cursor (finished_at, seq), $7 limit + 1.
#define ASCHED_PG_HISTORY_SELECT                                                                   \
    "SELECT seq, job_id, attempt, task_id, schedule_id, outcome, scheduled_fire_time, "            \
    "started_at, finished_at, worker, exception_type, exception_message, retry_at FROM "           \
    "{S}.job_history WHERE "
#define ASCHED_PG_HISTORY_REST                                                                     \
    " ($2::text IS NULL OR outcome = $2) AND finished_at >= $3 AND finished_at < $4 AND "          \
    "(finished_at, seq) < ($5, $6) ORDER BY finished_at DESC, seq DESC LIMIT $7"
constexpr const char *pg_history_all =
    ASCHED_PG_HISTORY_SELECT "$1::text IS NULL AND" ASCHED_PG_HISTORY_REST;
constexpr const char *pg_history_task =
    ASCHED_PG_HISTORY_SELECT "task_id = $1 AND" ASCHED_PG_HISTORY_REST;
constexpr const char *pg_history_schedule =
    ASCHED_PG_HISTORY_SELECT "schedule_id = $1 AND" ASCHED_PG_HISTORY_REST;

// `before`: the cursor, parsed (INT64_MAX twice: the newest page).
asio::awaitable<JobHistoryPage> op_get_job_history(Session &s, JobHistoryFilter filter,
                                                   std::pair<std::int64_t, std::int64_t> before) {
    const char *sql = filter.schedule_id ? pg_history_schedule
                      : filter.task_id   ? pg_history_task
                                         : pg_history_all;
    const std::optional<std::string> key = filter.schedule_id ? filter.schedule_id : filter.task_id;
    const std::optional<std::string> outcome =
        filter.outcome ? std::optional<std::string>(to_string(*filter.outcome)) : std::nullopt;
    const bool both = filter.schedule_id && filter.task_id;
    auto call =
        s.q(sql, {param(key), param(outcome),
                  param(filter.since ? filter.since->time_since_epoch().count() : INT64_MIN),
                  param(filter.until ? filter.until->time_since_epoch().count() : INT64_MAX),
                  param(before.first), param(before.second),
                  param(both ? std::int64_t(INT64_MAX) : std::int64_t(filter.limit + 1))});
    auto r = co_await std::move(call);
    JobHistoryPage page;
    std::int64_t last_seq = 0;
    for (int i = 0; i < r.rows(); ++i) {
        if (both && r.text(i, 3) != *filter.task_id)
            continue;
        auto rec = detail::history_row(Row{r, i});
        if (!rec)
            continue;
        if (page.records.size() == filter.limit) {
            page.next_cursor = detail::history_cursor(page.records.back().finished_at, last_seq);
            break;
        }
        last_seq = r.int64(i, 0);
        page.records.push_back(std::move(*rec));
    }
    co_return page;
}

asio::awaitable<std::size_t> op_prune_history(Session &s, time_point before) {
    auto call = s.q("DELETE FROM {S}.job_history WHERE finished_at < $1", {param(before)});
    auto r = co_await std::move(call);
    co_return std::size_t(r.affected());
}

asio::awaitable<JobCancellation> op_cancel_job(Session &s, std::string job_id,
                                               std::string scheduler_id) {
    auto call = s.q(
        "DELETE FROM {S}.jobs WHERE id = $1 AND acquired_by IS NULL RETURNING " ASCHED_JOB_COLUMNS,
        {param(job_id)});
    auto deleted = co_await std::move(call);
    std::vector<detail::BadRow> bad;
    if (deleted.rows() > 0) {
        if (auto job = detail::job_row(Row{deleted, 0}, bad))
            s.finish(*job,
                     detail::store_result(*job, JobOutcome::cancelled, s.now,
                                          "cancelled by cancel_job() before it started"),
                     scheduler_id, false);
        auto q = s.quarantine(std::move(bad), false);
        co_await std::move(q);
        co_return JobCancellation::removed;
    }
    auto flag = s.q("UPDATE {S}.jobs SET cancel_requested = true WHERE id = $1 RETURNING task_id, "
                    "acquired_by",
                    {param(job_id)});
    auto flagged = co_await std::move(flag);
    if (flagged.rows() == 0)
        throw Error(errc::job_lookup,
                    fmt::format("job '{}' not found (it is neither queued nor running)", job_id));
    s.events.push_back(JobCancelRequested{s.now, job_id, flagged.text(0, 0), flagged.text(0, 1)});
    co_return JobCancellation::requested;
}

asio::awaitable<Unit> op_reap_abandoned_jobs(Session &s, std::string scheduler_id) {
    auto call32 = s.q("DELETE FROM {S}.jobs WHERE acquired_by = $1 RETURNING " ASCHED_JOB_COLUMNS,
                      {param(scheduler_id)});
    auto deleted = co_await std::move(call32);
    auto why = fmt::format("worker '{}' restarted while the job ran", scheduler_id);
    co_await s.abandon(std::move(deleted), std::move(why));
    co_return Unit{};
}

// The identity's row, locked for this transaction: two nodes registering one identity at
// once take turns (the advisory lock also covers a row that does not exist yet).
asio::awaitable<std::optional<WorkerInfo>> lock_worker(Session &s, const std::string &identity) {
    auto lock =
        s.q("SELECT pg_advisory_xact_lock(hashtext('asched worker ' || $1))", {param(identity)});
    co_await std::move(lock);
    auto call = s.q("SELECT " ASCHED_WORKER_COLUMNS " FROM {S}.workers WHERE identity = $1",
                    {param(identity)});
    auto r = co_await std::move(call);
    std::optional<WorkerInfo> out;
    if (r.rows() > 0)
        out = detail::worker_row(Row{r, 0});
    co_return out;
}

asio::awaitable<Unit> put_worker(Session &s, WorkerInfo w) {
    auto call = s.q(
        "INSERT INTO {S}.workers (" ASCHED_WORKER_COLUMNS
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (identity) DO UPDATE SET "
        "boot_id = excluded.boot_id, host = excluded.host, pid = excluded.pid, process_scope = "
        "excluded.process_scope, role = excluded.role, task_ids = excluded.task_ids, started_at "
        "= excluded.started_at, last_seen = excluded.last_seen, expires_at = excluded.expires_at",
        {param(w.identity), param(w.boot_id), param(w.host), param(w.pid), param(w.process_scope),
         param(std::string(to_string(w.role))), param(detail::task_ids_text(w)),
         param(w.started_at), param(w.last_seen), param(w.expires_at)});
    co_await std::move(call);
    co_return Unit{};
}

asio::awaitable<Unit> op_register_worker(Session &s, WorkerInfo worker, duration lease,
                                         std::optional<std::string> replaces) {
    auto locked = lock_worker(s, worker.identity);
    const auto current = co_await std::move(locked);
    if (!detail::may_register(current, worker, replaces, s.now))
        throw detail::identity_in_use(*current, s.now);
    auto put = put_worker(s, detail::worker_row_at(current, worker, s.now, lease));
    co_await std::move(put);
    auto free = s.q("UPDATE {S}.schedules SET acquired_by = NULL, acquired_until = NULL WHERE "
                    "acquired_by = $1",
                    {param(worker.identity)});
    co_await std::move(free);
    co_return Unit{};
}

asio::awaitable<bool> op_renew_worker(Session &s, WorkerInfo worker, duration lease) {
    auto locked = lock_worker(s, worker.identity);
    const auto current = co_await std::move(locked);
    const bool ok = detail::may_renew(current, worker, s.now);
    if (ok) {
        auto put = put_worker(s, detail::worker_row_at(current, worker, s.now, lease));
        co_await std::move(put);
    }
    co_return ok;
}

asio::awaitable<Unit> op_unregister_worker(Session &s, std::string identity, std::string boot_id) {
    auto call = s.q("DELETE FROM {S}.workers WHERE identity = $1 AND boot_id = $2",
                    {param(identity), param(boot_id)});
    co_await std::move(call);
    co_return Unit{};
}

asio::awaitable<std::vector<WorkerInfo>> op_get_workers(Session &s) {
    auto call = s.q("SELECT " ASCHED_WORKER_COLUMNS " FROM {S}.workers ORDER BY identity", {});
    auto r = co_await std::move(call);
    std::vector<WorkerInfo> out;
    for (int i = 0; i < r.rows(); ++i)
        out.push_back(detail::worker_row(Row{r, i}));
    co_return out;
}

asio::awaitable<StoreCheck> op_check(Session &s) {
    StoreCheck out;
    out.backend = "postgres";
    out.location = s.store.where + " schema " + s.store.options.schema;
    out.found_version = s.store.found_version;
    auto version = s.q("SELECT version FROM {S}.schema_version", {});
    auto v = co_await std::move(version);
    if (v.rows() != 1)
        out.problems.push_back(fmt::format("schema_version holds {} rows, expected 1", v.rows()));
    if (v.rows() > 0)
        out.schema_version = int(v.int64(0, 0));
    auto counters = s.q("SELECT t.id, t.running_jobs, (SELECT count(*) FROM {S}.jobs j WHERE "
                        "j.task_id = t.id AND j.acquired_by IS NOT NULL) FROM {S}.tasks t ORDER "
                        "BY t.id",
                        {});
    auto c = co_await std::move(counters);
    for (int i = 0; i < c.rows(); ++i)
        if (c.int64(i, 1) != c.int64(i, 2))
            out.problems.push_back(
                detail::running_counter_problem(c.text(i, 0), c.int64(i, 1), c.int64(i, 2)));
    auto count = s.q("SELECT count(*) FROM {S}.quarantine", {});
    auto n = co_await std::move(count);
    out.quarantined = std::size_t(n.int64(0, 0));
    auto recent = s.q("SELECT kind, id, error, quarantined_at FROM {S}.quarantine ORDER BY "
                      "quarantined_at DESC LIMIT 20",
                      {});
    auto r = co_await std::move(recent);
    for (int i = 0; i < r.rows(); ++i)
        out.recent.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2), r.time(i, 3)});
    co_return out;
}

asio::awaitable<Unit> op_cleanup(Session &s) {
    s.store.newer.forget();
    auto call33 = s.q("DELETE FROM {S}.results WHERE expires_at <= $1", {param(s.now)});
    co_await std::move(call33);
    co_await s.abandon_expired_job_leases();
    auto dead = s.q("DELETE FROM {S}.workers WHERE expires_at <= $1",
                    {param(s.now - detail::dead_worker_retention)});
    co_await std::move(dead);
    auto call34 = s.q(
        "DELETE FROM {S}.schedules s WHERE next_fire_time IS NULL AND acquired_by IS NULL AND "
        "NOT EXISTS (SELECT 1 FROM {S}.jobs j WHERE j.schedule_id = s.id) RETURNING id, task_id",
        {});
    auto r = co_await std::move(call34);
    for (int i = 0; i < r.rows(); ++i)
        s.events.push_back(ScheduleRemoved{s.now, r.text(i, 0), r.text(i, 1), true});
    co_return Unit{};
}

// Creates or migrates the schema, under an advisory lock so that nodes starting together
// take turns.
asio::awaitable<Unit> op_migrate(Session &s) {
    const std::string name = s.store.options.schema;
    auto call35 = s.conn.query("SELECT pg_advisory_xact_lock(hashtext('asched schema ' || $1))",
                               {param(name)}, s.store.options.query_timeout);
    co_await std::move(call35);
    auto call36 = s.conn.query(
        "SELECT count(*) FILTER (WHERE c.relname = 'schema_version'), count(*) FROM pg_class c "
        "JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'S')",
        {param(name)}, s.store.options.query_timeout);
    auto tables = co_await std::move(call36);
    int version = 0;
    const std::string where = fmt::format("postgres {}: schema '{}'", s.store.where, name);
    if (tables.int64(0, 0) == 0 && !s.store.options.migrate)
        throw detail::unmigrated_schema(where, 0, known_version);
    if (tables.int64(0, 0) == 0) {
        if (tables.int64(0, 1) != 0)
            throw Error(
                errc::store_failure,
                fmt::format("postgres {}: schema '{}' holds {} relations that are not asched's (no "
                            "schema_version table); choose another schema",
                            s.store.where, name, tables.int64(0, 1)));
        const auto &create =
            s.store.sql("CREATE SCHEMA IF NOT EXISTS {S}; CREATE TABLE {S}.schema_version (version "
                        "integer NOT NULL); INSERT INTO {S}.schema_version VALUES (0)");
        co_await s.conn.exec(create, s.store.options.query_timeout);
    } else {
        auto call38 = s.q("SELECT version FROM {S}.schema_version", {});
        auto v = co_await std::move(call38);
        version = v.rows() ? int(v.int64(0, 0)) : 0;
    }
    if (version > known_version)
        throw Error(errc::store_failure, fmt::format("postgres {}: schema '{}' has asched schema "
                                                     "version {}, newer than this build knows "
                                                     "({}); upgrade asched",
                                                     s.store.where, name, version, known_version));
    s.store.found_version = version;
    if (!s.store.options.migrate && version < known_version)
        throw detail::unmigrated_schema(where, version, known_version);
    for (int v = version; v < known_version; ++v) {
        co_await s.conn.exec(s.store.sql(migrations[v]), s.store.options.query_timeout);
        auto call39 = s.q("UPDATE {S}.schema_version SET version = $1", {param(v + 1)});
        co_await std::move(call39);
        detail::fault_point("store.migrating"); // a crash here: the transaction rolls back
        s.log(LogLevel::info, fmt::format("postgres {}: schema '{}' migrated to version {}",
                                          s.store.where, name, v + 1));
    }
    co_return Unit{};
}

} // namespace

PostgresDataStore::PostgresDataStore(PostgresDataStoreOptions options)
    : TransactedStore(std::make_shared<Impl>()) {
    pg::check_identifier(options.schema, "postgres store: option 'schema'");
    impl_->where = pg::describe(options.conninfo);
    impl_->schema = pg::identifier(options.schema);
    impl_->options = std::move(options);
    impl_->context.clock = std::make_shared<SystemClock>();
}

PostgresDataStore::~PostgresDataStore() {
    if (impl_->pool)
        impl_->pool->close();
}

asio::awaitable<void> PostgresDataStore::start(StoreContext context) {
    if (!context.clock)
        context.clock = std::make_shared<SystemClock>();
    impl_->context = std::move(context);
    auto home = co_await asio::this_coro::executor;
    // A node that goes silent in the middle of a transaction (a half-open connection, a
    // frozen process) would hold its row locks for as long as the server keeps the session,
    // and every other node's SKIP LOCKED would pass those schedules by: the server ends a
    // session idle inside a transaction for twice the query timeout (the node's own calls
    // have given up by then).
    const auto idle_limit =
        std::max<duration>(2 * impl_->options.query_timeout, std::chrono::seconds(1));
    const auto setup =
        fmt::format("SET idle_in_transaction_session_timeout = {}",
                    std::chrono::duration_cast<std::chrono::milliseconds>(idle_limit).count());
    if (!impl_->pool)
        impl_->pool =
            std::make_shared<pg::Pool>(home, impl_->options.conninfo, impl_->options.pool_size,
                                       impl_->options.connect_timeout, setup);
    auto call = transact<Unit>(impl_, &op_migrate);
    co_await std::move(call);
}

asio::awaitable<void> PostgresDataStore::stop() {
    if (auto pool = std::exchange(impl_->pool, nullptr))
        pool->close();
    impl_->context.broker.reset(); // the scheduler's: not kept past its stop
    co_return;
}

template class detail::TransactedStore<detail::PostgresStoreImpl>;

} // namespace asched
