// SqliteDataStore: every operation is one transaction on the store's own thread.
#include "../../core/fault_points.hpp"
#include "../../core/json_util.hpp"
#include "../../core/text.hpp"
#include "../row_codec.hpp"
#include "../store_util.hpp"
#include "sqlite.hpp"

#include <asched/data_stores/sqlite_data_store.hpp>
#include <asched/policies.hpp>

#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/dispatch.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <unistd.h>

namespace asched {

using nlohmann::json;
using sqlite::Connection;
using sqlite::Statement;
using sqlite::Transaction;

namespace {

constexpr std::int64_t application_id = 0x61736368; // "asch"

// Migration k (1-based) brings the schema from version k-1 to k. Never edit one that shipped.
constexpr const char *migrations[] = {
    // 1: the first schema.
    R"sql(
CREATE TABLE asched_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO asched_meta VALUES ('lease_token', 0);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    max_running_jobs INTEGER,
    running_jobs INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    data TEXT NOT NULL,
    paused INTEGER NOT NULL,
    next_fire_time INTEGER,
    last_fire_time INTEGER,
    trigger_state TEXT,
    acquired_by TEXT,
    acquired_until INTEGER,
    lease_token INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_time)
    WHERE acquired_by IS NULL AND paused = 0 AND next_fire_time IS NOT NULL;
CREATE INDEX schedules_leased ON schedules (acquired_until) WHERE acquired_until IS NOT NULL;
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY, -- creation order (a new row always gets more than any existing one)
    id TEXT NOT NULL UNIQUE,
    task_id TEXT NOT NULL,
    schedule_id TEXT,
    scheduled_fire_time INTEGER,
    jitter INTEGER NOT NULL,
    earliest_start INTEGER NOT NULL,
    start_deadline INTEGER,
    result_expiration INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    args TEXT NOT NULL,     -- JSON array
    metadata TEXT NOT NULL, -- JSON object
    acquired_by TEXT,
    acquired_until INTEGER,
    lease_token INTEGER NOT NULL DEFAULT 0
);
-- One job per fire: the key that makes a retried or crashed release harmless.
CREATE UNIQUE INDEX jobs_fire ON jobs (schedule_id, scheduled_fire_time) WHERE schedule_id IS NOT NULL;
CREATE INDEX jobs_queue ON jobs (task_id, earliest_start, seq) WHERE acquired_by IS NULL;
CREATE INDEX jobs_leased ON jobs (acquired_until) WHERE acquired_until IS NOT NULL;
CREATE TABLE results (
    job_id TEXT PRIMARY KEY,
    schedule_id TEXT,
    scheduled_fire_time INTEGER,
    expires_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX results_expiry ON results (expires_at);
CREATE TABLE quarantine (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT,
    error TEXT NOT NULL,
    quarantined_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
)sql",
    // 2: job timeouts and cancel requests.
    R"sql(
ALTER TABLE jobs ADD COLUMN timeout INTEGER; -- microseconds; NULL: no limit
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
)sql",
    // 3: retries and the job history.
    R"sql(
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN retry TEXT; -- JSON RetryPolicy; NULL: never retried
CREATE TABLE job_history (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    schedule_id TEXT,
    outcome TEXT NOT NULL,
    scheduled_fire_time INTEGER,
    started_at INTEGER,
    finished_at INTEGER NOT NULL,
    worker TEXT NOT NULL,
    exception_type TEXT,
    exception_message TEXT,
    retry_at INTEGER
);
CREATE INDEX job_history_recent ON job_history (finished_at, seq);
CREATE INDEX job_history_task ON job_history (task_id, finished_at, seq);
CREATE INDEX job_history_schedule ON job_history (schedule_id, finished_at, seq);
)sql",
    // 4: the worker registry.
    R"sql(
CREATE TABLE workers (
    identity TEXT PRIMARY KEY,
    boot_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_scope TEXT NOT NULL,
    role TEXT NOT NULL,
    task_ids TEXT NOT NULL, -- JSON array
    started_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
)sql",
};
constexpr int known_version = int(std::size(migrations));

// A job is stored in columns (no JSON document to parse on the hot path); job_row() reads
// these, and queries append seq (17) where they need it.
#define ASCHED_JOB_COLUMNS                                                                         \
    "id, task_id, schedule_id, scheduled_fire_time, jitter, start_deadline, result_expiration, "   \
    "created_at, args, metadata, acquired_by, acquired_until, lease_token, timeout, attempt, "     \
    "retry, earliest_start"
static_assert(known_version == SqliteDataStore::schema_version);

// What `PRAGMA quick_check` finds wrong with the file (its first few findings), or nullopt
// when it is sound, or is no SQLite database at all (that is for the caller to say).
std::optional<std::string> damage(Connection &conn) {
    std::string found;
    try {
        auto q = conn.prepare("PRAGMA quick_check(5)");
        while (q.step()) {
            const std::string line = q.text(0);
            if (line == "ok")
                continue;
            found += (found.empty() ? "" : "; ") + line;
        }
    } catch (const Error &e) {
        const int code = sqlite3_extended_errcode(conn.handle()) & 0xff;
        if (code == SQLITE_NOTADB)
            return std::nullopt;
        if (code != SQLITE_CORRUPT && code != SQLITE_IOERR)
            throw;
        found = e.what();
    }
    if (found.empty())
        return std::nullopt;
    return found;
}

Error damaged(const std::string &where, const std::string &finding) {
    return Error(errc::store_failure,
                 fmt::format("{} is damaged (PRAGMA quick_check: {}); restore it from a backup, "
                             "or salvage what is left with `sqlite3 {} .recover`",
                             where, detail::printable_input(finding), where));
}

} // namespace

struct SqliteDataStore::Impl {
    SqliteDataStoreOptions options;
    asio::thread_pool thread{1}; // every SQLite call runs here, in order
    std::unique_ptr<Connection> db;
    StoreContext context;
    std::vector<Event> events; // collected by an operation, published after it
    detail::NewerRows newer;   // rows a newer asched wrote: skipped, never quarantined

    time_point now() const { return context.clock->now(); }

    void log(LogLevel level, std::string message) const {
        context.logger.log(level, std::move(message));
    }

    // ---- opening and migrating -----------------------------------------------------------

