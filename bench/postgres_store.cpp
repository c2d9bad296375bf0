// postgres_store: jobs per second through PostgresDataStore with 1 and 2 worker processes
// (each acquires 100 jobs at a time, "runs" them and releases them in one call, as a busy
// scheduler does), beside the raw rate of a bare single-row claim transaction
// (BEGIN; UPDATE ... WHERE seq = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1); COMMIT) with the
// same number of client processes, measured in the same run on the same server.
//
// usage: bench_postgres_store CONNINFO [repetitions] [jobs]
// (scripts/run.sh bench starts a private server and passes its connection string.)
#include "store_jobs.hpp"

#include <asched/asched.hpp>

#include <asio.hpp>
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;

void exec(PGconn *c, const std::string &sql) {
    PGresult *r = PQexec(c, sql.c_str());
    const auto status = PQresultStatus(r);
    PQclear(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        std::fprintf(stderr, "postgres: %s: %s\n", sql.c_str(), PQerrorMessage(c));
        std::exit(1);
    }
}

PGconn *connect(const std::string &conninfo) {
    PGconn *c = PQconnectdb(conninfo.c_str());
    if (PQstatus(c) != CONNECTION_OK) {
        std::fprintf(stderr, "postgres: %s\n", PQerrorMessage(c));
        std::exit(1);
    }
    return c;
}

// Runs `work` in `clients` forked processes at once; the seconds until the last one ends.
template <class F> double in_processes(int clients, F work) {
    const auto start = steady::now();
    std::vector<pid_t> children;
    for (int i = 0; i < clients; ++i) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            work(i);
            std::_Exit(0);
        }
        children.push_back(pid);
    }
    for (pid_t pid : children) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            std::fprintf(stderr, "a benchmark process failed\n");
            std::exit(1);
        }
    }
    return std::chrono::duration<double>(steady::now() - start).count();
}

// Claims per second with `clients` processes, one transaction per `batch` rows (1: single-row
// claims; 100: the batched claim a busy scheduler makes).
double raw_claims_per_second(const std::string &conninfo, int clients, std::size_t n, int batch) {
    PGconn *c = connect(conninfo);
    exec(c, "DROP TABLE IF EXISTS raw_jobs");
    // The claim-relevant columns of a job table and nothing else: a bare claim.
    exec(c, "CREATE TABLE raw_jobs (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text "
            "UNIQUE, task_id "
            "text, earliest bigint, acquired_by text, acquired_until bigint)");
    exec(c, "CREATE INDEX raw_jobs_queue ON raw_jobs (task_id, earliest, seq) WHERE acquired_by IS "
            "NULL");
    exec(c, "INSERT INTO raw_jobs (id, task_id, earliest) SELECT 'job-' || i, 't', 0 FROM "
            "generate_series(1, " +
                std::to_string(n) + ") i");
    exec(c, "VACUUM ANALYZE raw_jobs");
    PQfinish(c);
    const double seconds = in_processes(clients, [&](int) {
        PGconn *w = connect(conninfo);
        for (;;) {
            exec(w, "BEGIN");
            const std::string sql =
                "UPDATE raw_jobs SET acquired_by = 'w', acquired_until = 1000 WHERE seq IN (SELECT "
                "seq FROM raw_jobs WHERE task_id = 't' AND acquired_by IS NULL AND earliest <= 0 "
                "ORDER BY earliest, seq LIMIT " +
                std::to_string(batch) + " FOR UPDATE SKIP LOCKED)";
            PGresult *r = PQexec(w, sql.c_str());
            const bool claimed =
                PQresultStatus(r) == PGRES_COMMAND_OK && std::string(PQcmdTuples(r)) != "0";
            PQclear(r);
            exec(w, "COMMIT");
            if (!claimed)
                break;
        }
        PQfinish(w);
    });
    return double(n) / seconds;
}

asio::awaitable<void> fill(std::shared_ptr<asched::PostgresDataStore> store, std::size_t n,
                           double *per_second) {
    co_await store->start(asched::StoreContext{});
    asched::Task task;
    task.id = "t";
    task.max_running_jobs = std::nullopt; // no cap: batches of 100
    co_await store->add_task(std::move(task));
    const auto start = steady::now();
    auto adding =
        bench::add_jobs_in_batches(store, n); // arguments made outside the co_await (GCC 12)
    co_await std::move(adding);
    *per_second = double(n) / std::chrono::duration<double>(steady::now() - start).count();
    co_await store->stop();
}

