// MariaDbDataStore: every operation is one READ COMMITTED transaction on a pooled,
// non-blocking connection (autocommit off: the first statement begins it); rows are leased
// with FOR UPDATE SKIP LOCKED. Lists travel as one JSON parameter read by JSON_TABLE.
#include "../../core/fault_points.hpp"
#include "../../core/text.hpp"
#include "../../mdb/mdb.hpp"
#include "../row_codec.hpp"
#include "../store_util.hpp"
#include "../transacted_store.hpp"

#include <asched/data_stores/mariadb_data_store.hpp>
#include <asched/policies.hpp>

#include <asio/this_coro.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <map>
#include <set>
#include <unordered_map>

namespace asched {

using detail::opt_json;
using mdb::param;
using nlohmann::json;

namespace {

// Version k (1-based) is reached by running migrations[k-1], statement by statement. MariaDB
// commits DDL at once, so a crash may stop a step part way: every statement can run again
// (IF NOT EXISTS). Never edit a step that shipped. "{S}" is the database. Times are
// microseconds since the Unix epoch (BIGINT), as in the other SQL stores. Ids are byte strings
// (VARBINARY: compared byte for byte, as everywhere else in asched).
const std::vector<std::vector<const char *>> migrations = {
    // 1: the first schema.
    {
        "CREATE SEQUENCE IF NOT EXISTS {S}.lease_tokens ENGINE=InnoDB",
        R"sql(CREATE TABLE IF NOT EXISTS {S}.tasks (
    id VARBINARY(1024) NOT NULL PRIMARY KEY,
    data LONGTEXT NOT NULL,
    max_running_jobs INT NULL,
    running_jobs INT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin)sql",
        R"sql(CREATE TABLE IF NOT EXISTS {S}.schedules (
    id VARBINARY(1024) NOT NULL PRIMARY KEY,
    task_id VARBINARY(1024) NOT NULL,
    data LONGTEXT NOT NULL,
    paused BOOLEAN NOT NULL,
    next_fire_time BIGINT NULL,
    last_fire_time BIGINT NULL,
    trigger_state LONGTEXT NULL,
    acquired_by VARBINARY(1024) NULL,
    acquired_until BIGINT NULL,
    lease_token BIGINT NOT NULL,
    KEY schedules_due (paused, next_fire_time),
    KEY schedules_leased (acquired_until)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin)sql",
        R"sql(CREATE TABLE IF NOT EXISTS {S}.jobs (
    seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id VARBINARY(1024) NOT NULL,
    task_id VARBINARY(1024) NOT NULL,
    schedule_id VARBINARY(1024) NULL,
    scheduled_fire_time BIGINT NULL,
    jitter BIGINT NOT NULL,
    earliest_start BIGINT NOT NULL,
    start_deadline BIGINT NULL,
    result_expiration BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    args LONGTEXT NOT NULL,
    metadata LONGTEXT NOT NULL,
    acquired_by VARBINARY(1024) NULL,
    acquired_until BIGINT NULL,
    lease_token BIGINT NOT NULL DEFAULT 0,
    timeout BIGINT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    attempt INT NOT NULL DEFAULT 1,
    retry LONGTEXT NULL,
    UNIQUE KEY jobs_id (id),
    UNIQUE KEY jobs_fire (schedule_id, scheduled_fire_time),
    KEY jobs_queue (task_id, earliest_start, seq),
    KEY jobs_leased (acquired_until),
    KEY jobs_holder (acquired_by(64))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin)sql",
        R"sql(CREATE TABLE IF NOT EXISTS {S}.results (
    job_id VARBINARY(1024) NOT NULL PRIMARY KEY,
    schedule_id VARBINARY(1024) NULL,
    scheduled_fire_time BIGINT NULL,
    expires_at BIGINT NOT NULL,
    data LONGTEXT NOT NULL,
    KEY results_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin)sql",
        R"sql(CREATE TABLE IF NOT EXISTS {S}.quarantine (
    kind VARCHAR(16) NOT NULL,
    id VARBINARY(1024) NOT NULL,
    data LONGTEXT NULL,
    error TEXT NOT NULL,
    quarantined_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin)sql",
        R"sql(CREATE TABLE IF NOT EXISTS {S}.job_history (
    seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    job_id VARBINARY(1024) NOT NULL,
    attempt INT NOT NULL,
    task_id VARBINARY(1024) NOT NULL,
    schedule_id VARBINARY(1024) NULL,
    outcome VARCHAR(32) NOT NULL,
    scheduled_fire_time BIGINT NULL,
    started_at BIGINT NULL,
    finished_at BIGINT NOT NULL,
    worker VARBINARY(1024) NOT NULL,
    exception_type TEXT NULL,
    exception_message LONGTEXT NULL,
    retry_at BIGINT NULL,
    KEY job_history_recent (finished_at, seq),
    KEY job_history_task (task_id(64), finished_at, seq),
    KEY job_history_schedule (schedule_id(64), finished_at, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin)sql",
        R"sql(CREATE TABLE IF NOT EXISTS {S}.workers (
    identity VARBINARY(1024) NOT NULL PRIMARY KEY,
    boot_id VARCHAR(255) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid BIGINT NOT NULL,
    process_scope VARCHAR(255) NOT NULL,
    role VARCHAR(32) NOT NULL,
    task_ids LONGTEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin)sql",
        // One row per identity ever registered: locked while an identity is (re)registered, so
        // that two nodes registering one identity at once take turns.
        R"sql(CREATE TABLE IF NOT EXISTS {S}.worker_locks (
    identity VARBINARY(1024) NOT NULL PRIMARY KEY
) ENGINE=InnoDB)sql",
    },
};
const int known_version = int(migrations.size());

#define ASCHED_SCHEDULE_COLUMNS                                                                    \
    "id, data, paused, next_fire_time, last_fire_time, trigger_state, acquired_by, "               \
    "acquired_until, lease_token"
// job_row() reads these; queries append seq (17) where they need it.
#define ASCHED_JOB_COLUMNS                                                                         \
    "id, task_id, schedule_id, scheduled_fire_time, jitter, start_deadline, result_expiration, "   \
    "created_at, args, metadata, acquired_by, acquired_until, lease_token, timeout, attempt, "     \
    "retry, earliest_start"
// A JSON array of ids (one parameter) as a table of `v`.
#define ASCHED_IDS                                                                                 \
    "(SELECT v FROM JSON_TABLE(?, '$[*]' COLUMNS (v VARBINARY(1024) PATH '$')) AS ids_)"

// The same as tables to join. MariaDB 10.x reads `WHERE x IN (subquery)` of a single-table
// UPDATE or DELETE once per row of the table (no semi-join there): those statements join
// instead, so that the list is read once and each row found by its key. (A multi-table
// DELETE names its target unaliased: an alias there needs a default database.)
#define ASCHED_ID_TABLE "JSON_TABLE(?, '$[*]' COLUMNS (v VARBINARY(1024) PATH '$')) AS ids_"
#define ASCHED_SEQ_TABLE "JSON_TABLE(?, '$[*]' COLUMNS (v BIGINT PATH '$')) AS seqs_"

