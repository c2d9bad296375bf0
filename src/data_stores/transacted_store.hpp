// What the network SQL stores (PostgreSQL, MariaDB) share around their SQL: the state a store
// keeps, and TransactedStore's calls, each forwarded to the backend's operation of the same
// name. Included by each backend's source file after its operations, where the template is
// explicitly instantiated; the operations are found by argument-dependent lookup on the
// backend's Session.
#pragma once

#include "row_codec.hpp"
#include "store_util.hpp"

#include <asched/data_stores/transacted_store.hpp>
#include <asched/error.hpp>

#include <fmt/format.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace asched::detail {

/// A network SQL store's state, shared by its calls: the options, the pool that start()
/// opens, the scheduler's context, the SQL texts with the schema filled in.
template <class Options, class Pool> struct SqlStoreState {
    const char *kind; // "postgres", "mariadb": for messages
    Options options;
    std::string schema; // quoted identifier
    std::string where;  // host:port/database, for messages
    std::shared_ptr<Pool> pool;
    StoreContext context;

    std::mutex sql_mutex;
    std::unordered_map<const char *, std::string> sql_cache;
    NewerRows newer;                   // rows a newer asched wrote: skipped, never quarantined
    std::atomic<int> found_version{0}; // the schema version start() found, before migrating
    // The database's clock minus the context clock, in microseconds, as the last transaction
    // that read the database's clock measured it (from the middle of its round trip).
    std::atomic<std::int64_t> clock_offset_us{0};

    explicit SqlStoreState(const char *kind) : kind(kind) {}

    // `text` with {S} replaced by the schema; cached per literal.
    const std::string &sql(const char *text) {
        std::lock_guard lock(sql_mutex);
        auto [it, fresh] = sql_cache.try_emplace(text);
        if (fresh) {
            std::string s = text;
            for (std::size_t at; (at = s.find("{S}")) != std::string::npos;)
                s.replace(at, 3, schema);
            it->second = std::move(s);
        }
        return it->second;
    }

    void log(LogLevel level, std::string message) const {
        context.logger.log(level, std::move(message));
    }

    Pool &connections() {
        if (!pool)
            throw Error(errc::store_failure,
                        fmt::format("{} store {} is not started", kind, where));
        return *pool;
    }
};

// Each call hands Impl::run (the backend's transaction runner) a forwarder to the operation:
// a plain lambda returning the operation's awaitable, not a coroutine.

template <class Impl> asio::awaitable<void> TransactedStore<Impl>::add_task(Task task) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_add_task(s, std::move(a)...); }, std::move(task));
    co_await std::move(call);
}

template <class Impl>
asio::awaitable<void> TransactedStore<Impl>::remove_task(std::string task_id) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_remove_task(s, std::move(a)...); },
        std::move(task_id));
    co_await std::move(call);
}

template <class Impl> asio::awaitable<Task> TransactedStore<Impl>::get_task(std::string task_id) {
    std::optional<std::string> id = task_id;
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_get_tasks(s, std::move(a)...); }, std::move(id));
    auto found = co_await std::move(call);
    if (found.empty())
        throw Error(errc::task_lookup, fmt::format("task '{}' not found", task_id));
    co_return std::move(found.front());
}

template <class Impl> asio::awaitable<std::vector<Task>> TransactedStore<Impl>::get_tasks() {
    std::optional<std::string> all;
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_get_tasks(s, std::move(a)...); }, std::move(all));
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl>
asio::awaitable<std::vector<Schedule>>
TransactedStore<Impl>::get_schedules(std::optional<std::vector<std::string>> ids) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_get_schedules(s, std::move(a)...); },
        std::move(ids));
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl>
asio::awaitable<bool> TransactedStore<Impl>::add_schedule(Schedule schedule,
                                                          ConflictPolicy policy) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_add_schedule(s, std::move(a)...); },
        std::move(schedule), policy);
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl>
asio::awaitable<void> TransactedStore<Impl>::remove_schedules(std::vector<std::string> ids) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_remove_schedules(s, std::move(a)...); },
        std::move(ids));
    co_await std::move(call);
}

template <class Impl>
asio::awaitable<std::vector<Schedule>>
TransactedStore<Impl>::acquire_schedules(std::string scheduler_id, duration lease,
                                         std::size_t limit) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_acquire_schedules(s, std::move(a)...); },
        std::move(scheduler_id), lease, limit);
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl>
asio::awaitable<void>
TransactedStore<Impl>::release_schedules(std::string scheduler_id,
                                         std::vector<ScheduleRelease> releases) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_release_schedules(s, std::move(a)...); },
        std::move(scheduler_id), std::move(releases));
    co_await std::move(call);
}

template <class Impl>
asio::awaitable<std::optional<time_point>> TransactedStore<Impl>::get_next_schedule_run_time() {
    auto call = Impl::run(impl_, [](auto &s) { return op_next_schedule_run_time(s); });
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl> asio::awaitable<void> TransactedStore<Impl>::add_jobs(std::vector<Job> jobs) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_add_jobs(s, std::move(a)...); }, std::move(jobs));
    co_await std::move(call);
}

