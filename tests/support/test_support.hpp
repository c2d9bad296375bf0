// Test helpers: fixed instants, running awaitables to completion with a bound, bounded polling.
#pragma once

#include <asched/asched.hpp>

#include <asio.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <stdlib.h>
#include <sys/types.h>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace asched::test {

inline time_point at(std::string_view iso) {
    return parse_time(iso);
}
inline const time_point t0 = parse_time("2025-01-01T00:00:00Z");

/// The first `n` fire times of `t`, formatted in its zone.
inline std::vector<std::string> fires(const Trigger &t, std::size_t n) {
    std::vector<std::string> out;
    std::optional<time_point> prev;
    nlohmann::json state;
    for (std::size_t i = 0; i < n; ++i) {
        auto next = t.advance(prev, state);
        if (!next)
            break;
        out.push_back(t.zone_of(state).format(*next));
        prev = next;
    }
    return out;
}

/// What a spawned awaitable ended with, written by its completion handler on the thread that
/// runs the io_context. Not asio::use_future: that completes the promise on asio's system
/// thread, which may drop the last reference to a thrown exception while the test still reads
/// it in a catch block (TSan reports that: libstdc++'s reference count is not instrumented).
template <class T> struct Outcome {
    std::optional<std::conditional_t<std::is_void_v<T>, char, T>> value;
    std::exception_ptr error;
    bool done = false;

    T take() {
        if (error)
            std::rethrow_exception(std::exchange(error, nullptr));
        if constexpr (!std::is_void_v<T>)
            return std::move(*value);
    }
};

template <class T>
std::shared_ptr<Outcome<T>> spawn_outcome(asio::io_context &ioc, asio::awaitable<T> op) {
    auto out = std::make_shared<Outcome<T>>();
    if constexpr (std::is_void_v<T>) {
        asio::co_spawn(ioc, std::move(op), [out](std::exception_ptr e) {
            out->error = std::move(e);
            out->done = true;
        });
    } else {
        asio::co_spawn(ioc, std::move(op), [out](std::exception_ptr e, T v) {
            out->error = std::move(e);
            if (!out->error)
                out->value.emplace(std::move(v));
            out->done = true;
        });
    }
    return out;
}

/// Drives `ioc` until `op` completes, failing the test after `limit` of real time.
template <class T>
T run(asio::io_context &ioc, asio::awaitable<T> op,
      std::chrono::seconds limit = std::chrono::seconds(30)) {
    auto out = spawn_outcome(ioc, std::move(op));
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!out->done) {
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("test timed out: the operation did not complete");
        if (ioc.stopped())
            ioc.restart();
        ioc.run_for(std::chrono::milliseconds(2));
    }
    return out->take();
}

/// The live (not zombie) children of `parent`, read from /proc.
/// The live (not zombie) processes whose /proc stat field `field` (1: the parent, 2: the
/// process group) is `value`.
inline std::vector<pid_t> processes_where(int field, pid_t value) {
    std::vector<pid_t> out;
    for (const auto &entry : std::filesystem::directory_iterator("/proc")) {
        const auto name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        std::ifstream stat(entry.path() / "stat");
        std::string line;
        std::getline(stat, line);
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so read after the last ')'.
        const auto close = line.rfind(')');
        if (close == std::string::npos)
            continue;
        std::istringstream rest(line.substr(close + 1));
        char state = 0;
        pid_t ppid = 0, pgrp = 0;
        rest >> state >> ppid >> pgrp;
        if ((field == 1 ? ppid : pgrp) == value && state != 'Z' && state != 'X')
            out.push_back(std::stoi(name));
    }
    return out;
}

inline std::vector<pid_t> children_of(pid_t parent) {
    return processes_where(1, parent);
}

/// The live processes of process group `pgid`.
inline std::vector<pid_t> group_members(pid_t pgid) {
    return processes_where(2, pgid);
}

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
  public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "asched-test-XXXXXX").string();
        if (!::mkdtemp(pattern.data()))
            throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    std::string path(const std::string &name) const { return (path_ / name).string(); }

  private:
    std::filesystem::path path_;
};