// One row of a Result, read like a SQLite statement (what row_codec.hpp expects).
struct Row {
    const mdb::Result &r;
    int row;
    bool is_null(int c) const { return r.is_null(row, c); }
    std::int64_t int64(int c) const { return r.int64(row, c); }
    bool boolean(int c) const { return r.boolean(row, c); }
    std::string text(int c) const { return r.text(row, c); }
    std::optional<std::string> opt_text(int c) const { return r.opt_text(row, c); }
    time_point time(int c) const { return r.time(row, c); }
    std::optional<time_point> opt_time(int c) const { return r.opt_time(row, c); }
};

mdb::Param ids_param(const std::vector<std::string> &ids) {
    return param(json(ids).dump());
}

struct Unit {};

// 64-bit FNV-1a: a stable lock name for a database name (GET_LOCK names stop at 64 bytes).
std::uint64_t fnv1a(std::string_view s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

} // namespace

struct detail::MariaDbStoreImpl : detail::SqlStoreState<MariaDbDataStoreOptions, mdb::Pool> {
    MariaDbStoreImpl() : SqlStoreState("mariadb") {}

    // Runs `op(session, args...)` in one transaction: TransactedStore's calls.
    template <class Op, class... A>
    static auto run(std::shared_ptr<MariaDbStoreImpl> impl, Op op, A... args);
};

namespace {

using Impl = detail::MariaDbStoreImpl;

struct Session;
asio::awaitable<std::set<std::string>> insert_jobs(Session &s,
                                                   const std::vector<const Job *> &jobs);

// What one operation works with: its connection, the transaction's now, and what it collects
// to apply before commit and publish after it.
struct Session {
    Impl &store;
    mdb::Connection &conn;
    time_point now{};
    std::vector<Event> events;
    std::map<std::string, int> running_delta;
    json results = json::array();
    json history = json::array();
    bool releasing = false;
    std::optional<std::int64_t> lease_token_; // this transaction's fencing token, once taken

    void fault(const char *point) {
        if (!detail::fault_point(point))
            return;
        conn.close();
        throw mdb::QueryError(
            fmt::format("mariadb: the connection was dropped at fault point {}", point), 2013,
            true);
    }

    asio::awaitable<mdb::Result> q(const char *sql, mdb::Params params) {
        return conn.query(store.sql(sql), std::move(params), store.options.query_timeout);
    }

    void log(LogLevel level, std::string message) { store.log(level, std::move(message)); }

    // The fencing token of every lease this transaction hands out: one value of the sequence,
    // never used by another acquisition (a row's earlier lease always had another token).
    asio::awaitable<std::int64_t> token() {
        if (!lease_token_) {
            auto call = q("SELECT NEXTVAL({S}.lease_tokens)", {});
            auto r = co_await std::move(call);
            lease_token_ = r.int64(0, 0);
        }
        co_return *lease_token_;
    }

    asio::awaitable<void> quarantine(std::vector<detail::BadRow> bad, bool row_still_there) {
        for (auto &b : bad) {
            if (store.newer.skip(b,
                                 [this](std::string m) { log(LogLevel::warning, std::move(m)); }))
                continue;
            auto call1 = q("INSERT INTO {S}.quarantine (kind, id, data, error, quarantined_at) "
                           "VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE data = VALUES(data), "
                           "error = VALUES(error), quarantined_at = VALUES(quarantined_at)",
                           {param(std::string(b.kind)), param(b.id), param(b.data), param(b.error),
                            param(now)});
            co_await std::move(call1);
            if (row_still_there) {
                const std::string_view k = b.kind;
                auto call2 = q(k == "task"       ? "DELETE FROM {S}.tasks WHERE id = ?"
                               : k == "schedule" ? "DELETE FROM {S}.schedules WHERE id = ?"
                               : k == "job"      ? "DELETE FROM {S}.jobs WHERE id = ?"
                                                 : "DELETE FROM {S}.results WHERE job_id = ?",
                               {param(b.id)});
                co_await std::move(call2);
            }
            log(LogLevel::error,
                fmt::format("mariadb store: {} '{}' cannot be decoded and was moved to the "
                            "quarantine table: {}",
                            b.kind, b.id, b.error));
            events.push_back(RecordQuarantined{now, b.kind, b.id, b.error});
        }
    }

    // Frees the task slot (if the job held one), queues the result (if it outlives its finish),
    // the history record and the JobReleased event. The job row is the caller's to delete.
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

