// command_task: posix_spawn (safe with threads, no shell) into a process group of its own, pipes
// read by Asio, the exit seen through a pidfd, SIGTERM then SIGKILL to the whole group on cancel
// or timeout; the job ends when no process of its group is left.
#include "../core/text.hpp"
#include "child_process.hpp"

#include <asched/command_task.hpp>
#include <asched/error.hpp>

#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
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

// Everything here, the watchers included, runs on one strand: the main loop reads the flags the
// watchers set, and a watcher's wake-up must not fall between the loop's check and its wait.
struct Child {
    explicit Child(const asio::strand<asio::any_io_executor> &ex)
        : done(ex, steady::time_point::max()), out_pipe(ex), err_pipe(ex) {}
    ~Child() {
        if (pidfd >= 0)
            ::close(pidfd);
    }
    pid_t pid = -1; // also the id of the job's process group
    int pidfd = -1;
    bool exited = false;
    int pipes_open = 2;
    Output out, err;
    asio::steady_timer done;
    asio::posix::stream_descriptor out_pipe, err_pipe;
    void wake() { done.cancel(); }
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

asio::awaitable<void> await_exit(std::shared_ptr<Child> child) {
    co_await detail::wait_exit(child->pid, child->pidfd);
}

// Runs one of the child's watchers on the strand; `ended` runs there too, whatever happens.
template <class Ended>
void watch(const asio::strand<asio::any_io_executor> &strand, asio::awaitable<void> op,
           Ended ended) {
    asio::co_spawn(strand, std::move(op),
                   asio::bind_executor(strand, [ended](std::exception_ptr) { ended(); }));
}

// exec takes C strings: a NUL would cut the value short without a word.
void refuse_nul(const std::string &value, const std::string &field) {
    if (const auto at = value.find('\0'); at != std::string::npos)
        throw Error(errc::invalid_argument,
                    fmt::format("command_task: field '{}': NUL byte at position {} in \"{}\"",
                                field, at, detail::valid_utf8(value.substr(0, at))));
}

std::vector<std::string> full_argv(const CommandOptions &o, const nlohmann::json &args) {
    std::vector<std::string> argv = o.argv;
    if (args.is_array())
        for (const auto &a : args) {
            argv.push_back(a.is_string() ? a.get<std::string>() : a.dump());
            refuse_nul(argv.back(), fmt::format("args[{}]", argv.size() - o.argv.size() - 1));
        }
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

asio::awaitable<nlohmann::json> run_on_strand(asio::strand<asio::any_io_executor> strand,
                                              std::shared_ptr<const CommandOptions> o,
                                              nlohmann::json args) {
    // Cancellation is handled here: it kills the group, then the output is still collected.
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
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
    // Nothing of the service (its listeners, the admin endpoint's, its database sockets) may
    // outlive a cancel in an orphaned grandchild: the child gets 0, 1 and 2 only.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (o->cwd)
        posix_spawn_file_actions_addchdir_np(&actions, o->cwd->c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0); // a group of its own: `sh -c 'a | b'` ends as a whole
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    auto child = std::make_shared<Child>(strand);
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
    child->pidfd = detail::open_pidfd(child->pid);
    child->out_pipe.assign(out.read);
    child->err_pipe.assign(err.read);
    auto pipe_done = [child] {
        --child->pipes_open;
        child->wake();
    };
    watch(strand, read_pipe(child, &child->out_pipe, &child->out, o->output_limit), pipe_done);
    watch(strand, read_pipe(child, &child->err_pipe, &child->err, o->output_limit), pipe_done);
    watch(strand, await_exit(child), [child] {
        child->exited = true;
        child->wake();
    });

    const pid_t group = child->pid;
    const auto grace = std::chrono::duration_cast<steady::duration>(o->kill_grace);
    // While the group runs on after its leader exited, it is looked for this often.
    constexpr auto group_poll = std::chrono::milliseconds(20);
    const auto started = steady::now();
    std::optional<steady::time_point> kill_at, gone_at;
    bool killed = false, cancelled = false, timed_out = false;
    int status = 0;
    for (;;) {
        const auto now = steady::now();
        if (child->exited && !gone_at) {
            if (!detail::process_group_alive(group)) {
                gone_at = now;
                status = detail::reap_child(child->pid); // the group's id is free from here
            } else if (!kill_at) {
                // The leader is done; what it left running in its group is ended with it.
                detail::signal_group(group, SIGTERM);
                kill_at = now + grace;
            }
        }
        if (gone_at && child->pipes_open == 0)
            break;
        auto wake = steady::time_point::max();
        if (o->timeout && !kill_at)
            wake = started + std::chrono::duration_cast<steady::duration>(*o->timeout);
        if (kill_at && !killed)
            wake = std::min(wake, *kill_at);
        if (child->exited && !gone_at)
            wake = std::min(wake, now + group_poll);
        if (gone_at) {
            // Only a process that left the group can still hold the pipes: a second, then
            // the output ends.
            if (now >= *gone_at + std::chrono::seconds(1)) {
                child->out_pipe.close();
                child->err_pipe.close();
            }
            wake = std::min(wake, *gone_at + std::chrono::seconds(1));
        }
        child->done.expires_at(wake);
        co_await child->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        const auto cs = co_await asio::this_coro::cancellation_state;
        const bool cancel_now = cs.cancelled() != asio::cancellation_type::none;
        const bool timeout_now = o->timeout && steady::now() - started >= *o->timeout;
        if (!gone_at && !cancelled && !timed_out && (cancel_now || timeout_now)) {
            cancelled = cancel_now;
            timed_out = !cancel_now;
            detail::signal_group(group, SIGTERM);
            if (!kill_at)
                kill_at = steady::now() + grace;
            co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
            co_await asio::this_coro::throw_if_cancelled(false);
        } else if (!gone_at && kill_at && !killed && steady::now() >= *kill_at) {
            detail::signal_group(group, SIGKILL);
            killed = true;
        }
    }
    const std::string described = detail::describe_wait_status(status);
    if (cancelled)
        throw Error(errc::job_cancelled,
                    fmt::format("command '{}': cancelled, {}", o->argv[0], described));
    if (timed_out)
        throw Error(errc::job_failed,
                    fmt::format("command '{}': timed out after {}, {}", o->argv[0],
                                format_duration(*o->timeout), described));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw Error(errc::job_failed, fmt::format("command '{}' {}; stderr: {}", o->argv[0],
                                                  described, last_kib(child->err.bytes)));
    co_return nlohmann::json{{"exit_status", 0},
                             {"stdout", detail::valid_utf8(std::move(child->out.bytes))},
                             {"stderr", detail::valid_utf8(std::move(child->err.bytes))},
                             {"stdout_truncated", child->out.truncated},
                             {"stderr_truncated", child->err.truncated}};
}

asio::awaitable<nlohmann::json> run_command(std::shared_ptr<const CommandOptions> o,
                                            nlohmann::json args) {
    // The job's cancellation reaches the strand's coroutine through co_spawn.
    auto strand = asio::make_strand(co_await asio::this_coro::executor);
    auto op = run_on_strand(strand, std::move(o), std::move(args));
    auto result = co_await asio::co_spawn(strand, std::move(op), asio::use_awaitable);
    co_return result;
}

} // namespace

std::shared_ptr<const TaskFunction> command_task(CommandOptions options) {
    if (options.argv.empty() || options.argv[0].empty())
        throw Error(errc::invalid_argument, "command_task: field 'argv': must name a program");
    for (std::size_t i = 0; i < options.argv.size(); ++i)
        refuse_nul(options.argv[i], fmt::format("argv[{}]", i));
    for (const auto &[name, value] : options.env) {
        if (name.empty() || name.find('=') != std::string::npos)
            throw Error(errc::invalid_argument,
                        fmt::format("command_task: field 'env': name \"{}\" {}",
                                    detail::valid_utf8(name),
                                    name.empty() ? "is empty"
                                                 : "contains '=' (it would set another variable)"));
        refuse_nul(name, "env");
        refuse_nul(value, fmt::format("env[{}]", detail::valid_utf8(name)));
    }
    if (options.cwd)
        refuse_nul(*options.cwd, "cwd");
    auto o = std::make_shared<const CommandOptions>(std::move(options));
    auto fn = std::make_shared<TaskFunction>();
    fn->is_coroutine = true;
    fn->arity = 0;
    fn->coroutine = [o](JobContext &, const nlohmann::json &args) { return run_command(o, args); };
    return fn;
}

} // namespace asched
