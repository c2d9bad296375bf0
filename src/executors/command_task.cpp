// command_task: posix_spawn (safe with threads, no shell), pipes read by Asio, the exit seen
// through a pidfd, SIGTERM then SIGKILL on cancel or timeout.
#include "../core/text.hpp"
#include "child_process.hpp"

#include <asched/command_task.hpp>
#include <asched/error.hpp>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <cstring>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

extern char **environ;

namespace asched {
namespace {

using steady = std::chrono::steady_clock;

struct Output {
    std::string bytes;
    bool truncated = false;
};

struct Child {
    explicit Child(const asio::any_io_executor &ex)
        : done(ex, steady::time_point::max()), out_pipe(ex), err_pipe(ex) {}
    pid_t pid = -1;
    int status = 0;
    bool exited = false;
    int remaining = 3; // stdout, stderr, exit
    Output out, err;
    asio::steady_timer done;
    asio::posix::stream_descriptor out_pipe, err_pipe;
    void one_done() {
        if (--remaining == 0)
            done.cancel();
    }
};

asio::awaitable<void> read_pipe(std::shared_ptr<Child> child, asio::posix::stream_descriptor *pipe_,
                                Output *into, std::size_t limit) {
    auto &pipe = *pipe_; // a member of `child`, which this frame keeps alive
    (void)child;
    char buffer[16 * 1024];
    for (;;) {
        auto [ec, n] = co_await pipe.async_read_some(
            asio::buffer(buffer), asio::experimental::as_tuple(asio::use_awaitable));
        if (ec)
            break; // EOF: the child closed it (exited)
        const std::size_t room = limit > into->bytes.size() ? limit - into->bytes.size() : 0;
        into->bytes.append(buffer, std::min(room, n));
        if (n > room)
            into->truncated = true;
    }
}

asio::awaitable<void> reap(std::shared_ptr<Child> child, int pidfd) {
    child->status = co_await detail::wait_child(child->pid, pidfd);
    child->exited = true;
    child->done.cancel(); // the main loop starts the pipes' last second
}

// Runs one of the child's three watchers; its end is counted whatever happens.
void watch(const asio::any_io_executor &ex, std::shared_ptr<Child> child,
           asio::awaitable<void> op) {
    asio::co_spawn(ex, std::move(op), [child](std::exception_ptr) { child->one_done(); });
}

std::vector<std::string> full_argv(const CommandOptions &o, const nlohmann::json &args) {
    std::vector<std::string> argv = o.argv;
    if (args.is_array())
        for (const auto &a : args)
            argv.push_back(a.is_string() ? a.get<std::string>() : a.dump());
    return argv;
}

std::vector<std::string> full_env(const std::map<std::string, std::string> &extra) {
    std::vector<std::string> env;
    for (char **e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        const auto name = kv.substr(0, kv.find('='));
        if (!extra.count(std::string(name)))
            env.emplace_back(kv);
    }
    for (const auto &[k, v] : extra)
        env.push_back(k + "=" + v);
    return env;
}

std::vector<char *> pointers(std::vector<std::string> &v) {
    std::vector<char *> p;
    for (auto &s : v)
        p.push_back(s.data());
    p.push_back(nullptr);
    return p;
}

struct Pipe {
    int read = -1, write = -1;
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw Error(errc::invalid_argument,
                        fmt::format("command: pipe failed: {}", std::strerror(errno)));
        read = fds[0];
        write = fds[1];
    }
};

std::string last_kib(const std::string &s) {
    constexpr std::size_t n = 1024;
    return detail::valid_utf8(s.size() > n ? s.substr(s.size() - n) : s);
}

asio::awaitable<nlohmann::json> run_command(std::shared_ptr<const CommandOptions> o,
                                            nlohmann::json args) {
    auto ex = co_await asio::this_coro::executor;
    // Cancellation is handled here: it kills the child, then the output is still collected.
    co_await asio::this_coro::throw_if_cancelled(false);
    auto argv = full_argv(*o, args);
    auto env = full_env(o->env);
    auto argv_p = pointers(argv);
    auto env_p = pointers(env);
    Pipe out, err;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out.write, 1);
    posix_spawn_file_actions_adddup2(&actions, err.write, 2);
    if (o->cwd)
        posix_spawn_file_actions_addchdir_np(&actions, o->cwd->c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    auto child = std::make_shared<Child>(ex);
    const int rc =
        ::posix_spawnp(&child->pid, argv_p[0], &actions, &attr, argv_p.data(), env_p.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(out.write);
    ::close(err.write);
    if (rc != 0) {
        ::close(out.read);
        ::close(err.read);
        throw Error(errc::invalid_argument,
                    fmt::format("command '{}'{}: cannot start: {}", o->argv[0],
                                o->cwd ? fmt::format(" in '{}'", *o->cwd) : "", std::strerror(rc)));
    }
    const int pidfd = detail::open_pidfd(child->pid);
    child->out_pipe.assign(out.read);
    child->err_pipe.assign(err.read);
    watch(ex, child, read_pipe(child, &child->out_pipe, &child->out, o->output_limit));
    watch(ex, child, read_pipe(child, &child->err_pipe, &child->err, o->output_limit));
    watch(ex, child, reap(child, pidfd));

    const auto started = steady::now();
    std::optional<steady::time_point> kill_at, exited_at;
    bool cancelled = false, timed_out = false;
    while (child->remaining > 0) {
        auto wake = steady::time_point::max();
        if (o->timeout && !kill_at)
            wake = started + std::chrono::duration_cast<steady::duration>(*o->timeout);
        if (kill_at)
            wake = *kill_at;
        if (child->exited) {
            // A grandchild may keep the pipes open: the output ends a second after the exit.
            if (!exited_at)
                exited_at = steady::now();
            if (steady::now() >= *exited_at + std::chrono::seconds(1)) {
                child->out_pipe.close();
                child->err_pipe.close();
            }
            wake = std::min(wake, *exited_at + std::chrono::seconds(1));
        }
        child->done.expires_at(wake);
        co_await child->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        if (child->remaining == 0)
            break;
        const auto cs = co_await asio::this_coro::cancellation_state;
        const bool cancel_now = cs.cancelled() != asio::cancellation_type::none;
        const bool timeout_now = o->timeout && steady::now() - started >= *o->timeout;
        if (!kill_at && (cancel_now || timeout_now)) {
            cancelled = cancel_now;
            timed_out = !cancel_now;
            ::kill(child->pid, SIGTERM);
            kill_at = steady::now() + std::chrono::duration_cast<steady::duration>(o->kill_grace);
            co_await asio::this_coro::reset_cancellation_state();
            co_await asio::this_coro::throw_if_cancelled(false);
        } else if (kill_at && steady::now() >= *kill_at) {
            ::kill(child->pid, SIGKILL);
            kill_at = steady::time_point::max();
        }
    }
    const std::string status = detail::describe_wait_status(child->status);
    if (cancelled)
        throw Error(errc::job_cancelled,
                    fmt::format("command '{}': cancelled, {}", o->argv[0], status));
    if (timed_out)
        throw Error(errc::job_failed,
                    fmt::format("command '{}': timed out after {}, {}", o->argv[0],
                                format_duration(*o->timeout), status));
    if (!WIFEXITED(child->status) || WEXITSTATUS(child->status) != 0)
        throw Error(errc::job_failed, fmt::format("command '{}' {}; stderr: {}", o->argv[0], status,
                                                  last_kib(child->err.bytes)));
    co_return nlohmann::json{{"exit_status", 0},
                             {"stdout", detail::valid_utf8(std::move(child->out.bytes))},
                             {"stderr", detail::valid_utf8(std::move(child->err.bytes))},
                             {"stdout_truncated", child->out.truncated},
                             {"stderr_truncated", child->err.truncated}};
}

} // namespace

std::shared_ptr<const TaskFunction> command_task(CommandOptions options) {
    if (options.argv.empty() || options.argv[0].empty())
        throw Error(errc::invalid_argument, "command_task: field 'argv': must name a program");
    auto o = std::make_shared<const CommandOptions>(std::move(options));
    auto fn = std::make_shared<TaskFunction>();
    fn->is_coroutine = true;
    fn->arity = 0;
    fn->coroutine = [o](JobContext &, const nlohmann::json &args) { return run_command(o, args); };
    return fn;
}

} // namespace asched