    void open() {
        if (db)
            return;
        const auto where = fmt::format("'{}'", options.path);
        refuse_unwritable(where);
        auto conn = std::make_unique<Connection>(options.path, options.busy_timeout);
        // application_id and the number of schema rows, read in one snapshot (another process
        // may be creating the schema meanwhile); a foreign file is refused before anything is
        // written to it.
        auto refuse_foreign = [&](bool in_transaction) {
            std::int64_t app = 0, tables = 0;
            try {
                std::optional<Transaction> snapshot;
                if (!in_transaction)
                    snapshot.emplace(*conn, Transaction::Kind::deferred);
                auto q = conn->prepare("PRAGMA application_id");
                if (q.step())
                    app = q.int64(0);
                q.reset();
                auto t = conn->prepare("SELECT count(*) FROM sqlite_master");
                if (t.step())
                    tables = t.int64(0);
                t.reset();
                if (snapshot)
                    snapshot->commit();
            } catch (const Error &e) {
                if (auto found = damage(*conn))
                    throw damaged(where, *found);
                throw Error(errc::store_failure,
                            fmt::format("{} is not an asched database: {}", where, e.what()));
            }
            if (app != application_id && (app != 0 || tables != 0))
                throw Error(
                    errc::store_failure,
                    fmt::format("{} is not an asched database (application_id {}, {} tables)",
                                where, app, tables));
        };
        refuse_foreign(false);
        check_sound(*conn, where);
        // Switching to WAL needs the file to itself for a moment and does not wait on the busy
        // handler: retry while another process opens the same new file.
        for (const auto give_up = std::chrono::steady_clock::now() + options.busy_timeout;;) {
            try {
                conn->exec("PRAGMA journal_mode = WAL");
                break;
            } catch (const Error &) {
                if (std::chrono::steady_clock::now() > give_up)
                    throw;
                std::this_thread::sleep_for(
                    std::chrono::milliseconds(5)); // on the store's own thread
            }
        }
        conn->exec(options.synchronous_full ? "PRAGMA synchronous = FULL"
                                            : "PRAGMA synchronous = NORMAL");
        conn->exec("PRAGMA cache_size = -16384"); // 16 MiB of page cache
        // A store that may not migrate only reads here: in WAL mode that needs no write lock,
        // so a reader (the asched tool's lists, store check) never waits on a writer.
        Transaction tx(*conn, options.migrate ? Transaction::Kind::immediate
                                              : Transaction::Kind::deferred);
        refuse_foreign(true); // again, now that no other process can be half-way through
        int version = 0;
        {
            auto has_meta = conn->prepare(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'asched_meta'");
            if (has_meta.step()) {
                has_meta.reset();
                auto v =
                    conn->prepare("SELECT value FROM asched_meta WHERE key = 'schema_version'");
                if (v.step())
                    version = int(v.int64(0));
                v.reset();
            }
        }
        if (version > known_version)
            throw Error(
                errc::store_failure,
                fmt::format("{} has asched schema version {}, newer than this build knows ({}); "
                            "upgrade asched",
                            where, version, known_version));
        found_version = version;
        if (!options.migrate && version < known_version)
            throw detail::unmigrated_schema(where, version, known_version);
        for (int v = version; v < known_version; ++v) {
            conn->exec(migrations[v]);
            conn->prepare("INSERT INTO asched_meta (key, value) VALUES ('schema_version', ?1) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(1, std::int64_t(v + 1))
                .exec();
            detail::fault_point("store.migrating"); // a crash here: the transaction rolls back
        }
        if (options.migrate) // unmigrated files were refused above: it is set already
            conn->exec(fmt::format("PRAGMA application_id = {}", application_id).c_str());
        tx.commit();
        db = std::move(conn);
    }

    int found_version = 0; // the schema version open() found, before migrating

    // SQLite opens a file this process may not write read-only without a word, and the first
    // write (switching to WAL) then fails only after busy_timeout of retries, as "attempt to
    // write a readonly database". Every node writes (leases, jobs, its worker row): say what
    // is wrong at once, and whose permission is missing.
    void refuse_unwritable(const std::string &where) const {
        namespace fs = std::filesystem;
        const fs::path file(options.path);
        std::error_code ec;
        if (fs::exists(file, ec) && ::access(file.c_str(), W_OK) != 0)
            throw Error(errc::store_failure,
                        fmt::format("{} is read-only for this process (uid {}): asched writes "
                                    "leases, jobs and results to it; make it writable for that "
                                    "user",
                                    where, ::geteuid()));
        // In WAL mode, SQLite creates PATH-wal and PATH-shm beside the file (and a new file
        // is created there too): the directory must take new files unless both exist.
        const bool has_wal =
            fs::exists(options.path + "-wal", ec) && fs::exists(options.path + "-shm", ec);
        const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
        if (!has_wal && ::access(dir.c_str(), W_OK | X_OK) != 0)
            throw Error(errc::store_failure,
                        fmt::format("{}: its directory '{}' is not writable for this process "
                                    "(uid {}), and SQLite creates the database's -wal and -shm "
                                    "files there",
                                    where, dir.string(), ::geteuid()));
    }

    // quick_check reads every page, so files over quick_check_max_bytes are not checked.
    void check_sound(Connection &conn, const std::string &where) const {
        std::error_code ec;
        const auto bytes = std::filesystem::file_size(options.path, ec);
        if (ec || options.quick_check_max_bytes == 0)
            return;
        if (bytes > options.quick_check_max_bytes) {
            log(LogLevel::info,
                fmt::format("sqlite store {}: {} bytes, over quick_check_max_bytes ({}): not "
                            "checked at start",
                            where, bytes, options.quick_check_max_bytes));
            return;
        }
        if (auto found = damage(conn))
            throw damaged(where, *found);
    }

    Connection &conn() {
        if (!db)
            throw Error(errc::store_failure,
                        fmt::format("sqlite store '{}' is not started", options.path));
        return *db;
    }

    // The first of `count` fresh fencing tokens (one counter update for a whole batch).
    std::uint64_t reserve_tokens(std::size_t count) {
        auto s = conn()
                     .prepare("UPDATE asched_meta SET value = value + ?1 WHERE key = 'lease_token' "
                              "RETURNING value")
                     .bind(1, std::int64_t(count));
        if (!s.step())
            throw Error(errc::store_failure, "sqlite: the lease token counter is missing");
        const auto last = std::uint64_t(s.int64(0));
        s.reset();
        return last - count + 1;
    }
    std::uint64_t next_token() { return reserve_tokens(1); }

    // Changes to tasks.running_jobs, applied once per task when the transaction commits.
    std::map<std::string, int> running_delta;

    void commit(Transaction &tx) {
        for (const auto &[task, delta] : running_delta)
            if (delta != 0)
                conn()
                    .prepare(
                        "UPDATE tasks SET running_jobs = max(0, running_jobs + ?2) WHERE id = ?1")
                    .bind(1, task)
                    .bind(2, std::int64_t(delta))
                    .exec();
        running_delta.clear();
        tx.commit();
    }

    // ---- decoding rows, quarantining the ones that cannot be decoded ----------------------

    void quarantine(const char *kind, const std::string &id, const std::optional<std::string> &data,
                    const std::string &error) {
        conn()
            .prepare("INSERT OR REPLACE INTO quarantine (kind, id, data, error, quarantined_at) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(1, kind)
            .bind(2, id)
            .bind(3, data)
            .bind(4, error)
            .bind(5, now())
            .exec();
        const std::string_view k = kind;
        conn()
            .prepare(k == "task"       ? "DELETE FROM tasks WHERE id = ?1"
                     : k == "schedule" ? "DELETE FROM schedules WHERE id = ?1"
                     : k == "job"      ? "DELETE FROM jobs WHERE id = ?1"
                                       : "DELETE FROM results WHERE job_id = ?1")
            .bind(1, id)
            .exec();
        log(LogLevel::error,
            fmt::format("sqlite store: {} '{}' cannot be decoded and was moved to the "
                        "quarantine table: {}",
                        kind, id, error));
        events.push_back(RecordQuarantined{now(), kind, id, error});
    }

    using Bad = detail::BadRow;

    std::optional<Task> task_row(const Statement &s, std::vector<Bad> &bad) {
        return detail::task_row(s, bad);
    }
    std::optional<Schedule> schedule_row(const Statement &s, std::vector<Bad> &bad) {
        return detail::schedule_row(s, bad);
    }
    std::optional<Job> job_row(const Statement &s, std::vector<Bad> &bad) {
        return detail::job_row(s, bad);
    }

    // Moves the rows found undecodable to the quarantine, in a write transaction of its own
    // when the caller only read.
    void quarantine_all(const std::vector<Bad> &bad, bool in_write_transaction) {
        if (bad.empty())
            return;
        std::vector<const Bad *> damaged;
        for (const auto &b : bad)
            if (!newer.skip(b, [this](std::string m) { log(LogLevel::warning, std::move(m)); }))
                damaged.push_back(&b);
        if (damaged.empty())
            return;
        std::optional<Transaction> tx;
        if (!in_write_transaction)
            tx.emplace(conn(), Transaction::Kind::immediate);
        for (const Bad *b : damaged)
            quarantine(b->kind, b->id, b->data, b->error);
        if (tx)
            commit(*tx);
    }

    // ---- shared steps ---------------------------------------------------------------------

    bool task_exists(const std::string &id) {
        auto s = conn().prepare("SELECT 1 FROM tasks WHERE id = ?1").bind(1, id);
        const bool found = s.step();
        s.reset();
        return found;
    }

    void require_task(const std::string &id) {
        if (!task_exists(id))
            throw Error(errc::task_lookup, fmt::format("task '{}' not found", id));
    }

    // false: a job for this (schedule, fire time) or with this id exists already.
    bool insert_job(const Job &job, time_point at) {
        const int n = conn()
                          .prepare("INSERT OR IGNORE INTO jobs (id, task_id, schedule_id, "
                                   "scheduled_fire_time, jitter, "
                                   "earliest_start, start_deadline, result_expiration, created_at, "
                                   "args, metadata, timeout, attempt, retry) "
                                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
                                   "?13, ?14)")
                          .bind(1, job.id)
                          .bind(2, job.task_id)
                          .bind(3, job.schedule_id)
                          .bind(4, job.scheduled_fire_time)
                          .bind(5, std::int64_t(job.jitter.count()))
                          .bind(6, job.earliest_start())
                          .bind(7, job.start_deadline)
                          .bind(8, std::int64_t(job.result_expiration_time.count()))
                          .bind(9, job.created_at)
                          .bind(10, detail::args_text(job))
                          .bind(11, detail::metadata_text(job))
                          .bind(12, detail::timeout_value(job))
                          .bind(13, std::int64_t(job.attempt))
                          .bind(14, detail::retry_text(job))
                          .exec();
        if (n == 0)
            return false;
        events.push_back(JobAdded{at, job.id, job.task_id, job.schedule_id});
        return true;
    }

    // Ends `job`'s attempt: frees the task slot, records the attempt in the history and
    // JobReleased. Then, with `retry_at`, the row becomes the next attempt (unless the caller
    // did that, `delete_row` false); else the result is stored (if it outlives its finish)
    // and the row deleted (unless the caller did).
    void finish_job(const Job &job, JobResult result, const std::string &scheduler_id,
                    bool delete_row = true,
                    std::optional<std::optional<time_point>> decided = std::nullopt) {
        if (job.acquired_by)
            --running_delta[job.task_id];
        const auto retry_at = decided ? *decided : detail::retry_time(job, result);
        record_history(detail::history_record(job, result, scheduler_id, retry_at));
        events.push_back(detail::released_event(job, result, scheduler_id, retry_at));
        if (retry_at) {
            if (delete_row)
                requeue(job.id, std::nullopt, *retry_at);
            return;
        }
        if (result.expires_at > result.finished_at)
            conn()
                .prepare("INSERT OR REPLACE INTO results (job_id, schedule_id, "
                         "scheduled_fire_time, expires_at, "
                         "data) VALUES (?1, ?2, ?3, ?4, ?5)")
                .bind(1, result.job_id)
                .bind(2, job.schedule_id)
                .bind(3, job.scheduled_fire_time)
                .bind(4, result.expires_at)
                .bind(5, json(result).dump())
                .exec();
        if (delete_row)
            conn().prepare("DELETE FROM jobs WHERE id = ?1").bind(1, job.id).exec();
    }

    // The row of `id` (leased with `token`, when given) as its next attempt, due at `at`;
    // false when the lease check refused it.
    bool requeue(const std::string &id, std::optional<std::pair<std::string, std::uint64_t>> lease,
                 time_point at) {
        auto q = conn().prepare(
            "UPDATE jobs SET attempt = attempt + 1, earliest_start = ?2, start_deadline = NULL, "
            "acquired_by = NULL, acquired_until = NULL, cancel_requested = 0 WHERE id = ?1 AND "
            "(?3 IS NULL OR (acquired_by = ?3 AND lease_token = ?4))");
        q.bind(1, id).bind(2, at);
        if (lease)
            q.bind(3, lease->first).bind(4, std::int64_t(lease->second));
        else
            q.bind(3, std::nullopt).bind(4, std::nullopt);
        return q.exec() > 0;
    }

    void record_history(const JobHistoryRecord &r) {
        conn()
            .prepare("INSERT INTO job_history (job_id, attempt, task_id, schedule_id, outcome, "
                     "scheduled_fire_time, started_at, finished_at, worker, exception_type, "
                     "exception_message, retry_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                     "?10, ?11, ?12)")
            .bind(1, r.job_id)
            .bind(2, std::int64_t(r.attempt))
            .bind(3, r.task_id)
            .bind(4, r.schedule_id)
            .bind(5, to_string(r.outcome))
            .bind(6, r.scheduled_fire_time)
            .bind(7, r.started_at)
            .bind(8, r.finished_at)
            .bind(9, r.worker)
            .bind(10, r.exception_type)
            .bind(11, r.exception_message)
            .bind(12, r.retry_at)
            .exec();
    }

    // Jobs matching `where` (a job_row query), finished as abandoned.
    void abandon(Statement query, const std::function<std::string(const Job &)> &why,
                 time_point at) {
        std::vector<Job> found;
        std::vector<Bad> bad;
        while (query.step())
            if (auto j = job_row(query, bad))
                found.push_back(std::move(*j));
        quarantine_all(bad, true);
        for (auto &j : found) {
            const std::string holder = j.acquired_by.value_or("");
            finish_job(j, detail::store_result(j, JobOutcome::abandoned, at, why(j)), holder);
        }
    }

    void abandon_expired_job_leases(time_point at) {
        abandon(
            conn()
                .prepare("SELECT " ASCHED_JOB_COLUMNS " FROM jobs "
                         "WHERE acquired_until IS NOT NULL AND acquired_until <= ?1 ORDER BY "
                         "acquired_until")
                .bind(1, at),
            [](const Job &j) {
                return fmt::format("the lease of worker '{}' expired", j.acquired_by.value_or(""));
            },
            at);
    }

    std::vector<Event> take_events() { return std::exchange(events, {}); }
};

namespace {

// Runs `f(impl)` on the store's thread and resumes the caller on its own executor with the
// result (or the exception). The caller's executor keeps outstanding work meanwhile.
template <class R, class F>
asio::awaitable<std::pair<R, std::vector<Event>>> on_db(std::shared_ptr<SqliteDataStore::Impl> impl,
                                                        F f) {
    using Out = std::pair<R, std::vector<Event>>;
    auto initiate = [impl, f = std::move(f)](auto handler) mutable {
        auto work = asio::make_work_guard(asio::get_associated_executor(handler));
        asio::post(impl->thread, [impl, f = std::move(f), handler = std::move(handler),
                                  work = std::move(work)]() mutable {
            std::exception_ptr error;
            Out out{};
            try {
                out.first = f(*impl);
                out.second = impl->take_events();
            } catch (...) {
                impl->events.clear(); // the transaction rolled back: nothing happened
                impl->running_delta.clear();
                error = std::current_exception();
            }
            // Handing the completion over touches the caller's io_context until dispatch
            // returns here (it wakes a thread after queueing), so this thread keeps work of
            // its own on it until then: the caller's run() cannot run out of work, return and
            // destroy the io_context under it. That work is held by the one executor copy
            // this thread still has, a work-tracking one: destroying it drops the strand's
            // implementation first (its destructor needs the io_context's strand service) and
            // releases the work last. (A work guard left its strand copy to be destroyed after
            // the release: ASan caught a stopping caller's io_context gone by then.) The
            // exception moves along too: its last reference must drop on the caller's thread,
            // which may still read it (libstdc++'s reference count is invisible to TSan).
            // (A plain local in its own block, destroyed right after dispatch returns: GCC 12
            // warned, in Release, that a std::optional holding it might be read uninitialised.)
            {
                auto handing_over =
                    asio::prefer(work.get_executor(), asio::execution::outstanding_work.tracked);
                asio::dispatch(handing_over,
                               [handler = std::move(handler), error = std::move(error),
                                out = std::move(out), work = std::move(work)]() mutable {
                                   handler(error, std::move(out));
                                   work.reset();
                               });
            }
        });
    };
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable),
                                            void(std::exception_ptr, Out)>(std::move(initiate),
                                                                           asio::use_awaitable);
}

struct Unit {};

} // namespace

SqliteDataStore::SqliteDataStore(SqliteDataStoreOptions options) : impl_(std::make_shared<Impl>()) {
    impl_->options = std::move(options);
    impl_->context.clock = std::make_shared<SystemClock>();
}

SqliteDataStore::~SqliteDataStore() {
    impl_->thread.join();
}

asio::awaitable<void> SqliteDataStore::start(StoreContext context) {
    if (!context.clock)
        context.clock = std::make_shared<SystemClock>();
    auto ctx = std::make_shared<StoreContext>(std::move(context));
    auto op = [ctx](Impl &s) {
        s.context = *ctx;
        s.open();
        return Unit{};
    };
    co_await on_db<Unit>(impl_, std::move(op));
}

asio::awaitable<void> SqliteDataStore::stop() {
    auto op = [](Impl &s) {
        s.db.reset();
        return Unit{};
    };
    co_await on_db<Unit>(impl_, std::move(op));
}

asio::awaitable<void> SqliteDataStore::add_task(Task task) {
    auto op = [task = std::move(task)](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        // max_running_jobs is a column too: acquire_jobs reads it without decoding the task.
        auto bind = [&](Statement st) {
            st.bind(1, task.id).bind(2, json(task).dump());
            if (task.max_running_jobs)
                st.bind(3, std::int64_t(*task.max_running_jobs));
            return st.exec();
        };
        const int updated = bind(
            s.conn().prepare("UPDATE tasks SET data = ?2, max_running_jobs = ?3 WHERE id = ?1"));
        if (!updated)
            bind(s.conn().prepare(
                "INSERT INTO tasks (id, data, max_running_jobs) VALUES (?1, ?2, ?3)"));
        if (updated)
            s.events.push_back(TaskUpdated{s.now(), task.id});
        else
            s.events.push_back(TaskAdded{s.now(), task.id});
        s.commit(tx);
        return Unit{};
    };
    auto [_, events] = co_await on_db<Unit>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
}

asio::awaitable<void> SqliteDataStore::remove_task(std::string task_id) {
    auto op = [task_id](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        if (s.conn().prepare("DELETE FROM tasks WHERE id = ?1").bind(1, task_id).exec() == 0)
            throw Error(errc::task_lookup, fmt::format("task '{}' not found", task_id));
        s.events.push_back(TaskRemoved{s.now(), task_id});
        s.commit(tx);
        return Unit{};
    };
    auto [_, events] = co_await on_db<Unit>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
}

asio::awaitable<Task> SqliteDataStore::get_task(std::string task_id) {
    auto op = [task_id](Impl &s) {
        std::vector<Impl::Bad> bad;
        std::optional<Task> out;
        {
            Transaction tx(s.conn(), Transaction::Kind::deferred);
            auto q =
                s.conn()
                    .prepare(
                        "SELECT id, data, max_running_jobs, running_jobs FROM tasks WHERE id = ?1")
                    .bind(1, task_id);
            if (q.step())
                out = s.task_row(q, bad);
            q.reset();
            s.commit(tx);
        }
        s.quarantine_all(bad, false);
        return out;
    };
    auto [task, events] = co_await on_db<std::optional<Task>>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    if (!task)
        throw Error(errc::task_lookup, fmt::format("task '{}' not found", task_id));
    co_return std::move(*task);
}

asio::awaitable<std::vector<Task>> SqliteDataStore::get_tasks() {
    auto op = [](Impl &s) {
        std::vector<Impl::Bad> bad;
        std::vector<Task> out;
        {
            Transaction tx(s.conn(), Transaction::Kind::deferred);
            auto q = s.conn().prepare(
                "SELECT id, data, max_running_jobs, running_jobs FROM tasks ORDER BY id");
            while (q.step())
                if (auto t = s.task_row(q, bad))
                    out.push_back(std::move(*t));
            s.commit(tx);
        }
        s.quarantine_all(bad, false);
        return out;
    };
    auto [tasks, events] = co_await on_db<std::vector<Task>>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return std::move(tasks);
}

#define ASCHED_SCHEDULE_COLUMNS                                                                    \
    "id, data, paused, next_fire_time, last_fire_time, trigger_state, acquired_by, "               \
    "acquired_until, "                                                                             \
    "lease_token"

asio::awaitable<std::vector<Schedule>>
SqliteDataStore::get_schedules(std::optional<std::vector<std::string>> ids) {
    auto op = [ids = std::move(ids)](Impl &s) {
        std::vector<Impl::Bad> bad;
        std::vector<Schedule> out;
        {
            Transaction tx(s.conn(), Transaction::Kind::deferred);
            if (ids) {
                std::set<std::string> unique(ids->begin(), ids->end());
                for (const auto &id : unique) {
                    auto q = s.conn()
                                 .prepare("SELECT " ASCHED_SCHEDULE_COLUMNS
                                          " FROM schedules WHERE id = ?1")
                                 .bind(1, id);
                    if (q.step())
                        if (auto sched = s.schedule_row(q, bad))
                            out.push_back(std::move(*sched));
                    q.reset();
                }
            } else {
                auto q = s.conn().prepare("SELECT " ASCHED_SCHEDULE_COLUMNS
                                          " FROM schedules ORDER BY id");
                while (q.step())
                    if (auto sched = s.schedule_row(q, bad))
                        out.push_back(std::move(*sched));
            }
            s.commit(tx);
        }
        s.quarantine_all(bad, false);
        return out;
    };
    auto [schedules, events] = co_await on_db<std::vector<Schedule>>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return std::move(schedules);
}

asio::awaitable<bool> SqliteDataStore::add_schedule(Schedule schedule, ConflictPolicy policy) {
    auto op = [schedule = std::move(schedule), policy](Impl &s) mutable {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        s.require_task(schedule.task_id);
        auto exists =
            s.conn().prepare("SELECT 1 FROM schedules WHERE id = ?1").bind(1, schedule.id);
        const bool found = exists.step();
        exists.reset();
        if (found && policy == ConflictPolicy::do_nothing)
            return false;
        if (found && policy == ConflictPolicy::exception)
            throw Error(errc::conflicting_id,
                        fmt::format("schedule '{}' already exists", schedule.id));
        schedule.acquired_by.reset();
        schedule.acquired_until.reset();
        // A new token refuses the release of whoever holds the old definition's lease.
        schedule.lease_token = s.next_token();
        s.conn()
            .prepare("INSERT OR REPLACE INTO schedules (id, task_id, data, paused, next_fire_time, "
                     "last_fire_time, "
                     "trigger_state, acquired_by, acquired_until, lease_token) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8)")
            .bind(1, schedule.id)
            .bind(2, schedule.task_id)
            .bind(3, json(schedule).dump())
            .bind(4, std::int64_t(schedule.paused))
            .bind(5, schedule.next_fire_time)
            .bind(6, schedule.last_fire_time)
            .bind(7, schedule.trigger_state.is_null()
                         ? std::optional<std::string>()
                         : std::optional(schedule.trigger_state.dump()))
            .bind(8, std::int64_t(schedule.lease_token))
            .exec();
        if (found)
            s.events.push_back(
                ScheduleUpdated{s.now(), schedule.id, schedule.task_id, schedule.next_fire_time});
        else
            s.events.push_back(
                ScheduleAdded{s.now(), schedule.id, schedule.task_id, schedule.next_fire_time});
        s.commit(tx);
        return true;
    };
    auto [stored, events] = co_await on_db<bool>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return stored;
}

asio::awaitable<void> SqliteDataStore::remove_schedules(std::vector<std::string> ids) {
    auto op = [ids = std::move(ids)](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        for (const auto &id : ids) {
            auto q = s.conn()
                         .prepare("DELETE FROM schedules WHERE id = ?1 RETURNING task_id")
                         .bind(1, id);
            if (q.step()) {
                s.events.push_back(ScheduleRemoved{now, id, q.text(0), false});
                q.exec();
            }
        }
        s.commit(tx);
        return Unit{};
    };
    auto [_, events] = co_await on_db<Unit>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
}

asio::awaitable<std::vector<Schedule>>
SqliteDataStore::acquire_schedules(std::string scheduler_id, duration lease, std::size_t limit) {
    auto op = [scheduler_id, lease, limit](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        // Expired leases make their schedules available again.
        s.conn()
            .prepare("UPDATE schedules SET acquired_by = NULL, acquired_until = NULL "
                     "WHERE acquired_until IS NOT NULL AND acquired_until <= ?1")
            .bind(1, now)
            .exec();
        std::vector<Impl::Bad> bad;
        std::vector<Schedule> out;
        std::vector<std::string> ids;
        {
            auto q =
                s.conn()
                    .prepare(
                        "SELECT id FROM schedules WHERE acquired_by IS NULL AND paused = 0 AND "
                        "next_fire_time IS NOT NULL AND next_fire_time <= ?1 "
                        "AND id NOT IN (SELECT value FROM json_each(?3)) "
                        "ORDER BY next_fire_time LIMIT ?2")
                    .bind(1, now)
                    .bind(2, std::int64_t(limit))
                    .bind(3, s.newer.schedule_ids());
            while (q.step())
                ids.push_back(q.text(0));
        }
        for (const auto &id : ids) {
            auto q = s.conn()
                         .prepare("UPDATE schedules SET acquired_by = ?2, acquired_until = ?3, "
                                  "lease_token = ?4 "
                                  "WHERE id = ?1 RETURNING " ASCHED_SCHEDULE_COLUMNS)
                         .bind(1, id)
                         .bind(2, scheduler_id)
                         .bind(3, now + lease)
                         .bind(4, std::int64_t(s.next_token()));
            if (q.step())
                if (auto sched = s.schedule_row(q, bad))
                    out.push_back(std::move(*sched));
            q.exec();
        }
        // A row a newer asched wrote is handed back untouched, for a node that reads it.
        for (const auto &b : bad)
            if (detail::written_by_newer_version(b.data))
                s.conn()
                    .prepare("UPDATE schedules SET acquired_by = NULL, acquired_until = NULL "
                             "WHERE id = ?1")
                    .bind(1, b.id)
                    .exec();
        s.quarantine_all(bad, true);
        s.commit(tx);
        return out;
    };
    auto [schedules, events] = co_await on_db<std::vector<Schedule>>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return std::move(schedules);
}

asio::awaitable<void> SqliteDataStore::release_schedules(std::string scheduler_id,
                                                         std::vector<ScheduleRelease> releases) {
    auto op = [scheduler_id, releases = std::move(releases)](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        for (const auto &r : releases) {
            std::optional<std::string> holder, task_id;
            std::uint64_t token = 0;
            {
                auto q =
                    s.conn()
                        .prepare(
                            "SELECT acquired_by, lease_token, task_id FROM schedules WHERE id = ?1")
                        .bind(1, r.schedule_id);
                if (!q.step())
                    continue; // removed while it was processed: its fires go with it
                holder = q.opt_text(0);
                token = std::uint64_t(q.int64(1));
                task_id = q.text(2);
                q.reset();
            }
            if (holder != scheduler_id || token != r.lease_token) {
                s.log(LogLevel::info,
                      fmt::format("schedule '{}': release by '{}' refused (lease lost or "
                                  "schedule changed meanwhile)",
                                  r.schedule_id, scheduler_id));
                continue;
            }
            for (const auto &job : r.jobs) {
                if (!s.task_exists(job.task_id))
                    s.log(LogLevel::error,
                          fmt::format("schedule '{}': job not created: task '{}' not found",
                                      r.schedule_id, job.task_id));
                else {
                    s.insert_job(job, now);
                    detail::fault_point("release.after_job_insert");
                }
            }
            s.conn()
                .prepare("UPDATE schedules SET acquired_by = NULL, acquired_until = NULL, "
                         "last_fire_time = coalesce(?2, last_fire_time), next_fire_time = ?3, "
                         "trigger_state = ?4 "
                         "WHERE id = ?1")
                .bind(1, r.schedule_id)
                .bind(2, r.last_fire_time)
                .bind(3, r.next_fire_time)
                .bind(4, r.trigger_state.is_null() ? std::optional<std::string>()
                                                   : std::optional(r.trigger_state.dump()))
                .exec();
            s.events.push_back(ScheduleUpdated{now, r.schedule_id, *task_id, r.next_fire_time});
        }
        detail::fault_point("release.before_commit");
        s.commit(tx);
        detail::fault_point("release.after_commit_before_ack");
        return Unit{};
    };
    auto [_, events] = co_await on_db<Unit>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
}

asio::awaitable<std::optional<time_point>> SqliteDataStore::get_next_schedule_run_time() {
    auto op = [](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::deferred);
        std::optional<time_point> out;
        auto due =
            s.conn()
                .prepare("SELECT min(next_fire_time) FROM schedules WHERE acquired_by IS NULL AND "
                         "paused = 0 AND next_fire_time IS NOT NULL AND "
                         "id NOT IN (SELECT value FROM json_each(?1))")
                .bind(1, s.newer.schedule_ids());
        if (due.step())
            out = due.opt_time(0);
        due.reset();
        auto leased = s.conn().prepare(
            "SELECT min(acquired_until) FROM schedules WHERE acquired_until IS NOT NULL");
        if (leased.step())
            if (auto l = leased.opt_time(0); l && (!out || *l < *out))
                out = l;
        leased.reset();
        s.commit(tx);
        return out;
    };
    auto [t, events] = co_await on_db<std::optional<time_point>>(impl_, std::move(op));
    co_return t;
}

asio::awaitable<void> SqliteDataStore::add_jobs(std::vector<Job> jobs) {
    auto op = [jobs = std::move(jobs)](Impl &s) mutable {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        std::set<std::string> known_tasks;
        for (auto &job : jobs) {
            if (!known_tasks.contains(job.task_id)) {
                s.require_task(job.task_id);
                known_tasks.insert(job.task_id);
            }
            job.acquired_by.reset();
            job.acquired_until.reset();
            if (!s.insert_job(job, now))
                throw Error(
                    errc::conflicting_id,
                    fmt::format(
                        "job '{}': a job with this id, or for this schedule and fire time, exists",
                        job.id));
        }
        s.commit(tx);
        return Unit{};
    };
    auto [_, events] = co_await on_db<Unit>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
}

asio::awaitable<std::vector<Job>>
SqliteDataStore::get_jobs(std::optional<std::vector<std::string>> ids) {
    auto op = [ids = std::move(ids)](Impl &s) {
        std::vector<Impl::Bad> bad;
        std::vector<std::pair<std::int64_t, Job>> found;
        {
            Transaction tx(s.conn(), Transaction::Kind::deferred);
            if (ids) {
                std::set<std::string> unique(ids->begin(), ids->end());
                for (const auto &id : unique) {
                    auto q =
                        s.conn()
                            .prepare("SELECT " ASCHED_JOB_COLUMNS ", seq FROM jobs WHERE id = ?1")
                            .bind(1, id);
                    if (q.step())
                        if (auto j = s.job_row(q, bad))
                            found.emplace_back(q.int64(17), std::move(*j));
                    q.reset();
                }
                std::sort(found.begin(), found.end(),
                          [](auto &a, auto &b) { return a.first < b.first; });
            } else {
                auto q =
                    s.conn().prepare("SELECT " ASCHED_JOB_COLUMNS ", seq FROM jobs ORDER BY seq");
                while (q.step())
                    if (auto j = s.job_row(q, bad))
                        found.emplace_back(q.int64(17), std::move(*j));
            }
            s.commit(tx);
        }
        s.quarantine_all(bad, false);
        std::vector<Job> out;
        for (auto &[seq, j] : found)
            out.push_back(std::move(j));
        return out;
    };
    auto [jobs, events] = co_await on_db<std::vector<Job>>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return std::move(jobs);
}

asio::awaitable<JobAcquisition> SqliteDataStore::acquire_jobs(std::string scheduler_id,
                                                              duration lease, std::size_t limit,
                                                              std::vector<std::string> task_ids) {
    auto op = [scheduler_id, lease, limit, task_ids = std::move(task_ids)](Impl &s) mutable {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        s.abandon_expired_job_leases(now);
        JobAcquisition out;
        std::sort(task_ids.begin(), task_ids.end());
        task_ids.erase(std::unique(task_ids.begin(), task_ids.end()), task_ids.end());
        // Free slots per task (within max_running_jobs).
        std::vector<std::pair<std::string, std::int64_t>> slots;
        for (const auto &id : task_ids) {
            auto q = s.conn()
                         .prepare("SELECT max_running_jobs, running_jobs FROM tasks WHERE id = ?1")
                         .bind(1, id);
            if (!q.step())
                continue;
            const std::int64_t free = q.is_null(0)
                                          ? std::int64_t(limit)
                                          : std::max<std::int64_t>(0, q.int64(0) - q.int64(1));
            q.reset();
            if (free > 0)
                slots.emplace_back(id, std::min<std::int64_t>(free, std::int64_t(limit)));
        }
        // Rounds: each takes the oldest startable candidates of every task with free slots,
        // merged oldest first; jobs past their deadline are released and the round repeats.
        for (bool again = true; again && out.jobs.size() < limit;) {
            again = false;
            struct Candidate {
                time_point earliest;
                std::int64_t seq;
                std::size_t slot;
                Job job;
            };
            std::vector<Candidate> candidates;
            std::vector<Impl::Bad> bad;
            for (std::size_t i = 0; i < slots.size(); ++i) {
                if (slots[i].second == 0)
                    continue;
                auto q =
                    s.conn()
                        .prepare(
                            "SELECT " ASCHED_JOB_COLUMNS ", seq FROM jobs "
                            "WHERE task_id = ?1 AND acquired_by IS NULL AND earliest_start <= ?2 "
                            "ORDER BY earliest_start, seq LIMIT ?3")
                        .bind(1, slots[i].first)
                        .bind(2, now)
                        .bind(3, slots[i].second);
                while (q.step())
                    if (auto j = s.job_row(q, bad))
                        candidates.push_back({q.time(16), q.int64(17), i, std::move(*j)});
            }
            s.quarantine_all(bad, true);
            again = !bad.empty();
            std::sort(candidates.begin(), candidates.end(),
                      [](const Candidate &a, const Candidate &b) {
                          return std::tie(a.earliest, a.seq) < std::tie(b.earliest, b.seq);
                      });
            std::uint64_t token = candidates.empty() ? 0 : s.reserve_tokens(candidates.size());
            for (auto &c : candidates) {
                if (out.jobs.size() >= limit || slots[c.slot].second == 0)
                    break;
                Job &job = c.job;
                if (missed_deadline(job, now)) {
                    s.finish_job(
                        job,
                        detail::store_result(job, JobOutcome::missed_start_deadline, now,
                                             fmt::format("start deadline {} passed",
                                                         format_time(*job.start_deadline))),
                        scheduler_id);
                    again = true;
                    continue;
                }
                job.acquired_by = scheduler_id;
                job.acquired_until = now + lease;
                job.lease_token = token++;
                s.conn()
                    .prepare("UPDATE jobs SET acquired_by = ?2, acquired_until = ?3, lease_token = "
                             "?4 WHERE seq = ?1")
                    .bind(1, c.seq)
                    .bind(2, scheduler_id)
                    .bind(3, *job.acquired_until)
                    .bind(4, std::int64_t(job.lease_token))
                    .exec();
                ++s.running_delta[job.task_id];
                --slots[c.slot].second;
                s.events.push_back(JobAcquired{now, job.id, scheduler_id, job.task_id,
                                               job.schedule_id, job.scheduled_fire_time});
                out.jobs.push_back(std::move(job));
            }
        }
        for (const auto &[id, free] : slots) {
            auto q = s.conn()
                         .prepare("SELECT min(earliest_start) FROM jobs WHERE task_id = ?1 AND "
                                  "acquired_by IS NULL "
                                  "AND earliest_start > ?2")
                         .bind(1, id)
                         .bind(2, now);
            if (q.step())
                if (auto t = q.opt_time(0);
                    t && (!out.next_ready_time || *t < *out.next_ready_time))
                    out.next_ready_time = t;
            q.reset();
        }
        s.commit(tx);
        return out;
    };
    auto [acq, events] = co_await on_db<JobAcquisition>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return std::move(acq);
}

asio::awaitable<std::vector<bool>> SqliteDataStore::release_jobs(std::string scheduler_id,
                                                                 std::vector<JobRelease> releases) {
    auto op = [scheduler_id, releases = std::move(releases)](Impl &s) mutable {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        std::vector<bool> applied;
        for (auto &[job, result] : releases) {
            // Only the holder of the current lease may release: the fencing token decides.
            const auto retry_at = detail::retry_time(job, result);
            const bool done =
                retry_at ? s.requeue(job.id, std::pair(scheduler_id, job.lease_token), *retry_at)
                         : s.conn().prepare("DELETE FROM jobs WHERE id = ?1 AND acquired_by = ?2 "
                                            "AND lease_token = ?3")
                                   .bind(1, job.id)
                                   .bind(2, scheduler_id)
                                   .bind(3, std::int64_t(job.lease_token))
                                   .exec() > 0;
            if (!done) {
                s.log(LogLevel::warning,
                      fmt::format("job '{}': release by '{}' refused (its lease expired or "
                                  "passed to another worker)",
                                  job.id, scheduler_id));
                applied.push_back(false);
                continue;
            }
            job.acquired_by = scheduler_id; // the row said so: its task slot is freed
            s.finish_job(job, std::move(result), scheduler_id, false, retry_at);
            applied.push_back(true);
        }
        s.commit(tx);
        return applied;
    };
    auto [applied, events] = co_await on_db<std::vector<bool>>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return std::move(applied);
}

namespace {

// The kept result of `job_id`, inside the caller's transaction; a row that does not decode
// goes to `bad`.
std::optional<JobResult> read_result(SqliteDataStore::Impl &s, const std::string &job_id,
                                     std::vector<SqliteDataStore::Impl::Bad> &bad) {
    std::optional<JobResult> out;
    auto q = s.conn()
                 .prepare("SELECT data FROM results WHERE job_id = ?1 AND expires_at > ?2")
                 .bind(1, job_id)
                 .bind(2, s.now());
    if (q.step()) {
        std::string error;
        out = detail::decode_json<JobResult>(q.text(0), error);
        if (!out)
            bad.push_back({"result", job_id, q.text(0), error});
    }
    q.reset();
    return out;
}

} // namespace

asio::awaitable<std::optional<JobResult>> SqliteDataStore::get_job_result(std::string job_id) {
    auto op = [job_id](Impl &s) {
        std::vector<Impl::Bad> bad;
        std::optional<JobResult> out;
        {
            Transaction tx(s.conn(), Transaction::Kind::deferred);
            out = read_result(s, job_id, bad);
            s.commit(tx);
        }
        s.quarantine_all(bad, false);
        return out;
    };
    auto [result, events] = co_await on_db<std::optional<JobResult>>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return std::move(result);
}

asio::awaitable<JobStatus> SqliteDataStore::get_job_status(std::string job_id) {
    auto op = [job_id](Impl &s) {
        std::vector<Impl::Bad> bad;
        JobStatus out;
        {
            // One read transaction: both SELECTs see the same snapshot.
            Transaction tx(s.conn(), Transaction::Kind::deferred);
            out.result = read_result(s, job_id, bad);
            auto j = s.conn().prepare("SELECT 1 FROM jobs WHERE id = ?1").bind(1, job_id);
            out.pending = !out.result && j.step();
            j.reset();
            s.commit(tx);
        }
        s.quarantine_all(bad, false);
        return out;
    };
    auto [status, events] = co_await on_db<JobStatus>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return std::move(status);
}

namespace {

// `sql` sets acquired_until = ?3 for the row ?1 held by ?2 whose lease runs past ?4 (now):
// an expired lease is not renewed.
// `sql` renews one lease and returns one column: whether a cancellation was requested. The
// ids renewed with that flag set are returned.
asio::awaitable<std::vector<std::string>> extend_leases(std::shared_ptr<SqliteDataStore::Impl> impl,
                                                        const char *sql, std::string scheduler_id,
                                                        std::vector<std::string> ids,
                                                        duration lease) {
    auto op = [sql, scheduler_id, ids = std::move(ids), lease](SqliteDataStore::Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        std::vector<std::string> flagged;
        for (const auto &id : ids) {
            auto q = s.conn()
                         .prepare(sql)
                         .bind(1, id)
                         .bind(2, scheduler_id)
                         .bind(3, now + lease)
                         .bind(4, now);
            if (q.step() && q.int64(0) != 0)
                flagged.push_back(id);
            q.exec();
        }
        s.commit(tx);
        return flagged;
    };
    auto [flagged, events] =
        co_await on_db<std::vector<std::string>>(std::move(impl), std::move(op));
    co_return std::move(flagged);
}

} // namespace

asio::awaitable<void> SqliteDataStore::extend_acquired_schedule_leases(std::string scheduler_id,
                                                                       std::vector<std::string> ids,
                                                                       duration lease) {
    auto call =
        extend_leases(impl_,
                      "UPDATE schedules SET acquired_until = ?3 WHERE id = ?1 AND acquired_by = ?2 "
                      "AND acquired_until > ?4 RETURNING 0",
                      std::move(scheduler_id), std::move(ids), lease);
    co_await std::move(call);
}

asio::awaitable<std::vector<std::string>>
SqliteDataStore::extend_acquired_job_leases(std::string scheduler_id, std::vector<std::string> ids,
                                            duration lease) {
    auto call = extend_leases(impl_,
                              "UPDATE jobs SET acquired_until = ?3 WHERE id = ?1 AND "
                              "acquired_by = ?2 AND acquired_until > ?4 RETURNING cancel_requested",
                              std::move(scheduler_id), std::move(ids), lease);
    auto flagged = co_await std::move(call);
    co_return flagged;
}

namespace {

// One statement per indexed filter (statements are cached by their text's address); the other
// filters are bounds or residual conditions. ?1 task or schedule, ?2 outcome, ?3 since,
// ?4 until, ?5/?6 the cursor (finished_at, seq), ?7 limit + 1.
#define ASCHED_HISTORY_SELECT                                                                      \
    "SELECT seq, job_id, attempt, task_id, schedule_id, outcome, scheduled_fire_time, "            \
    "started_at, finished_at, worker, exception_type, exception_message, retry_at FROM "           \
    "job_history WHERE "
#define ASCHED_HISTORY_REST                                                                        \
    " (?2 IS NULL OR outcome = ?2) AND finished_at >= ?3 AND finished_at < ?4 AND "                \
    "(finished_at, seq) < (?5, ?6) ORDER BY finished_at DESC, seq DESC LIMIT ?7"
constexpr const char *history_all = ASCHED_HISTORY_SELECT "?1 IS NULL AND" ASCHED_HISTORY_REST;
constexpr const char *history_task = ASCHED_HISTORY_SELECT "task_id = ?1 AND" ASCHED_HISTORY_REST;
constexpr const char *history_schedule =
    ASCHED_HISTORY_SELECT "schedule_id = ?1 AND" ASCHED_HISTORY_REST;

} // namespace

asio::awaitable<JobHistoryPage> SqliteDataStore::get_job_history(JobHistoryFilter filter) {
    detail::check_history_filter(filter);
    std::pair<std::int64_t, std::int64_t> before{INT64_MAX, INT64_MAX};
    if (filter.cursor)
        before = detail::parse_history_cursor(*filter.cursor);
    auto op = [filter, before](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::deferred);
        const char *sql = filter.schedule_id ? history_schedule
                          : filter.task_id   ? history_task
                                             : history_all;
        auto q = s.conn().prepare(sql);
        if (filter.schedule_id)
            q.bind(1, *filter.schedule_id);
        else if (filter.task_id)
            q.bind(1, *filter.task_id);
        else
            q.bind(1, std::nullopt);
        if (filter.outcome)
            q.bind(2, to_string(*filter.outcome));
        else
            q.bind(2, std::nullopt);
        q.bind(3, filter.since ? filter.since->time_since_epoch().count() : INT64_MIN)
            .bind(4, filter.until ? filter.until->time_since_epoch().count() : INT64_MAX)
            .bind(5, before.first)
            .bind(6, before.second)
            // With both ids the task is checked row by row: no LIMIT (the loop stops early).
            .bind(7, filter.schedule_id && filter.task_id ? INT64_MAX
                                                          : std::int64_t(filter.limit + 1));
        JobHistoryPage page;
        std::int64_t last_seq = 0;
        while (q.step()) {
            if (filter.task_id && q.text(3) != *filter.task_id)
                continue; // both ids given: the schedule's index, the task checked here
            auto r = detail::history_row(q);
            if (!r)
                continue;
            if (page.records.size() == filter.limit) {
                page.next_cursor =
                    detail::history_cursor(page.records.back().finished_at, last_seq);
                break;
            }
            last_seq = q.int64(0);
            page.records.push_back(std::move(*r));
        }
        q.reset();
        s.commit(tx);
        return page;
    };
    auto [page, events] = co_await on_db<JobHistoryPage>(impl_, std::move(op));
    co_return std::move(page);
}

