// Scheduler: runs an AsyncScheduler on a private io_context thread and blocks on futures.
#include "../executors/current_job.hpp"
#include "scheduler_state.hpp"

#include <asched/error.hpp>
#include <asched/scheduler.hpp>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

namespace asched {

namespace {

// One blocking call's result, handed from the scheduler's thread to the caller's under a
// mutex. Not asio::use_future: it completes the promise on asio's system thread and leaves
// copies of a thrown exception_ptr with co_spawn and that thread, so the last reference to
// the exception could drop there while the caller still reads it in its catch block (TSan
// reports it: libstdc++'s reference count is not instrumented). Here the scheduler's thread
// keeps no reference once it has handed the outcome over.
template <class T> struct Handoff {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    std::optional<std::conditional_t<std::is_void_v<T>, char, T>> value;
    std::exception_ptr error;
};

template <class T>
asio::awaitable<void> settle(asio::awaitable<T> op, std::shared_ptr<Handoff<T>> handoff) {
    std::optional<std::conditional_t<std::is_void_v<T>, char, T>> value;
    std::exception_ptr error;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(op);
            value.emplace();
        } else {
            auto v = co_await std::move(op);
            value.emplace(std::move(v));
        }
    } catch (...) {
        error = std::current_exception();
    }
    {
        std::lock_guard lock(handoff->mutex);
        handoff->value = std::move(value);
        handoff->error = std::move(error);
        handoff->done = true;
    }
    handoff->cv.notify_one();
}

} // namespace

struct Scheduler::Impl {
    asio::io_context context;
    asio::executor_work_guard<asio::io_context::executor_type> work{context.get_executor()};
    std::thread thread;
    std::optional<AsyncScheduler> scheduler;

    template <class T> T call(asio::awaitable<T> op) {
        if (context.get_executor().running_in_this_thread())
            throw Error(
                errc::not_running,
                "Scheduler: a blocking call from the scheduler's own thread would deadlock");
        auto handoff = std::make_shared<Handoff<T>>();
        // settle() catches everything the call throws: the handler has nothing to report.
        asio::co_spawn(context, settle(std::move(op), handoff), [](std::exception_ptr) {});
        std::exception_ptr error;
        {
            std::unique_lock lock(handoff->mutex);
            handoff->cv.wait(lock, [&] { return handoff->done; });
            error = std::move(handoff->error);
        }
        if (error)
            std::rethrow_exception(error);
        if constexpr (!std::is_void_v<T>)
            return std::move(*handoff->value);
    }
};

namespace {

// The job of `s` this thread runs, if any: waiting for `s` to stop from it can never end.
const JobContext *own_job(const AsyncScheduler &s) {
    const JobContext *job = detail::current_blocking_job();
    if (job && job->scheduler &&
        detail::SchedulerAccess::state_of(*job->scheduler) == detail::SchedulerAccess::state_of(s))
        return job;
    return nullptr;
}

} // namespace

Scheduler::Scheduler(AsyncSchedulerOptions options) : impl_(std::make_unique<Impl>()) {
    impl_->scheduler.emplace(impl_->context.get_executor(), options);
    impl_->thread = std::thread([this] { impl_->context.run(); });
}

Scheduler::~Scheduler() {
    if (const JobContext *job = own_job(*impl_->scheduler)) {
        // Stopping waits for this very job: the destructor would never return.
        std::fprintf(stderr,
                     "asched: ~Scheduler() called from one of this scheduler's own jobs (job '%s' "
                     "of task '%s'): it would wait for that job for ever\n",
                     job->job_id.c_str(), job->task_id.c_str());
        std::abort();
    }
    try {
        if (impl_->scheduler->state() != RunState::stopped) {
            impl_->call(impl_->scheduler->stop());
            impl_->call(impl_->scheduler->wait_until_stopped());
        }
        impl_->call(impl_->scheduler->close());
    } catch (const std::exception &) {
        // Keep going: the thread must be joined whatever the store said.
    }
    // Let run() return by running out of work rather than stop() it: a store thread handing
    // its last completion over holds work on the io_context until it no longer touches it
    // (stopping it then freed the io_context under the SQLite store's thread: a crash at
    // exit, once in a few runs of the asched tool). Bounded, for work that never ends.
    impl_->work.reset();
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!impl_->context.stopped() && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    impl_->context.stop();
    impl_->thread.join();
}