template <class Impl>
asio::awaitable<std::vector<Job>>
TransactedStore<Impl>::get_jobs(std::optional<std::vector<std::string>> ids) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_get_jobs(s, std::move(a)...); }, std::move(ids));
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl>
asio::awaitable<JobAcquisition>
TransactedStore<Impl>::acquire_jobs(std::string scheduler_id, duration lease, std::size_t limit,
                                    std::vector<std::string> task_ids) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_acquire_jobs(s, std::move(a)...); },
        std::move(scheduler_id), lease, limit, std::move(task_ids));
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl>
asio::awaitable<std::vector<bool>>
TransactedStore<Impl>::release_jobs(std::string scheduler_id, std::vector<JobRelease> releases) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_release_jobs(s, std::move(a)...); },
        std::move(scheduler_id), std::move(releases));
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl>
asio::awaitable<std::optional<JobResult>>
TransactedStore<Impl>::get_job_result(std::string job_id) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_get_job_result(s, std::move(a)...); },
        std::move(job_id));
    auto value = co_await std::move(call);
    co_return value;
}

template <class Impl>
asio::awaitable<JobStatus> TransactedStore<Impl>::get_job_status(std::string job_id) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_get_job_status(s, std::move(a)...); },
        std::move(job_id));
    auto value = co_await std::move(call);
    co_return value;
}

// An expired lease is not renewed (another node may hold the row by now); the job leases
// also report the jobs whose cancellation was requested.
template <class Impl>
asio::awaitable<void> TransactedStore<Impl>::extend_acquired_schedule_leases(
    std::string scheduler_id, std::vector<std::string> ids, duration lease) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_extend_leases(s, std::move(a)...); }, false,
        std::move(scheduler_id), std::move(ids), lease);
    co_await std::move(call);
}

template <class Impl>
asio::awaitable<std::vector<std::string>>
TransactedStore<Impl>::extend_acquired_job_leases(std::string scheduler_id,
                                                  std::vector<std::string> ids, duration lease) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_extend_leases(s, std::move(a)...); }, true,
        std::move(scheduler_id), std::move(ids), lease);
    auto flagged = co_await std::move(call);
    co_return flagged;
}

template <class Impl>
asio::awaitable<JobCancellation> TransactedStore<Impl>::cancel_job(std::string job_id,
                                                                   std::string scheduler_id) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_cancel_job(s, std::move(a)...); },
        std::move(job_id), std::move(scheduler_id));
    auto out = co_await std::move(call);
    co_return out;
}

template <class Impl>
asio::awaitable<JobHistoryPage> TransactedStore<Impl>::get_job_history(JobHistoryFilter filter) {
    check_history_filter(filter);
    std::pair<std::int64_t, std::int64_t> before{INT64_MAX, INT64_MAX};
    if (filter.cursor)
        before = parse_history_cursor(*filter.cursor); // a bad cursor: before any I/O
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_get_job_history(s, std::move(a)...); },
        std::move(filter), before);
    auto page = co_await std::move(call);
    co_return page;
}

template <class Impl>
asio::awaitable<std::size_t> TransactedStore<Impl>::prune_history(time_point before) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_prune_history(s, std::move(a)...); }, before);
    auto n = co_await std::move(call);
    co_return n;
}

template <class Impl>
asio::awaitable<void> TransactedStore<Impl>::register_worker(WorkerInfo worker, duration lease,
                                                             std::optional<std::string> replaces) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_register_worker(s, std::move(a)...); },
        std::move(worker), lease, std::move(replaces));
    co_await std::move(call);
}

template <class Impl>
asio::awaitable<bool> TransactedStore<Impl>::renew_worker(WorkerInfo worker, duration lease) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_renew_worker(s, std::move(a)...); },
        std::move(worker), lease);
    const bool ok = co_await std::move(call);
    co_return ok;
}

template <class Impl>
asio::awaitable<void> TransactedStore<Impl>::unregister_worker(std::string identity,
                                                               std::string boot_id) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_unregister_worker(s, std::move(a)...); },
        std::move(identity), std::move(boot_id));
    co_await std::move(call);
}

template <class Impl>
asio::awaitable<std::vector<WorkerInfo>> TransactedStore<Impl>::get_workers() {
    auto call = Impl::run(impl_, [](auto &s) { return op_get_workers(s); });
    auto out = co_await std::move(call);
    co_return out;
}

template <class Impl>
asio::awaitable<void> TransactedStore<Impl>::reap_abandoned_jobs(std::string scheduler_id) {
    auto call = Impl::run(
        impl_, [](auto &s, auto... a) { return op_reap_abandoned_jobs(s, std::move(a)...); },
        std::move(scheduler_id));
    co_await std::move(call);
}

template <class Impl> asio::awaitable<void> TransactedStore<Impl>::cleanup() {
    auto call = Impl::run(impl_, [](auto &s) { return op_cleanup(s); });
    co_await std::move(call);
}

template <class Impl> asio::awaitable<StoreCheck> TransactedStore<Impl>::check() {
    auto call = Impl::run(impl_, [](auto &s) { return op_check(s); });
    auto out = co_await std::move(call);
    co_return out;
}

template <class Impl> duration TransactedStore<Impl>::clock_offset() const noexcept {
    return duration(impl_->clock_offset_us.load(std::memory_order_relaxed));
}

} // namespace asched::detail
