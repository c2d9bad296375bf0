// mariadb_store: jobs per second through MariaDbDataStore with 1 and 2 worker processes (each
// acquires 100 jobs at a time, "runs" them and releases them in one call, as a busy scheduler
// does), beside the raw rate of a bare claim transaction on the same server in the same run:
// SELECT ... ORDER BY ... LIMIT k FOR UPDATE SKIP LOCKED, UPDATE of those rows, COMMIT, with
// k = 1 (single-row) and k = 100 (batched), with the same number of client processes.
//
// usage: bench_mariadb_store PORT [repetitions] [jobs]
// (scripts/run.sh bench starts a private server on 127.0.0.1, user root, and passes its port.)
#include "store_bench.hpp"
#include "store_jobs.hpp"

#include <asched/asched.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mysql.h>
#include <string>
#include <vector>

namespace {

MYSQL *connect(unsigned port) {
    MYSQL *c = mysql_init(nullptr);
    if (!mysql_real_connect(c, "127.0.0.1", "root", nullptr, nullptr, port, nullptr, 0)) {
        std::fprintf(stderr, "mariadb: %s\n", mysql_error(c));
        std::exit(1);
    }
    return c;
}

// Runs `sql`; the rows of its result (each row's first column), if it has one.
std::vector<std::string> exec(MYSQL *c, const std::string &sql) {
    if (mysql_real_query(c, sql.data(), sql.size()) != 0) {
        std::fprintf(stderr, "mariadb: %s: %s\n", sql.c_str(), mysql_error(c));
        std::exit(1);
    }
    std::vector<std::string> out;
    if (MYSQL_RES *res = mysql_store_result(c)) {
        while (MYSQL_ROW row = mysql_fetch_row(res))
            out.emplace_back(row[0] ? row[0] : "");
        mysql_free_result(res);
    }
    return out;
}

// Claims per second with `clients` processes, one transaction per `batch` rows. Single-row
// claims wait for the redo log's flush at every commit (default durability): at most 2,000 of
// them are timed, shared by the clients, so that the run stays short on a slow disk.
double raw_claims_per_second(unsigned port, int clients, std::size_t n, int batch) {
    const std::size_t timed = batch == 1 ? std::min<std::size_t>(n, 2000) : n;
    const std::size_t each = (timed + std::size_t(clients) - 1) / std::size_t(clients);
    MYSQL *c = connect(port);
    exec(c, "CREATE DATABASE IF NOT EXISTS raw");
    exec(c, "DROP TABLE IF EXISTS raw.raw_jobs");
    // The claim-relevant columns of a job table and nothing else: a bare claim.
    exec(c, "CREATE TABLE raw.raw_jobs (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, id "
            "VARBINARY(1024) NOT NULL UNIQUE, task_id VARBINARY(1024) NOT NULL, earliest BIGINT "
            "NOT NULL, acquired_by VARBINARY(1024) NULL, acquired_until BIGINT NULL, KEY queue "
            "(task_id, earliest, seq)) ENGINE=InnoDB");
    exec(c, "SET SESSION max_recursive_iterations = " + std::to_string(n + 1));
    exec(c, "INSERT INTO raw.raw_jobs (id, task_id, earliest) WITH RECURSIVE s(i) AS (SELECT 1 "
            "UNION ALL SELECT i + 1 FROM s WHERE i < " +
                std::to_string(n) + ") SELECT CONCAT('job-', i), 't', 0 FROM s");
    exec(c, "ANALYZE TABLE raw.raw_jobs");
    mysql_close(c);
    const double seconds = bench::in_processes(clients, [&](int) {
        MYSQL *w = connect(port);
        exec(w, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
        exec(w, "SET SESSION autocommit = 0");
        const std::string claim = "SELECT seq FROM raw.raw_jobs WHERE task_id = 't' AND "
                                  "acquired_by IS NULL AND earliest <= 0 ORDER BY earliest, seq "
                                  "LIMIT " +
                                  std::to_string(batch) + " FOR UPDATE SKIP LOCKED";
        for (std::size_t claimed = 0;;) {
            const auto seqs = claimed < each ? exec(w, claim) : std::vector<std::string>{};
            claimed += seqs.size();
            if (seqs.empty()) {
                exec(w, "COMMIT");
                break;
            }
            std::string list;
            for (const auto &s : seqs)
                list += (list.empty() ? "" : ",") + s;
            exec(w, "UPDATE raw.raw_jobs SET acquired_by = 'w', acquired_until = 1000 WHERE seq "
                    "IN (" +
                        list + ")");
            exec(w, "COMMIT");
        }
        mysql_close(w);
    });
    return double(std::min(n, each * std::size_t(clients))) / seconds;
}

std::shared_ptr<asched::MariaDbDataStore> make_store(unsigned port) {
    return std::make_shared<asched::MariaDbDataStore>(
        asched::MariaDbDataStoreOptions{.port = port, .user = "root", .database = "bench"});
}

bench::StoreFigures store_figures(unsigned port, int workers, std::size_t n) {
    MYSQL *c = connect(port);
    exec(c, "DROP DATABASE IF EXISTS bench");
    mysql_close(c);
    bench::StoreFigures f;
    bench::run(bench::fill(make_store(port), n, &f.add));
    const double seconds = bench::in_processes(workers, [&](int i) {
        bench::run(bench::drain(make_store(port), "worker-" + std::to_string(i)));
    });
    f.jobs = double(n) / seconds;
    return f;
}

} // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_mariadb_store PORT [repetitions] [jobs]\n");
        return 2;
    }
    const unsigned port = unsigned(std::atoi(argv[1]));
    const int reps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;
    const std::size_t n = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 20'000;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    bench::compare_with_raw_claims(
        "mariadb", reps, n,
        [&](int clients, int batch) { return raw_claims_per_second(port, clients, n, batch); },
        [&](int clients) { return store_figures(port, clients, n); });
}
