// Process executor and command tasks with real child processes: a task that segfaults,
// aborts, exits or allocates without end ends its job, not the scheduler; cancelling kills
// the child; command tasks report status and bounded output.
#include "test_support.hpp"

#include <asched/command_task.hpp>
#include <asched/job_executors/process_executor.hpp>

#include <boost/test/unit_test.hpp>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

using namespace asched;
using namespace std::chrono_literals;

namespace {

int add(int a, int b) {
    return a + b;
}
int segfault() {
    std::raise(SIGSEGV);
    return 0;
}
int abort_now() {
    std::abort();
}
int exit_3() {
    std::exit(3);
}
std::size_t hog() {
    std::vector<std::unique_ptr<char[]>> chunks;
    for (;;) {
        chunks.emplace_back(new char[16 << 20]);
        std::memset(chunks.back().get(), 1, 16 << 20);
    }
}
int sleep_long() {
    std::this_thread::sleep_for(1h);
    return 0;
}
asio::awaitable<int> co_twice(int x) {
    co_return 2 * x;
}
// A job that leaves processes in its group: a shell with a background sleep it waits for.
int tree() {
    return std::system("sh -c 'sleep 30 & wait'");
}
// What the job's child inherited, besides 0, 1 and 2: "fd -> target" for each.
std::vector<std::string> inherited_fds() {
    std::vector<std::string> out;
    DIR *dir = ::opendir("/proc/self/fd");
    while (const dirent *e = ::readdir(dir)) {
        const int fd = std::atoi(e->d_name);
        if (e->d_name[0] == '.' || fd <= 2 || fd == ::dirfd(dir))
            continue;
        char target[256] = {};
        const std::string link = std::string("/proc/self/fd/") + e->d_name;
        (void)!::readlink(link.c_str(), target, sizeof target - 1);
        out.push_back(std::string(e->d_name) + " -> " + target);
    }
    ::closedir(dir);
    return out;
}

ProcessTasks process_tasks() {
    ProcessTasks t;
    t.add("add", add).add("segfault", segfault).add("abort", abort_now).add("exit3", exit_3);
    t.add("hog", hog).add("sleep", sleep_long).add("co_twice", co_twice);
    t.add("tree", tree).add("fds", inherited_fds);
    return t;
}

// Forked once, before any test starts a thread.
struct Launched {
    Launched() {
        ProcessExecutorOptions o;
        o.memory_limit_bytes = std::size_t(512) << 20;
        o.kill_grace = 200ms;
        executor = ProcessExecutor::launch(process_tasks(), o);
    }
    static inline std::shared_ptr<ProcessExecutor> executor;
};

AsyncSchedulerOptions options() {
    AsyncSchedulerOptions o;
    o.identity = "executor-test";
    o.logger.level = LogLevel::off;
    o.stop_grace_period = 100ms;
    o.job_executors["process"] = Launched::executor;
    return o;
}

asio::awaitable<JobResult> run_to_result(AsyncScheduler &s, std::string task, nlohmann::json args) {
    JobOptions o{.args = std::move(args), .result_expiration_time = 1h};
    auto id = co_await s.add_job(task, o);
    auto r = co_await s.get_job_result(id, true);
    co_return *r;
}

void expect(const JobResult &r, JobOutcome outcome, const std::string &needle) {
    BOOST_TEST(to_string(r.outcome) == to_string(outcome));
    const std::string message = r.exception_message.value_or("");
    BOOST_TEST(message.find(needle) != std::string::npos,
               "'" << message << "' lacks '" << needle << "'");
}

asio::awaitable<void> register_process_tasks(AsyncScheduler &s) {
    TaskOptions in_process{.max_running_jobs = unlimited, .job_executor = "process"};
    co_await s.add_task("add", add, in_process);
    co_await s.add_task("segfault", segfault, in_process);
    co_await s.add_task("abort", abort_now, in_process);
    co_await s.add_task("exit3", exit_3, in_process);
    co_await s.add_task("hog", hog, in_process);
    co_await s.add_task("sleep", sleep_long, in_process);
    co_await s.add_task("co_twice", co_twice, in_process);
    co_await s.add_task("tree", tree, in_process);
    co_await s.add_task("fds", inherited_fds, in_process);
}

asio::awaitable<void> crashing_tasks(AsyncScheduler &s) {
    co_await register_process_tasks(s);
    co_await s.start_in_background();
    nlohmann::json args1 = {2, 3};
    std::string task1 = "add";
    auto ok = co_await run_to_result(s, task1, args1);
    BOOST_TEST(ok.outcome == JobOutcome::success);
    BOOST_TEST(ok.return_value == 5);
    nlohmann::json args2 = nlohmann::json::array();
    std::string task2 = "segfault";
    auto seg = co_await run_to_result(s, task2, args2);
    expect(seg, JobOutcome::error, "killed by signal 11");
    nlohmann::json args3 = nlohmann::json::array();
    std::string task3 = "abort";
    auto ab = co_await run_to_result(s, task3, args3);
    expect(ab, JobOutcome::error, "killed by signal 6");
    nlohmann::json args4 = nlohmann::json::array();
    std::string task4 = "exit3";
    auto ex = co_await run_to_result(s, task4, args4);
    expect(ex, JobOutcome::error, "exited with status 3");
    nlohmann::json args5 = nlohmann::json::array();
    std::string task5 = "hog";
    auto mem = co_await run_to_result(s, task5, args5);
    BOOST_TEST(mem.outcome == JobOutcome::error);
    BOOST_TEST(*mem.exception_type == "std::bad_alloc",
               *mem.exception_type << ": " << *mem.exception_message);
    // A task's own exception keeps its type, and a coroutine task runs in the child too.
    nlohmann::json args6 = {1};
    std::string task6 = "add";
    auto bad_args = co_await run_to_result(s, task6, args6);
    BOOST_TEST(bad_args.outcome == JobOutcome::error);
    BOOST_TEST(*bad_args.exception_type == "asched::Error");
    nlohmann::json args7 = {21};
    std::string task7 = "co_twice";
    auto co = co_await run_to_result(s, task7, args7);
    BOOST_TEST(co.return_value == 42);
    // The scheduler is unharmed.
    BOOST_TEST(s.state() == RunState::started);
    JobOptions again{.args = {20, 22}};
    BOOST_TEST((co_await s.run_job("add", again)) == 42);
    co_await s.stop();
    co_await s.wait_until_stopped();
}

bool alive(pid_t pid) {
    return ::kill(pid, 0) == 0;
}

asio::awaitable<void> cancel_kills_the_child(AsyncScheduler &s) {
    co_await register_process_tasks(s);
    co_await s.start_in_background();
    JobOptions keep{.result_expiration_time = 1h};
    auto id = co_await s.add_job("sleep", keep);
    const pid_t server = Launched::executor->server_pid();
    co_await test::eventually([&] { return test::children_of(server).size() == 1; },
                              "child running");
    const pid_t child = test::children_of(server).front();
    co_await s.stop(); // grace 100 ms, then cancelled: SIGTERM
    co_await s.wait_until_stopped();
    auto r = co_await s.get_job_result(id, false);
    BOOST_TEST(r->outcome == JobOutcome::cancelled);
    co_await test::eventually([&] { return !alive(child) || test::children_of(server).empty(); },
                              "child gone");
}

// A process job past its timeout, and one cancelled by cancel_job(): both children are
// killed, and the jobs end timed_out and cancelled; the scheduler runs on.
asio::awaitable<void> timeout_and_cancel_kill_the_child(AsyncScheduler &s) {
    co_await register_process_tasks(s);
    co_await s.start_in_background();
    const pid_t server = Launched::executor->server_pid();
    JobOptions limited{.result_expiration_time = 1h, .timeout = 300ms};
    auto timed = co_await s.add_job("sleep", limited);
    auto r = co_await s.get_job_result(timed);
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::timed_out);
    co_await test::eventually([&] { return test::children_of(server).empty(); },
                              "timed-out child gone");