AsyncScheduler &Scheduler::async() noexcept {
    return *impl_->scheduler;
}
RunState Scheduler::state() const noexcept {
    return impl_->scheduler->state();
}

Task Scheduler::add_task_function(std::string_view id, std::shared_ptr<const TaskFunction> function,
                                  const TaskOptions &options) {
    return impl_->call(impl_->scheduler->add_task_function(id, std::move(function), options));
}
Task Scheduler::configure_task(std::string_view id, const TaskOptions &options) {
    return impl_->call(impl_->scheduler->configure_task(id, options));
}
std::vector<Task> Scheduler::get_tasks() {
    return impl_->call(impl_->scheduler->get_tasks());
}

std::string Scheduler::add_schedule(std::string_view task_id, TriggerPtr trigger,
                                    const ScheduleOptions &options) {
    return impl_->call(impl_->scheduler->add_schedule(task_id, std::move(trigger), options));
}
Schedule Scheduler::get_schedule(std::string_view id) {
    return impl_->call(impl_->scheduler->get_schedule(id));
}
std::optional<Schedule> Scheduler::try_get_schedule(std::string_view id) {
    return impl_->call(impl_->scheduler->try_get_schedule(id));
}
std::vector<Schedule> Scheduler::get_schedules() {
    return impl_->call(impl_->scheduler->get_schedules());
}
void Scheduler::pause_schedule(std::string_view id) {
    impl_->call(impl_->scheduler->pause_schedule(id));
}
void Scheduler::unpause_schedule(std::string_view id, ResumeFrom resume_from) {
    impl_->call(impl_->scheduler->unpause_schedule(id, resume_from));
}
void Scheduler::remove_schedule(std::string_view id) {
    impl_->call(impl_->scheduler->remove_schedule(id));
}

std::string Scheduler::run_schedule_now(std::string_view id) {
    return impl_->call(impl_->scheduler->run_schedule_now(id));
}

std::string Scheduler::add_job(std::string_view task_id, const JobOptions &options) {
    return impl_->call(impl_->scheduler->add_job(task_id, options));
}
nlohmann::json Scheduler::run_job(std::string_view task_id, const JobOptions &options) {
    return impl_->call(impl_->scheduler->run_job(task_id, options));
}
std::optional<JobResult> Scheduler::get_job_result(std::string_view job_id, bool wait) {
    return impl_->call(impl_->scheduler->get_job_result(job_id, wait));
}
std::vector<Job> Scheduler::get_jobs() {
    return impl_->call(impl_->scheduler->get_jobs());
}
JobCancellation Scheduler::cancel_job(std::string_view job_id) {
    return impl_->call(impl_->scheduler->cancel_job(job_id));
}
JobHistoryPage Scheduler::get_job_results(const JobHistoryFilter &filter) {
    return impl_->call(impl_->scheduler->get_job_results(filter));
}
std::string Scheduler::metrics() {
    return impl_->call(impl_->scheduler->metrics());
}
StoreCheck Scheduler::check_store() {
    return impl_->call(impl_->scheduler->check_store());
}
std::vector<WorkerInfo> Scheduler::get_workers() {
    return impl_->call(impl_->scheduler->get_workers());
}

Subscription Scheduler::subscribe(EventCallback callback, EventMask mask, bool one_shot) {
    return impl_->scheduler->subscribe(std::move(callback), mask, one_shot);
}
Event Scheduler::next_event(EventMask mask) {
    return impl_->call(impl_->scheduler->next_event(mask));
}

void Scheduler::start_in_background() {
    impl_->call(impl_->scheduler->start_in_background());
}
void Scheduler::run_until_stopped() {
    impl_->call(impl_->scheduler->run_until_stopped());
}
void Scheduler::stop() {
    impl_->call(impl_->scheduler->stop());
}
void Scheduler::wait_until_stopped() {
    if (const JobContext *job = own_job(*impl_->scheduler))
        throw Error(errc::not_running,
                    fmt::format("Scheduler::wait_until_stopped() called from one of this "
                                "scheduler's own jobs (job '{}' of task '{}'): stopping waits for "
                                "that job, so this would never return",
                                job->job_id, job->task_id));
    impl_->call(impl_->scheduler->wait_until_stopped());
}
void Scheduler::cleanup() {
    impl_->call(impl_->scheduler->cleanup());
}

} // namespace asched
