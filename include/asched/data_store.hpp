// The DataStore port: where tasks, schedules, jobs and results live.
#pragma once

#include <asched/clock.hpp>
#include <asched/event_broker.hpp>
#include <asched/logger.hpp>
#include <asched/model.hpp>

#include <asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asched {

/// What a store is given when it starts.
struct StoreContext {
    std::shared_ptr<EventBroker> broker;
    std::shared_ptr<const Clock> clock; ///< stores without a time of their own decide with it
    Logger logger;
};

/// The outcome of processing one acquired schedule, applied by release_schedules() as one
/// atomic step: insert `jobs` (unique per (schedule id, scheduled fire time), so a retry or a
/// crash never creates a second job for one fire), set the fire times, free the lease. A
/// release whose lease_token is no longer the schedule's (replaced, paused, lease lost) is
/// refused as a whole.
struct ScheduleRelease {
    std::string schedule_id;
    std::uint64_t lease_token = 0;
    std::optional<time_point> last_fire_time;
    std::optional<time_point> next_fire_time;
    std::vector<Job> jobs;
    nlohmann::json trigger_state; ///< what the trigger left with next_fire_time
};

/// One finished job for release_jobs().
struct JobRelease {
    Job job;
    JobResult result;
};

/// What acquire_jobs() hands out.
struct JobAcquisition {
    std::vector<Job> jobs;
    /// The earliest start of a queued job that was not yet startable (jitter), if any.
    std::optional<time_point> next_ready_time;
};

/// What one read of a job id finds: its kept result, or that it is still queued or
/// running, or neither (unknown, ended without a kept result, or its result expired).
struct JobStatus {
    std::optional<JobResult> result;
    bool pending = false; ///< queued or running (and no kept result)
};

/// One finished attempt of a job, as the job history keeps it (get_job_results()).
struct JobHistoryRecord {
    std::string job_id;
    unsigned attempt = 1;
    std::string task_id;
    std::optional<std::string> schedule_id;
    JobOutcome outcome = JobOutcome::success;
    std::optional<time_point> scheduled_fire_time;
    std::optional<time_point> started_at; ///< nullopt when it never started
    time_point finished_at{};
    std::string worker; ///< the scheduler that released it
    std::optional<std::string> exception_type;
    std::optional<std::string> exception_message;
    std::optional<time_point> retry_at; ///< when it is retried: the next attempt's start

    friend bool operator==(const JobHistoryRecord &, const JobHistoryRecord &) = default;
};

/// Which history records get_job_results() returns, newest first.
struct JobHistoryFilter {
    std::optional<std::string> task_id;
    std::optional<std::string> schedule_id;
    std::optional<JobOutcome> outcome;
    std::optional<time_point> since; ///< finished at or after
    std::optional<time_point> until; ///< finished before
    std::size_t limit = 100;         ///< records per page, 1 to 10,000
    /// JobHistoryPage::next_cursor of the page before; nullopt: the newest page.
    std::optional<std::string> cursor;
};

struct JobHistoryPage {
    std::vector<JobHistoryRecord> records;
    std::optional<std::string> next_cursor; ///< nullopt: this was the last page
};

/// One running scheduler, as the worker registry keeps it (get_workers()). The store sets the
/// times from its own clock; a row whose expires_at has passed belongs to a dead scheduler
/// (cleanup() deletes it an hour later).
struct WorkerInfo {
    std::string identity;
    std::string boot_id; ///< random per start: tells two processes with one identity apart
    std::string host;    ///< gethostname()
    std::int64_t pid = 0;
    /// Where `pid` means something: the kernel's boot id and the pid namespace. Two rows with
    /// the same scope can test each other's pid; "" when unknown.
    std::string process_scope;
    SchedulerRole role = SchedulerRole::both;
    std::vector<std::string> task_ids; ///< the tasks it runs jobs of, sorted (none: role scheduler)
    time_point started_at{};
    time_point last_seen{};
    time_point expires_at{}; ///< last_seen + its lease_duration

    bool live_at(time_point now) const noexcept { return expires_at > now; }
    friend bool operator==(const WorkerInfo &, const WorkerInfo &) = default;
};

/// A row the store could not decode and moved aside (the `quarantine` table).
struct QuarantinedRow {
    std::string kind; ///< "task", "schedule", "job", "result", ...
    std::string id;
    std::string error;
    time_point quarantined_at{};
};

