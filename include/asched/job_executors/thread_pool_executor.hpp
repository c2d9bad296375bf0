// ThreadPoolExecutor: blocking callables on a pool of threads.
#pragma once

#include <asched/job_executor.hpp>

#include <cstddef>
#include <memory>

namespace asched {

/// Runs blocking tasks on its own threads. A cancelled job's stop token is requested; the
/// thread cannot be interrupted, so the job ends when the callable returns. The scheduler's
/// default "threadpool" executor (AsyncSchedulerOptions::thread_pool_size threads).
/// Destruction joins the threads: every job must have ended by then.
class ThreadPoolExecutor final : public JobExecutor {
  public:
    explicit ThreadPoolExecutor(std::size_t threads = 8);
    ~ThreadPoolExecutor() override;

    void check(const std::string &task_id, const TaskFunction &function) const override;
    void execute(JobRun run, JobCompletion done) override;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace asched
