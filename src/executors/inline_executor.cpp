// InlineExecutor: one co_spawn per job, with the job's cancellation slot bound.
#include <asched/error.hpp>
#include <asched/job_executors/inline_executor.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <fmt/format.h>

namespace asched {

asio::awaitable<void> JobExecutor::start(asio::any_io_executor, Logger) {
    co_return;
}
asio::awaitable<void> JobExecutor::stop() {
    co_return;
}

void InlineExecutor::check(const std::string &task_id, const TaskFunction &function) const {
    if (!function.is_coroutine)
        throw Error(
            errc::invalid_argument,
            fmt::format("task '{}': field 'job_executor': the inline executor runs coroutine "
                        "tasks only; this callable is blocking",
                        task_id));
}

void InlineExecutor::execute(JobRun run, JobCompletion done) {
    try {
        auto task = run.function.coroutine(run.context, run.args);
        asio::co_spawn(run.executor, std::move(task),
                       asio::bind_cancellation_slot(
                           run.cancellation,
                           [done = std::move(done)](std::exception_ptr e, nlohmann::json value) {
                               done(e, std::move(value));
                           }));
    } catch (...) {
        // Building the coroutine can throw (arguments that do not fit the signature).
        done(std::current_exception(), nullptr);
    }
}

} // namespace asched