asio::awaitable<void> drain(std::shared_ptr<asched::PostgresDataStore> store, std::string who) {
    co_await store->start(asched::StoreContext{});
    auto running = bench::run_all_jobs(store, std::move(who));
    co_await std::move(running);
    co_await store->stop();
}

template <class Op> void run(Op op) {
    asio::io_context ioc;
    asio::co_spawn(ioc, std::move(op), [](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
    });
    ioc.run();
}

std::shared_ptr<asched::PostgresDataStore> make_store(const std::string &conninfo) {
    return std::make_shared<asched::PostgresDataStore>(
        asched::PostgresDataStoreOptions{.conninfo = conninfo, .schema = "bench"});
}

struct StoreFigures {
    double add = 0;  // jobs per second added, batches of 100
    double jobs = 0; // jobs per second acquired (batches of 100), run and released
};

StoreFigures store_figures(const std::string &conninfo, int workers, std::size_t n) {
    PGconn *c = connect(conninfo);
    exec(c, "DROP SCHEMA IF EXISTS bench CASCADE");
    PQfinish(c);
    StoreFigures f;
    run(fill(make_store(conninfo), n, &f.add));
    const double seconds = in_processes(
        workers, [&](int i) { run(drain(make_store(conninfo), "worker-" + std::to_string(i))); });
    f.jobs = double(n) / seconds;
    return f;
}

struct Stat {
    double median, min, max;
};

Stat stat(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return {v[v.size() / 2], v.front(), v.back()};
}

void print(const std::string &name, const char *unit, const Stat &s, int reps,
           const std::string &baseline = {}, double peer = 0) {
    std::printf("%-34s %12.0f %12.0f %12.0f %s\n", name.c_str(), s.median, s.min, s.max, unit);
    if (peer > 0)
        std::printf("{\"name\":\"%s\",\"unit\":\"%s\",\"median\":%.0f,\"min\":%.0f,\"max\":%.0f,"
                    "\"repetitions\":%d,"
                    "\"baseline\":\"%s\",\"baseline_median\":%.0f,\"ratio\":%.3f}\n",
                    name.c_str(), unit, s.median, s.min, s.max, reps, baseline.c_str(), peer,
                    s.median / peer);
    else
        std::printf("{\"name\":\"%s\",\"unit\":\"%s\",\"median\":%.0f,\"min\":%.0f,\"max\":%.0f,"
                    "\"repetitions\":%d}\n",
                    name.c_str(), unit, s.median, s.min, s.max, reps);
}

} // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_postgres_store CONNINFO [repetitions] [jobs]\n");
        return 2;
    }
    const std::string conninfo = argv[1];
    const int reps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;
    const std::size_t n = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 20'000;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf("%-34s %12s %12s %12s (%zu jobs, %d repetitions)\n", "figure", "median", "min",
                "max", n, reps);
    for (int clients : {1, 2}) {
        std::vector<double> raw, raw_batched, add, jobs;
        for (int r = 0; r < reps; ++r) {
            raw.push_back(raw_claims_per_second(conninfo, clients, n, 1));
            raw_batched.push_back(raw_claims_per_second(conninfo, clients, n, 100));
            const auto f = store_figures(conninfo, clients, n);
            add.push_back(f.add);
            jobs.push_back(f.jobs);
        }
        const auto suffix = "_" + std::to_string(clients);
        const auto raw_stat = stat(raw);
        print("postgres_raw_claim" + suffix, "claims/s", raw_stat, reps);
        if (clients == 1)
            print("postgres_store_add_job", "jobs/s", stat(add), reps);
        const auto jobs_stat = stat(jobs);
        print("postgres_store_jobs" + suffix, "jobs/s", jobs_stat, reps,
              "postgres_raw_claim" + suffix, raw_stat.median);
        std::printf("postgres_store_jobs%s / raw claim with %d client(s): %.2f (target: above 1)\n",
                    suffix.c_str(), clients, jobs_stat.median / raw_stat.median);
        const auto batched_stat = stat(raw_batched);
        print("postgres_raw_claim_batched" + suffix, "claims/s", batched_stat, reps);
        std::printf("postgres_store_jobs%s / raw batched claim with %d client(s): %.2f (target: at "
                    "least 0.5)\n",
                    suffix.c_str(), clients, jobs_stat.median / batched_stat.median);
    }
}
