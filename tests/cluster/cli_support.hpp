// What the tests of the `asched` tool share: starting it with its output in files, and
// waiting (bounded) for it to exit.
#pragma once

#include "process_support.hpp"

#include <fcntl.h>

namespace asched::proc {

struct Ran {
    int status = -1;
    std::string out, err;
};

// Starts `args` (the program looked up on PATH) with stdout and stderr going to files.
inline pid_t spawn_program(std::vector<std::string> args, const std::string &out,
                           const std::string &err) {
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&files, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    const int rc = posix_spawnp(&pid, argv[0], &files, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&files);
    BOOST_REQUIRE(rc == 0);
    return pid;
}

// Starts `asched args...` with stdout and stderr going to files.
inline pid_t spawn_cli(std::vector<std::string> args, const std::string &out,
                       const std::string &err) {
    args.insert(args.begin(), ASCHED_CLI);
    return spawn_program(std::move(args), out, err);
}

inline int wait_exit(pid_t pid, std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    for (;;) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (Clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            BOOST_FAIL("asched did not exit in time");
        }
        std::this_thread::sleep_for(5ms); // polling a child's exit, bounded above
    }
}

} // namespace asched::proc
