// The `asched` command-line tool as an operator uses it: against a SQLite file, a real
// PostgreSQL and a real MariaDB that an `asched worker` process is using at the same time. Every
// wait is bounded and polls for its condition.
#include "cli_support.hpp"
#include "servers.hpp"

#include <boost/test/unit_test.hpp>
#include <sqlite3.h>

#include <fcntl.h>

using namespace std::chrono_literals;
using namespace asched::proc;
using nlohmann::json;

namespace {

// One `asched` command against `store`, run to its end.
struct Cli {
    std::string store;
    Dir dir;

    Ran operator()(std::vector<std::string> args) const {
        args.insert(args.begin(), {"--store", store});
        const std::string out = dir / "out", err = dir / "err";
        Ran r;
        r.status = wait_exit(spawn_cli(args, out, err), 60s);
        r.out = slurp(out);
        r.err = slurp(err);
        return r;
    }
    json json_of(std::vector<std::string> args) const {
        args.insert(args.begin(), "--json");
        const Ran r = (*this)(args);
        std::string line;
        for (const auto &a : args)
            line += " " + a;
        BOOST_REQUIRE_MESSAGE(r.status == 0, "asched" << line << " failed with status " << r.status
                                                      << ": " << r.err);
        return json::parse(r.out);
    }
};

// `asched worker` in the background; SIGTERM and a clean exit at the end.
class Worker {
  public:
    Worker(const std::string &store, const Dir &dir, std::vector<std::string> tasks)
        : log_(dir / "worker.log") {
        std::vector<std::string> args{
            "--store", store, "worker", "--identity", "cli-test-worker", "--poll-interval", "0.1"};
        for (auto &t : tasks)
            args.insert(args.end(), {"--task", t});
        pid_ = spawn_cli(args, dir / "worker.out", log_);
    }
    ~Worker() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    int stop() {
        ::kill(pid_, SIGTERM);
        const int status = wait_exit(pid_, 60s);
        pid_ = -1;
        return status;
    }
    std::string log() const { return slurp(log_); }