asio::awaitable<std::size_t> SqliteDataStore::prune_history(time_point before) {
    auto op = [before](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const int n = s.conn()
                          .prepare("DELETE FROM job_history WHERE finished_at < ?1")
                          .bind(1, before)
                          .exec();
        s.commit(tx);
        return std::size_t(n);
    };
    auto [n, events] = co_await on_db<std::size_t>(impl_, std::move(op));
    co_return n;
}

asio::awaitable<JobCancellation> SqliteDataStore::cancel_job(std::string job_id,
                                                             std::string scheduler_id) {
    auto op = [job_id, scheduler_id](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        std::vector<Impl::Bad> bad;
        std::optional<Job> job;
        {
            auto q = s.conn()
                         .prepare("SELECT " ASCHED_JOB_COLUMNS " FROM jobs WHERE id = ?1")
                         .bind(1, job_id);
            if (q.step())
                job = s.job_row(q, bad);
            q.reset();
        }
        s.quarantine_all(bad, true);
        if (!job) {
            s.commit(tx);
            throw Error(
                errc::job_lookup,
                fmt::format("job '{}' not found (it is neither queued nor running)", job_id));
        }
        JobCancellation out = JobCancellation::removed;
        if (job->acquired_by) {
            s.conn()
                .prepare("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1")
                .bind(1, job_id)
                .exec();
            s.events.push_back(
                JobCancelRequested{s.now(), job->id, job->task_id, *job->acquired_by});
            out = JobCancellation::requested;
        } else {
            s.finish_job(*job,
                         detail::store_result(*job, JobOutcome::cancelled, s.now(),
                                              "cancelled by cancel_job() before it started"),
                         scheduler_id);
        }
        s.commit(tx);
        return out;
    };
    auto [out, events] = co_await on_db<JobCancellation>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
    co_return out;
}

