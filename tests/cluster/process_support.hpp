// What the process tests share: asched_test_node children, their ledgers, bounded waits.
#pragma once

#include <asched/asched.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char **environ;

namespace asched::proc {

using namespace std::chrono_literals;

using Clock = std::chrono::steady_clock;

/// A precondition for the tests that select fault points: skipped, and saying why, in a build
/// without them (-DASCHED_FAULTPOINTS=ON compiles them in; the test command's build does).
inline boost::test_tools::assertion_result fault_points_compiled(boost::unit_test::test_unit_id) {
    boost::test_tools::assertion_result compiled(ASCHED_FAULTPOINTS != 0);
    compiled.message() << "needs fault points: configure with -DASCHED_FAULTPOINTS=ON";
    return compiled;
}

// A child process running asched_test_node; killed if still running at scope exit.
class Node {
  public:
    /// `env`: "NAME=value" entries added to this process's environment (ASCHED_FAULTPOINTS).
    /// `launcher`: a program that execs the node, e.g. {"prlimit", "--fsize=N", "--"} (the pid
    /// stays the node's). `stderr_path`: where its stderr goes (default: this process's).
    explicit Node(std::vector<std::string> args, std::vector<std::string> env = {},
                  std::vector<std::string> launcher = {}, const std::string &stderr_path = {}) {
        args.insert(args.begin(), ASCHED_TEST_NODE);
        args.insert(args.begin(), launcher.begin(), launcher.end());
        std::vector<char *> argv;
        for (auto &a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        std::vector<char *> envp;
        for (char **e = environ; *e; ++e)
            envp.push_back(*e);
        for (auto &e : env)
            envp.push_back(e.data());
        envp.push_back(nullptr);
        posix_spawn_file_actions_t files;
        posix_spawn_file_actions_init(&files);
        if (!stderr_path.empty())
            posix_spawn_file_actions_addopen(&files, 2, stderr_path.c_str(),
                                             O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int rc = posix_spawnp(&pid_, argv[0], &files, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&files);
        BOOST_REQUIRE(rc == 0);
    }
    pid_t pid() const { return pid_; }
    ~Node() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    void kill(int sig) const { ::kill(pid_, sig); }
    /// The exit status (or 128 + signal); fails the test after `limit`.
    int wait(std::chrono::seconds limit = 60s) {
        const auto deadline = Clock::now() + limit;
        for (;;) {
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            if (Clock::now() > deadline) {
                BOOST_FAIL("node did not exit in time");
            }
            std::this_thread::sleep_for(10ms); // polling a child's exit, bounded above
        }
    }

  private:
    pid_t pid_ = -1;
};

/// SIGTERM to every node at once, then each must exit 0 (a graceful stop) within 30 s.
inline void stop_all(std::initializer_list<Node *> nodes) {
    for (Node *n : nodes)
        n->kill(SIGTERM);
    for (Node *n : nodes)
        BOOST_TEST(n->wait(30s) == 0);
}

struct LedgerLine {
    std::string job_id, schedule_id;
    std::int64_t fire_us = 0;
    std::string identity;
    std::int64_t start_us = 0;
    unsigned attempt = 1;
};

inline std::vector<LedgerLine> read_ledger(const std::string &path) {
    std::vector<LedgerLine> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        std::istringstream ss(line);
        LedgerLine l;
        if (ss >> l.job_id >> l.schedule_id >> l.fire_us >> l.identity >> l.start_us) {
            if (!(ss >> l.attempt))
                l.attempt = 1;
            out.push_back(l);
        }
    }
    return out;
}

template <class Pred>
void eventually(Pred done, const char *what, std::chrono::seconds limit = 30s) {
    const auto deadline = Clock::now() + limit;
    while (!done()) {
        if (Clock::now() > deadline)
            BOOST_FAIL("condition never held: " << what);
        std::this_thread::sleep_for(10ms);
    }
}

// A file's whole content ("" when it does not exist).
inline std::string slurp(const std::string &path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Dir {
    std::filesystem::path path;
    Dir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "asched-proc-XXXXXX").string();
        BOOST_REQUIRE(::mkdtemp(pattern.data()));
        path = pattern;
    }
    ~Dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string operator/(const char *name) const { return (path / name).string(); }
};

/// Debian's libfaketime (package faketime), the multi-threaded one, to preload into a child
/// whose wall clock a test sets or shifts (FAKETIME=...); the test fails when it is missing.
inline std::string libfaketime() {
    std::string lib;
    for (const auto &arch : std::filesystem::directory_iterator("/usr/lib"))
        if (std::filesystem::exists(arch.path() / "faketime/libfaketimeMT.so.1"))
            lib = (arch.path() / "faketime/libfaketimeMT.so.1").string();
    BOOST_REQUIRE_MESSAGE(!lib.empty(), "libfaketime is not installed (package faketime)");
    return lib;
}

/// CPU time (user + system) a process has used so far, in seconds.
inline double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    // "pid (comm) state ppid ...": utime and stime are fields 14 and 15, the 12th and 13th
    // after the comm's closing parenthesis.
    std::istringstream rest(line.substr(line.rfind(')') + 1));
    std::string field;
    for (int i = 0; i < 11; ++i)
        rest >> field;
    long utime = 0, stime = 0;
    rest >> utime >> stime;
    return double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
}

/// `scripts/run.sh soak` sets ASCHED_SOAK=1: the scenarios run their long variants (more
/// kills, longer runs). CI runs the short ones.
inline bool soak() {
    const char *v = std::getenv("ASCHED_SOAK");
    return v && *v && std::string(v) != "0";
}

inline std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

inline void check_no_fire_twice(const std::vector<LedgerLine> &ledger) {
    std::set<std::pair<std::string, std::int64_t>> seen;
    for (auto &l : ledger)
        BOOST_TEST_CHECK(seen.emplace(l.schedule_id, l.fire_us).second,
                         "fire " << l.schedule_id << "@" << l.fire_us << " ran twice");
}

} // namespace asched::proc
