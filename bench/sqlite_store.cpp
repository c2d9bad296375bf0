// sqlite_store: jobs per second through SqliteDataStore (add, acquire, run and release, each
// in batches of 100 as a busy scheduler does), beside the raw rate of a bare claim transaction on
// the same kind of table (WAL, synchronous=NORMAL, one BEGIN IMMEDIATE ... COMMIT per claim, and
// per 100 claimed rows) measured in the same run.
//
// usage: bench_sqlite_store [repetitions] [jobs]
#include "store_jobs.hpp"

#include <asched/asched.hpp>

#include <asio.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;

std::string temp_db(const char *name) {
    auto dir =
        std::filesystem::temp_directory_path() / ("asched-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    auto path = (dir / name).string();
    for (const char *suffix : {"", "-wal", "-shm"})
        std::filesystem::remove(path + suffix);
    return path;
}

void exec(sqlite3 *db, const char *sql) {
    char *err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::fprintf(stderr, "sqlite: %s: %s\n", sql, err ? err : "?");
        std::exit(1);
    }
}

// Claims per second: one transaction per `batch` claimed rows (1: a worker taking one job at
// a time; 100: the batched claim a busy scheduler makes).
double raw_claims_per_second(std::size_t n, int batch) {
    const auto path = temp_db("raw.db");
    sqlite3 *db = nullptr;
    sqlite3_open(path.c_str(), &db);
    exec(db, "PRAGMA journal_mode = WAL");
    exec(db, "PRAGMA synchronous = NORMAL");
    // The claim-relevant columns of a job table and nothing else: a bare claim.
    exec(db, "CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, task_id TEXT, earliest "
             "INTEGER, "
             "acquired_by TEXT, acquired_until INTEGER)");
    exec(db, "CREATE INDEX jobs_queue ON jobs (task_id, earliest, seq) WHERE acquired_by IS NULL");
    exec(db, "BEGIN");
    sqlite3_stmt *ins = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO jobs (id, task_id, earliest) VALUES (?1, 't', 0)", -1, &ins,
                       nullptr);
    for (std::size_t i = 0; i < n; ++i) {
        const auto id = "job-" + std::to_string(i);
        sqlite3_bind_text(ins, 1, id.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_step(ins);
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    exec(db, "COMMIT");
    sqlite3_stmt *claim = nullptr;
    sqlite3_prepare_v2(
        db,
        "UPDATE jobs SET acquired_by = 'w', acquired_until = ?1 WHERE seq IN (SELECT seq FROM jobs "
        "WHERE task_id = 't' AND acquired_by IS NULL AND earliest <= ?1 ORDER BY earliest, seq "
        "LIMIT ?2)",
        -1, &claim, nullptr);
    const auto start = steady::now();
    for (std::size_t claimed = 0; claimed < n;) {
        exec(db, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(claim, 1, 1000);
        sqlite3_bind_int(claim, 2, batch);
        sqlite3_step(claim);
        sqlite3_reset(claim);
        const int rows = sqlite3_changes(db);
        exec(db, "COMMIT");
        if (rows == 0)
            break;
        claimed += static_cast<std::size_t>(rows);
    }
    const double seconds = std::chrono::duration<double>(steady::now() - start).count();
    sqlite3_finalize(claim);
    sqlite3_close(db);
    return double(n) / seconds;
}

struct StoreFigures {
    double add = 0;     // add_job calls per second
    double process = 0; // jobs per second acquired (batches of 100), run, released
    double total = 0;   // jobs per second for the whole add-acquire-run-release cycle
};

asio::awaitable<void> cycle(std::shared_ptr<asched::SqliteDataStore> store, std::size_t n,
                            StoreFigures *out) {
    asched::StoreContext context;
    co_await store->start(std::move(context));
    asched::Task task;
    task.id = "t";
    task.max_running_jobs = std::nullopt;
    co_await store->add_task(std::move(task));
    const auto t0 = steady::now();
    // The calls' arguments are made in statements of their own (GCC 12 and co_await).
    auto adding = bench::add_jobs_in_batches(store, n);
    co_await std::move(adding);
    const auto t1 = steady::now();
    auto running = bench::run_all_jobs(store, "bench");
    const std::size_t done = co_await std::move(running);
    const auto t2 = steady::now();
    co_await store->stop();
    auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    out->add = double(n) / secs(t0, t1);
    out->process = double(done) / secs(t1, t2);
    out->total = double(done) / secs(t0, t2);
}

StoreFigures store_figures(std::size_t n) {
    auto store = std::make_shared<asched::SqliteDataStore>(
        asched::SqliteDataStoreOptions{.path = temp_db("store.db")});
    StoreFigures f;
    asio::io_context ioc;
    asio::co_spawn(ioc, cycle(store, n, &f), [](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
    });
    ioc.run();
    return f;
}

struct Stat {
    double median, min, max;
};

Stat stat(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return {v[v.size() / 2], v.front(), v.back()};
}

void print(const char *name, const char *unit, const Stat &s, int reps, double peer = 0,
           const char *baseline = "sqlite_raw_claim") {
    std::printf("%-34s %12.0f %12.0f %12.0f %s\n", name, s.median, s.min, s.max, unit);
    if (peer > 0)
        std::printf("{\"name\":\"%s\",\"unit\":\"%s\",\"median\":%.0f,\"min\":%.0f,\"max\":%.0f,"
                    "\"repetitions\":%d,"
                    "\"baseline\":\"%s\",\"baseline_median\":%.0f,\"ratio\":%.3f}\n",
                    name, unit, s.median, s.min, s.max, reps, baseline, peer, s.median / peer);
    else
        std::printf("{\"name\":\"%s\",\"unit\":\"%s\",\"median\":%.0f,\"min\":%.0f,\"max\":%.0f,"
                    "\"repetitions\":%d}\n",
                    name, unit, s.median, s.min, s.max, reps);
}

} // namespace

int main(int argc, char **argv) {
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
    const std::size_t n = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 20'000;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::vector<double> raw, raw_batched, add, process, total;
    for (int r = 0; r < reps; ++r) {
        raw.push_back(raw_claims_per_second(n, 1));
        raw_batched.push_back(raw_claims_per_second(n, 100));
        const auto f = store_figures(n);
        add.push_back(f.add);
        process.push_back(f.process);
        total.push_back(f.total);
    }
    std::printf("%-34s %12s %12s %12s (%zu jobs, %d repetitions)\n", "figure", "median", "min",
                "max", n, reps);
    const auto raw_stat = stat(raw);
    print("sqlite_raw_claim", "claims/s", raw_stat, reps);
    print("sqlite_store_add_job", "jobs/s", stat(add), reps, raw_stat.median);
    const auto batched_stat = stat(raw_batched);
    print("sqlite_raw_claim_batched", "claims/s", batched_stat, reps);
    const auto process_stat = stat(process);
    print("sqlite_store_acquire_release", "jobs/s", process_stat, reps, batched_stat.median,
          "sqlite_raw_claim_batched");
    const auto total_stat = stat(total);
    print("sqlite_store_jobs", "jobs/s", total_stat, reps, raw_stat.median);
    std::printf("sqlite_store_jobs / raw claim: %.2f (target: at least 0.5)\n",
                total_stat.median / raw_stat.median);
    std::printf("sqlite_store_acquire_release / raw batched claim: %.2f (target: at least 0.5)\n",
                process_stat.median / batched_stat.median);
    std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                ("asched-bench-" + std::to_string(::getpid())));
}
