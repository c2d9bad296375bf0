// InlineExecutor: coroutine tasks on the scheduler's own executor.
#pragma once

#include <asched/job_executor.hpp>

namespace asched {

/// Runs coroutine tasks (those returning asio::awaitable<T>) on JobRun::executor, with the
/// job's cancellation slot bound: a cancelled job sees terminal cancellation at its next
/// suspension point. The scheduler's default "async" executor.
class InlineExecutor final : public JobExecutor {
  public:
    void check(const std::string &task_id, const TaskFunction &function) const override;
    void execute(JobRun run, JobCompletion done) override;
};

} // namespace asched
