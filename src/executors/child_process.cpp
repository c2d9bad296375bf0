// Child-process helpers shared by the process executor and command tasks.
#include "child_process.hpp"

#include <asched/error.hpp>

#include <asio/experimental/as_tuple.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
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

asio::awaitable<int> wait_child(pid_t pid, int pidfd) {
    asio::posix::stream_descriptor fd(co_await asio::this_coro::executor, pidfd);
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            status = 0;
            break;
        }
        // The pidfd turns readable when the child exits.
        auto [ec] = co_await fd.async_wait(asio::posix::stream_descriptor::wait_read,
                                           asio::experimental::as_tuple(asio::use_awaitable));
        (void)ec;
    }
    co_return status;
}

} // namespace asched::detail
