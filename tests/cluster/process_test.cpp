// Crash and restart with real processes on one SQLite file: SIGKILL a node while it runs jobs,
// start it again (same identity, or another one), and two nodes sharing a file. Every wait
// is bounded and polls for the condition.
#include "process_support.hpp"
#include "servers.hpp"

#include <boost/test/unit_test.hpp>
#include <sqlite3.h>

#include <optional>
#include <random>

using namespace std::chrono_literals;

namespace {

using namespace asched::proc;

// Rows of a query on the database file, every column as text ("" for NULL).
std::vector<std::vector<std::string>> query(const std::string &db_path, const std::string &sql) {
    sqlite3 *db = nullptr;
    BOOST_REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
                  SQLITE_OK);
    sqlite3_stmt *st = nullptr;
    BOOST_REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK,
                          sqlite3_errmsg(db));
    std::vector<std::vector<std::string>> rows;
    while (sqlite3_step(st) == SQLITE_ROW) {
        std::vector<std::string> row;
        for (int i = 0; i < sqlite3_column_count(st); ++i) {
            const auto *t = sqlite3_column_text(st, i);
            row.emplace_back(t ? reinterpret_cast<const char *>(t) : "");
        }
        rows.push_back(std::move(row));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
}

void check_integrity(const std::string &db) {
    auto rows = query(db, "PRAGMA integrity_check");
    BOOST_REQUIRE(!rows.empty());
    BOOST_TEST(rows[0][0] == "ok");
}

// A node holding 3 long jobs is killed; returns (ledger at the kill, kill time).
std::pair<std::vector<LedgerLine>, std::int64_t> start_and_kill(const Dir &dir,
                                                                const std::string &lease) {
    Node n1({"--store", "sqlite:" + dir / "a.db", "--identity", "n1", "--schedules", "3", "--every",
             "1", "--job-ms", "600000", "--lease", lease, "--poll", "100", "--ledger",
             dir / "ledger"});
    eventually([&] { return read_ledger(dir / "ledger").size() >= 3; }, "3 jobs running on n1");
    n1.kill(SIGKILL);
    const auto killed_at = now_us();
    BOOST_TEST(n1.wait() == 128 + SIGKILL);
    return {read_ledger(dir / "ledger"), killed_at};
}

// Checks that every fire of every schedule, from `start_us` every `step_us` up to its last
// fire time, has exactly one job (a result or a queued row); returns how many fires it saw.
std::size_t fires_with_one_job_each(const std::string &db, std::int64_t start_us,
                                    std::int64_t step_us) {
    std::map<std::pair<std::string, std::int64_t>, int> jobs;
    for (auto &row : query(db, "SELECT schedule_id, scheduled_fire_time FROM results UNION ALL "
                               "SELECT schedule_id, scheduled_fire_time FROM jobs"))
        ++jobs[{row[0], std::stoll(row[1])}];
    std::size_t fires = 0;
    for (auto &row : query(db, "SELECT id, last_fire_time FROM schedules")) {
        BOOST_REQUIRE(!row[1].empty());
        for (std::int64_t t = start_us; t <= std::stoll(row[1]); t += step_us, ++fires) {
            const int n = jobs[std::make_pair(row[0], t)];
            BOOST_TEST_CHECK(n == 1, row[0] << "@" << t << ": " << n << " jobs");
        }
    }
    return fires;
}

std::map<std::string, std::vector<std::string>> results_by_job(const std::string &db) {
    std::map<std::string, std::vector<std::string>> out;
    for (auto &row : query(
             db,
             "SELECT job_id, json_extract(data, '$.outcome'), json_extract(data, '$.finished_at'), "
             "json_extract(data, '$.exception_message') FROM results"))
        out[row[0]] = {row[1], row[2], row[3]};
    return out;
}

} // namespace