    JobOptions keep{.result_expiration_time = 1h};
    auto id = co_await s.add_job("sleep", keep);
    co_await test::eventually([&] { return test::children_of(server).size() == 1; },
                              "child running");
    const pid_t child = test::children_of(server).front();
    const auto how = co_await s.cancel_job(id);
    BOOST_TEST((how == JobCancellation::requested));
    auto c = co_await s.get_job_result(id);
    BOOST_REQUIRE(c);
    BOOST_TEST(c->outcome == JobOutcome::cancelled);
    co_await test::eventually([&] { return !alive(child) || test::children_of(server).empty(); },
                              "cancelled child gone");
    JobOptions two{.args = {2, 3}};
    BOOST_TEST((co_await s.run_job("add", two)) == 5);
}

// A process job's whole group ends with it (timeout, cancel, stop), and its child inherits no
// descriptor of the host but its result pipe.
asio::awaitable<void> a_process_job_ends_with_its_tree(AsyncScheduler &s) {
    co_await register_process_tasks(s);
    co_await s.start_in_background();
    const pid_t server = Launched::executor->server_pid();
    nlohmann::json none = nlohmann::json::array();
    std::string fds_task = "fds";
    auto fds = co_await run_to_result(s, fds_task, none);
    BOOST_REQUIRE(fds.outcome == JobOutcome::success);
    BOOST_TEST(fds.return_value.size() == 1u, fds.return_value.dump());
    BOOST_TEST(fds.return_value[0].get<std::string>().find("pipe:") != std::string::npos);

    for (const std::string how : {"timeout", "cancel", "stop"}) {
        BOOST_TEST_CONTEXT("ended by " << how) {
            JobOptions o{.result_expiration_time = 1h};
            if (how == "timeout")
                o.timeout = 500ms;
            auto id = co_await s.add_job("tree", o);
            // The child, the shell and its sleep: the child is the group's leader.
            pid_t group = 0;
            co_await test::eventually(
                [&] {
                    auto kids = test::children_of(server);
                    group = kids.empty() ? 0 : kids.front();
                    return group && test::group_members(group).size() >= 3;
                },
                "the job's tree running");
            if (how == "cancel") {
                const auto c = co_await s.cancel_job(id);
                BOOST_TEST((c == JobCancellation::requested));
            } else if (how == "stop") {
                co_await s.stop();
                co_await s.wait_until_stopped();
            }
            auto r = co_await s.get_job_result(id, how != "stop");
            BOOST_REQUIRE(r);
            BOOST_TEST(to_string(r->outcome) ==
                       (how == "timeout" ? "timed_out" : std::string("cancelled")));
            // The job ended only once its tree was gone: nothing of it runs on.
            BOOST_TEST(test::group_members(group).empty(),
                       "left: " << test::group_members(group).size());
        }
    }
}