  private:
    std::string log_;
    pid_t pid_ = -1;
};

std::size_t count_outcome(const json &records, const std::string &outcome) {
    std::size_t n = 0;
    for (const auto &r : records)
        n += r.at("outcome") == outcome;
    return n;
}

// The operator's walk through a store that a worker runs jobs of: see the task and the worker,
// add a schedule, watch its results, pause, resume, run now, cancel a running job, check.
void operate_a_live_store(const Cli &cli) {
    Worker worker(cli.store, cli.dir,
                  {"echo=sh -c 'echo \"hello $0\"'", "slow=sleep 30", "fail=sh -c 'exit 3'"});
    eventually(
        [&] {
            const Ran r = cli({"--json", "tasks", "list"});
            return r.status == 0 && json::parse(r.out).size() == 3;
        },
        "the worker registered its three tasks");
    const json workers = cli.json_of({"workers", "list"});
    BOOST_REQUIRE(workers.size() == 1);
    BOOST_TEST(workers[0].at("identity") == "cli-test-worker");
    BOOST_TEST(workers[0].at("live") == true);
    BOOST_TEST(workers[0].at("task_ids") == (json{"echo", "fail", "slow"}));

    // A schedule of the program, and its results in the history.
    Ran r = cli({"schedules", "add", "echo", "--id", "every", "--interval", "0.3", "--args",
                 R"(["world"])", "--keep-results", "60"});
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(r.out == "every\n");
    eventually(
        [&] {
            return count_outcome(cli.json_of({"results", "list", "--schedule", "every"}),
                                 "success") >= 2;
        },
        "two successful runs of the schedule");
    const json table = cli.json_of({"schedules", "list"});
    BOOST_REQUIRE(table.size() == 1);
    BOOST_TEST(table[0].at("task_id") == "echo");
    const Ran people = cli({"results", "list", "--task", "echo", "--limit", "1"});
    BOOST_TEST(people.status == 0);
    BOOST_TEST(people.out.find("FINISHED") == 0u);
    BOOST_TEST(people.out.find("success") != std::string::npos);
    // The job's kept result holds what the program printed.
    const json last = cli.json_of({"results", "list", "--schedule", "every", "--limit", "1"});
    const json shown = cli.json_of({"jobs", "show", last[0].at("job_id").get<std::string>()});
    BOOST_TEST(shown.at("return_value").at("stdout") == "hello world\n");

    // Pause: the store says so, and no job of it starts any more.
    BOOST_TEST(cli({"schedules", "pause", "every"}).status == 0);
    BOOST_TEST(cli.json_of({"schedules", "show", "every"}).at("paused") == true);
    // A job leased just before the pause may still finish: wait until nothing of it runs.
    eventually(
        [&] {
            return cli.json_of({"jobs", "list", "--task", "echo"}).empty();
        },
        "no job of the paused schedule left");
    const auto runs = cli.json_of({"results", "list", "--schedule", "every", "--limit", "1000"});
    r = cli({"schedules", "run-now", "every"});
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    const std::string run_now = r.out.substr(0, r.out.size() - 1);
    eventually(
        [&] {
            for (const auto &rec : cli.json_of({"results", "list", "--schedule", "every"}))
                if (rec.at("job_id") == run_now)
                    return true;
            return false;
        },
        "the run-now job ran while the schedule is paused");
    BOOST_TEST(cli.json_of({"results", "list", "--schedule", "every", "--limit", "1000"}).size() ==
               runs.size() + 1);
    BOOST_TEST(cli({"schedules", "resume", "every", "--from", "now"}).status == 0);
    BOOST_TEST(cli.json_of({"schedules", "show", "every"}).at("paused") == false);
    BOOST_TEST(cli({"schedules", "remove", "every"}).status == 0);

    // Cancel a running program.
    r = cli({"schedules", "add", "slow", "--id", "once", "--at",
             asched::format_time(asched::SystemClock().now())});
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    std::string running;
    eventually(
        [&] {
            const json jobs = cli.json_of({"jobs", "list", "--running"});
            if (jobs.empty())
                return false;
            running = jobs[0].at("id").get<std::string>();
            return true;
        },
        "the slow job running");
    r = cli({"jobs", "cancel", running});
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(r.out == "cancellation requested from the node running it\n");
    eventually(
        [&] {
            return count_outcome(cli.json_of({"results", "list", "--outcome", "cancelled"}),
                                 "cancelled") == 1;
        },
        "the slow job ended cancelled");

    // A failing program: its error in the history.
    BOOST_TEST(
        cli({"schedules", "add", "fail", "--at", asched::format_time(asched::SystemClock().now())})
            .status == 0);
    eventually(
        [&] {
            return !cli.json_of({"results", "list", "--outcome", "error"}).empty();
        },
        "the failing job's error recorded");
    const json failed = cli.json_of({"results", "list", "--outcome", "error"});
    BOOST_TEST(failed[0]
                   .at("exception_message")
                   .get<std::string>()
                   .find("command 'sh' exited with status 3") != std::string::npos);

    // What the store says no to: exit status 1, the id named.
    r = cli({"schedules", "show", "nope"});
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.err.find("schedule 'nope' not found") != std::string::npos);
    r = cli({"jobs", "cancel", "nope"});
    BOOST_TEST(r.status == 1);
    r = cli({"schedules", "add", "missing", "--cron", "* * * * *"});
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.err.find("task 'missing' not found") != std::string::npos);
    // Bad usage: exit status 2, the value named.
    r = cli({"schedules", "add", "echo", "--cron", "61 * * * *"});
    BOOST_TEST(r.status == 2);
    BOOST_TEST(r.err.find("--cron \"61 * * * *\": crontab \"61 * * * *\" at position 1: cron "
                          "field 'minute': 61 is out of range 0-59") != std::string::npos,
               r.err);
    r = cli({"results", "list", "--outcome", "fine"});
    BOOST_TEST(r.status == 2);
    BOOST_TEST(r.err.find("--outcome \"fine\"") != std::string::npos);
    r = cli({"schedules", "list", "--no-such-option"});
    BOOST_TEST(r.status == 2);

    const json check = cli.json_of({"store", "check"});
    BOOST_TEST(check.at("ok") == true);
    // SQLite and PostgreSQL are at version 4; MariaDB's tables started at version 1.
    const bool mariadb = cli.store.rfind("mariadb://", 0) == 0;
    BOOST_TEST(check.at("schema_version") == (mariadb ? 1 : 4));
    BOOST_TEST(check.at("quarantined") == 0);

    BOOST_TEST(worker.stop() == 0);
    BOOST_TEST(worker.log().find("stopping") != std::string::npos);
    for (const auto &w : cli.json_of({"workers", "list"}))
        BOOST_TEST(w.at("live") == false);
}

} // namespace

BOOST_AUTO_TEST_SUITE(cli)

BOOST_AUTO_TEST_CASE(operates_a_sqlite_store_a_worker_uses) {
    Cli cli;
    cli.store = "sqlite:" + (cli.dir / "asched.db");
    operate_a_live_store(cli);
}

BOOST_AUTO_TEST_CASE(operates_a_postgres_store_a_worker_uses) {
    asched::test::PostgresServer pg;
    Cli cli;
    cli.store = "postgres:" + pg.conninfo();
    operate_a_live_store(cli);
}

