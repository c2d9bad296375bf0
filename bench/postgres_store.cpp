// postgres_store: jobs per second through PostgresDataStore with 1 and 2 worker processes
// (each acquires 100 jobs at a time, "runs" them and releases them in one call, as a busy
// scheduler does), beside the raw rate of a bare single-row claim transaction
// (BEGIN; UPDATE ... WHERE seq = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1); COMMIT) with the
// same number of client processes, measured in the same run on the same server.
//
// usage: bench_postgres_store CONNINFO [repetitions] [jobs]
// (scripts/run.sh bench starts a private server and passes its connection string.)
#include "store_bench.hpp"
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

using bench::in_processes;

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

std::shared_ptr<asched::PostgresDataStore> make_store(const std::string &conninfo) {
    return std::make_shared<asched::PostgresDataStore>(
        asched::PostgresDataStoreOptions{.conninfo = conninfo, .schema = "bench"});
}

bench::StoreFigures store_figures(const std::string &conninfo, int workers, std::size_t n) {
    PGconn *c = connect(conninfo);
    exec(c, "DROP SCHEMA IF EXISTS bench CASCADE");
    PQfinish(c);
    bench::StoreFigures f;
    bench::run(bench::fill(make_store(conninfo), n, &f.add));
    const double seconds = in_processes(workers, [&](int i) {
        bench::run(bench::drain(make_store(conninfo), "worker-" + std::to_string(i)));
    });
    f.jobs = double(n) / seconds;
    return f;
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
    bench::compare_with_raw_claims(
        "postgres", reps, n,
        [&](int clients, int batch) { return raw_claims_per_second(conninfo, clients, n, batch); },
        [&](int clients) { return store_figures(conninfo, clients, n); });
}