namespace {

std::optional<WorkerInfo> worker_of(Connection &conn, const std::string &identity) {
    auto q = conn.prepare("SELECT " ASCHED_WORKER_COLUMNS " FROM workers WHERE identity = ?1")
                 .bind(1, identity);
    std::optional<WorkerInfo> w;
    if (q.step())
        w = detail::worker_row(q);
    q.reset();
    return w;
}

void put_worker(Connection &conn, const WorkerInfo &w) {
    conn.prepare("INSERT INTO workers (" ASCHED_WORKER_COLUMNS
                 ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (identity) DO "
                 "UPDATE SET boot_id = excluded.boot_id, host = excluded.host, pid = excluded.pid, "
                 "process_scope = excluded.process_scope, role = excluded.role, task_ids = "
                 "excluded.task_ids, started_at = excluded.started_at, last_seen = "
                 "excluded.last_seen, expires_at = excluded.expires_at")
        .bind(1, w.identity)
        .bind(2, w.boot_id)
        .bind(3, w.host)
        .bind(4, w.pid)
        .bind(5, w.process_scope)
        .bind(6, to_string(w.role))
        .bind(7, detail::task_ids_text(w))
        .bind(8, w.started_at)
        .bind(9, w.last_seen)
        .bind(10, w.expires_at)
        .exec();
}

} // namespace

