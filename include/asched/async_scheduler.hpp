// AsyncScheduler: the scheduler on an Asio executor, with an awaitable API.
#pragma once

#include <asched/clock.hpp>
#include <asched/data_store.hpp>
#include <asched/event_broker.hpp>
#include <asched/events.hpp>
#include <asched/job_executor.hpp>
#include <asched/logger.hpp>
#include <asched/model.hpp>
#include <asched/task_function.hpp>
#include <asched/trigger.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <concepts>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asio {
class io_context;
}

namespace asched {

/// Bounds on what callers may hand the scheduler, checked at the API (add_task, add_schedule,
/// add_job, run_job and the lookups) before the value is copied or stored, with an
/// errc::invalid_argument that names the field and the limit. The same bounds apply to a
/// job's return value: one over them is not stored, and the job ends `error` with
/// exception_type "asched::ResultTooLarge" (or "asched::ResultTooDeep").
struct PayloadLimits {
    /// Nesting depth of args, metadata and results (1 to 512: a copy of a JSON value
    /// recurses, so an unbounded depth would overflow the stack).
    std::size_t max_json_depth = 64;
    /// Serialized size of each of args, metadata and a result.
    std::size_t max_payload_bytes = std::size_t(16) << 20;
    /// Length of task, schedule and job ids (which must also be valid UTF-8 without NUL).
    std::size_t max_id_bytes = 1024;
};

/// Construction options of AsyncScheduler (and Scheduler).
struct AsyncSchedulerOptions {
    std::shared_ptr<DataStore> data_store;     ///< default: a new MemoryDataStore
    std::shared_ptr<EventBroker> event_broker; ///< default: a new LocalEventBroker
    std::string identity;                      ///< lease owner; default "host-pid-n"
    SchedulerRole role = SchedulerRole::both;
    std::size_t max_concurrent_jobs = 100;
    duration lease_duration = std::chrono::seconds(30);
    /// How often cleanup() runs (also once at start); nullopt disables it.
    std::optional<duration> cleanup_interval = std::chrono::minutes(15);
    /// The longest the loops sleep without a wake-up event (real time): the safety net when a
    /// broker message is lost.
    duration poll_interval = std::chrono::seconds(5);
    /// stop(): how long running jobs may finish before they are cancelled (real time).
    duration stop_grace_period = std::chrono::seconds(30);
    TaskDefaults task_defaults;
    /// Threads of the default "threadpool" executor (when job_executors has none of that name).
    std::size_t thread_pool_size = 8;
    /// Job executors by name. "async" (an InlineExecutor) and "threadpool" (a
    /// ThreadPoolExecutor of thread_pool_size threads) are added unless given here; add a
    /// ProcessExecutor under a name of your choice to run tasks in child processes.
    std::map<std::string, std::shared_ptr<JobExecutor>> job_executors;
    /// Finished jobs are released to the store in batches of at most this many: all that
    /// finish while the previous batch is being committed go together.
    std::size_t max_release_batch = 512;
    Logger logger;
    std::shared_ptr<Clock> clock; ///< default: SystemClock
    /// A store that decides due schedules with its own clock (PostgreSQL's database_clock)
    /// reports how far this node's clock is off; past this, a warning is logged, and the
    /// offset is always the asched_clock_offset_seconds metric.
    duration max_clock_offset = std::chrono::seconds(1);
    PayloadLimits limits;
    /// How long the job history (get_job_results) keeps a finished attempt; cleanup prunes
    /// older records. The full return value is kept only for its result_expiration_time.
    duration history_retention = std::chrono::hours(24);
};

/// For TaskOptions::max_running_jobs: no limit on a task's running jobs.
inline constexpr std::optional<int> unlimited = std::nullopt;

/// Registration options of a task; unset members keep the stored value or the defaults.
struct TaskOptions {
    std::optional<std::optional<int>> max_running_jobs; ///< inner nullopt: unlimited
    std::optional<std::optional<duration>> misfire_grace_time;
    /// How long one of its jobs may run before it is cancelled and ends timed_out; inner
    /// nullopt: no limit (the default, unless TaskDefaults::timeout says otherwise).
    std::optional<std::optional<duration>> timeout;
    /// Retries of its jobs (the default of its schedules and jobs); inner nullopt: none.
    std::optional<std::optional<RetryPolicy>> retry;
    std::optional<nlohmann::json> metadata;
    /// The name of the job executor that runs this task's jobs; default: "async" for a
    /// coroutine, "threadpool" for a blocking callable.
    std::optional<std::string> job_executor;
};

/// Options of add_schedule.
struct ScheduleOptions {
    std::string id; ///< default: a random UUID
    nlohmann::json args = nlohmann::json::array();
    bool paused = false;
    CoalescePolicy coalesce = CoalescePolicy::latest;
    /// Under CoalescePolicy::all, the most jobs one catch-up creates (the newest fires);
    /// the rest are reported as FiresDropped. nullopt: no cap.
    std::optional<std::size_t> max_catchup;
    std::optional<std::optional<duration>> misfire_grace_time; ///< unset: the task's
    std::optional<duration> max_jitter;
    std::optional<std::optional<duration>> timeout;  ///< of its jobs; unset: the task's
    std::optional<std::optional<RetryPolicy>> retry; ///< of its jobs; unset: the task's
    duration job_result_expiration_time{0};
    nlohmann::json metadata = nlohmann::json::object(); ///< merged over the task's
    ConflictPolicy conflict_policy = ConflictPolicy::do_nothing;
};

/// Options of add_job.
struct JobOptions {
    /// A caller-chosen id (default: a random UUID); must not be that of a queued or running
    /// job (Error(conflicting_id)). Reusing the id of a finished job replaces its result.
    std::optional<std::string> id;
    nlohmann::json args = nlohmann::json::array();
    duration result_expiration_time{0};                 ///< 0: no result is kept
    nlohmann::json metadata = nlohmann::json::object(); ///< merged over the task's
    std::optional<std::optional<duration>> timeout;     ///< unset: the task's
    std::optional<std::optional<RetryPolicy>> retry;    ///< unset: the task's
    /// run_job only: how long (real time) to wait for the result before failing with
    /// Error(wait_timed_out); the job itself goes on. nullopt: wait as long as it takes.
    std::optional<duration> wait_timeout;
};

/// AsyncScheduler::health(): `store_ok` false with the store's error in `store_problem`
/// while the store fails; `broker_connected` false while a network broker is down.
struct HealthReport {
    RunState state = RunState::stopped;
    bool store_ok = true;
    std::string store_problem;
    bool broker_connected = true;
};

/// Where unpause_schedule resumes.
struct ResumeFrom {
    enum class Kind { stored, now, time } kind = Kind::stored;
    time_point at{};
    static ResumeFrom stored() { return {}; }
    static ResumeFrom now() { return {Kind::now, {}}; }
    static ResumeFrom time(time_point t) { return {Kind::time, t}; }
};

namespace detail {
struct SchedulerState;
struct SchedulerAccess;

/// The JSON array of positional arguments `as...`.
template <class... As> nlohmann::json args_array(As &&...as) {
    nlohmann::json args = nlohmann::json::array();
    (args.push_back(nlohmann::json(std::forward<As>(as))), ...);
    return args;
}

template <class A, class Options>
concept positional_arg = !std::is_same_v<std::remove_cvref_t<A>, Options>;
template <class T>
concept trigger_arg = std::derived_from<std::remove_cvref_t<T>, Trigger> ||
    std::is_same_v<std::remove_cvref_t<T>, TriggerPtr>;
} // namespace detail

/// Schedules tasks and runs jobs on an Asio executor.
///
/// A handle to shared state: background coroutines keep what they use alive, so destroying
/// the handle while the scheduler runs is safe (it asks the scheduler to stop gracefully).
/// Move-only.
///
/// Arguments: member functions returning an awaitable are not coroutines themselves; they copy
/// their arguments into the operation before returning it, so `std::string_view` and `const&`
/// parameters never dangle. Ids are string views and options have overloads without them so
/// that `co_await s.run_job("id")` builds no temporary with a destructor: GCC 12 destroys such
/// temporaries twice when the awaited operation throws. For the same reason, name option
/// structs before awaiting (`JobOptions o{.args = {1, 2}}; co_await s.run_job("add", o);`).
///
/// Executor: every member function that returns an awaitable runs its work on the scheduler's
/// internal strand and resumes the caller on the caller's own executor. Member functions may
/// be called from any thread and any executor. Exceptions: asched::Error with the code named
/// per function; errc::store_failure when the store fails. Cancellation: awaiting callers may
/// be cancelled with Asio's terminal cancellation; the scheduler's own state is unaffected.
class AsyncScheduler {
  public:
    explicit AsyncScheduler(asio::any_io_executor executor, AsyncSchedulerOptions options = {});
    explicit AsyncScheduler(asio::io_context &context, AsyncSchedulerOptions options = {});
    AsyncScheduler(AsyncScheduler &&) noexcept;
    AsyncScheduler &operator=(AsyncScheduler &&) noexcept;
    ~AsyncScheduler();

