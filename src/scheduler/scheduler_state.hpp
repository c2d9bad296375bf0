// The AsyncScheduler's shared state; every member below is touched only on `strand`.
#pragma once

#include "lifecycle.hpp"
#include "metrics.hpp"

#include <asched/async_scheduler.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <fmt/format.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <stop_token>
#include <unordered_map>

namespace asched::detail {

using steady = std::chrono::steady_clock;

/// A level-triggered wake-up for one waiting loop: notify() before wait() is not lost.
class Wakeup {
  public:
    explicit Wakeup(const asio::any_io_executor &executor) : timer_(executor) {}
    void notify() {
        pending_ = true;
        timer_.cancel();
    }
    /// Returns after notify() or `timeout` of real time, whichever comes first.
    asio::awaitable<void> wait(std::chrono::steady_clock::duration timeout);

  private:
    asio::steady_timer timer_;
    bool pending_ = false;
};

/// Why a running job was cancelled.
enum class CancelKind {
    none,
    stop,    ///< the scheduler stopped and the grace period ended
    user,    ///< cancel_job()
    timeout, ///< it ran past its timeout
};

struct SchedulerState;

/// Makes the non-owning handle a job's context carries.
struct SchedulerAccess {
    static AsyncScheduler borrow(std::shared_ptr<SchedulerState> state) {
        return AsyncScheduler(std::move(state), true);
    }
    static const SchedulerState *state_of(const AsyncScheduler &s) noexcept {
        return s.state_.get();
    }
};

/// A job from its start until its release has committed (or was given up).
struct RunningJob {
    Job job;
    JobContext context;
    std::shared_ptr<const TaskFunction> function;
    JobExecutor *executor = nullptr;
    std::stop_source stop;
    asio::cancellation_signal signal;
    bool cancel_requested = false;
    CancelKind cancel_kind = CancelKind::none;
    bool finished = false;                // its executor has reported; the release is queued
    std::optional<time_point> deadline;   // started_at + timeout
    JobResult result;                     // filled in while it runs: ids and start time
    std::optional<AsyncScheduler> handle; // context.scheduler; dropped when it is released
};

struct PendingRelease {
    std::shared_ptr<RunningJob> job;
    JobResult result;
};

struct ResultWaiter {
    explicit ResultWaiter(const asio::any_io_executor &executor) : wake(executor) {}
    Wakeup wake;
};

struct SchedulerState : std::enable_shared_from_this<SchedulerState> {
    SchedulerState(asio::any_io_executor executor, AsyncSchedulerOptions options);
    ~SchedulerState();

    /// A message with the fields it is about (the scheduler's identity is always one).
    template <class... A>
    void log_with(LogLevel level, LogFields fields, fmt::format_string<A...> f, A &&...args) const {
        if (!logger.enabled(level))
            return;
        fields.scheduler = identity;
        logger.log(level, fmt::format(f, std::forward<A>(args)...), fields);
    }
    template <class... A> void log(LogLevel level, fmt::format_string<A...> f, A &&...args) const {
        log_with(level, {}, f, std::forward<A>(args)...);
    }
    /// A message about one job: its task, schedule, id and attempt.
    template <class... A>
    void log_job(LogLevel level, const Job &job, fmt::format_string<A...> f, A &&...args) const {
        log_with(level,
                 {{},
                  job.task_id,
                  job.schedule_id ? std::string_view(*job.schedule_id) : "",
                  job.id,
                  job.attempt},
                 f, std::forward<A>(args)...);
    }
    /// Wake every loop (stop, a clock jump).
    void wake_all();
    /// Records how the last store call went: the first failure after success turns the health
    /// to degraded, the first success after failures back to ok; each change is logged and
    /// published as StoreHealthChanged. Called on the strand.
    void store_failed(const std::exception &e);
    void store_ok();
    /// Now by the clock that decides due schedules: this node's clock plus the store's
    /// measured offset (zero unless the store keeps its own clock, as PostgreSQL's does).
    time_point store_now() const { return clock->now() + store->clock_offset(); }
    /// Logs a warning when the store's clock and this node's drift apart by more than
    /// max_clock_offset, and again (as info) when they agree once more. Called on the strand.
    void check_clock_offset();
    bool clock_offset_exceeded = false;
    /// No acquiring loop left, no job running, no release in flight.
    bool idle() const noexcept { return loops == 0 && running.empty() && !release_flushing; }

    asio::any_io_executor executor;
    asio::strand<asio::any_io_executor> strand;
    AsyncSchedulerOptions options;
    std::string identity;
    std::string boot_id;              // a new one at each start (the worker registry row's)
    mutable std::mutex boot_id_mutex; // boot_id is also read by AsyncScheduler::boot_id()
    bool worker_registered = false;   // this run's row is in the store (deleted at stop)
    bool worker_dirty = false;        // the task list changed: renew the row now
    std::exception_ptr start_error;   // why the last start was refused (identity_in_use)
    // Per task id: until when (real time) add_job/add_schedule skip the "no live worker"
    // check, so a loop of adds costs one registry read per lease period.
    std::unordered_map<std::string, steady::time_point> served_checked;
    std::shared_ptr<DataStore> store;
    std::shared_ptr<EventBroker> broker;
    std::shared_ptr<Clock> clock;
    Logger logger;

