// ProcessExecutor: each job in a child process of a fork server, for isolation.
#pragma once

#include <asched/job_executor.hpp>
#include <asched/time.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>

namespace asched {

/// The tasks a ProcessExecutor can run, by task id. Register the same callable with the
/// scheduler under the same id (with TaskOptions::job_executor naming the executor).
class ProcessTasks {
  public:
    template <class F> ProcessTasks &add(std::string id, F f) {
        functions_[std::move(id)] = make_task_function(std::move(f));
        return *this;
    }
    ProcessTasks &add_function(std::string id, std::shared_ptr<const TaskFunction> f) {
        functions_[std::move(id)] = std::move(f);
        return *this;
    }
    const std::map<std::string, std::shared_ptr<const TaskFunction>> &functions() const noexcept {
        return functions_;
    }

  private:
    std::map<std::string, std::shared_ptr<const TaskFunction>> functions_;
};

struct ProcessExecutorOptions {
    /// RLIMIT_AS of each child: an allocation past it fails (std::bad_alloc), not the host.
    std::optional<std::size_t> memory_limit_bytes;
    /// A cancelled job's child gets SIGTERM, then SIGKILL after this long.
    duration kill_grace = std::chrono::seconds(5);
};

/// Runs each job in a fresh child process, so that a segfault, an abort, an exit() or a
/// runaway allocation ends that job (outcome error, naming the signal or exit status) and
/// leaves the scheduler unharmed.
///
/// Design: launch() forks a small single-threaded server while the program has no thread but
/// its main one, so the server is a clean copy of the program with `tasks` in it. For each
/// job the server forks once more (safe: the server has one thread) and the child runs the
/// task; arguments and results cross as JSON over a socket pair and a pipe. The server
/// dies with its parent (PR_SET_PDEATHSIG) and kills its children when the socket closes.
/// Coroutine tasks run on a private io_context in the child. The scheduler side of the
/// socket has a thread of its own (started after the fork), so one executor can serve
/// schedulers on any executors and outlive them.
///
/// Cancellation: cancelling the job sends SIGTERM to its child, then SIGKILL after
/// kill_grace; the job ends cancelled. Thread safety: execute() may be called from any
/// scheduler's strand; one executor may serve several schedulers.
class ProcessExecutor final : public JobExecutor {
  public:
    /// Forks the server. Call it at the top of main(), before any thread exists: throws
    /// Error(invalid_argument) naming the thread count otherwise (fork() without exec in a
    /// threaded program can deadlock the child).
    static std::shared_ptr<ProcessExecutor> launch(ProcessTasks tasks,
                                                   ProcessExecutorOptions options = {});
    ~ProcessExecutor() override;

    void check(const std::string &task_id, const TaskFunction &function) const override;
    void execute(JobRun run, JobCompletion done) override;
    /// The server's process id.
    pid_t server_pid() const noexcept;

    struct Impl;
    explicit ProcessExecutor(std::shared_ptr<Impl> impl);

  private:
    std::shared_ptr<Impl> impl_;
};

} // namespace asched