    /// The lease owner and worker registry key. Unique among live schedulers: start fails with
    /// Error(identity_in_use) while another live process holds it (a crashed predecessor on
    /// this host is recognised by its pid and replaced at once).
    const std::string &identity() const noexcept;
    RunState state() const noexcept;
    asio::any_io_executor get_executor() const noexcept;
    std::shared_ptr<DataStore> data_store() const noexcept;
    std::shared_ptr<EventBroker> event_broker() const noexcept;
    std::shared_ptr<Clock> clock() const noexcept;

    // ---- the scope (the C++ form of `async with`) ------------------------------------------

    /// Starts the broker and the store, runs `body`, then, whether `body` returned or threw,
    /// stops gracefully, waits until stopped and closes the store and broker; rethrows what
    /// `body` threw. `body` is kept alive until it completes, so it may capture.
    asio::awaitable<void> scoped(std::function<asio::awaitable<void>(AsyncScheduler &)> body);
    /// Starts the broker and the store (scoped() and the start functions do this for you).
    asio::awaitable<void> open();
    /// Stops the store and the broker; the scheduler must be stopped.
    asio::awaitable<void> close();

    // ---- tasks ---------------------------------------------------------------------------

    /// Registers `f` under `id` in this process and stores the task (TaskAdded/TaskUpdated).
    /// See make_task_function for how its signature is used.
    template <class F> asio::awaitable<Task> add_task(std::string_view id, F f) {
        return add_task_function(id, make_task_function(std::move(f)), TaskOptions());
    }
    template <class F>
    asio::awaitable<Task> add_task(std::string_view id, F f, const TaskOptions &options) {
        return add_task_function(id, make_task_function(std::move(f)), options);
    }
    asio::awaitable<Task> add_task_function(std::string_view id,
                                            std::shared_ptr<const TaskFunction> function,
                                            const TaskOptions &options);
    /// Changes a stored task's settings. Throws Error(task_lookup).
    asio::awaitable<Task> configure_task(std::string_view id, const TaskOptions &options);
    /// Sorted by id.
    asio::awaitable<std::vector<Task>> get_tasks();

