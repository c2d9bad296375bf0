// Scheduler: the blocking facade over AsyncScheduler, for code without an event loop.
#pragma once

#include <asched/async_scheduler.hpp>

#include <memory>

namespace asched {

/// The same operations as AsyncScheduler as plain blocking functions. It runs an
/// AsyncScheduler on its own io_context thread; callbacks and coroutine tasks run there,
/// blocking tasks on the thread pool. Destroying it stops the scheduler gracefully and joins
/// the thread. Thread safety: every member may be called from any thread (but not from a
/// callback or task of this scheduler, which would wait on itself). Exceptions: as the
/// AsyncScheduler member of the same name.
class Scheduler {
  public:
    explicit Scheduler(AsyncSchedulerOptions options = {});
    ~Scheduler();
    Scheduler(const Scheduler &) = delete;
    Scheduler &operator=(const Scheduler &) = delete;

    /// The scheduler underneath, for co_spawn on its executor.
    AsyncScheduler &async() noexcept;
    RunState state() const noexcept;

    template <class F> Task add_task(std::string_view id, F f, const TaskOptions &options = {}) {
        return add_task_function(id, make_task_function(std::move(f)), options);
    }
    Task add_task_function(std::string_view id, std::shared_ptr<const TaskFunction> function,
                           const TaskOptions &options = {});
    Task configure_task(std::string_view id, const TaskOptions &options);
    std::vector<Task> get_tasks();

    std::string add_schedule(std::string_view task_id, TriggerPtr trigger,
                             const ScheduleOptions &options = {});
    template <std::derived_from<Trigger> T>
    std::string add_schedule(std::string_view task_id, const T &trigger,
                             const ScheduleOptions &options = {}) {
        return add_schedule(task_id, TriggerPtr(std::make_shared<const T>(trigger)), options);
    }
    Schedule get_schedule(std::string_view id);
    std::optional<Schedule> try_get_schedule(std::string_view id);
    std::vector<Schedule> get_schedules();
    void pause_schedule(std::string_view id);
    void unpause_schedule(std::string_view id, ResumeFrom resume_from = {});
    void remove_schedule(std::string_view id);
    std::string run_schedule_now(std::string_view id);

    std::string add_job(std::string_view task_id, const JobOptions &options = {});
    nlohmann::json run_job(std::string_view task_id, const JobOptions &options = {});
    /// add_job("add", 1, 2) and run_job("add", 1, 2): positional arguments, default options.
    template <detail::positional_arg<JobOptions> A, class... As>
    std::string add_job(std::string_view task_id, A &&a, As &&...as) {
        JobOptions options;
        options.args = detail::args_array(std::forward<A>(a), std::forward<As>(as)...);
        return add_job(task_id, options);
    }
    template <detail::positional_arg<JobOptions> A, class... As>
    nlohmann::json run_job(std::string_view task_id, A &&a, As &&...as) {
        JobOptions options;
        options.args = detail::args_array(std::forward<A>(a), std::forward<As>(as)...);
        return run_job(task_id, options);
    }
    std::optional<JobResult> get_job_result(std::string_view job_id, bool wait = true);
    std::vector<Job> get_jobs();
    JobCancellation cancel_job(std::string_view job_id);
    std::vector<WorkerInfo> get_workers();
    JobHistoryPage get_job_results(const JobHistoryFilter &filter = {});
    StoreCheck check_store();
    std::string metrics();

    /// Callbacks run on the scheduler's thread.
    Subscription subscribe(EventCallback callback, EventMask mask = all_events,
                           bool one_shot = false);
    Event next_event(EventMask mask = all_events);

    void start_in_background();
    void run_until_stopped();
    void stop();
    void wait_until_stopped();
    void cleanup();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace asched