BOOST_AUTO_TEST_CASE(sigkill_then_restart_with_the_same_identity_abandons_at_once) {
    Dir dir;
    auto [running, killed_at] = start_and_kill(dir, "20");
    Node again({"--store", "sqlite:" + dir / "a.db", "--identity", "n1", "--schedules", "3",
                "--every", "1", "--job-ms", "10", "--lease", "20", "--poll", "100", "--run-for",
                "1.5", "--ledger", dir / "ledger"});
    BOOST_TEST(again.wait() == 0);

    auto results = results_by_job(dir / "a.db");
    for (auto &l : running) {
        BOOST_REQUIRE_MESSAGE(results.count(l.job_id), "no result for killed job " << l.job_id);
        const auto &r = results[l.job_id];
        BOOST_TEST(r[0] == "abandoned");
        BOOST_TEST(r[2].find("restarted") != std::string::npos);
        // At once: long before the 20 s lease would have run out.
        const auto finished = asched::parse_time(r[1]).time_since_epoch().count();
        BOOST_TEST(finished - killed_at < 10'000'000);
    }
    check_no_fire_twice(read_ledger(dir / "ledger"));
    BOOST_TEST(query(dir / "a.db", "SELECT count(*) FROM schedules")[0][0] == "3");
    check_integrity(dir / "a.db");
}

BOOST_AUTO_TEST_CASE(sigkill_then_another_identity_abandons_after_the_lease) {
    Dir dir;
    auto [running, killed_at] = start_and_kill(dir, "3");
    Node other({"--store", "sqlite:" + dir / "a.db", "--identity", "n2", "--schedules", "3",
                "--every", "1", "--job-ms", "10", "--lease", "3", "--poll", "100", "--run-for", "6",
                "--ledger", dir / "ledger"});
    BOOST_TEST(other.wait() == 0);

    auto results = results_by_job(dir / "a.db");
    for (auto &l : running) {
        BOOST_REQUIRE_MESSAGE(results.count(l.job_id), "no result for killed job " << l.job_id);
        const auto &r = results[l.job_id];
        BOOST_TEST(r[0] == "abandoned");
        BOOST_TEST(r[2].find("lease of worker 'n1' expired") != std::string::npos);
        // Not before the lease: n1 renewed it every 1.5 s, so it ran out 1.5-3 s after the kill.
        const auto finished = asched::parse_time(r[1]).time_since_epoch().count();
        BOOST_TEST(finished - killed_at >= 1'400'000);
    }
    // n2 took the schedules over and kept firing them, each fire once.
    auto ledger = read_ledger(dir / "ledger");
    BOOST_TEST(std::count_if(ledger.begin(), ledger.end(),
                             [](auto &l) { return l.identity == "n2"; }) >= 3);
    check_no_fire_twice(ledger);
    BOOST_TEST(query(dir / "a.db", "SELECT count(*) FROM schedules")[0][0] == "3");
    check_integrity(dir / "a.db");
}

BOOST_AUTO_TEST_CASE(two_processes_on_one_file_run_every_fire_exactly_once) {
    Dir dir;
    // Both nodes define the same 200 schedules (the first definition wins), starting on a
    // whole second a little ahead.
    const auto start_us = (now_us() / 1'000'000 + 2) * 1'000'000;
    const auto start = asched::format_time(asched::time_point(asched::duration(start_us)));
    auto node = [&](const char *id) {
        return std::vector<std::string>{"--store",     "sqlite:" + dir / "a.db",
                                        "--identity",  id,
                                        "--schedules", "200",
                                        "--every",     "1",
                                        "--start-at",  start,
                                        "--job-ms",    "5",
                                        "--lease",     "10",
                                        "--poll",      "200",
                                        "--run-for",   "7",
                                        "--ledger",    dir / "ledger"};
    };
    Node a(node("n1"));
    Node b(node("n2"));
    BOOST_TEST(a.wait() == 0);
    BOOST_TEST(b.wait() == 0);

    const auto ledger = read_ledger(dir / "ledger");
    check_no_fire_twice(ledger);
    std::map<std::pair<std::string, std::int64_t>, int> ran;
    for (auto &l : ledger)
        ++ran[{l.schedule_id, l.fire_us}];
    std::map<std::pair<std::string, std::int64_t>, int> results, queued;
    for (auto &row : query(dir / "a.db", "SELECT schedule_id, scheduled_fire_time FROM results"))
        ++results[{row[0], std::stoll(row[1])}];
    for (auto &row : query(dir / "a.db", "SELECT schedule_id, scheduled_fire_time FROM jobs"))
        ++queued[{row[0], std::stoll(row[1])}];
    // Every fire from the start up to each schedule's last fire: exactly one job (finished
    // with one result, or still queued when both nodes stopped), and a result iff it ran.
    std::size_t fires = 0;
    auto schedules = query(dir / "a.db", "SELECT id, last_fire_time FROM schedules");
    BOOST_TEST(schedules.size() == 200u);
    for (auto &row : schedules) {
        BOOST_REQUIRE_MESSAGE(!row[1].empty(), "schedule " << row[0] << " never fired");
        for (std::int64_t t = start_us; t <= std::stoll(row[1]); t += 1'000'000) {
            const std::pair<std::string, std::int64_t> key{row[0], t};
            ++fires;
            BOOST_TEST_CHECK(results[key] + queued[key] == 1, row[0] << "@" << t << ": "
                                                                     << results[key] << " results, "
                                                                     << queued[key] << " queued");
            BOOST_TEST_CHECK(ran[key] == results[key],
                             row[0] << "@" << t << " ran " << ran[key] << " times");
        }
    }
    BOOST_TEST(fires >= 200u * 4);
    std::set<std::string> who;
    for (auto &l : ledger)
        who.insert(l.identity);
    BOOST_TEST_MESSAGE("fires: " << fires << ", ledger lines: " << ledger.size()
                                 << ", nodes that ran jobs: " << who.size());
    check_integrity(dir / "a.db");
}

