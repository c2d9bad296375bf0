// ThreadPoolExecutor: a post per job; the callable's exception is its result.
#include "current_job.hpp"

#include <asched/error.hpp>
#include <asched/job_executors/thread_pool_executor.hpp>

#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <fmt/format.h>

#include <algorithm>

namespace asched {
namespace {
thread_local const JobContext *running_here = nullptr;
} // namespace

const JobContext *detail::current_blocking_job() noexcept {
    return running_here;
}

struct ThreadPoolExecutor::Impl {
    explicit Impl(std::size_t n) : pool(n) {}
    asio::thread_pool pool;
};

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t threads)
    : impl_(std::make_unique<Impl>(std::max<std::size_t>(1, threads))) {}

ThreadPoolExecutor::~ThreadPoolExecutor() {
    impl_->pool.join();
}

void ThreadPoolExecutor::check(const std::string &task_id, const TaskFunction &function) const {
    if (function.is_coroutine)
        throw Error(errc::invalid_argument,
                    fmt::format("task '{}': field 'job_executor': the thread pool runs blocking "
                                "callables only; this one is a coroutine",
                                task_id));
}

void ThreadPoolExecutor::execute(JobRun run, JobCompletion done) {
    asio::post(impl_->pool,
               [f = &run.function, c = &run.context, a = &run.args, done = std::move(done)] {
                   nlohmann::json value;
                   std::exception_ptr error;
                   running_here = c;
                   try {
                       value = f->blocking(*c, *a);
                   } catch (...) {
                       error = std::current_exception();
                   }
                   running_here = nullptr;
                   done(std::move(error), std::move(value));
               });
}

} // namespace asched
