// SqliteDataStore: the embedded persistent store, one database file shared by processes.
#pragma once

#include <asched/data_store.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace asched {

struct SqliteDataStoreOptions {
    /// The database file; created with the schema when missing.
    std::string path = "asched.db";
    /// How long a write waits for another process's transaction before failing.
    std::chrono::milliseconds busy_timeout{10'000};
    /// `PRAGMA synchronous`: NORMAL (default; WAL keeps the database consistent, a power cut
    /// may lose the last transactions) or FULL (every commit is durable).
    bool synchronous_full = false;
    /// start() runs `PRAGMA quick_check` on a file up to this size and refuses a damaged one
    /// (it reads every page: about a second per few hundred MB); 0 never checks.
    std::uint64_t quick_check_max_bytes = std::uint64_t(1) << 30;
    /// start() creates or migrates the schema; false: it refuses a file whose schema is
    /// missing or older than this build's (`asched store check` looks without changing).
    bool migrate = true;
};

/// Keeps tasks, schedules, jobs and results in one SQLite database (WAL mode) that several
/// processes may share. Every write that must be atomic is one `BEGIN IMMEDIATE` transaction,
/// so two processes never lease the same schedule or job; a fire's jobs and the schedule's
/// advance commit together under the unique key (schedule id, scheduled fire time). Leases
/// carry fencing tokens. SQLite calls run on the store's own thread, never on the caller's
/// executor. A row that cannot be decoded is moved to the `quarantine` table, logged and
/// announced with a RecordQuarantined event; the other rows are unaffected.
///
/// The schema is versioned (table `asched_meta`, `PRAGMA application_id`) and migrated
/// forward on start(); start() throws Error(store_failure) for a file that is not an asched
/// database, is damaged (quick_check, or a file cut short) or has a newer schema than this
/// build knows. A row whose JSON carries a newer format version (written by a newer asched
/// sharing the file) is skipped with a warning and left alone, never quarantined.
class SqliteDataStore final : public DataStore {
  public:
    /// The schema version this build writes.
    static constexpr int schema_version = 4;

    explicit SqliteDataStore(SqliteDataStoreOptions options = {});
    ~SqliteDataStore() override;

    asio::awaitable<void> start(StoreContext context) override;
    asio::awaitable<void> stop() override;
    asio::awaitable<void> add_task(Task task) override;
    asio::awaitable<void> remove_task(std::string task_id) override;
    asio::awaitable<Task> get_task(std::string task_id) override;
    asio::awaitable<std::vector<Task>> get_tasks() override;
    asio::awaitable<std::vector<Schedule>>
    get_schedules(std::optional<std::vector<std::string>> ids) override;
    asio::awaitable<bool> add_schedule(Schedule schedule, ConflictPolicy policy) override;
    asio::awaitable<void> remove_schedules(std::vector<std::string> ids) override;
    asio::awaitable<std::vector<Schedule>>
    acquire_schedules(std::string scheduler_id, duration lease, std::size_t limit) override;
    asio::awaitable<void> release_schedules(std::string scheduler_id,
                                            std::vector<ScheduleRelease> releases) override;
    asio::awaitable<std::optional<time_point>> get_next_schedule_run_time() override;
    asio::awaitable<void> add_jobs(std::vector<Job> jobs) override;
    asio::awaitable<std::vector<Job>>
    get_jobs(std::optional<std::vector<std::string>> ids) override;
    asio::awaitable<JobAcquisition> acquire_jobs(std::string scheduler_id, duration lease,
                                                 std::size_t limit,
                                                 std::vector<std::string> task_ids) override;
    asio::awaitable<std::vector<bool>> release_jobs(std::string scheduler_id,
                                                    std::vector<JobRelease> releases) override;
    asio::awaitable<std::optional<JobResult>> get_job_result(std::string job_id) override;
    asio::awaitable<JobStatus> get_job_status(std::string job_id) override;
    asio::awaitable<void> extend_acquired_schedule_leases(std::string scheduler_id,
                                                          std::vector<std::string> ids,
                                                          duration lease) override;
    asio::awaitable<std::vector<std::string>>
    extend_acquired_job_leases(std::string scheduler_id, std::vector<std::string> ids,
                               duration lease) override;
    asio::awaitable<JobCancellation> cancel_job(std::string job_id,
                                                std::string scheduler_id) override;
    asio::awaitable<JobHistoryPage> get_job_history(JobHistoryFilter filter) override;
    asio::awaitable<std::size_t> prune_history(time_point before) override;
    asio::awaitable<void> register_worker(WorkerInfo worker, duration lease,
                                          std::optional<std::string> replaces) override;
    asio::awaitable<bool> renew_worker(WorkerInfo worker, duration lease) override;
    asio::awaitable<void> unregister_worker(std::string identity, std::string boot_id) override;
    asio::awaitable<std::vector<WorkerInfo>> get_workers() override;
    asio::awaitable<void> reap_abandoned_jobs(std::string scheduler_id) override;
    asio::awaitable<void> cleanup() override;
    asio::awaitable<StoreCheck> check() override;

    struct Impl;

  private:
    std::shared_ptr<Impl> impl_;
};

} // namespace asched