// Issue 12's process tests: the worker registry and retries across a crash.

BOOST_AUTO_TEST_CASE(a_sigkilled_attempt_is_retried_once_by_another_node) {
    Dir dir;
    const auto db = dir / "a.db";
    // One fire (every hour from now), a job that runs until killed, up to 3 attempts.
    Node n1({"--store", "sqlite:" + db, "--identity", "n1", "--schedules", "1", "--every", "3600",
             "--job-ms", "600000", "--lease", "2", "--poll", "100", "--retry", "3", "--ledger",
             dir / "ledger"});
    eventually([&] { return read_ledger(dir / "ledger").size() == 1; }, "attempt 1 running");
    n1.kill(SIGKILL);
    BOOST_TEST(n1.wait() == 128 + SIGKILL);
    const auto job_id = read_ledger(dir / "ledger")[0].job_id;

    // n2 finds the lease expired (within 2 s), the store queues attempt 2, n2 runs it.
    Node n2({"--store", "sqlite:" + db, "--identity", "n2", "--schedules", "1", "--every", "3600",
             "--job-ms", "10", "--lease", "2", "--poll", "100", "--retry", "3", "--ledger",
             dir / "ledger"});
    eventually([&] { return read_ledger(dir / "ledger").size() >= 2; }, "attempt 2 ran");
    // Long enough for a wrong second run of attempt 2 (or an attempt 3) to show.
    eventually([&] { return !query(db, "SELECT 1 FROM results").empty(); }, "a result");
    n2.kill(SIGTERM);
    BOOST_TEST(n2.wait() == 0);

    const auto ledger = read_ledger(dir / "ledger");
    BOOST_REQUIRE(ledger.size() == 2u);
    BOOST_TEST(ledger[0].attempt == 1u);
    BOOST_TEST(ledger[0].identity == "n1");
    BOOST_TEST(ledger[1].job_id == job_id); // the same job, its id and fire time kept
    BOOST_TEST(ledger[1].fire_us == ledger[0].fire_us);
    BOOST_TEST(ledger[1].attempt == 2u);
    BOOST_TEST(ledger[1].identity == "n2");
    const auto history = query(db, "SELECT attempt, outcome, worker FROM job_history WHERE "
                                   "job_id = '" +
                                       job_id + "' ORDER BY attempt");
    BOOST_REQUIRE(history.size() == 2u);
    BOOST_TEST(history[0][1] == "abandoned");
    BOOST_TEST(history[1][0] == "2");
    BOOST_TEST(history[1][1] == "success");
    BOOST_TEST(history[1][2] == "n2");
    auto results = results_by_job(db);
    BOOST_TEST(results[job_id][0] == "success");
    BOOST_TEST(query(db, "SELECT count(*) FROM jobs")[0][0] == "0");
    check_integrity(db);
}

