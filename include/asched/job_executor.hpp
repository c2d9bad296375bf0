// The JobExecutor port: where and how one job's callable runs.
#pragma once

#include <asched/job_context.hpp>
#include <asched/logger.hpp>
#include <asched/task_function.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/cancellation_signal.hpp>

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>

namespace asched {

/// One job handed to an executor. The references stay valid until `done` has been called.
struct JobRun {
    const std::string &task_id;
    const TaskFunction &function;
    JobContext &context;
    const nlohmann::json &args;
    /// The scheduler's own executor (never its internal strand): inline work runs here.
    asio::any_io_executor executor;
    /// Emits asio::cancellation_type::terminal when the job is cancelled (stop after the
    /// grace period). `context.stop_token` is requested at the same moment.
    asio::cancellation_slot cancellation;
};

/// An exception raised where the scheduler cannot rethrow it as itself (in a child process):
/// the job's JobResult reports type() as its exception type.
class JobError : public std::runtime_error {
  public:
    JobError(std::string type, const std::string &message)
        : std::runtime_error(message), type_(std::move(type)) {}
    const std::string &type() const noexcept { return type_; }

  private:
    std::string type_;
};

/// How a job ended inside an executor: a JSON value, or the exception it threw (a task's
/// exception, or an executor's own Error naming what went wrong, such as a child's signal).
using JobCompletion = std::function<void(std::exception_ptr error, nlohmann::json value)>;

/// Runs jobs. AsyncSchedulerOptions::job_executors maps names to executors and
/// TaskOptions::job_executor picks one per task ("async" for coroutine tasks and
/// "threadpool" for blocking ones unless told otherwise).
///
/// Thread safety: execute() is called on the scheduler's strand and must not block; `done`
/// may be called from any thread, exactly once. An executor may be shared by several
/// schedulers: start() and stop() are then called once per scheduler start and stop.
class JobExecutor {
  public:
    virtual ~JobExecutor() = default;

    /// Called when a scheduler using this executor starts.
    virtual asio::awaitable<void> start(asio::any_io_executor executor, Logger logger);
    /// Called when that scheduler has stopped (no job of it runs any more).
    virtual asio::awaitable<void> stop();
    /// Throws Error(invalid_argument) naming the task when this executor cannot run
    /// `function` (called at registration).
    virtual void check(const std::string &task_id, const TaskFunction &function) const = 0;
    /// Starts `run`; calls `done` when it has ended. Never throws: a failure to start is
    /// reported through `done`.
    virtual void execute(JobRun run, JobCompletion done) = 0;
};

} // namespace asched