    // ---- schedules -----------------------------------------------------------------------

    /// Stores a schedule of the task `task_id`; returns its id. Throws Error(task_lookup) for
    /// an unknown task, Error(conflicting_id) under ConflictPolicy::exception,
    /// Error(invalid_argument) naming a bad option.
    asio::awaitable<std::string> add_schedule(std::string_view task_id, TriggerPtr trigger,
                                              const ScheduleOptions &options);
    asio::awaitable<std::string> add_schedule(std::string_view task_id, TriggerPtr trigger) {
        return add_schedule(task_id, std::move(trigger), ScheduleOptions());
    }
    template <std::derived_from<Trigger> T>
    asio::awaitable<std::string> add_schedule(std::string_view task_id, const T &trigger,
                                              const ScheduleOptions &options) {
        return add_schedule(task_id, TriggerPtr(std::make_shared<const T>(trigger)), options);
    }
    template <std::derived_from<Trigger> T>
    asio::awaitable<std::string> add_schedule(std::string_view task_id, const T &trigger) {
        return add_schedule(task_id, TriggerPtr(std::make_shared<const T>(trigger)),
                            ScheduleOptions());
    }
    /// add_schedule("report", trigger, "daily", 7): positional arguments, default options.
    template <detail::trigger_arg T, detail::positional_arg<ScheduleOptions> A, class... As>
    asio::awaitable<std::string> add_schedule(std::string_view task_id, T &&trigger, A &&a,
                                              As &&...as) {
        ScheduleOptions options;
        options.args = detail::args_array(std::forward<A>(a), std::forward<As>(as)...);
        if constexpr (std::is_same_v<std::remove_cvref_t<T>, TriggerPtr>)
            return add_schedule(task_id, std::forward<T>(trigger), options);
        else
            return add_schedule(task_id,
                                TriggerPtr(std::make_shared<const std::remove_cvref_t<T>>(
                                    std::forward<T>(trigger))),
                                options);
    }
    /// Throws Error(schedule_lookup).
    asio::awaitable<Schedule> get_schedule(std::string_view id);
    asio::awaitable<std::optional<Schedule>> try_get_schedule(std::string_view id);
    asio::awaitable<std::vector<Schedule>> get_schedules();
    /// Throws Error(schedule_lookup).
    asio::awaitable<void> pause_schedule(std::string_view id);
    /// Throws Error(schedule_lookup). ResumeFrom::stored() keeps the stored next fire time
    /// (missed fires are then caught up under the coalesce and misfire policies).
    asio::awaitable<void> unpause_schedule(std::string_view id, ResumeFrom resume_from = {});
    /// Unknown ids are ignored. Jobs already created are kept.
    asio::awaitable<void> remove_schedule(std::string_view id);
    /// Adds one job of the schedule, due now, with its args and policies (misfire grace
    /// time, timeout, result expiry, metadata); its next fire time does not move (Quartz's
    /// triggerJob). The job has no scheduled_fire_time. Returns its id. Throws
    /// Error(schedule_lookup).
    asio::awaitable<std::string> run_schedule_now(std::string_view id);