// ---- command tasks -----------------------------------------------------------------------

std::map<std::string, std::shared_ptr<const TaskFunction>> commands() {
    std::map<std::string, std::shared_ptr<const TaskFunction>> c;
    c["ok"] = command_task({.argv = {"sh", "-c", "echo hi; echo warn >&2"}});
    c["fails"] = command_task({.argv = {"sh", "-c", "echo oops >&2; exit 3"}});
    c["chatty"] = command_task(
        {.argv = {"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a"}, .output_limit = 1000});
    c["slow"] = command_task({.argv = {"sleep", "60"}, .timeout = 200ms});
    c["env"] = command_task({.argv = {"sh", "-c", "echo $GREETING; pwd"},
                             .env = {{"GREETING", "hello"}},
                             .cwd = "/tmp"});
    c["echo"] = command_task({.argv = {"echo"}});
    c["missing"] = command_task({.argv = {"/nonexistent/program"}});
    c["sleeper"] = command_task({.argv = {"sleep", "60"}});
    return c;
}

asio::awaitable<void> register_commands(AsyncScheduler &s) {
    TaskOptions many{.max_running_jobs = unlimited};
    for (auto &[name, fn] : commands())
        co_await s.add_task_function(name, fn, many);
}

asio::awaitable<void> command_tasks(AsyncScheduler &s) {
    co_await register_commands(s);
    co_await s.start_in_background();

    nlohmann::json args8 = nlohmann::json::array();
    std::string task8 = "ok";
    auto ok = co_await run_to_result(s, task8, args8);
    BOOST_TEST(ok.outcome == JobOutcome::success);
    BOOST_TEST(ok.return_value["exit_status"] == 0);
    BOOST_TEST(ok.return_value["stdout"] == "hi\n");
    BOOST_TEST(ok.return_value["stderr"] == "warn\n");
    BOOST_TEST(ok.return_value["stdout_truncated"] == false);

    nlohmann::json args9 = nlohmann::json::array();
    std::string task9 = "fails";
    auto fails = co_await run_to_result(s, task9, args9);
    BOOST_TEST(fails.outcome == JobOutcome::error);
    BOOST_TEST(fails.exception_message->find("exited with status 3") != std::string::npos,
               *fails.exception_message);
    BOOST_TEST(fails.exception_message->find("oops") != std::string::npos);

    nlohmann::json args10 = nlohmann::json::array();
    std::string task10 = "chatty";
    auto chatty = co_await run_to_result(s, task10, args10);
    BOOST_TEST(chatty.outcome == JobOutcome::success);
    BOOST_TEST(chatty.return_value["stdout"].get<std::string>().size() == 1000u);
    BOOST_TEST(chatty.return_value["stdout_truncated"] == true);

    const auto began = std::chrono::steady_clock::now();
    nlohmann::json args11 = nlohmann::json::array();
    std::string task11 = "slow";
    auto slow = co_await run_to_result(s, task11, args11);
    BOOST_TEST(slow.outcome == JobOutcome::error);
    BOOST_TEST(slow.exception_message->find("timed out") != std::string::npos,
               *slow.exception_message);
    BOOST_TEST((std::chrono::steady_clock::now() - began < 10s));

    nlohmann::json args12 = nlohmann::json::array();
    std::string task12 = "env";
    auto env = co_await run_to_result(s, task12, args12);
    BOOST_TEST(env.return_value["stdout"] == "hello\n/tmp\n");
    nlohmann::json args13 = {"a b", 3};
    std::string task13 = "echo";
    auto echo = co_await run_to_result(s, task13, args13);
    BOOST_TEST(echo.return_value["stdout"] == "a b 3\n");
    nlohmann::json args14 = nlohmann::json::array();
    std::string task14 = "missing";
    auto missing = co_await run_to_result(s, task14, args14);
    BOOST_TEST(missing.outcome == JobOutcome::error);
    BOOST_TEST(missing.exception_message->find("/nonexistent/program") != std::string::npos);
    co_await s.stop();
    co_await s.wait_until_stopped();
}

