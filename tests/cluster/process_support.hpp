// What the process tests share: asched_test_node children, their ledgers, bounded waits.
#pragma once

#include <asched/asched.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
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

// A child process running asched_test_node; killed if still running at scope exit.
class Node {
  public:
    /// `env`: "NAME=value" entries added to this process's environment (ASCHED_FAULTPOINTS).
    explicit Node(std::vector<std::string> args, std::vector<std::string> env = {}) {
        args.insert(args.begin(), ASCHED_TEST_NODE);
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
        BOOST_REQUIRE(
            posix_spawn(&pid_, ASCHED_TEST_NODE, nullptr, nullptr, argv.data(), envp.data()) == 0);
    }
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