    // ---- jobs ----------------------------------------------------------------------------

    /// Queues one run of `task_id`; returns the job id. Throws Error(task_lookup).
    asio::awaitable<std::string> add_job(std::string_view task_id, const JobOptions &options);
    asio::awaitable<std::string> add_job(std::string_view task_id) {
        return add_job(task_id, JobOptions());
    }
    /// add_job("add", 1, 2): positional arguments, default options (no option struct to build
    /// inside a co_await, see the GCC 12 note above).
    template <detail::positional_arg<JobOptions> A, class... As>
    asio::awaitable<std::string> add_job(std::string_view task_id, A &&a, As &&...as) {
        JobOptions options;
        options.args = detail::args_array(std::forward<A>(a), std::forward<As>(as)...);
        return add_job(task_id, options);
    }
    /// add_job (keeping the result 15 minutes), then waits for the result: returns the value,
    /// or throws Error(job_failed | job_cancelled | job_deadline_missed | job_abandoned |
    /// job_timed_out), or Error(wait_timed_out) once options.wait_timeout has passed.
    asio::awaitable<nlohmann::json> run_job(std::string_view task_id, const JobOptions &options);
    asio::awaitable<nlohmann::json> run_job(std::string_view task_id) {
        return run_job(task_id, JobOptions());
    }
    /// run_job("add", 1, 2): positional arguments, default options.
    template <detail::positional_arg<JobOptions> A, class... As>
    asio::awaitable<nlohmann::json> run_job(std::string_view task_id, A &&a, As &&...as) {
        JobOptions options;
        options.args = detail::args_array(std::forward<A>(a), std::forward<As>(as)...);
        return run_job(task_id, options);
    }
    /// With `wait`, waits until the job has a result. Reading does not delete it. Throws
    /// Error(job_lookup) when neither the job nor its result exists (or it expired), or with
    /// `wait == false` when the job has not finished; nullopt when the job ended without a
    /// kept result.
    asio::awaitable<std::optional<JobResult>> get_job_result(std::string_view job_id,
                                                             bool wait = true);
    /// Queued and running jobs.
    asio::awaitable<std::vector<Job>> get_jobs();
    /// The job history: every finished attempt (ids, attempt, outcome, times, error), newest
    /// first, filtered and a page at a time (pass next_cursor back for the next page); kept
    /// for history_retention. Throws Error(invalid_argument) for a bad limit or cursor.
    asio::awaitable<JobHistoryPage> get_job_results(const JobHistoryFilter &filter = {});
    /// Cancels a job. A queued one is removed and ends `cancelled` at once
    /// (JobCancellation::removed); a running one, on whichever node runs it, is cancelled
    /// through its cancellation signal and stop token and ends `cancelled`
    /// (JobCancellation::requested: the node sees the store's flag at once when the broker
    /// reaches it, else at its next lease renewal). Throws Error(job_lookup).
    asio::awaitable<JobCancellation> cancel_job(std::string_view job_id);