    // The jobs read by `selected` (job columns, seq last), deleted and finished as abandoned
    // with `why` (empty: the holder's lease expired). A job whose policy retries `abandoned` is
    // inserted again as its next attempt.
    asio::awaitable<void> abandon(mdb::Result selected, std::string why) {
        if (selected.rows() == 0)
            co_return;
        std::vector<std::int64_t> seqs;
        for (int i = 0; i < selected.rows(); ++i)
            seqs.push_back(selected.int64(i, 17));
        auto remove =
            q("DELETE {S}.jobs FROM {S}.jobs JOIN " ASCHED_SEQ_TABLE " ON {S}.jobs.seq = seqs_.v",
              {param(json(seqs).dump())});
        co_await std::move(remove);
        std::vector<detail::BadRow> bad;
        std::vector<Job> again;
        for (int i = 0; i < selected.rows(); ++i) {
            auto job = detail::job_row(Row{selected, i}, bad);
            if (!job)
                continue;
            const std::string holder = job->acquired_by.value_or("");
            const auto result = detail::store_result(
                *job, JobOutcome::abandoned, now,
                why.empty() ? fmt::format("the lease of worker '{}' expired", holder) : why);
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
        auto call3 = q("SELECT " ASCHED_JOB_COLUMNS ", seq FROM {S}.jobs WHERE acquired_until <= "
                       "? FOR UPDATE SKIP LOCKED",
                       {param(now)});
        auto expired = co_await std::move(call3);
        std::string why; // the holder's lease expired: said per job
        co_await abandon(std::move(expired), std::move(why));
    }

    // Applies what finish() and the operation collected; the last step before COMMIT.
    asio::awaitable<void> flush() {
        if (!history.empty()) {
            auto call =
                q("INSERT INTO {S}.job_history (job_id, attempt, task_id, schedule_id, outcome, "
                  "scheduled_fire_time, started_at, finished_at, worker, exception_type, "
                  "exception_message, retry_at) SELECT x.job_id, x.attempt, x.task_id, "
                  "x.schedule_id, x.outcome, x.scheduled_fire_time, x.started_at, x.finished_at, "
                  "x.worker, x.exception_type, x.exception_message, x.retry_at FROM JSON_TABLE(?, "
                  "'$[*]' COLUMNS (n FOR ORDINALITY, job_id VARBINARY(1024) PATH '$.job_id', "
                  "attempt INT PATH '$.attempt', task_id VARBINARY(1024) PATH '$.task_id', "
                  "schedule_id VARBINARY(1024) PATH '$.schedule_id', outcome VARCHAR(32) CHARACTER "
                  "SET utf8mb4 PATH "
                  "'$.outcome', scheduled_fire_time BIGINT PATH '$.scheduled_fire_time', "
                  "started_at BIGINT PATH '$.started_at', finished_at BIGINT PATH "
                  "'$.finished_at', worker VARBINARY(1024) PATH '$.worker', exception_type TEXT "
                  "CHARACTER SET utf8mb4 "
                  "PATH '$.exception_type', exception_message LONGTEXT CHARACTER SET utf8mb4 PATH "
                  "'$.exception_message', retry_at BIGINT PATH '$.retry_at')) AS x ORDER BY x.n",
                  {param(history.dump())});
            co_await std::move(call);
            history = json::array();
        }
        if (!results.empty()) {
            auto call4 =
                q("INSERT INTO {S}.results (job_id, schedule_id, scheduled_fire_time, expires_at, "
                  "data) SELECT x.job_id, x.schedule_id, x.scheduled_fire_time, x.expires_at, "
                  "x.data FROM JSON_TABLE(?, '$[*]' COLUMNS (job_id VARBINARY(1024) PATH "
                  "'$.job_id', schedule_id VARBINARY(1024) PATH '$.schedule_id', "
                  "scheduled_fire_time BIGINT PATH '$.scheduled_fire_time', expires_at BIGINT PATH "
                  "'$.expires_at', data LONGTEXT CHARACTER SET utf8mb4 PATH '$.data')) AS x ON "
                  "DUPLICATE KEY UPDATE "
                  "expires_at = VALUES(expires_at), data = VALUES(data)",
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
            auto call5 = q("UPDATE {S}.tasks t JOIN JSON_TABLE(?, '$[*]' COLUMNS (id "
                           "VARBINARY(1024) PATH '$.id', d INT PATH '$.d')) AS x ON t.id = x.id "
                           "SET t.running_jobs = GREATEST(0, t.running_jobs + x.d)",
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
        // Autocommit is off: this first statement begins the transaction.
        if (impl->options.database_clock) {
            const auto sent = impl->context.clock->now();
            auto now = co_await conn->exec(
                "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)", timeout);
            const auto received = impl->context.clock->now();
            s.now = now.time(0, 0);
            impl->clock_offset_us = (s.now - (sent + (received - sent) / 2)).count();
        } else {
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
    } catch (const mdb::QueryError &e) {
        a.failure = std::current_exception();
        a.retry = attempt < 5 && (e.retryable() || (!began && e.connection_lost()));
    } catch (...) {
        a.failure = std::current_exception();
    }
    if (a.failure && !conn->broken()) {
        try {
            co_await conn->exec("ROLLBACK", timeout);
        } catch (...) {
            conn->close();
        }
    }
    co_return a;
}

// Runs `op(session, args...)` in one transaction and publishes its events after COMMIT. A
// deadlock, a lock wait timeout or a duplicate key from a concurrent insert runs it again; so
// does a pooled connection found dead before the transaction began (the server restarted
// meanwhile).
template <class R, class Op, class... A>
asio::awaitable<R> transact(std::shared_ptr<Impl> impl, Op op, A... args) {
    return detail::run_attempts<R>(
        [impl, op, args...](int attempt) { return attempt_once<R>(impl, attempt, op, args...); },
        [impl] { return impl->context.broker; });
}

} // namespace

template <class Op, class... A>
auto detail::MariaDbStoreImpl::run(std::shared_ptr<MariaDbStoreImpl> impl, Op op, A... args) {
    using R = typename std::invoke_result_t<Op, Session &, A &...>::value_type;
    return transact<R>(std::move(impl), op, std::move(args)...);
}

namespace {

// ---- the operations ---------------------------------------------------------------------------

void check_id_length(const std::string &id, std::string_view field) {
    if (id.size() > MariaDbDataStore::max_id_bytes)
        throw Error(errc::invalid_argument,
                    fmt::format("mariadb store: field '{}': {} bytes, over the {} bytes its "
                                "tables keep: {}",
                                field, id.size(), MariaDbDataStore::max_id_bytes,
                                detail::quote_input(id)));
}

asio::awaitable<Unit> op_add_task(Session &s, Task task) {
    check_id_length(task.id, "task.id");
    // Affected rows: 1 for a new row, 2 for a changed one, 0 for an unchanged one.
    auto call6 =
        s.q("INSERT INTO {S}.tasks (id, data, max_running_jobs) VALUES (?, ?, ?) ON DUPLICATE KEY "
            "UPDATE data = VALUES(data), max_running_jobs = VALUES(max_running_jobs)",
            {param(task.id), param(json(task).dump()),
             task.max_running_jobs ? param(std::int64_t(*task.max_running_jobs)) : mdb::Param{}});
    auto r = co_await std::move(call6);
    if (r.affected() == 1)
        s.events.push_back(TaskAdded{s.now, task.id});
    else
        s.events.push_back(TaskUpdated{s.now, task.id});
    co_return Unit{};
}

asio::awaitable<Unit> op_remove_task(Session &s, std::string task_id) {
    auto call7 = s.q("DELETE FROM {S}.tasks WHERE id = ?", {param(task_id)});
    auto r = co_await std::move(call7);
    if (r.affected() == 0)
        throw Error(errc::task_lookup, fmt::format("task '{}' not found", task_id));
    s.events.push_back(TaskRemoved{s.now, task_id});
    co_return Unit{};
}

asio::awaitable<std::vector<Task>> op_get_tasks(Session &s, std::optional<std::string> id) {
    auto call =
        id ? s.q("SELECT id, data, max_running_jobs, running_jobs FROM {S}.tasks WHERE id = ?",
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
                          " FROM {S}.schedules WHERE id IN " ASCHED_IDS " ORDER BY id",
                          {ids_param(*ids)})
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
    auto call10 = s.q("SELECT 1 FROM {S}.tasks WHERE id = ?", {param(id)});
    auto r = co_await std::move(call10);
    if (r.rows() == 0)
        throw Error(errc::task_lookup, fmt::format("task '{}' not found", id));
}

asio::awaitable<bool> op_add_schedule(Session &s, Schedule schedule, ConflictPolicy policy) {
    check_id_length(schedule.id, "schedule.id");
    co_await require_task(s, schedule.task_id);
    schedule.acquired_by.reset();
    schedule.acquired_until.reset();
    // The existing row, locked (a replace takes a new token: the holder of the old
    // definition's lease cannot release it).
    auto lookup = s.q("SELECT 1 FROM {S}.schedules WHERE id = ? FOR UPDATE", {param(schedule.id)});
    auto existing = co_await std::move(lookup);
    const bool exists = existing.rows() > 0;
    if (exists && policy != ConflictPolicy::replace) {
        if (policy == ConflictPolicy::exception)
            throw Error(errc::conflicting_id,
                        fmt::format("schedule '{}' already exists", schedule.id));
        co_return false;
    }
    const std::int64_t token = co_await s.token();
    // A new id is a plain INSERT: were another node adding the same id right now, the
    // duplicate key runs this transaction again, which then finds the row and follows the
    // policy.
    auto call11 = s.q(
        exists ? "UPDATE {S}.schedules SET task_id = ?, data = ?, paused = ?, next_fire_time = ?, "
                 "last_fire_time = ?, trigger_state = ?, acquired_by = NULL, acquired_until = "
                 "NULL, lease_token = ? WHERE id = ?"
               : "INSERT INTO {S}.schedules (task_id, data, paused, next_fire_time, "
                 "last_fire_time, trigger_state, lease_token, id, acquired_by, acquired_until) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        {param(schedule.task_id), param(json(schedule).dump()), param(schedule.paused),
         param(schedule.next_fire_time), param(schedule.last_fire_time),
         schedule.trigger_state.is_null() ? mdb::Param{} : param(schedule.trigger_state.dump()),
         param(token), param(schedule.id)});
    co_await std::move(call11);
    if (!exists)
        s.events.push_back(
            ScheduleAdded{s.now, schedule.id, schedule.task_id, schedule.next_fire_time});
    else
        s.events.push_back(
            ScheduleUpdated{s.now, schedule.id, schedule.task_id, schedule.next_fire_time});
    co_return true;
}

asio::awaitable<Unit> op_remove_schedules(Session &s, std::vector<std::string> ids) {
    auto call12 = s.q("SELECT s.id, s.task_id FROM {S}.schedules s JOIN " ASCHED_ID_TABLE
                      " ON s.id = ids_.v FOR UPDATE",
                      {ids_param(ids)});
    auto r = co_await std::move(call12);
    if (r.rows() > 0) {
        auto remove = s.q("DELETE {S}.schedules FROM {S}.schedules JOIN " ASCHED_ID_TABLE
                          " ON {S}.schedules.id = ids_.v",
                          {ids_param(ids)});
        co_await std::move(remove);
    }
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
    auto call13 = s.q("SELECT " ASCHED_SCHEDULE_COLUMNS " FROM {S}.schedules WHERE paused = 0 AND "
                      "next_fire_time <= ? AND (acquired_until IS NULL OR acquired_until <= ?) "
                      "AND id NOT IN " ASCHED_IDS " ORDER BY next_fire_time LIMIT ? FOR UPDATE "
                      "SKIP LOCKED",
                      {param(s.now), param(s.now), param(s.store.newer.schedule_ids()),
                       param(std::int64_t(limit))});
    auto r = co_await std::move(call13);
    if (r.rows() == 0)
        co_return std::vector<Schedule>{};
    std::vector<std::string> ids;
    for (int i = 0; i < r.rows(); ++i)
        ids.push_back(r.text(i, 0));
    const std::int64_t token = co_await s.token();
    auto lease_them =
        s.q("UPDATE {S}.schedules s JOIN " ASCHED_ID_TABLE " ON s.id = ids_.v SET s.acquired_by "
            "= ?, s.acquired_until = ?, s.lease_token = ?",
            {ids_param(ids), param(scheduler_id), param(s.now + lease), param(token)});
    co_await std::move(lease_them);
    std::vector<detail::BadRow> bad;
    std::vector<Schedule> out;
    for (int i = 0; i < r.rows(); ++i)
        if (auto sched = detail::schedule_row(Row{r, i}, bad)) {
            sched->acquired_by = scheduler_id;
            sched->acquired_until = s.now + lease;
            sched->lease_token = std::uint64_t(token);
            out.push_back(std::move(*sched));
        }
    // A row a newer asched wrote is handed back untouched, for a node that reads it.
    for (const auto &b : bad)
        if (detail::written_by_newer_version(b.data)) {
            auto unlease = s.q("UPDATE {S}.schedules SET acquired_by = NULL, acquired_until = NULL "
                               "WHERE id = ?",
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
// Existing ids and second jobs for one fire are skipped (a concurrent insert of the same key
// fails with a duplicate key, and the transaction runs again).
asio::awaitable<std::set<std::string>> insert_jobs(Session &s,
                                                   const std::vector<const Job *> &jobs) {
    std::set<std::string> inserted;
    if (jobs.empty())
        co_return inserted;
    json records = json::array();
    std::set<std::string> ids;
    std::set<std::pair<std::string, std::int64_t>> fires;
    for (const Job *job : jobs) {
        check_id_length(job->id, "job.id");
        // A second row for one id or one fire in the batch is left out, as a stored one is.
        if (!ids.insert(job->id).second)
            continue;
        if (job->schedule_id && job->scheduled_fire_time &&
            !fires.emplace(*job->schedule_id, job->scheduled_fire_time->time_since_epoch().count())
                 .second)
            continue;
        records.push_back(detail::job_record_json(*job));
    }
    auto call15 = s.q(
        "INSERT INTO {S}.jobs (id, task_id, schedule_id, scheduled_fire_time, jitter, "
        "earliest_start, start_deadline, result_expiration, created_at, args, metadata, timeout, "
        "attempt, retry) SELECT x.id, x.task_id, x.schedule_id, x.scheduled_fire_time, x.jitter, "
        "x.earliest_start, x.start_deadline, x.result_expiration, x.created_at, x.args, "
        "x.metadata, x.timeout, x.attempt, x.retry FROM JSON_TABLE(?, '$[*]' COLUMNS (n FOR "
        "ORDINALITY, id VARBINARY(1024) PATH '$.id', task_id VARBINARY(1024) PATH '$.task_id', "
        "schedule_id VARBINARY(1024) PATH '$.schedule_id', scheduled_fire_time BIGINT PATH "
        "'$.scheduled_fire_time', jitter BIGINT PATH '$.jitter', earliest_start BIGINT PATH "
        "'$.earliest_start', start_deadline BIGINT PATH '$.start_deadline', result_expiration "
        "BIGINT PATH '$.result_expiration', created_at BIGINT PATH '$.created_at', args "
        "LONGTEXT CHARACTER SET utf8mb4 PATH '$.args', metadata LONGTEXT CHARACTER SET utf8mb4 "
        "PATH '$.metadata', timeout BIGINT PATH "
        "'$.timeout', attempt INT PATH '$.attempt', retry LONGTEXT CHARACTER SET utf8mb4 PATH "
        "'$.retry')) AS x WHERE "
        "EXISTS (SELECT 1 FROM {S}.tasks t WHERE t.id = x.task_id) AND NOT EXISTS (SELECT 1 FROM "
        "{S}.jobs j WHERE j.id = x.id) AND NOT EXISTS (SELECT 1 FROM {S}.jobs j WHERE "
        "j.schedule_id = x.schedule_id AND j.scheduled_fire_time = x.scheduled_fire_time) ORDER "
        "BY x.n RETURNING id",
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
    const std::string batch = records.dump();
    // Only the holder of the current lease may release: the fencing token decides. The rows
    // accepted are locked first, then updated.
    auto call16 = s.q("SELECT s.id, s.task_id FROM {S}.schedules s JOIN JSON_TABLE(?, '$[*]' "
                      "COLUMNS (id VARBINARY(1024) PATH '$.id', token BIGINT PATH '$.token')) AS x "
                      "ON s.id = x.id WHERE s.acquired_by = ? AND s.lease_token = x.token FOR "
                      "UPDATE",
                      {param(batch), param(scheduler_id)});
    auto held = co_await std::move(call16);
    std::map<std::string, std::string> accepted;
    for (int i = 0; i < held.rows(); ++i)
        accepted.emplace(held.text(i, 0), held.text(i, 1));
    if (!accepted.empty()) {
        auto advance =
            s.q("UPDATE {S}.schedules s JOIN JSON_TABLE(?, '$[*]' COLUMNS (id VARBINARY(1024) PATH "
                "'$.id', token BIGINT PATH '$.token', last BIGINT PATH '$.last', next BIGINT PATH "
                "'$.next', state LONGTEXT CHARACTER SET utf8mb4 PATH '$.state')) AS x ON s.id = "
                "x.id SET s.acquired_by = "
                "NULL, s.acquired_until = NULL, s.last_fire_time = COALESCE(x.last, "
                "s.last_fire_time), s.next_fire_time = x.next, s.trigger_state = x.state WHERE "
                "s.acquired_by = ? AND s.lease_token = x.token",
                {param(batch), param(scheduler_id)});
        co_await std::move(advance);
    }
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
            s.q("SELECT id FROM {S}.tasks WHERE id IN " ASCHED_IDS, {ids_param(task_ids)});
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
    auto call18 = s.q("SELECT (SELECT MIN(next_fire_time) FROM {S}.schedules WHERE paused = 0 AND "
                      "acquired_by IS NULL AND next_fire_time IS NOT NULL AND id NOT IN " ASCHED_IDS
                      "), (SELECT MIN(acquired_until) FROM {S}.schedules WHERE acquired_until IS "
                      "NOT NULL)",
                      {param(s.store.newer.schedule_ids())});
    auto r = co_await std::move(call18);
    std::optional<time_point> out = r.opt_time(0, 0);
    if (auto leased = r.opt_time(0, 1); leased && (!out || *leased < *out))
        out = leased;
    co_return out;
}

asio::awaitable<Unit> op_add_jobs(Session &s, std::vector<Job> jobs) {
    std::vector<std::string> task_ids;
    for (auto &job : jobs) {
        job.acquired_by.reset();
        job.acquired_until.reset();
        task_ids.push_back(job.task_id);
    }
    auto call19 = s.q("SELECT id FROM {S}.tasks WHERE id IN " ASCHED_IDS, {ids_param(task_ids)});
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
    auto call = ids ? s.q("SELECT " ASCHED_JOB_COLUMNS " FROM {S}.jobs WHERE id IN " ASCHED_IDS
                          " ORDER BY seq",
                          {ids_param(*ids)})
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
    auto call21 =
        s.q("SELECT id, max_running_jobs IS NOT NULL FROM {S}.tasks WHERE id IN " ASCHED_IDS
            " ORDER BY id",
            {ids_param(task_ids)});
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
        auto call22 =
            s.q("SELECT id, max_running_jobs, running_jobs FROM {S}.tasks WHERE id IN " ASCHED_IDS
                " ORDER BY id FOR UPDATE",
                {ids_param(capped)});
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
    // Rounds: each locks the oldest startable candidates of every task with free slots (one
    // statement per task); jobs past their deadline are released and the round repeats.
    for (bool again = true; again && out.jobs.size() < limit && !slots.empty();) {
        again = false;
        struct Candidate {
            time_point earliest;
            std::int64_t seq;
            Job job;
        };
        std::vector<Candidate> candidates;
        std::vector<detail::BadRow> bad;
        for (const auto &[id, free] : slots) {
            if (free <= 0)
                continue;
            auto call23 = s.q("SELECT " ASCHED_JOB_COLUMNS ", seq FROM {S}.jobs WHERE task_id = ? "
                              "AND acquired_by IS NULL AND earliest_start <= ? ORDER BY "
                              "earliest_start, seq LIMIT ? FOR UPDATE SKIP LOCKED",
                              {param(id), param(s.now), param(free)});
            auto r = co_await std::move(call23);
            for (int i = 0; i < r.rows(); ++i)
                if (auto j = detail::job_row(Row{r, i}, bad))
                    candidates.push_back({r.time(i, 16), r.int64(i, 17), std::move(*j)});
        }
        again = !bad.empty();
        auto call24 = s.quarantine(std::move(bad), true);
        co_await std::move(call24);
        std::sort(candidates.begin(), candidates.end(), [](const Candidate &a, const Candidate &b) {
            return std::tie(a.earliest, a.seq) < std::tie(b.earliest, b.seq);
        });
        std::vector<std::string> missed;
        std::vector<std::int64_t> take;
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
            auto call25 = s.q("DELETE {S}.jobs FROM {S}.jobs JOIN " ASCHED_ID_TABLE
                              " ON {S}.jobs.id = ids_.v",
                              {ids_param(missed)});
            co_await std::move(call25);
        }
        if (taken.empty())
            continue;
        const std::int64_t token = co_await s.token();
        auto call26 = s.q(
            "UPDATE {S}.jobs j JOIN " ASCHED_SEQ_TABLE " ON j.seq = seqs_.v SET j.acquired_by = "
            "?, j.acquired_until = ?, j.lease_token = ?",
            {param(json(take).dump()), param(scheduler_id), param(s.now + lease), param(token)});
        co_await std::move(call26);
        for (auto &job : taken) {
            job.acquired_by = scheduler_id;
            job.acquired_until = s.now + lease;
            job.lease_token = std::uint64_t(token);
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
        auto call27 = s.q("SELECT MIN(earliest_start) FROM {S}.jobs WHERE task_id IN " ASCHED_IDS
                          " AND acquired_by IS NULL AND earliest_start > ?",
                          {ids_param(ids), param(s.now)});
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
        auto call28 = s.q("SELECT j.id FROM {S}.jobs j JOIN JSON_TABLE(?, '$[*]' COLUMNS (id "
                          "VARBINARY(1024) PATH '$.id', token BIGINT PATH '$.token')) AS x ON "
                          "j.id = x.id WHERE j.acquired_by = ? AND j.lease_token = x.token FOR "
                          "UPDATE",
                          {param(ended.dump()), param(scheduler_id)});
        auto held = co_await std::move(call28);
        std::vector<std::string> ids;
        for (int i = 0; i < held.rows(); ++i) {
            ids.push_back(held.text(i, 0));
            gone.insert(ids.back());
        }
        if (!ids.empty()) {
            auto remove = s.q("DELETE {S}.jobs FROM {S}.jobs JOIN " ASCHED_ID_TABLE
                              " ON {S}.jobs.id = ids_.v",
                              {ids_param(ids)});
            co_await std::move(remove);
        }
    }
    if (!retried.empty()) {
        // The same row becomes the next attempt, due after its backoff.
        const std::string batch = retried.dump();
        auto held = s.q("SELECT j.id FROM {S}.jobs j JOIN JSON_TABLE(?, '$[*]' COLUMNS (id "
                        "VARBINARY(1024) PATH '$.id', token BIGINT PATH '$.token')) AS x ON j.id "
                        "= x.id WHERE j.acquired_by = ? AND j.lease_token = x.token FOR UPDATE",
                        {param(batch), param(scheduler_id)});
        auto requeue = co_await std::move(held);
        for (int i = 0; i < requeue.rows(); ++i)
            gone.insert(requeue.text(i, 0));
        if (requeue.rows() > 0) {
            auto call = s.q("UPDATE {S}.jobs j JOIN JSON_TABLE(?, '$[*]' COLUMNS (id "
                            "VARBINARY(1024) PATH '$.id', token BIGINT PATH '$.token', at BIGINT "
                            "PATH '$.at')) AS x ON j.id = x.id SET j.attempt = j.attempt + 1, "
                            "j.earliest_start = x.at, j.start_deadline = NULL, j.acquired_by = "
                            "NULL, j.acquired_until = NULL, j.cancel_requested = FALSE WHERE "
                            "j.acquired_by = ? AND j.lease_token = x.token",
                            {param(batch), param(scheduler_id)});
            co_await std::move(call);
        }
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
    auto call29 = s.q("SELECT data FROM {S}.results WHERE job_id = ? AND expires_at > ?",
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

// One statement, so one snapshot.
asio::awaitable<JobStatus> op_get_job_status(Session &s, std::string job_id) {
    auto call = s.q("SELECT (SELECT data FROM {S}.results WHERE job_id = ? AND expires_at > ?), "
                    "EXISTS (SELECT 1 FROM {S}.jobs WHERE id = ?)",
                    {param(job_id), param(s.now), param(job_id)});
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
    out.pending = !out.result && r.boolean(0, 1);
    co_return out;
}

// Renews the leases of `ids` held by `scheduler_id` and not yet expired (another node may
// hold an expired one by now); returns the jobs among them with a cancellation requested.
asio::awaitable<std::vector<std::string>> op_extend_leases(Session &s, bool jobs,
                                                           std::string scheduler_id,
                                                           std::vector<std::string> ids,
                                                           duration lease) {
    auto select = jobs ? s.q("SELECT id, cancel_requested FROM {S}.jobs WHERE id IN " ASCHED_IDS
                             " AND acquired_by = ? AND acquired_until > ? FOR UPDATE",
                             {ids_param(ids), param(scheduler_id), param(s.now)})
                       : s.q("SELECT id, 0 FROM {S}.schedules WHERE id IN " ASCHED_IDS
                             " AND acquired_by = ? AND acquired_until > ? FOR UPDATE",
                             {ids_param(ids), param(scheduler_id), param(s.now)});
    auto r = co_await std::move(select);
    std::vector<std::string> held, flagged;
    for (int i = 0; i < r.rows(); ++i) {
        held.push_back(r.text(i, 0));
        if (r.boolean(i, 1))
            flagged.push_back(r.text(i, 0));
    }
    if (!held.empty()) {
        auto renew = jobs ? s.q("UPDATE {S}.jobs j JOIN " ASCHED_ID_TABLE
                                " ON j.id = ids_.v SET j.acquired_until = ?",
                                {ids_param(held), param(s.now + lease)})
                          : s.q("UPDATE {S}.schedules s JOIN " ASCHED_ID_TABLE
                                " ON s.id = ids_.v SET s.acquired_until = ?",
                                {ids_param(held), param(s.now + lease)});
        co_await std::move(renew);
    }
    co_return flagged;
}

// One statement per indexed filter; parameters: key (twice for "all"), outcome (twice), since,
// until, the cursor (finished_at, seq), limit + 1.
#define ASCHED_MDB_HISTORY_SELECT                                                                  \
    "SELECT seq, job_id, attempt, task_id, schedule_id, outcome, scheduled_fire_time, "            \
    "started_at, finished_at, worker, exception_type, exception_message, retry_at FROM "           \
    "{S}.job_history WHERE "
#define ASCHED_MDB_HISTORY_REST                                                                    \
    " (? IS NULL OR outcome = ?) AND finished_at >= ? AND finished_at < ? AND "                    \
    "(finished_at, seq) < (?, ?) ORDER BY finished_at DESC, seq DESC LIMIT ?"
constexpr const char *mdb_history_all =
    ASCHED_MDB_HISTORY_SELECT "? IS NULL AND" ASCHED_MDB_HISTORY_REST;
constexpr const char *mdb_history_task =
    ASCHED_MDB_HISTORY_SELECT "task_id = ? AND" ASCHED_MDB_HISTORY_REST;
constexpr const char *mdb_history_schedule =
    ASCHED_MDB_HISTORY_SELECT "schedule_id = ? AND" ASCHED_MDB_HISTORY_REST;

asio::awaitable<JobHistoryPage> op_get_job_history(Session &s, JobHistoryFilter filter,
                                                   std::pair<std::int64_t, std::int64_t> before) {
    const char *sql = filter.schedule_id ? mdb_history_schedule
                      : filter.task_id   ? mdb_history_task
                                         : mdb_history_all;
    const std::optional<std::string> key = filter.schedule_id ? filter.schedule_id : filter.task_id;
    const std::optional<std::string> outcome =
        filter.outcome ? std::optional<std::string>(to_string(*filter.outcome)) : std::nullopt;
    const bool both = filter.schedule_id && filter.task_id;
    auto call =
        s.q(sql, {param(key), param(outcome), param(outcome),
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
    auto call = s.q("DELETE FROM {S}.job_history WHERE finished_at < ?", {param(before)});
    auto r = co_await std::move(call);
    co_return std::size_t(r.affected());
}

asio::awaitable<JobCancellation> op_cancel_job(Session &s, std::string job_id,
                                               std::string scheduler_id) {
    auto call = s.q(
        "DELETE FROM {S}.jobs WHERE id = ? AND acquired_by IS NULL RETURNING " ASCHED_JOB_COLUMNS,
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
    auto running =
        s.q("SELECT task_id, acquired_by FROM {S}.jobs WHERE id = ? FOR UPDATE", {param(job_id)});
    auto found = co_await std::move(running);
    if (found.rows() == 0)
        throw Error(errc::job_lookup,
                    fmt::format("job '{}' not found (it is neither queued nor running)", job_id));
    auto flag = s.q("UPDATE {S}.jobs SET cancel_requested = TRUE WHERE id = ?", {param(job_id)});
    co_await std::move(flag);
    s.events.push_back(JobCancelRequested{s.now, job_id, found.text(0, 0), found.text(0, 1)});
    co_return JobCancellation::requested;
}

asio::awaitable<Unit> op_reap_abandoned_jobs(Session &s, std::string scheduler_id) {
    auto call32 = s.q("SELECT " ASCHED_JOB_COLUMNS ", seq FROM {S}.jobs WHERE acquired_by = ? FOR "
                      "UPDATE",
                      {param(scheduler_id)});
    auto held = co_await std::move(call32);
    auto why = fmt::format("worker '{}' restarted while the job ran", scheduler_id);
    co_await s.abandon(std::move(held), std::move(why));
    co_return Unit{};
}

// The identity's row, locked for this transaction: two nodes registering one identity at
// once take turns (the lock row exists before the identity's first registration commits).
asio::awaitable<std::optional<WorkerInfo>> lock_worker(Session &s, const std::string &identity) {
    check_id_length(identity, "worker.identity");
    auto ensure =
        s.q("INSERT IGNORE INTO {S}.worker_locks (identity) VALUES (?)", {param(identity)});
    co_await std::move(ensure);
    auto lock = s.q("SELECT identity FROM {S}.worker_locks WHERE identity = ? FOR UPDATE",
                    {param(identity)});
    co_await std::move(lock);
    auto call = s.q("SELECT " ASCHED_WORKER_COLUMNS " FROM {S}.workers WHERE identity = ?",
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
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE boot_id = "
        "VALUES(boot_id), "
        "host = VALUES(host), pid = VALUES(pid), process_scope = VALUES(process_scope), role = "
        "VALUES(role), task_ids = VALUES(task_ids), started_at = VALUES(started_at), last_seen = "
        "VALUES(last_seen), expires_at = VALUES(expires_at)",
        {param(w.identity), param(w.boot_id), param(w.host), param(std::int64_t(w.pid)),
         param(w.process_scope), param(std::string(to_string(w.role))),
         param(detail::task_ids_text(w)), param(w.started_at), param(w.last_seen),
         param(w.expires_at)});
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
                    "acquired_by = ?",
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
    auto call = s.q("DELETE FROM {S}.workers WHERE identity = ? AND boot_id = ?",
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
    out.backend = "mariadb";
    out.location = s.store.where;
    out.found_version = s.store.found_version;
    auto version = s.q("SELECT version FROM {S}.schema_version", {});
    auto v = co_await std::move(version);
    if (v.rows() != 1)
        out.problems.push_back(fmt::format("schema_version holds {} rows, expected 1", v.rows()));
    if (v.rows() > 0)
        out.schema_version = int(v.int64(0, 0));
    auto counters = s.q("SELECT t.id, t.running_jobs, (SELECT COUNT(*) FROM {S}.jobs j WHERE "
                        "j.task_id = t.id AND j.acquired_by IS NOT NULL) FROM {S}.tasks t ORDER "
                        "BY t.id",
                        {});
    auto c = co_await std::move(counters);
    for (int i = 0; i < c.rows(); ++i)
        if (c.int64(i, 1) != c.int64(i, 2))
            out.problems.push_back(
                detail::running_counter_problem(c.text(i, 0), c.int64(i, 1), c.int64(i, 2)));
    auto count = s.q("SELECT COUNT(*) FROM {S}.quarantine", {});
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
    auto call33 = s.q("DELETE FROM {S}.results WHERE expires_at <= ?", {param(s.now)});
    co_await std::move(call33);
    co_await s.abandon_expired_job_leases();
    auto dead = s.q("DELETE FROM {S}.workers WHERE expires_at <= ?",
                    {param(s.now - detail::dead_worker_retention)});
    co_await std::move(dead);
    auto call34 = s.q("DELETE FROM {S}.schedules WHERE next_fire_time IS NULL AND acquired_by IS "
                      "NULL AND NOT EXISTS (SELECT 1 FROM {S}.jobs j WHERE j.schedule_id = "
                      "{S}.schedules.id) RETURNING id, task_id",
                      {});
    auto r = co_await std::move(call34);
    for (int i = 0; i < r.rows(); ++i)
        s.events.push_back(ScheduleRemoved{s.now, r.text(i, 0), r.text(i, 1), true});
    co_return Unit{};
}

// Creates or migrates the tables under a named lock (nodes starting together take turns; a
// node that dies holding it releases it with its connection). DDL commits at once in MariaDB,
// so this runs outside transact(); a step cut short by a crash runs again in full.
asio::awaitable<void> migrate(std::shared_ptr<Impl> impl) {
    const auto timeout = impl->options.query_timeout;
    auto conn = co_await impl->connections().acquire(timeout);
    const std::string name = impl->options.database;
    const std::string lock = fmt::format("asched-schema-{:016x}", fnv1a(name));
    const std::int64_t wait_s = std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
    auto take = conn->query("SELECT GET_LOCK(?, ?)", {param(lock), param(wait_s)}, timeout);
    auto taken = co_await std::move(take);
    if (taken.is_null(0, 0) || taken.int64(0, 0) != 1)
        throw Error(errc::store_failure,
                    fmt::format("mariadb {}: another node held the migration lock for {}",
                                impl->where, format_duration(timeout)));
    std::exception_ptr failure;
    try {
        auto look = conn->query("SELECT SUM(TABLE_NAME = 'schema_version'), COUNT(*) FROM "
                                "information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                                {param(name)}, timeout);
        auto tables = co_await std::move(look);
        const bool versioned = tables.opt_int64(0, 0).value_or(0) > 0;
        const std::int64_t others = tables.int64(0, 1);
        int version = 0;
        if (!versioned && !impl->options.migrate)
            throw detail::unmigrated_schema(fmt::format("mariadb {}", impl->where), 0,
                                            known_version);
        if (!versioned) {
            if (others != 0)
                throw Error(errc::store_failure,
                            fmt::format("mariadb {}: database '{}' holds {} tables that are not "
                                        "asched's (no schema_version table); choose another "
                                        "database",
                                        impl->where, name, others));
            for (const char *ddl :
                 {"CREATE DATABASE IF NOT EXISTS {S} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                  "CREATE TABLE IF NOT EXISTS {S}.schema_version (version INT NOT NULL) "
                  "ENGINE=InnoDB",
                  "INSERT INTO {S}.schema_version SELECT 0 FROM DUAL WHERE NOT EXISTS (SELECT 1 "
                  "FROM {S}.schema_version)",
                  "COMMIT"}) {
                auto step = conn->exec(impl->sql(ddl), timeout);
                co_await std::move(step);
            }
        } else {
            auto read = conn->exec(impl->sql("SELECT version FROM {S}.schema_version"), timeout);
            auto v = co_await std::move(read);
            version = v.rows() ? int(v.int64(0, 0)) : 0;
        }
        if (version > known_version)
            throw Error(errc::store_failure,
                        fmt::format("mariadb {}: database '{}' has asched schema version {}, "
                                    "newer than this build knows ({}); upgrade asched",
                                    impl->where, name, version, known_version));
        impl->found_version = version;
        if (!impl->options.migrate && version < known_version)
            throw detail::unmigrated_schema(fmt::format("mariadb {}", impl->where), version,
                                            known_version);
        for (int v = version; v < known_version; ++v) {
            for (const char *ddl : migrations[std::size_t(v)]) {
                auto step = conn->exec(impl->sql(ddl), timeout);
                co_await std::move(step);
                detail::fault_point("store.migrating"); // a crash here: the step runs again
            }
            auto bump = conn->query(impl->sql("UPDATE {S}.schema_version SET version = ?"),
                                    {param(v + 1)}, timeout);
            co_await std::move(bump);
            auto commit = conn->exec("COMMIT", timeout);
            co_await std::move(commit);
            impl->log(LogLevel::info,
                      fmt::format("mariadb {}: database '{}' migrated to version {}", impl->where,
                                  name, v + 1));
        }
    } catch (...) {
        failure = std::current_exception();
    }
    if (!conn->broken()) {
        try {
            auto rollback = conn->exec("ROLLBACK", timeout);
            co_await std::move(rollback);
            auto release = conn->query("SELECT RELEASE_LOCK(?)", {param(lock)}, timeout);
            co_await std::move(release);
            auto end = conn->exec("COMMIT", timeout);
            co_await std::move(end);
        } catch (...) {
            conn->close(); // the server drops the lock with the connection
        }
    }
    if (failure)
        std::rethrow_exception(failure);
}

std::string decode_percent(std::string_view s, std::string_view field) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        auto hex = [](char c) {
            return c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        };
        if (i + 2 >= s.size() || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0)
            throw Error(errc::invalid_argument,
                        fmt::format("mariadb URL: field '{}': a bad percent-escape at position {}",
                                    field, i));
        out += char(hex(s[i + 1]) * 16 + hex(s[i + 2]));
        i += 2;
    }
    return out;
}

} // namespace

MariaDbDataStoreOptions MariaDbDataStoreOptions::from_url(std::string_view url) {
    MariaDbDataStoreOptions o;
    std::string_view rest = url;
    if (rest.starts_with("mariadb://"))
        rest.remove_prefix(10);
    else if (rest.starts_with("mysql://"))
        rest.remove_prefix(8);
    else
        throw Error(errc::invalid_argument,
                    fmt::format("mariadb URL {}: must start with mariadb:// or mysql://",
                                detail::quote_input(std::string(url.substr(0, 16)))));
    if (const auto q = rest.find('?'); q != std::string_view::npos)
        throw Error(errc::invalid_argument,
                    fmt::format("mariadb URL: parameters ('?' at position {}) are not supported",
                                url.size() - rest.size() + q));
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
        o.database = std::string(rest.substr(slash + 1));
        rest = rest.substr(0, slash);
    }
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
        const auto credentials = rest.substr(0, at);
        rest.remove_prefix(at + 1);
        const auto colon = credentials.find(':');
        o.user = decode_percent(credentials.substr(0, colon), "user");
        if (colon != std::string_view::npos)
            o.password = decode_percent(credentials.substr(colon + 1), "password");
    }
    if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        const auto port = rest.substr(colon + 1);
        unsigned value = 0;
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
            throw Error(errc::invalid_argument,
                        fmt::format("mariadb URL: field 'port': {} is not a port number",
                                    detail::quote_input(std::string(port))));
        o.port = value;
        rest = rest.substr(0, colon);
    }
    if (!rest.empty())
        o.host = std::string(rest);
    return o;
}

MariaDbDataStore::MariaDbDataStore(MariaDbDataStoreOptions options)
    : TransactedStore(std::make_shared<Impl>()) {
    mdb::check_identifier(options.database, "mariadb store: option 'database'");
    if (options.pool_size < 1)
        throw Error(errc::invalid_argument, "mariadb store: option 'pool_size' must be at least 1");
    impl_->where =
        fmt::format("{}/{}",
                    options.unix_socket.empty() ? fmt::format("{}:{}", options.host, options.port)
                                                : options.unix_socket,
                    options.database);
    impl_->schema = mdb::identifier(options.database);
    impl_->options = std::move(options);
    impl_->context.clock = std::make_shared<SystemClock>();
}

MariaDbDataStore::~MariaDbDataStore() {
    if (impl_->pool)
        impl_->pool->close();
}

asio::awaitable<void> MariaDbDataStore::start(StoreContext context) {
    if (!context.clock)
        context.clock = std::make_shared<SystemClock>();
    impl_->context = std::move(context);
    auto home = co_await asio::this_coro::executor;
    // Session settings of every connection: UTC for NOW(); READ COMMITTED as on PostgreSQL;
    // strict mode (a value that does not fit is an error, never cut); autocommit off (the first
    // statement of an operation begins its transaction); row lock waits bounded by the query
    // timeout; and a session silent inside a transaction (a half-open connection, a frozen
    // node) is ended by the server after twice the query timeout, freeing its row locks.
    const auto seconds = [](duration d) {
        return std::max<std::int64_t>(1,
                                      std::chrono::duration_cast<std::chrono::seconds>(d).count());
    };
    std::vector<std::string> setup = {
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION,"
        "ERROR_FOR_DIVISION_BY_ZERO'",
        "SET SESSION autocommit = 0",
        fmt::format("SET SESSION innodb_lock_wait_timeout = {}",
                    seconds(impl_->options.query_timeout)),
        fmt::format("SET SESSION idle_transaction_timeout = {}",
                    seconds(2 * impl_->options.query_timeout)),
    };
    if (!impl_->pool) {
        mdb::Endpoint endpoint{impl_->options.host, impl_->options.port, impl_->options.user,
                               impl_->options.password, impl_->options.unix_socket};
        impl_->pool = std::make_shared<mdb::Pool>(
            home, std::move(endpoint), "mariadb " + impl_->where, impl_->options.pool_size,
            impl_->options.connect_timeout, std::move(setup));
    }
    auto call = migrate(impl_);
    co_await std::move(call);
}

asio::awaitable<void> MariaDbDataStore::stop() {
    if (auto pool = std::exchange(impl_->pool, nullptr))
        pool->close();
    impl_->context.broker.reset(); // the scheduler's: not kept past its stop
    co_return;
}

template class detail::TransactedStore<detail::MariaDbStoreImpl>;

} // namespace asched