asio::awaitable<void> cancel_a_command(AsyncScheduler &s) {
    co_await register_commands(s);
    co_await s.start_in_background();
    JobOptions keep{.result_expiration_time = 1h};
    auto id = co_await s.add_job("sleeper", keep);
    // The command's own process, by name: the test process may have other children.
    auto sleeping = [] {
        for (pid_t p : test::children_of(::getpid())) {
            std::ifstream comm("/proc/" + std::to_string(p) + "/comm");
            std::string name;
            std::getline(comm, name);
            if (name == "sleep")
                return true;
        }
        return false;
    };
    co_await test::eventually(sleeping, "sleep running");
    const auto began = std::chrono::steady_clock::now();
    co_await s.stop(); // grace 100 ms, then cancelled: SIGTERM
    co_await s.wait_until_stopped();
    BOOST_TEST((std::chrono::steady_clock::now() - began < 5s));
    auto r = co_await s.get_job_result(id, false);
    BOOST_TEST(r->outcome == JobOutcome::cancelled);
    BOOST_TEST(r->exception_message.has_value());
}

pid_t read_pid(const std::string &path) {
    std::ifstream in(path);
    pid_t pid = 0;
    in >> pid;
    return pid;
}

// A command's whole tree ends with its job, however the job ends: cancel, the job's timeout,
// the command's own timeout, stop; `sh -c '... & wait'` and a pipeline. The child inherits only
// 0, 1 and 2: the test's listener can be bound again while the command still runs.
asio::awaitable<void> a_command_ends_with_its_tree(AsyncScheduler &s) {
    test::TempDir dir;
    const std::string mark = dir.path("pgid");
    TaskOptions many{.max_running_jobs = unlimited};
    const std::string tree = "echo $$ > " + mark + "; sleep 30 & wait";
    const std::string pipeline = "echo $$ > " + mark + "; sleep 30 | sleep 31";
    auto tree_fn = command_task({.argv = {"sh", "-c", tree}, .kill_grace = 2s});
    auto pipeline_fn = command_task({.argv = {"sh", "-c", pipeline}, .kill_grace = 2s});
    auto own_timeout = command_task({.argv = {"sh", "-c", tree}, .timeout = 300ms});
    auto fds = command_task({.argv = {"sh", "-c", "ls /proc/$$/fd"}});
    co_await s.add_task_function("tree", tree_fn, many);
    co_await s.add_task_function("pipeline", pipeline_fn, many);
    co_await s.add_task_function("own_timeout", own_timeout, many);
    co_await s.add_task_function("fds", fds, many);
    co_await s.start_in_background();

    asio::ip::tcp::acceptor listener(co_await asio::this_coro::executor,
                                     {asio::ip::make_address("127.0.0.1"), 0});
    const auto endpoint = listener.local_endpoint();
    nlohmann::json none = nlohmann::json::array();
    std::string fds_task = "fds";
    auto listed = co_await run_to_result(s, fds_task, none);
    BOOST_TEST(listed.return_value["stdout"] == "0\n1\n2\n");

    struct Case {
        std::string task, how, outcome;
    };
    const std::vector<Case> cases{
        {"tree", "cancel", "cancelled"},         {"pipeline", "cancel", "cancelled"},
        {"tree", "job timeout", "timed_out"},    {"pipeline", "job timeout", "timed_out"},
        {"own_timeout", "own timeout", "error"}, {"pipeline", "stop", "cancelled"}};
    for (const auto &c : cases) {
        BOOST_TEST_CONTEXT(c.task << " ended by " << c.how) {
            std::filesystem::remove(mark);
            JobOptions o{.result_expiration_time = 1h};
            if (c.how == "job timeout")
                o.timeout = 300ms;
            auto id = co_await s.add_job(c.task, o);
            pid_t group = 0;
            co_await test::eventually(
                [&] {
                    group = read_pid(mark);
                    return group > 0 && test::group_members(group).size() >= 2;
                },
                "the command's tree running");
            if (listener.is_open()) {
                // The running command holds nothing of ours: the port can be bound again.
                listener.close();
                asio::ip::tcp::acceptor again(co_await asio::this_coro::executor);
                again.open(endpoint.protocol());
                std::error_code ec;
                again.bind(endpoint, ec);
                BOOST_TEST(!ec, "bind again: " << ec.message());
            }
            if (c.how == "cancel") {
                const auto how = co_await s.cancel_job(id);
                BOOST_TEST((how == JobCancellation::requested));
            } else if (c.how == "stop") {
                co_await s.stop();
                co_await s.wait_until_stopped();
            }
            auto r = co_await s.get_job_result(id, c.how != "stop");
            BOOST_REQUIRE(r);
            BOOST_TEST(to_string(r->outcome) == c.outcome);
            if (c.how == "own timeout")
                BOOST_TEST(r->exception_message->find("timed out") != std::string::npos);
            // The job ended only once its tree was gone.
            BOOST_TEST(test::group_members(group).empty(), test::group_members(group).size()
                                                               << " of its processes left");
        }
    }
}

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(Launched);