    Phase phase = Phase::stopped;
    std::atomic<RunState> run_state{RunState::stopped}; // mirrors `phase` for state()
    bool services_open = false;
    std::size_t loops = 0; // acquiring loops (schedule, job, cleanup) still running
    bool lease_loop_running = false;
    std::optional<std::string> crash;
    bool store_degraded = false;
    std::string store_problem; ///< the failure that made it degraded

    std::unordered_map<std::string, std::shared_ptr<const TaskFunction>> functions;
    std::unordered_map<std::string, std::shared_ptr<JobExecutor>> task_executors;
    std::unordered_map<std::string, std::shared_ptr<RunningJob>> running;
    std::vector<PendingRelease> pending_releases;
    bool release_flushing = false;

    std::map<std::string, TaskMetrics> metrics; // this node's, per task (metrics())
    std::uint64_t lease_renewals_failed = 0;

    Wakeup schedule_wake;
    Wakeup job_wake;
    Wakeup lease_wake;
    Wakeup cleanup_wake;
    Wakeup main_wake;
    std::multimap<std::string, std::shared_ptr<ResultWaiter>> result_waiters;
    std::vector<std::shared_ptr<Wakeup>> state_waiters; // woken on every run-state change

    Subscription internal_subscription;
    std::size_t clock_listener = 0;
    std::mt19937_64 rng;
};

/// Runs `f` when the scope ends, however it ends (a loop that returns or throws).
template <class F> struct OnExit {
    F f;
    ~OnExit() { f(); }
};
template <class F> OnExit(F) -> OnExit<F>;

/// co_spawns `op` on the strand; an exception it ends with is logged as `what` and, with
/// `fatal`, crashes the scheduler (the lifecycle then stops it). The one completion helper
/// for background work whose failure matters.
void spawn_logged(const std::shared_ptr<SchedulerState> &self, asio::awaitable<void> op,
                  const char *what, bool fatal);

// ---- lifecycle.cpp --------------------------------------------------------------------------
/// Feeds `event` to the lifecycle table and performs the synchronous part of its action;
/// returns whether a transition fired.
bool fire(SchedulerState &self, LifeEvent event);
/// Records `why` (the first reason counts), logs it and fires LifeEvent::crash.
void crash(SchedulerState &self, const std::string &why);
asio::awaitable<void> ensure_open(std::shared_ptr<SchedulerState> self);
asio::awaitable<void> do_start(std::shared_ptr<SchedulerState> self, bool wait_started);
asio::awaitable<void> do_close(std::shared_ptr<SchedulerState> self);
asio::awaitable<void> wait_for_state(std::shared_ptr<SchedulerState> self,
                                     std::function<bool(RunState)> done);

// ---- loops.cpp ------------------------------------------------------------------------------
void spawn_loops(const std::shared_ptr<SchedulerState> &self);
/// Which clock a wake-up time is on: this node's (leases, timeouts, cleanup) or the store's
/// (fire times and earliest starts the store returned).
enum class WakeClock { node, store };
/// How long a loop may sleep before `at` (real time), bounded by the poll interval.
steady::duration delay_until(const SchedulerState &s, std::optional<time_point> at,
                             WakeClock clock = WakeClock::node);

// ---- registry.cpp ---------------------------------------------------------------------------
/// gethostname(), read once ("localhost" if it fails).
const std::string &host_name();
/// Registers this run in the worker registry (a new boot id). Throws Error(identity_in_use)
/// when another live scheduler has the identity; a predecessor whose process is gone (same
/// host and pid namespace, pid not running) is replaced at once. Other store failures are
/// logged and left to the first renewal (renew_worker creates a missing row).
asio::awaitable<bool> register_worker(std::shared_ptr<SchedulerState> self);
/// Renews the row; crashes the scheduler when another process took the identity over.
asio::awaitable<void> renew_worker(std::shared_ptr<SchedulerState> self);
/// Deletes this run's row (at stop, after every release committed).
asio::awaitable<void> unregister_worker(std::shared_ptr<SchedulerState> self);
/// Live workers that registered `task_id`, or nullopt when the store could not be read.
asio::awaitable<std::optional<std::size_t>> live_workers_of(std::shared_ptr<SchedulerState> self,
                                                            std::string task_id);
/// Logs a warning when no live worker has registered `task_id` (what: the job or schedule).
asio::awaitable<void> warn_if_unserved(std::shared_ptr<SchedulerState> self, std::string task_id,
                                       std::string what);

// ---- job_runner.cpp -------------------------------------------------------------------------
/// Starts an acquired job on its task's executor (or ends it at once: misfire, no function).
void start_job(const std::shared_ptr<SchedulerState> &self, Job job);
/// Cancels one running job through its signal and stop token; the first reason counts.
void cancel_job(RunningJob &job, CancelKind why = CancelKind::stop);
/// Cancels the jobs past their deadline; returns the earliest deadline still ahead.
std::optional<time_point> enforce_timeouts(SchedulerState &self);

} // namespace asched::detail