asio::awaitable<void> SqliteDataStore::register_worker(WorkerInfo worker, duration lease,
                                                       std::optional<std::string> replaces) {
    auto op = [worker = std::move(worker), lease, replaces](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        const auto current = worker_of(s.conn(), worker.identity);
        if (!detail::may_register(current, worker, replaces, now))
            throw detail::identity_in_use(*current, now);
        put_worker(s.conn(), detail::worker_row_at(current, worker, now, lease));
        s.conn()
            .prepare("UPDATE schedules SET acquired_by = NULL, acquired_until = NULL WHERE "
                     "acquired_by = ?1")
            .bind(1, worker.identity)
            .exec();
        s.commit(tx);
        return Unit{};
    };
    co_await on_db<Unit>(impl_, std::move(op));
}

asio::awaitable<bool> SqliteDataStore::renew_worker(WorkerInfo worker, duration lease) {
    auto op = [worker = std::move(worker), lease](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        const auto current = worker_of(s.conn(), worker.identity);
        const bool ok = detail::may_renew(current, worker, now);
        if (ok)
            put_worker(s.conn(), detail::worker_row_at(current, worker, now, lease));
        s.commit(tx);
        return ok;
    };
    auto [ok, events] = co_await on_db<bool>(impl_, std::move(op));
    co_return ok;
}