BOOST_AUTO_TEST_CASE(operates_a_mariadb_store_a_worker_uses) {
    asched::test::MariaDbServer maria;
    Cli cli;
    cli.store = "mariadb://root@127.0.0.1:" + std::to_string(maria.port()) + "/asched";
    operate_a_live_store(cli);
}

BOOST_AUTO_TEST_CASE(store_check_and_migrate) {
    Cli cli;
    const std::string db = cli.dir / "asched.db";
    cli.store = "sqlite:" + db;
    // check never creates or migrates, nor does any command but `store migrate` and `worker`.
    Ran r = cli({"store", "check"});
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.err.find("no such file") != std::string::npos);
    for (const std::vector<std::string> &read :
         {std::vector<std::string>{"schedules", "list"}, {"jobs", "list"}, {"tasks", "list"}}) {
        r = cli(read);
        BOOST_TEST(r.status == 1, read[0] << ": " << r.status);
        BOOST_TEST(r.err.find("no such file") != std::string::npos, r.err);
    }
    BOOST_TEST(!std::filesystem::exists(db), "a read command created " << db);
    {
        sqlite3 *raw = nullptr;
        BOOST_REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
        sqlite3_close(raw);
    }
    r = cli({"store", "check"});
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.err.find("holds no asched schema") != std::string::npos, r.err);
    r = cli({"store", "migrate"});
    BOOST_TEST(r.status == 0);
    BOOST_TEST(r.out == db + ": created schema version 4\n");
    r = cli({"store", "migrate"});
    BOOST_TEST(r.out == db + ": schema version 4, nothing to migrate\n");
    r = cli({"store", "check"});
    BOOST_TEST(r.status == 0);
    BOOST_TEST(r.out.find("integrity         ok") != std::string::npos, r.out);

    // Damage the store behind its back: a task row that is not JSON, a wrong running counter.
    {
        sqlite3 *raw = nullptr;
        BOOST_REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
        BOOST_REQUIRE(sqlite3_exec(raw,
                                   "INSERT INTO tasks (id, data, max_running_jobs, running_jobs) "
                                   "VALUES ('broken', '{not json', 1, 0), ('counted', "
                                   "'{\"id\":\"counted\",\"job_executor\":\"async\","
                                   "\"max_running_jobs\":1,\"version\":1}', 1, 2)",
                                   nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(raw);
    }
    // Reading the tasks moves the undecodable row aside; the rest is listed.
    r = cli({"tasks", "list"});
    BOOST_TEST(r.status == 0);
    BOOST_TEST(r.out.find("broken") == std::string::npos);
    const json check = json::parse(cli({"--json", "store", "check"}).out);
    BOOST_TEST(check.at("ok") == false);
    BOOST_TEST(check.at("quarantined") == 1);
    BOOST_TEST(check.at("recent_quarantined")[0].at("id") == "broken");
    BOOST_REQUIRE(check.at("problems").size() == 1);
    BOOST_TEST(check.at("problems")[0] == "task 'counted': running_jobs is 2 but 0 of its jobs are "
                                          "leased (the concurrency cap counts wrong)");
    BOOST_TEST(cli({"store", "check"}).status == 1);
}

// R12: a SQLite file (or its directory) that the node's user may not write is refused at
// start with a message that says so, at once, instead of "attempt to write a readonly
// database" after the busy timeout. Run as nobody: root writes whatever the mode bits say.
BOOST_AUTO_TEST_CASE(r12_a_store_this_user_cannot_write_is_refused_at_start) {
    Cli cli;
    namespace fs = std::filesystem;
    fs::permissions(cli.dir.path, fs::perms::owner_all | fs::perms::group_read |
                                      fs::perms::group_exec | fs::perms::others_read |
                                      fs::perms::others_exec);
    const std::string db = cli.dir / "root.db";
    cli.store = "sqlite:" + db;
    BOOST_REQUIRE(cli({"store", "migrate"}).status == 0);
    BOOST_REQUIRE(!fs::exists(db + "-wal")); // the last connection's close removed them
    // A copy of the tool where nobody may run it: the build tree may sit under /root (0700).
    const std::string tool = cli.dir / "asched";
    fs::copy_file(ASCHED_CLI, tool);
    const auto as_nobody = [&](const std::string &store, const std::string &command,
                               const std::string &sub) {
        Ran r;
        const std::string out = cli.dir / "out", err = cli.dir / "err";
        r.status = wait_exit(spawn_program({"setpriv", "--reuid=65534", "--regid=65534",
                                            "--clear-groups", tool, "--store", store, command, sub},
                                           out, err),
                             60s);
        r.err = slurp(err);
        return r;
    };
    Ran r = as_nobody("sqlite:" + db, "schedules", "list");
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.err.find("'" + db +
                          "' is read-only for this process (uid 65534): asched "
                          "writes leases, jobs and results to it") != std::string::npos,
               r.err);
    const std::string fresh = cli.dir / "new.db";
    // Only `store migrate` (and `worker`) would create it; the directory says no.
    r = as_nobody("sqlite:" + fresh, "store", "migrate");
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.err.find("its directory '" + cli.dir.path.string() +
                          "' is not writable for this process (uid 65534)") != std::string::npos,
               r.err);
    BOOST_TEST(!fs::exists(fresh));
    // Root's own run is not disturbed: the file is still a sound store.
    BOOST_TEST(cli({"store", "check"}).status == 0);
}