/// What DataStore::check() found (`asched store check`).
struct StoreCheck {
    std::string backend;    ///< "memory", "sqlite", "postgres"
    std::string location;   ///< the file, or host:port/database and schema
    int schema_version = 0; ///< after start()'s migrations (0: the store has no schema)
    int found_version = 0;  ///< what start() found before migrating (0: it created the schema)
    /// Integrity findings (SQLite's integrity_check, task running counters that disagree with
    /// the leased jobs); empty: sound.
    std::vector<std::string> problems;
    std::size_t quarantined = 0;        ///< rows in the quarantine
    std::vector<QuarantinedRow> recent; ///< the newest quarantined rows, at most 20
};

/// What DataStore::cancel_job() did.
enum class JobCancellation {
    removed,   ///< the job was queued: it is deleted and released as cancelled
    requested, ///< the job is running: flagged; its node cancels it at its next lease renewal
};

/// A store of tasks, schedules, jobs and results, shared by one or many schedulers. Each
/// method is one atomic step and publishes its events through the broker after the change.
/// Methods throw Error(store_failure) when the backend fails, and the lookup errors named
/// below. Thread safety: implementations are safe to call from any thread and executor.
class DataStore {
  public:
    virtual ~DataStore() = default;

    virtual asio::awaitable<void> start(StoreContext context) = 0;
    virtual asio::awaitable<void> stop() = 0;

    /// Inserts or replaces (keeping running_jobs); publishes TaskAdded or TaskUpdated.
    virtual asio::awaitable<void> add_task(Task task) = 0;
    /// Throws Error(task_lookup). Publishes TaskRemoved.
    virtual asio::awaitable<void> remove_task(std::string task_id) = 0;
    /// Throws Error(task_lookup).
    virtual asio::awaitable<Task> get_task(std::string task_id) = 0;
    /// Sorted by id.
    virtual asio::awaitable<std::vector<Task>> get_tasks() = 0;

    /// nullopt: all schedules; otherwise those of `ids` that exist. Sorted by id.
    virtual asio::awaitable<std::vector<Schedule>>
    get_schedules(std::optional<std::vector<std::string>> ids) = 0;
    /// Stores `schedule` under the conflict policy; returns whether it was stored. Throws
    /// Error(conflicting_id) under ConflictPolicy::exception. A replace starts a new lease
    /// token. Publishes ScheduleAdded, or ScheduleUpdated on replace.
    virtual asio::awaitable<bool> add_schedule(Schedule schedule, ConflictPolicy policy) = 0;
    /// Unknown ids are ignored. Publishes ScheduleRemoved(finished = false) for each.
    virtual asio::awaitable<void> remove_schedules(std::vector<std::string> ids) = 0;
    /// Leases up to `limit` due, unpaused schedules whose lease is free or expired, earliest
    /// next_fire_time first.
    virtual asio::awaitable<std::vector<Schedule>>
    acquire_schedules(std::string scheduler_id, duration lease, std::size_t limit) = 0;
    /// Applies each release atomically (see ScheduleRelease); publishes JobAdded for every
    /// new job and ScheduleUpdated for every schedule.
    virtual asio::awaitable<void> release_schedules(std::string scheduler_id,
                                                    std::vector<ScheduleRelease> releases) = 0;
    /// The earliest instant a schedule may become due (next fire time or lease expiry).
    virtual asio::awaitable<std::optional<time_point>> get_next_schedule_run_time() = 0;

    /// Throws Error(task_lookup) for an unknown task, Error(conflicting_id) for a job id that
    /// exists or a second job for one (schedule, fire time). Publishes JobAdded. add_jobs()
    /// with one job.
    asio::awaitable<void> add_job(Job job);
    /// add_job for several jobs as one atomic step: all are added or, on an error, none.
    virtual asio::awaitable<void> add_jobs(std::vector<Job> jobs) = 0;
    /// Queued and running jobs; nullopt: all. In creation order.
    virtual asio::awaitable<std::vector<Job>>
    get_jobs(std::optional<std::vector<std::string>> ids) = 0;
    /// Leases up to `limit` startable jobs of the tasks in `task_ids`, oldest first, within
    /// each task's max_running_jobs. Jobs past their start deadline are released as
    /// missed_start_deadline; jobs whose lease expired are released as abandoned. Publishes
    /// JobAcquired and JobReleased.
    virtual asio::awaitable<JobAcquisition> acquire_jobs(std::string scheduler_id, duration lease,
                                                         std::size_t limit,
                                                         std::vector<std::string> task_ids) = 0;
    /// Records the attempt in the history, frees the task slot and publishes JobReleased; then,
    /// when the job's retry policy retries this outcome and attempts are left, queues the
    /// next attempt in the same row (attempt + 1, due after the backoff); otherwise stores
    /// `result` (if its expiry is after its finish) and deletes the job. Refused (returns false)
    /// when `job` is no longer leased to this scheduler with this token. release_jobs() with one
    /// release.
    asio::awaitable<bool> release_job(std::string scheduler_id, Job job, JobResult result);
    /// release_job for several jobs in one step (one transaction where the store has them);
    /// returns, per release, whether it was applied.
    virtual asio::awaitable<std::vector<bool>> release_jobs(std::string scheduler_id,
                                                            std::vector<JobRelease> releases) = 0;
    /// Finished attempts matching `filter`, newest first (finished_at, then insertion order),
    /// a page at a time. Every release, abandonment, misfire and cancel records one, in the
    /// same step. Throws Error(invalid_argument) for a malformed cursor.
    virtual asio::awaitable<JobHistoryPage> get_job_history(JobHistoryFilter filter) = 0;
    /// Deletes the history records finished before `before`; returns how many.
    virtual asio::awaitable<std::size_t> prune_history(time_point before) = 0;
    /// Reading does not delete: results live until they expire.
    virtual asio::awaitable<std::optional<JobResult>> get_job_result(std::string job_id) = 0;
    /// The result and whether the job is queued or running, read in one snapshot: a job
    /// that finishes meanwhile is seen either before or after, never as neither.
    virtual asio::awaitable<JobStatus> get_job_status(std::string job_id) = 0;