asio::awaitable<void> SqliteDataStore::unregister_worker(std::string identity,
                                                         std::string boot_id) {
    auto op = [identity, boot_id](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        s.conn()
            .prepare("DELETE FROM workers WHERE identity = ?1 AND boot_id = ?2")
            .bind(1, identity)
            .bind(2, boot_id)
            .exec();
        s.commit(tx);
        return Unit{};
    };
    co_await on_db<Unit>(impl_, std::move(op));
}

asio::awaitable<std::vector<WorkerInfo>> SqliteDataStore::get_workers() {
    auto op = [](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::deferred);
        auto q =
            s.conn().prepare("SELECT " ASCHED_WORKER_COLUMNS " FROM workers ORDER BY identity");
        std::vector<WorkerInfo> out;
        while (q.step())
            out.push_back(detail::worker_row(q));
        q.reset();
        s.commit(tx);
        return out;
    };
    auto [out, events] = co_await on_db<std::vector<WorkerInfo>>(impl_, std::move(op));
    co_return std::move(out);
}

asio::awaitable<StoreCheck> SqliteDataStore::check() {
    auto op = [](Impl &s) {
        StoreCheck out;
        out.backend = "sqlite";
        out.location = s.options.path;
        out.found_version = s.found_version;
        Transaction tx(s.conn(), Transaction::Kind::deferred);
        auto v = s.conn().prepare("SELECT value FROM asched_meta WHERE key = 'schema_version'");
        if (v.step())
            out.schema_version = int(v.int64(0));
        v.reset();
        auto integrity = s.conn().prepare("PRAGMA integrity_check");
        while (integrity.step())
            if (const auto line = integrity.text(0); line != "ok")
                out.problems.push_back("integrity_check: " + line);
        integrity.reset();
        auto counters = s.conn().prepare(
            "SELECT t.id, t.running_jobs, (SELECT count(*) FROM jobs j WHERE j.task_id = t.id AND "
            "j.acquired_by IS NOT NULL) FROM tasks t ORDER BY t.id");
        while (counters.step())
            if (counters.int64(1) != counters.int64(2))
                out.problems.push_back(detail::running_counter_problem(
                    counters.text(0), counters.int64(1), counters.int64(2)));
        counters.reset();
        auto count = s.conn().prepare("SELECT count(*) FROM quarantine");
        if (count.step())
            out.quarantined = std::size_t(count.int64(0));
        count.reset();
        auto recent = s.conn().prepare("SELECT kind, id, error, quarantined_at FROM quarantine "
                                       "ORDER BY quarantined_at DESC LIMIT 20");
        while (recent.step())
            out.recent.push_back({recent.text(0), recent.text(1), recent.text(2),
                                  time_point(duration(recent.int64(3)))});
        recent.reset();
        s.commit(tx);
        return out;
    };
    auto [out, events] = co_await on_db<StoreCheck>(impl_, std::move(op));
    co_return std::move(out);
}