BOOST_AUTO_TEST_SUITE(executors)

BOOST_AUTO_TEST_CASE(process_executor_survives_crashing_tasks) {
    asio::io_context ioc;
    AsyncScheduler s(ioc, options());
    test::run(ioc, crashing_tasks(s), 60s);
}

BOOST_AUTO_TEST_CASE(cancelling_a_process_job_kills_its_child) {
    asio::io_context ioc;
    AsyncScheduler s(ioc, options());
    test::run(ioc, cancel_kills_the_child(s), 60s);
}

BOOST_AUTO_TEST_CASE(a_process_job_times_out_or_is_cancelled_and_its_child_killed) {
    asio::io_context ioc;
    AsyncScheduler s(ioc, options());
    test::run(ioc, timeout_and_cancel_kill_the_child(s), 60s);
}

BOOST_AUTO_TEST_CASE(a_process_job_ends_with_its_whole_process_tree) {
    asio::io_context ioc;
    AsyncScheduler s(ioc, options());
    test::run(ioc, a_process_job_ends_with_its_tree(s), 60s);
}

BOOST_AUTO_TEST_CASE(process_executor_needs_a_single_thread) {
    std::thread t([] { std::this_thread::sleep_for(200ms); });
    BOOST_CHECK_THROW(ProcessExecutor::launch(ProcessTasks()), Error);
    t.join();
}

BOOST_AUTO_TEST_CASE(process_tasks_must_be_launched_with_the_executor) {
    asio::io_context ioc;
    AsyncScheduler s(ioc, options());
    TaskOptions in_process{.job_executor = "process"};
    BOOST_CHECK_THROW(test::run(ioc, s.add_task("unknown", add, in_process)), Error);
    TaskOptions nowhere{.job_executor = "nowhere"};
    BOOST_CHECK_THROW(test::run(ioc, s.add_task("add", add, nowhere)), Error);
    TaskOptions inline_blocking{.job_executor = "async"};
    BOOST_CHECK_THROW(test::run(ioc, s.add_task("add", add, inline_blocking)), Error);
}

BOOST_AUTO_TEST_CASE(command_task_results) {
    asio::io_context ioc;
    AsyncScheduler s(ioc, options());
    test::run(ioc, command_tasks(s), 60s);
}

BOOST_AUTO_TEST_CASE(cancelling_a_command_kills_it) {
    asio::io_context ioc;
    AsyncScheduler s(ioc, options());
    test::run(ioc, cancel_a_command(s), 60s);
}

BOOST_AUTO_TEST_CASE(a_command_job_ends_with_its_whole_process_tree) {
    asio::io_context ioc;
    AsyncScheduler s(ioc, options());
    test::run(ioc, a_command_ends_with_its_tree(s), 60s);
}

BOOST_AUTO_TEST_SUITE_END()
