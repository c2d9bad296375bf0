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

std::string valid_utf8(std::string s) {
    std::string out;
    out.reserve(s.size());
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    const std::size_t n = s.size();
    for (std::size_t i = 0; i < n;) {
        const unsigned char c = p[i];
        std::size_t len = c < 0x80           ? 1
                          : (c >> 5) == 0x6  ? 2
                          : (c >> 4) == 0xE  ? 3
                          : (c >> 3) == 0x1E ? 4
                                             : 0;
        bool ok = len > 0 && i + len <= n;
        for (std::size_t k = 1; ok && k < len; ++k)
            ok = (p[i + k] & 0xC0) == 0x80;
        if (ok && len == 2)
            ok = c >= 0xC2; // overlong
        if (ok && len == 3) {
            const unsigned cp = ((c & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (ok && len == 4) {
            const unsigned cp = ((c & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) |
                                ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (ok) {
            out.append(s, i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
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