BOOST_AUTO_TEST_CASE(r6_a_second_process_with_a_live_identity_refuses_to_start) {
    Dir dir;
    const auto db = dir / "a.db";
    Node n1({"--store", "sqlite:" + db, "--identity", "n1", "--schedules", "1", "--every", "0.2",
             "--job-ms", "10", "--lease", "5", "--poll", "100", "--ledger", dir / "ledger"});
    eventually([&] { return read_ledger(dir / "ledger").size() >= 2; }, "n1 runs jobs");
    Node twin({"--store", "sqlite:" + db, "--identity", "n1", "--schedules", "1", "--every", "0.2",
               "--job-ms", "10", "--lease", "5", "--poll", "100", "--ledger", dir / "ledger"});
    BOOST_TEST(twin.wait() == 3); // identity_in_use
    // n1 was not disturbed: it goes on, and nothing of it was marked abandoned.
    const auto seen = read_ledger(dir / "ledger").size();
    eventually([&] { return read_ledger(dir / "ledger").size() >= seen + 3; }, "n1 goes on");
    n1.kill(SIGTERM);
    BOOST_TEST(n1.wait() == 0);
    for (auto &l : read_ledger(dir / "ledger"))
        BOOST_TEST(l.identity == "n1");
    BOOST_TEST(query(db, "SELECT count(*) FROM job_history WHERE outcome <> 'success'")[0][0] ==
               "0");
    BOOST_TEST(query(db, "SELECT count(*) FROM workers")[0][0] == "0"); // deleted at stop
    check_no_fire_twice(read_ledger(dir / "ledger"));
    check_integrity(db);
}

BOOST_AUTO_TEST_CASE(r6_a_restart_with_the_same_identity_fires_within_a_poll_not_a_lease,
                     *boost::unit_test::precondition(asched::proc::fault_points_compiled)) {
    Dir dir;
    const auto db = dir / "a.db";
    // n1 dies right after leasing its schedule (for 60 s), before releasing it.
    Node n1({"--store", "sqlite:" + db, "--identity", "n1", "--schedules", "1", "--every", "1",
             "--job-ms", "10", "--lease", "60", "--poll", "100", "--ledger", dir / "ledger"},
            {"ASCHED_FAULTPOINTS=schedules.acquired=kill"});
    BOOST_TEST(n1.wait() == 128 + SIGKILL);
    BOOST_TEST(read_ledger(dir / "ledger").empty());
    const auto leased = query(db, "SELECT acquired_by, acquired_until FROM schedules");
    BOOST_REQUIRE(leased.size() == 1u);
    BOOST_TEST(leased[0][0] == "n1");
    // Its restart takes the lease back at once (and replaces the fresh registry row of the dead
    // pid): the schedule fires within the 3 s run, not after the 60 s lease.
    const auto restarted_at = now_us();
    Node again({"--store", "sqlite:" + db, "--identity", "n1", "--schedules", "1", "--every", "1",
                "--job-ms", "10", "--lease", "60", "--poll", "100", "--run-for", "3", "--ledger",
                dir / "ledger"});
    BOOST_TEST(again.wait() == 0);
    const auto ledger = read_ledger(dir / "ledger");
    BOOST_REQUIRE(!ledger.empty());
    BOOST_TEST(ledger[0].identity == "n1");
    BOOST_TEST(ledger[0].start_us - restarted_at < 2'000'000);
    check_no_fire_twice(ledger);
    check_integrity(db);
}

