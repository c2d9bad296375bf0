// ProcessExecutor: a single-threaded fork server (forked before any thread exists) forks one
// child per job, in a process group of its own that is signalled and awaited as a whole; frames
// of JSON cross a socket pair: 4 bytes of length, then the text.
#include "child_process.hpp"

#include <asched/error.hpp>
#include <asched/job_executors/process_executor.hpp>

#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <poll.h>
#include <set>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace asched {
namespace {

using nlohmann::json;
using steady = std::chrono::steady_clock;

std::string frame(const json &j) {
    std::string body = j.dump(-1, ' ', false, json::error_handler_t::replace);
    const auto n = static_cast<std::uint32_t>(body.size());
    std::string out(4, '\0');
    std::memcpy(out.data(), &n, 4);
    return out + body;
}

// ---- the server (one thread, blocking calls) -------------------------------------------------

bool read_full(int fd, char *p, std::size_t n) {
    while (n > 0) {
        const ssize_t r = ::read(fd, p, n);
        if (r == 0)
            return false;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

// Writes all of `s`; `socket`: send() without SIGPIPE, else write() (a pipe).
bool write_all(int fd, const std::string &s, bool socket) {
    std::size_t off = 0;
    while (off < s.size()) {
        const ssize_t w = socket ? ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL)
                                 : ::write(fd, s.data() + off, s.size() - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        off += static_cast<std::size_t>(w);
    }
    return true;
}

bool write_full(int sock, const std::string &s) {
    return write_all(sock, s, true);
}

// The host's handlers (a crash reporter, a test framework's) must not run in our processes:
// a crash has to end the process with its signal, for the status to name it.
void default_signals() {
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP)
            ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    stack_t disable{};
    disable.ss_flags = SS_DISABLE;
    ::sigaltstack(&disable, nullptr);
}

struct ChildRecord {
    std::uint64_t tag = 0;
    pid_t pid = -1;
    int out = -1; // the child's result pipe
    int pidfd = -1;
    std::string buffer;
    bool exited = false; // the child is a zombie, not reaped while its group runs on
    std::optional<steady::time_point> kill_at;
    bool killed = false;
};

// In the job's child: run the task, write {"value"} or {"error"} to `out`, exit.
[[noreturn]] void run_child(const ProcessTasks &tasks, const json &request, int out,
                            const ProcessExecutorOptions &options) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::setpgid(0, 0); // the server does it too: whichever runs first, the group exists
    default_signals();
    if (options.memory_limit_bytes) {
        rlimit lim{*options.memory_limit_bytes, *options.memory_limit_bytes};
        ::setrlimit(RLIMIT_AS, &lim);
    }
    json reply;
    try {
        const std::string task = request.at("task").get<std::string>();
        auto it = tasks.functions().find(task);
        if (it == tasks.functions().end())
            throw Error(errc::task_lookup,
                        fmt::format("task '{}' is not in the process executor's tasks", task));
        JobContext context;
        context.job_id = request.at("job_id").get<std::string>();
        context.task_id = task;
        if (request.at("schedule_id").is_string())
            context.schedule_id = request["schedule_id"].get<std::string>();
        if (request.at("fire_time").is_string())
            context.scheduled_fire_time = parse_time(request["fire_time"].get<std::string>());
        context.metadata = request.at("metadata");
        const json &args = request.at("args");
        json value;
        if (it->second->is_coroutine) {
            asio::io_context ioc;
            std::exception_ptr error;
            asio::co_spawn(ioc, it->second->coroutine(context, args),
                           [&](std::exception_ptr e, json v) {
                               error = e;
                               value = std::move(v);
                           });
            ioc.run();
            if (error)
                std::rethrow_exception(error);
        } else {
            value = it->second->blocking(context, args);
        }
        reply = json{{"value", std::move(value)}};
    } catch (const std::exception &e) {
        reply =
            json{{"error", {{"type", detail::demangle(typeid(e).name())}, {"message", e.what()}}}};
    } catch (...) {
        reply = json{
            {"error", {{"type", "unknown"}, {"message", "a non-standard exception was thrown"}}}};
    }
    std::string text;
    try {
        text = reply.dump(-1, ' ', false, json::error_handler_t::replace);
    } catch (const std::exception &e) {
        text = json{{"error",
                     {{"type", "asched::Error"},
                      {"message", std::string("result not JSON: ") + e.what()}}}}
                   .dump();
    }
    const bool ok = write_all(out, text, false);
    ::_exit(ok ? 0 : 120);
}

json outcome(const ChildRecord &c, int status) {
    json reply{{"tag", c.tag}, {"status", detail::describe_wait_status(status)}};
    json parsed;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !c.buffer.empty())
        parsed = json::parse(c.buffer, nullptr, false);
    if (parsed.is_object() && (parsed.contains("value") || parsed.contains("error")))
        reply["result"] = std::move(parsed);
    return reply;
}

