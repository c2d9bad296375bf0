// Child-process helpers shared by the process executor and command tasks.
#include "child_process.hpp"

#include <asched/error.hpp>

#include <asio/experimental/as_tuple.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace asched::detail {

int open_pidfd(pid_t pid) {
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        throw Error(errc::invalid_argument,
                    fmt::format("pidfd_open({}) failed: {} (Linux 5.3 or later is needed)", pid,
                                std::strerror(errno)));
    return static_cast<int>(fd);
}

std::string describe_wait_status(int status) {
    if (WIFEXITED(status))
        return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        const char *name = ::strsignal(sig);
        return fmt::format("killed by signal {} ({}){}", sig, name ? name : "unknown",
                           WCOREDUMP(status) ? ", core dumped" : "");
    }
    return fmt::format("ended with wait status {}", status);
}

asio::awaitable<void> wait_exit(pid_t pid, int pidfd) {
    asio::posix::stream_descriptor fd(co_await asio::this_coro::executor, pidfd);
    for (;;) {
        siginfo_t info{};
        const int r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
        if ((r == 0 && info.si_pid == pid) || (r < 0 && errno != EINTR))
            break;
        // The pidfd turns readable when the child exits.
        auto [ec] = co_await fd.async_wait(asio::posix::stream_descriptor::wait_read,
                                           asio::experimental::as_tuple(asio::use_awaitable));
        (void)ec;
    }
    fd.release(); // the caller owns the pidfd
}

int reap_child(pid_t pid) {
    // WNOHANG: the exit was seen already, so this returns at once; and where the host ignores
    // SIGCHLD (children reaped by the kernel), a blocking wait would hang until every child of
    // the process ended.
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) < 0) {
        if (errno != EINTR)
            return 0;
    }
    return status;
}

bool process_group_alive(pid_t pgid) {
    // kill(-pgid, 0) also succeeds for zombies that nobody reaps (an orphan under an init that
    // does not wait), so the group is read from /proc: field 5 of stat, after the state.
    DIR *proc = ::opendir("/proc");
    if (!proc)
        return ::kill(-pgid, 0) == 0;
    bool alive = false;
    while (const dirent *e = ::readdir(proc)) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300];
        std::snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        char buf[512];
        const ssize_t n = ::read(fd, buf, sizeof buf - 1);
        ::close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        const char *close_paren = std::strrchr(buf, ')'); // the name may hold anything
        char state = 0;
        long ppid = 0, pgrp = 0;
        if (!close_paren || std::sscanf(close_paren + 1, " %c %ld %ld", &state, &ppid, &pgrp) != 3)
            continue;
        if (pgrp == pgid && state != 'Z' && state != 'X') {
            alive = true;
            break;
        }
    }
    ::closedir(proc);
    return alive;
}

void signal_group(pid_t pgid, int sig) {
    if (pgid > 0)
        ::kill(-pgid, sig);
}

} // namespace asched::detail