    virtual asio::awaitable<void> extend_acquired_schedule_leases(std::string scheduler_id,
                                                                  std::vector<std::string> ids,
                                                                  duration lease) = 0;
    /// Renews the leases of `ids` held by `scheduler_id` (an expired one is not renewed);
    /// returns those of `ids` whose cancellation was requested (cancel_job()).
    virtual asio::awaitable<std::vector<std::string>>
    extend_acquired_job_leases(std::string scheduler_id, std::vector<std::string> ids,
                               duration lease) = 0;
    /// A queued job is deleted and released as cancelled by `scheduler_id` (its result kept as
    /// the job asked; JobReleased); a running one is flagged for its holder and
    /// JobCancelRequested is published. Throws Error(job_lookup) for an unknown id.
    virtual asio::awaitable<JobCancellation> cancel_job(std::string job_id,
                                                        std::string scheduler_id) = 0;
    /// Stores `worker`'s registry row (started_at = last_seen = now, expires_at = now + lease)
    /// when its identity has no row, a dead one (expired), one with its own boot id, or the
    /// live one with boot id `replaces` (the caller found that process gone). Throws
    /// Error(identity_in_use), changing nothing, when another live scheduler has the identity.
    /// Then frees the schedule leases the identity holds: a restart takes them back at once.
    virtual asio::awaitable<void> register_worker(WorkerInfo worker, duration lease,
                                                  std::optional<std::string> replaces) = 0;
    /// Renews the row (last_seen, expires_at, task_ids; re-created if it is gone). Returns
    /// false, changing nothing, when a live row of the identity has another boot id: this
    /// scheduler was taken for dead and its identity is in use by another.
    virtual asio::awaitable<bool> renew_worker(WorkerInfo worker, duration lease) = 0;
    /// Deletes the row if it still has this boot id.
    virtual asio::awaitable<void> unregister_worker(std::string identity, std::string boot_id) = 0;
    /// Every row, live and dead, sorted by identity.
    virtual asio::awaitable<std::vector<WorkerInfo>> get_workers() = 0;
    /// Releases every job still leased to `scheduler_id` as abandoned (a restart after a
    /// crash under the same identity).
    virtual asio::awaitable<void> reap_abandoned_jobs(std::string scheduler_id) = 0;
    /// Removes expired results, releases jobs with expired leases as abandoned, removes
    /// exhausted schedules that no job refers to (ScheduleRemoved(finished = true)) and
    /// worker rows dead for over an hour.
    virtual asio::awaitable<void> cleanup() = 0;
    /// Reads the schema version and checks the store's integrity (read-only). The default,
    /// for a store that has nothing to check, names no backend and finds nothing.
    virtual asio::awaitable<StoreCheck> check();
    /// How far the clock that decides due schedules and expired leases (a database's own
    /// clock) runs ahead of the StoreContext clock, as last measured; zero for a store that
    /// decides with the StoreContext clock. The scheduler plans fires and checks start
    /// deadlines on its clock plus this offset, so a node whose clock runs ahead never makes
    /// a job before its fire time by the store's clock, and one that runs behind does not
    /// leave the schedules it acquired unfired.
    virtual duration clock_offset() const noexcept { return duration::zero(); }
};

} // namespace asched