// R19 as a black box: the `asched` tool under Debian's faketime across New York's fall-back
// night (2026-11-01: 02:00 EDT becomes 01:00 EST, so 01:00-01:59 happens twice). A worker
// runs `*/30 1 * * *` in America/New_York for a few seconds around each expected fire, its
// clock started 2 s before it; the SQLite file carries the schedule from one run to the next.
// The hour that occurs twice fires twice, nothing else fires, and the next fire is the next
// day's 01:00 EST.
BOOST_AUTO_TEST_CASE(r19_a_fall_back_night_under_faketime) {
    Cli cli;
    cli.store = "sqlite:" + cli.dir / "dst.db";
    // libfaketime preloaded into the tool itself (the `faketime` command would fork and wait,
    // and a signal to it would not reach the tool): the wall clock starts at `at` (UTC) and
    // runs; the monotonic clock is left alone.
    const std::string lib = libfaketime();
    auto faked = [&](const std::string &at, std::vector<std::string> args) {
        args.insert(args.begin(),
                    {"env", "TZ=UTC", "LD_PRELOAD=" + lib, "FAKETIME=@" + at,
                     "FAKETIME_DONT_FAKE_MONOTONIC=1", ASCHED_CLI, "--store", cli.store});
        return args;
    };
    auto worker = [&](const std::string &at) {
        return spawn_program(faked(at, {"worker", "--identity", "dst", "--poll-interval", "0.1",
                                        "--task", "tick=true"}),
                             cli.dir / "worker.out", cli.dir / "worker.err");
    };
    auto results = [&] { return cli.json_of({"results", "list", "--schedule", "dst"}); };

    pid_t w = worker("2026-11-01 04:00:00"); // registers the task "tick"
    eventually(
        [&] {
            return cli({"--json", "tasks", "list"}).out.find("tick") != std::string::npos;
        },
        "the worker registered its task");
    ::kill(w, SIGTERM);
    BOOST_TEST(wait_exit(w, 60s) == 0);
    const Ran added = [&] {
        Ran r;
        r.status =
            wait_exit(spawn_program(faked("2026-11-01 04:00:10",
                                          {"schedules", "add", "tick", "--id", "dst", "--cron",
                                           "*/30 1 * * *", "--timezone", "America/New_York",
                                           "--keep-results", "34560000"}),
                                    cli.dir / "add.out", cli.dir / "add.err"),
                      60s);
        r.err = slurp(cli.dir / "add.err");
        return r;
    }();
    BOOST_TEST_REQUIRE(added.status == 0, added.err);

    const std::vector<std::string> fires{"2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z",
                                         "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z"};
    for (std::size_t i = 0; i < fires.size(); ++i) {
        const auto start = asched::format_time(asched::parse_time(fires[i]) - 2s);
        w = worker(start.substr(0, 10) + " " + start.substr(11, 8));
        eventually([&] { return results().size() == i + 1; }, "the fire's job ran", 30s);
        ::kill(w, SIGTERM);
        BOOST_TEST(wait_exit(w, 60s) == 0);
    }
    std::vector<asched::time_point> got;
    for (const auto &r : results()) {
        BOOST_TEST(r.at("outcome") == "success");
        got.push_back(asched::parse_time(r.at("scheduled_fire_time").get<std::string>()));
    }
    std::sort(got.begin(), got.end());
    std::vector<asched::time_point> expected;
    for (const auto &f : fires)
        expected.push_back(asched::parse_time(f));
    BOOST_TEST(got == expected, boost::test_tools::per_element());
    const json schedule = cli.json_of({"schedules", "show", "dst"});
    BOOST_TEST(asched::parse_time(schedule.at("next_fire_time").get<std::string>()) ==
               asched::parse_time("2026-11-02T06:00:00Z"));
}

BOOST_AUTO_TEST_SUITE_END()