void drain_pipe(ChildRecord &c) {
    char buf[16 * 1024];
    for (;;) {
        const ssize_t r = ::read(c.out, buf, sizeof buf);
        if (r > 0) {
            c.buffer.append(buf, static_cast<std::size_t>(r));
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            ::close(c.out);
            c.out = -1;
        }
        return; // EAGAIN: more later
    }
}

// Only 0, 1, 2 and `keep` stay open: the host's listeners and database sockets must not live
// on in a job's orphaned grandchild.
void close_other_descriptors(int keep) {
    if (keep > 3)
        ::close_range(3, static_cast<unsigned>(keep) - 1, 0);
    ::close_range(static_cast<unsigned>(keep) + 1, ~0U, 0);
}

[[noreturn]] void serve(int sock, const ProcessTasks &tasks,
                        const ProcessExecutorOptions &options) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    default_signals();
    ::signal(SIGPIPE, SIG_IGN);
    close_other_descriptors(sock);
    std::map<std::uint64_t, ChildRecord> children;
    auto kill_all_and_exit = [&]() {
        for (auto &[tag, c] : children)
            detail::signal_group(c.pid, SIGKILL);
        for (auto &[tag, c] : children)
            ::waitpid(c.pid, nullptr, 0);
        ::_exit(0);
    };
    // While a group runs on after its leader exited, it is looked for this often.
    constexpr int group_poll_ms = 20;
    for (;;) {
        std::vector<pollfd> fds{{sock, POLLIN, 0}};
        std::vector<std::uint64_t> owner{0};
        int timeout = -1;
        const auto now = steady::now();
        for (auto &[tag, c] : children) {
            if (c.out >= 0) {
                fds.push_back({c.out, POLLIN, 0});
                owner.push_back(tag);
            }
            if (!c.exited) {
                fds.push_back({c.pidfd, POLLIN, 0});
                owner.push_back(tag);
            } else {
                timeout = timeout < 0 ? group_poll_ms : std::min(timeout, group_poll_ms);
            }
            if (c.kill_at && !c.killed) {
                const auto ms =
                    std::chrono::duration_cast<std::chrono::milliseconds>(*c.kill_at - now).count();
                const int t = static_cast<int>(std::max<long long>(0, ms));
                timeout = timeout < 0 ? t : std::min(timeout, t);
            }
        }
        const int n = ::poll(fds.data(), fds.size(), timeout);
        if (n < 0 && errno != EINTR)
            kill_all_and_exit();
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            std::uint32_t len = 0;
            std::string body;
            if (!read_full(sock, reinterpret_cast<char *>(&len), 4))
                kill_all_and_exit(); // the scheduler's process closed its end
            body.resize(len);
            if (!read_full(sock, body.data(), len))
                kill_all_and_exit();
            json request = json::parse(body, nullptr, false);
            if (request.contains("cancel")) {
                const auto tag = request["cancel"].get<std::uint64_t>();
                if (auto it = children.find(tag); it != children.end() && !it->second.kill_at) {
                    detail::signal_group(it->second.pid, SIGTERM);
                    it->second.kill_at =
                        steady::now() +
                        std::chrono::duration_cast<steady::duration>(options.kill_grace);
                }
            } else if (request.contains("tag")) {
                ChildRecord c;
                c.tag = request["tag"].get<std::uint64_t>();
                int p[2];
                if (::pipe2(p, O_CLOEXEC) != 0) {
                    write_full(sock, frame(json{{"tag", c.tag},
                                                {"status", std::string("pipe failed: ") +
                                                               std::strerror(errno)}}));
                    continue;
                }
                const pid_t pid = ::fork();
                if (pid == 0) {
                    close_other_descriptors(p[1]);
                    run_child(tasks, request, p[1], options);
                }
                ::close(p[1]);
                if (pid > 0)
                    ::setpgid(pid, pid);
                if (pid < 0) {
                    ::close(p[0]);
                    write_full(sock, frame(json{{"tag", c.tag},
                                                {"status", std::string("fork failed: ") +
                                                               std::strerror(errno)}}));
                    continue;
                }
                c.pid = pid;
                c.out = p[0];
                ::fcntl(c.out, F_SETFL, ::fcntl(c.out, F_GETFL) | O_NONBLOCK);
                c.pidfd = detail::open_pidfd(pid);
                children.emplace(c.tag, std::move(c));
            }
        }
        for (std::size_t i = 1; i < fds.size(); ++i) {
            if (!fds[i].revents)
                continue;
            auto it = children.find(owner[i]);
            if (it == children.end())
                continue;
            ChildRecord &c = it->second;
            if (fds[i].fd == c.out) {
                drain_pipe(c);
            } else if (fds[i].fd == c.pidfd) {
                // Seen, not reaped: while the zombie stands, its pid (the group's id) cannot be
                // reused, so the group can still be signalled safely.
                siginfo_t info{};
                if (::waitid(P_PID, static_cast<id_t>(c.pid), &info, WEXITED | WNOHANG | WNOWAIT) ==
                        0 &&
                    info.si_pid == c.pid)
                    c.exited = true;
            }
        }
        const auto later = steady::now();
        for (auto it = children.begin(); it != children.end();) {
            ChildRecord &c = it->second;
            if (c.exited && !detail::process_group_alive(c.pid)) {
                const int status = detail::reap_child(c.pid);
                while (c.out >= 0) { // the group is gone: what the child wrote is all there
                    const auto before = c.buffer.size();
                    drain_pipe(c);
                    if (c.out >= 0 && c.buffer.size() == before) {
                        ::close(c.out); // a process that left the group holds it: stop here
                        c.out = -1;
                    }
                }
                ::close(c.pidfd);
                const bool sent = write_full(sock, frame(outcome(c, status)));
                it = children.erase(it);
                if (!sent)
                    kill_all_and_exit();
                continue;
            }
            if (c.exited && !c.kill_at) {
                // The job's child is done; what it left running in its group ends with it.
                detail::signal_group(c.pid, SIGTERM);
                c.kill_at =
                    later + std::chrono::duration_cast<steady::duration>(options.kill_grace);
            } else if (c.kill_at && !c.killed && later >= *c.kill_at) {
                detail::signal_group(c.pid, SIGKILL);
                c.killed = true;
            }
            ++it;
        }
    }
}