/// Runs a store coroutine on a private io_context (stores never need one to be running
/// elsewhere).
template <class T> T sync(asio::awaitable<T> op) {
    asio::io_context ioc;
    auto out = spawn_outcome(ioc, std::move(op));
    // Until the io_context runs out of work, not only until the result is there: a store's
    // thread may still be handing a completion over, and the io_context must outlive that.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!ioc.stopped() || !out->done) {
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("test timed out: the operation did not complete");
        ioc.restart();
        ioc.run_for(std::chrono::milliseconds(10));
    }
    return out->take();
}

/// Polls `done` every millisecond of real time; throws after `limit`. Never sleeps blindly:
/// it returns as soon as the condition holds. Takes a predicate and a C string so that
/// `co_await eventually([&] {...}, "...")` creates no temporary with a destructor.
template <class Pred>
asio::awaitable<void> eventually(Pred done, const char *what,
                                 std::chrono::seconds limit = std::chrono::seconds(20)) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error(std::string("condition never held: ") + what);
        timer.expires_after(std::chrono::milliseconds(1));
        co_await timer.async_wait(asio::use_awaitable);
    }
}

/// True when `ioc` has no work left: every timer, socket operation, posted handler and
/// coroutine that ran on it has finished. Runs it until it runs out of work, for at most
/// `limit` of real time (work that is merely finishing gets to finish).
inline bool no_work_left(asio::io_context &ioc,
                         std::chrono::milliseconds limit = std::chrono::milliseconds(2000)) {
    ioc.restart();
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        ioc.run_for(std::chrono::milliseconds(10));
        if (ioc.stopped())
            return true; // run_for returned because nothing was left to do
    }
    return false;
}

/// A test's io_context that must be idle when the test ends: a stopped scheduler or a closed
/// store leaves nothing behind on it (no timer still armed, no coroutine still suspended).
struct IoContextFixture {
    asio::io_context ioc;
    bool check_work = true;

    IoContextFixture() = default;
    IoContextFixture(const IoContextFixture &) = delete;
    IoContextFixture &operator=(const IoContextFixture &) = delete;
    /// Call last in a derived fixture's destructor, after its scheduler has stopped.
    void expect_no_work_left() {
        if (check_work)
            BOOST_TEST(no_work_left(ioc), "work was left on the test's io_context after it ended");
        check_work = false;
    }
    ~IoContextFixture() { expect_no_work_left(); }
};

} // namespace asched::test

// How Boost.Test prints asched's values in failure messages.
namespace boost::test_tools::tt_detail {
template <> struct print_log_value<asched::time_point> {
    void operator()(std::ostream &os, const asched::time_point &t) { os << asched::format_time(t); }
};
template <> struct print_log_value<asched::duration> {
    void operator()(std::ostream &os, const asched::duration &d) {
        os << asched::format_duration(d);
    }
};
template <> struct print_log_value<asched::TimeZone> {
    void operator()(std::ostream &os, const asched::TimeZone &z) { os << z.name(); }
};
template <> struct print_log_value<asched::JobOutcome> {
    void operator()(std::ostream &os, asched::JobOutcome v) { os << asched::to_string(v); }
};
template <> struct print_log_value<asched::RunState> {
    void operator()(std::ostream &os, asched::RunState v) { os << asched::to_string(v); }
};
template <> struct print_log_value<asched::errc> {
    void operator()(std::ostream &os, asched::errc v) {
        os << asched::make_error_code(v).message();
    }
};
template <class T> struct print_log_value<std::optional<T>> {
    void operator()(std::ostream &os, const std::optional<T> &v) {
        if (v)
            print_log_value<T>()(os, *v);
        else
            os << "nullopt";
    }
};
} // namespace boost::test_tools::tt_detail