// R24: a node killed in the middle of migrating a new file (after 3 of the 4 steps, before the
// commit) leaves it as it was; the next start migrates it whole and runs.
BOOST_AUTO_TEST_CASE(r24_a_kill_in_the_middle_of_a_migration_leaves_the_file_as_it_was,
                     *boost::unit_test::precondition(asched::proc::fault_points_compiled)) {
    Dir dir;
    const auto db = dir / "a.db";
    auto args = [&](const char *run_for) {
        return std::vector<std::string>{
            "--store",   "sqlite:" + db, "--identity", "n1",          "--schedules", "1",
            "--every",   "0.2",          "--job-ms",   "5",           "--poll",      "100",
            "--run-for", run_for,        "--ledger",   dir / "ledger"};
    };
    Node dies(args("5"), {"ASCHED_FAULTPOINTS=store.migrating=kill@3"});
    BOOST_TEST(dies.wait() == 128 + SIGKILL);
    BOOST_TEST(query(db, "SELECT count(*) FROM sqlite_master")[0][0] == "0");
    check_integrity(db);
    Node again(args("1.5"));
    BOOST_TEST(again.wait() == 0);
    BOOST_TEST(query(db, "SELECT value FROM asched_meta WHERE key = 'schema_version'")[0][0] ==
               "4");
    BOOST_TEST(read_ledger(dir / "ledger").size() >= 3u);
    check_integrity(db);
}

// R12 (short variant): three nodes on one file; a random node is SIGKILLed at a random point
// (after a random number of further jobs) twenty times (fifty in the soak) and restarted
// under its identity. The file passes integrity_check after every kill, and in the end every
// fire from the start to each schedule's last fire has exactly one job (a result, abandoned
// included, or queued), none run twice.
BOOST_AUTO_TEST_CASE(r12_sigkill_at_random_points_keeps_one_file_sound) {
    Dir dir;
    const auto db = dir / "a.db";
    const auto start_us = (now_us() / 1'000'000 + 2) * 1'000'000;
    const auto start = asched::format_time(asched::time_point(asched::duration(start_us)));
    auto args = [&](const std::string &id) {
        return std::vector<std::string>{
            "--store",    "sqlite:" + db, "--identity", id,  "--schedules", "20", "--every", "1",
            "--start-at", start,          "--job-ms",   "5", "--lease",     "3",  "--poll",  "100",
            "--ledger",   dir / "ledger"};
    };
    const std::vector<std::string> ids{"n1", "n2", "n3"};
    std::vector<std::optional<Node>> nodes(3);
    for (std::size_t i = 0; i < 3; ++i)
        nodes[i].emplace(args(ids[i]));
    const auto seed = std::random_device{}();
    BOOST_TEST_MESSAGE("R12 seed " << seed);
    std::mt19937 rng(seed);
    for (int round = 0, rounds = soak() ? 50 : 20; round < rounds; ++round) {
        const auto seen = read_ledger(dir / "ledger").size();
        const auto more = std::uniform_int_distribution<std::size_t>(1, 40)(rng);
        eventually([&] { return read_ledger(dir / "ledger").size() >= seen + more; },
                   "the nodes run jobs");
        const auto victim = std::uniform_int_distribution<std::size_t>(0, 2)(rng);
        nodes[victim]->kill(SIGKILL);
        BOOST_TEST(nodes[victim]->wait() == 128 + SIGKILL);
        check_integrity(db);
        nodes[victim].emplace(args(ids[victim]));
    }
    const auto seen = read_ledger(dir / "ledger").size();
    eventually([&] { return read_ledger(dir / "ledger").size() >= seen + 40; }, "work goes on");
    for (auto &n : nodes)
        n->kill(SIGTERM);
    for (auto &n : nodes)
        BOOST_TEST(n->wait() == 0);
    check_integrity(db);

    check_no_fire_twice(read_ledger(dir / "ledger"));
    BOOST_TEST(fires_with_one_job_each(db, start_us, 1'000'000) >= 20u * 3);
    BOOST_TEST(query(db, "SELECT count(*) FROM workers")[0][0] == "0");
}