int thread_count() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Threads:", 0) == 0)
            return std::atoi(line.c_str() + 8);
    return -1;
}

} // namespace

// ---- the scheduler's side -------------------------------------------------------------------

// The socket lives on the executor's own io_context and thread, so it outlives whichever
// schedulers use it; every handler there runs on that one thread.
struct ProcessExecutor::Impl {
    int fd = -1;
    pid_t server = -1;
    std::set<std::string> task_ids;
    ProcessExecutorOptions options;

    asio::io_context ioc;
    asio::local::stream_protocol::socket socket{ioc};
    std::thread thread;
    std::deque<std::string> outbox; // on `thread` only
    bool writing = false;           // on `thread` only

    std::mutex mutex; // the two below
    std::map<std::uint64_t, JobCompletion> pending;
    std::uint64_t next_tag = 1;
    std::optional<std::string> dead;

    void send(std::string message) {
        asio::post(ioc, [this, m = std::move(message)]() mutable {
            outbox.push_back(std::move(m));
            if (!writing)
                write_next();
        });
    }
    void write_next() {
        if (outbox.empty()) {
            writing = false;
            return;
        }
        writing = true;
        asio::async_write(socket, asio::buffer(outbox.front()),
                          [this](std::error_code ec, std::size_t) {
                              outbox.pop_front();
                              if (ec) {
                                  outbox.clear();
                                  writing = false;
                                  return; // the reader sees the dead server and fails the jobs
                              }
                              write_next();
                          });
    }
    void fail_all(const std::string &why) {
        std::map<std::uint64_t, JobCompletion> failed;
        {
            std::lock_guard lock(mutex);
            if (!dead)
                dead = why;
            failed.swap(pending);
        }
        for (auto &[tag, done] : failed)
            done(std::make_exception_ptr(JobError("asched::ProcessExecutor", why)), nullptr);
    }
};