    // ---- the worker registry ---------------------------------------------------------------

    /// Every scheduler registered in the store, live and dead (dead: expires_at has passed;
    /// cleanup deletes such rows an hour later), sorted by identity. A running scheduler keeps
    /// its row fresh with its lease renewals and deletes it when it stops.
    asio::awaitable<std::vector<WorkerInfo>> get_workers();
    /// The store's schema version and integrity findings (DataStore::check()).
    asio::awaitable<StoreCheck> check_store();
    /// Prometheus text exposition (format 0.0.4) of this node's metrics, for a user's own
    /// endpoint: per task, jobs by outcome, retries, misfires, coalesced fires, lateness and
    /// run-time histograms, running jobs and the store's due backlog; the schedules, store
    /// health, broker connection and reconnects, failed lease renewals. Labels are task ids
    /// (and the outcome) only. A failing store gives `asched_store_healthy 0`, not an error.
    asio::awaitable<std::string> metrics();
    /// Whether the store answers now (one small read, recorded as the store health) and the
    /// broker is connected: what a health endpoint reports.
    asio::awaitable<HealthReport> health();
    /// This run's boot id (the one in its WorkerInfo row); empty before the first start.
    std::string boot_id() const;

    // ---- events --------------------------------------------------------------------------

    /// Calls `callback` for each event in `mask`, in order, on a strand over the scheduler's
    /// executor. Ends when the Subscription is destroyed.
    Subscription subscribe(EventCallback callback, EventMask mask = all_events,
                           bool one_shot = false);
    /// Waits for the next event in `mask`.
    asio::awaitable<Event> next_event(EventMask mask = all_events);

    // ---- running -------------------------------------------------------------------------

    /// Starts the loops and returns once the scheduler is started. Throws Error(not_running)
    /// unless stopped.
    asio::awaitable<void> start_in_background();
    /// Starts (if stopped) and returns when the scheduler has stopped. Stopping is not an
    /// error: it returns normally.
    asio::awaitable<void> run_until_stopped();
    /// Asks the scheduler to stop, in this order: no new acquisitions; running jobs get
    /// stop_grace_period to finish; what is left is cancelled; every finished job's release
    /// is committed (retried while the store fails, for at most lease_duration: after that
    /// the lease has expired and cleanup marks the job abandoned); only then is the
    /// scheduler stopped. Then close() (scoped() calls it) may close the store and broker.
    /// Destroying the handle asks for the same stop. Returns at once.
    asio::awaitable<void> stop();
    /// Returns once the scheduler is stopped.
    asio::awaitable<void> wait_until_stopped();
    /// Runs the store's cleanup now.
    asio::awaitable<void> cleanup();

  private:
    friend struct detail::SchedulerAccess;
    /// A handle that does not stop the scheduler when destroyed (JobContext::scheduler).
    AsyncScheduler(std::shared_ptr<detail::SchedulerState> state, bool borrowed) noexcept
        : state_(std::move(state)), borrowed_(borrowed) {}

    std::shared_ptr<detail::SchedulerState> state_;
    bool borrowed_ = false;
};

/// Waits for the next event of type T.
template <class T> asio::awaitable<T> next_event(AsyncScheduler &scheduler) {
    Event e = co_await scheduler.next_event(event_mask<T>());
    co_return std::get<T>(std::move(e));
}

} // namespace asched