// R2 on SQLite: the release that creates a fire's jobs and advances its schedule is one
// transaction. n1 is SIGKILLed inside it at each fault point (after a job row, before the
// commit, after the commit before the scheduler hears of it), five times per point at a
// random release, while n2 keeps running on the same file; each time n1 starts again under
// its identity. The file stays sound, and every fire has exactly one job, none run twice.
BOOST_AUTO_TEST_CASE(r2_a_crash_inside_the_release_never_loses_or_doubles_a_fire,
                     *boost::unit_test::precondition(asched::proc::fault_points_compiled)) {
    Dir dir;
    const auto db = dir / "a.db";
    const auto start_us = (now_us() / 1'000'000 + 2) * 1'000'000;
    const auto start = asched::format_time(asched::time_point(asched::duration(start_us)));
    auto args = [&](const std::string &id) {
        return std::vector<std::string>{
            "--store",    "sqlite:" + db, "--identity", id,  "--schedules", "10", "--every", "1",
            "--start-at", start,          "--job-ms",   "5", "--lease",     "2",  "--poll",  "100",
            "--ledger",   dir / "ledger"};
    };
    Node peer(args("n2"));
    const auto seed = std::random_device{}();
    BOOST_TEST_MESSAGE("R2 seed " << seed);
    std::mt19937 rng(seed);
    for (const std::string point : {"after_job_insert", "before_commit", "after_commit_before_ack"})
        for (int i = 0, n = soak() ? 20 : 5; i < n; ++i) {
            const auto at = std::to_string(std::uniform_int_distribution<int>(1, 4)(rng));
            Node dies(args("n1"), {"ASCHED_FAULTPOINTS=release." + point + "=kill@" + at});
            BOOST_TEST(dies.wait(60s) == 128 + SIGKILL, point << "@" << at);
            check_integrity(db);
        }
    Node n1(args("n1"));
    const auto seen = read_ledger(dir / "ledger").size();
    eventually([&] { return read_ledger(dir / "ledger").size() >= seen + 30; }, "work goes on");
    n1.kill(SIGTERM);
    peer.kill(SIGTERM);
    BOOST_TEST(n1.wait() == 0);
    BOOST_TEST(peer.wait() == 0);
    check_integrity(db);
    check_no_fire_twice(read_ledger(dir / "ledger"));
    BOOST_TEST(fires_with_one_job_each(db, start_us, 1'000'000) >= 10u * 5);
}

// R12, disk full: the node's file size limit (prlimit --fsize, a full disk as SQLite sees it:
// writes fail with EFBIG) is reached while it fires. Its store degrades and says why, the node
// keeps running, and once the limit is lifted from outside its writes resume: every fire,
// those inside the outage included (coalesce all), gets exactly one job, and the file is sound.
BOOST_AUTO_TEST_CASE(r12_a_full_disk_degrades_the_store_and_writes_resume_when_space_returns) {
    Dir dir;
    const auto db = dir / "full.db";
    const auto start_us = (now_us() / 1'000'000 + 1) * 1'000'000;
    const auto start = asched::format_time(asched::time_point(asched::duration(start_us)));
    // A soft limit of 512 KiB: the new file's schema fits, a few seconds of fires in the WAL do
    // not. The hard limit stays unlimited, so that lifting the soft one needs no privilege.
    Node n1({"--store", "sqlite:" + db, "--identity", "n1", "--schedules", "10", "--every", "1",
             "--start-at", start, "--job-ms", "5", "--lease", "3", "--poll", "100", "--ledger",
             dir / "ledger"},
            {}, {"prlimit", "--fsize=524288:unlimited", "--"}, dir / "n1.log");
    // SQLite reports EFBIG as a bare "disk I/O error" (code 778); the store says which operation
    // failed. A write cut short at the limit may read as SQLITE_FULL instead.
    eventually(
        [&] {
            std::istringstream log(slurp(dir / "n1.log"));
            for (std::string line; std::getline(log, line);)
                if (line.find("store health: degraded (sqlite: ") != std::string::npos &&
                    (line.find("a write to the database or its WAL failed (a full disk") !=
                         std::string::npos ||
                     line.find("database or disk is full") != std::string::npos))
                    return true;
            return false;
        },
        "the node reports its store degraded, and why", 60s);
    const auto at_full = read_ledger(dir / "ledger").size();
    asched::test::Process lift({"prlimit", "--pid", std::to_string(n1.pid()), "--fsize=unlimited"});
    BOOST_REQUIRE(lift.wait() == 0);
    eventually([&] { return read_ledger(dir / "ledger").size() >= at_full + 30; },
               "jobs run again once the space is back");
    n1.kill(SIGTERM);
    BOOST_TEST(n1.wait() == 0);
    check_integrity(db);
    check_no_fire_twice(read_ledger(dir / "ledger"));
    BOOST_TEST(fires_with_one_job_each(db, start_us, 1'000'000) >= 10u * 3);
}