namespace {

asio::awaitable<void> read_replies(ProcessExecutor::Impl *self) {
    auto &socket = self->socket;
    for (;;) {
        std::uint32_t len = 0;
        co_await asio::async_read(socket, asio::buffer(&len, 4), asio::use_awaitable);
        std::string body(len, '\0');
        co_await asio::async_read(socket, asio::buffer(body), asio::use_awaitable);
        json reply = json::parse(body, nullptr, false);
        if (!reply.is_object() || !reply.contains("tag"))
            continue;
        JobCompletion done;
        {
            std::lock_guard lock(self->mutex);
            auto it = self->pending.find(reply["tag"].get<std::uint64_t>());
            if (it == self->pending.end())
                continue;
            done = std::move(it->second);
            self->pending.erase(it);
        }
        const std::string status = reply.value("status", std::string("ended"));
        if (reply.contains("result") && reply["result"].contains("value")) {
            done(nullptr, std::move(reply["result"]["value"]));
        } else if (reply.contains("result")) {
            const auto &e = reply["result"]["error"];
            done(std::make_exception_ptr(JobError(e.value("type", std::string("unknown")),
                                                  e.value("message", std::string()))),
                 nullptr);
        } else {
            done(
                std::make_exception_ptr(JobError(
                    "asched::ChildProcessError",
                    fmt::format("the job's child process {} before it returned a result", status))),
                nullptr);
        }
    }
}

} // namespace

std::shared_ptr<ProcessExecutor> ProcessExecutor::launch(ProcessTasks tasks,
                                                         ProcessExecutorOptions options) {
    const int threads = thread_count();
    if (threads != 1)
        throw Error(
            errc::invalid_argument,
            fmt::format(
                "ProcessExecutor::launch: call it before any thread starts (this process has "
                "{} threads; fork() without exec would copy their locks)",
                threads));
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        throw Error(
            errc::invalid_argument,
            fmt::format("ProcessExecutor::launch: socketpair failed: {}", std::strerror(errno)));
    const pid_t pid = ::fork();
    if (pid < 0)
        throw Error(errc::invalid_argument,
                    fmt::format("ProcessExecutor::launch: fork failed: {}", std::strerror(errno)));
    if (pid == 0) {
        ::close(sv[0]);
        serve(sv[1], tasks, options);
    }
    ::close(sv[1]);
    auto impl = std::make_shared<Impl>();
    impl->fd = sv[0];
    impl->server = pid;
    impl->options = options;
    for (const auto &[id, fn] : tasks.functions())
        impl->task_ids.insert(id);
    impl->socket.assign(asio::local::stream_protocol(), sv[0]);
    Impl *raw = impl.get();
    asio::co_spawn(impl->ioc, read_replies(raw), [raw](std::exception_ptr e) {
        std::string why = "the process executor's server exited";
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception &ex) {
                why += fmt::format(" ({})", ex.what());
            }
        }
        raw->fail_all(why);
    });
    impl->thread = std::thread([raw] { raw->ioc.run(); });
    return std::make_shared<ProcessExecutor>(std::move(impl));
}

ProcessExecutor::ProcessExecutor(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

ProcessExecutor::~ProcessExecutor() {
    // The server sees EOF, kills what still runs and exits; the reader then ends, and the
    // thread with it once the last write is done.
    ::shutdown(impl_->fd, SHUT_RDWR);
    impl_->thread.join();
    impl_->fail_all("the process executor was destroyed");
    for (int i = 0; i < 500; ++i) { // reap the server, bounded
        if (::waitpid(impl_->server, nullptr, WNOHANG) != 0)
            return;
        ::usleep(10'000);
    }
    ::kill(impl_->server, SIGKILL);
    ::waitpid(impl_->server, nullptr, 0);
}

pid_t ProcessExecutor::server_pid() const noexcept {
    return impl_->server;
}

void ProcessExecutor::check(const std::string &task_id, const TaskFunction &) const {
    if (!impl_->task_ids.count(task_id))
        throw Error(
            errc::invalid_argument,
            fmt::format(
                "task '{}': field 'job_executor': the process executor was launched without "
                "this task (add it to the ProcessTasks given to launch())",
                task_id));
}

void ProcessExecutor::execute(JobRun run, JobCompletion done) {
    std::uint64_t tag = 0;
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->dead) {
            done(std::make_exception_ptr(JobError("asched::ProcessExecutor", *impl_->dead)),
                 nullptr);
            return;
        }
        tag = impl_->next_tag++;
        impl_->pending.emplace(tag, std::move(done));
    }
    const auto &c = run.context;
    json request{
        {"tag", tag},
        {"task", run.task_id},
        {"args", run.args},
        {"job_id", c.job_id},
        {"schedule_id", c.schedule_id ? json(*c.schedule_id) : json()},
        {"fire_time", c.scheduled_fire_time ? json(format_time(*c.scheduled_fire_time)) : json()},
        {"metadata", c.metadata}};
    impl_->send(frame(request));
    if (run.cancellation.is_connected()) {
        std::weak_ptr<Impl> weak = impl_;
        run.cancellation.assign([weak, tag](asio::cancellation_type) {
            if (auto self = weak.lock())
                self->send(frame(json{{"cancel", tag}}));
        });
    }
}

} // namespace asched