asio::awaitable<void> SqliteDataStore::reap_abandoned_jobs(std::string scheduler_id) {
    auto op = [scheduler_id](Impl &s) {
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        s.abandon(
            s.conn()
                .prepare("SELECT " ASCHED_JOB_COLUMNS
                         " FROM jobs WHERE acquired_until IS NOT NULL AND "
                         "acquired_by = ?1 ORDER BY seq")
                .bind(1, scheduler_id),
            [&](const Job &) {
                return fmt::format("worker '{}' restarted while the job ran", scheduler_id);
            },
            s.now());
        s.commit(tx);
        return Unit{};
    };
    auto [_, events] = co_await on_db<Unit>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
}

asio::awaitable<void> SqliteDataStore::cleanup() {
    auto op = [](Impl &s) {
        s.newer.forget();
        Transaction tx(s.conn(), Transaction::Kind::immediate);
        const auto now = s.now();
        s.conn().prepare("DELETE FROM results WHERE expires_at <= ?1").bind(1, now).exec();
        s.abandon_expired_job_leases(now);
        s.conn()
            .prepare("DELETE FROM workers WHERE expires_at <= ?1")
            .bind(1, now - detail::dead_worker_retention)
            .exec();
        auto q = s.conn().prepare(
            "DELETE FROM schedules WHERE next_fire_time IS NULL AND acquired_by IS NULL AND "
            "NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.schedule_id = schedules.id) RETURNING id, "
            "task_id");
        while (q.step())
            s.events.push_back(ScheduleRemoved{now, q.text(0), q.text(1), true});
        s.commit(tx);
        return Unit{};
    };
    auto [_, events] = co_await on_db<Unit>(impl_, std::move(op));
    co_await detail::publish_all(impl_->context.broker, std::move(events));
}

} // namespace asched
