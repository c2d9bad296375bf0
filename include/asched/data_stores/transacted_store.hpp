// TransactedStore: the DataStore calls of the network SQL stores (PostgresDataStore,
// MariaDbDataStore), each one database transaction. Not for direct use.
#pragma once

#include <asched/data_store.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asched::detail {

/// Every call but start() and stop() runs the backend's operation of the same name in one
/// transaction (retried on deadlock, its events published after COMMIT). `Impl` is the
/// backend's state, complete only inside the backend's source file, where this template is
/// instantiated.
template <class Impl> class TransactedStore : public DataStore {
  public:
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
    /// With database_clock: the database's clock minus this node's, measured by every
    /// transaction; zero without it.
    duration clock_offset() const noexcept override;

  protected:
    explicit TransactedStore(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

    std::shared_ptr<Impl> impl_;
};

} // namespace asched::detail
