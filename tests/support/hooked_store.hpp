// A DataStore decorator for tests: forwards to a real store, and can hold an acquisition or
// a release in flight, or make releases fail, at the moment a test chooses.
#pragma once

#include "test_support.hpp"

#include <atomic>

namespace asched::test {

struct StoreHooks {
    std::atomic<int> acquire_job_calls{0};
    /// The acquire_jobs call with this number (from 1) waits, once inside, until open_acquire.
    std::atomic<int> hold_acquire_call{-1};
    std::atomic<bool> acquire_held{false};
    std::atomic<bool> open_acquire{false};
    /// release_jobs waits while this is set (after counting the call in releases_held).
    std::atomic<bool> hold_releases{false};
    std::atomic<int> releases_held{0};
    /// release_jobs throws this many times (or forever) before it forwards.
    std::atomic<int> failing_releases{0};
    std::atomic<bool> releases_fail_forever{false};
    std::atomic<int> release_failures{0};
    std::atomic<int> released_jobs{0};
    /// get_tasks throws Error(store_failure) while this is set (a store that stopped answering).
    std::atomic<bool> reads_fail{false};
};

class HookedStore final : public DataStore {
  public:
    HookedStore(std::shared_ptr<DataStore> inner, std::shared_ptr<StoreHooks> hooks)
        : inner_(std::move(inner)), hooks_(std::move(hooks)) {}

    asio::awaitable<void> start(StoreContext c) override { return inner_->start(std::move(c)); }
    asio::awaitable<void> stop() override { return inner_->stop(); }
    asio::awaitable<void> add_task(Task t) override { return inner_->add_task(std::move(t)); }
    asio::awaitable<void> remove_task(std::string id) override {
        return inner_->remove_task(std::move(id));
    }
    asio::awaitable<Task> get_task(std::string id) override {
        return inner_->get_task(std::move(id));
    }
    asio::awaitable<StoreCheck> check() override { return inner_->check(); }
    duration clock_offset() const noexcept override { return inner_->clock_offset(); }
    asio::awaitable<std::vector<Task>> get_tasks() override {
        if (hooks_->reads_fail)
            throw Error(errc::store_failure, "test: the store does not answer");
        return inner_->get_tasks();
    }
    asio::awaitable<std::vector<Schedule>>
    get_schedules(std::optional<std::vector<std::string>> ids) override {
        return inner_->get_schedules(std::move(ids));
    }
    asio::awaitable<bool> add_schedule(Schedule s, ConflictPolicy p) override {
        return inner_->add_schedule(std::move(s), p);
    }
    asio::awaitable<void> remove_schedules(std::vector<std::string> ids) override {
        return inner_->remove_schedules(std::move(ids));
    }
    asio::awaitable<std::vector<Schedule>> acquire_schedules(std::string id, duration lease,
                                                             std::size_t limit) override {
        return inner_->acquire_schedules(std::move(id), lease, limit);
    }
    asio::awaitable<void> release_schedules(std::string id,
                                            std::vector<ScheduleRelease> r) override {
        return inner_->release_schedules(std::move(id), std::move(r));
    }
    asio::awaitable<std::optional<time_point>> get_next_schedule_run_time() override {
        return inner_->get_next_schedule_run_time();
    }
    asio::awaitable<void> add_jobs(std::vector<Job> jobs) override {
        return inner_->add_jobs(std::move(jobs));
    }
    asio::awaitable<std::vector<Job>>
    get_jobs(std::optional<std::vector<std::string>> ids) override {
        return inner_->get_jobs(std::move(ids));
    }
    asio::awaitable<JobAcquisition> acquire_jobs(std::string id, duration lease, std::size_t limit,
                                                 std::vector<std::string> tasks) override {
        auto call = inner_->acquire_jobs(std::move(id), lease, limit, std::move(tasks));
        auto acquired = co_await std::move(call);
        // Held after the store has leased the jobs: the scheduler's call is still in flight.
        if (++hooks_->acquire_job_calls == hooks_->hold_acquire_call) {
            hooks_->acquire_held = true;
            co_await wait_for(hooks_->open_acquire, true);
        }
        co_return acquired;
    }
    asio::awaitable<std::vector<bool>> release_jobs(std::string id,
                                                    std::vector<JobRelease> r) override {
        if (hooks_->hold_releases) {
            ++hooks_->releases_held;
            co_await wait_for(hooks_->hold_releases, false);
        }
        if (hooks_->releases_fail_forever || hooks_->failing_releases > 0) {
            --hooks_->failing_releases;
            ++hooks_->release_failures;
            throw Error(errc::store_failure, "hooked store: release_jobs failed on purpose");
        }
        const auto n = static_cast<int>(r.size());
        auto call = inner_->release_jobs(std::move(id), std::move(r));
        auto applied = co_await std::move(call);
        hooks_->released_jobs += n;
        co_return applied;
    }
    asio::awaitable<std::optional<JobResult>> get_job_result(std::string id) override {
        return inner_->get_job_result(std::move(id));
    }
    asio::awaitable<JobStatus> get_job_status(std::string id) override {
        return inner_->get_job_status(std::move(id));
    }
    asio::awaitable<void> extend_acquired_schedule_leases(std::string id,
                                                          std::vector<std::string> ids,
                                                          duration lease) override {
        return inner_->extend_acquired_schedule_leases(std::move(id), std::move(ids), lease);
    }
    asio::awaitable<std::vector<std::string>>
    extend_acquired_job_leases(std::string id, std::vector<std::string> ids,
                               duration lease) override {
        return inner_->extend_acquired_job_leases(std::move(id), std::move(ids), lease);
    }
    asio::awaitable<JobCancellation> cancel_job(std::string job_id,
                                                std::string scheduler_id) override {
        return inner_->cancel_job(std::move(job_id), std::move(scheduler_id));
    }
    asio::awaitable<JobHistoryPage> get_job_history(JobHistoryFilter filter) override {
        return inner_->get_job_history(std::move(filter));
    }
    asio::awaitable<std::size_t> prune_history(time_point before) override {
        return inner_->prune_history(before);
    }
    asio::awaitable<void> register_worker(WorkerInfo w, duration lease,
                                          std::optional<std::string> replaces) override {
        return inner_->register_worker(std::move(w), lease, std::move(replaces));
    }
    asio::awaitable<bool> renew_worker(WorkerInfo w, duration lease) override {
        return inner_->renew_worker(std::move(w), lease);
    }
    asio::awaitable<void> unregister_worker(std::string identity, std::string boot_id) override {
        return inner_->unregister_worker(std::move(identity), std::move(boot_id));
    }
    asio::awaitable<std::vector<WorkerInfo>> get_workers() override {
        return inner_->get_workers();
    }
    asio::awaitable<void> reap_abandoned_jobs(std::string id) override {
        return inner_->reap_abandoned_jobs(std::move(id));
    }
    asio::awaitable<void> cleanup() override { return inner_->cleanup(); }

  private:
    // Bounded: a test that forgets to open a hold fails instead of hanging.
    static asio::awaitable<void> wait_for(const std::atomic<bool> &flag, bool value) {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (flag != value && std::chrono::steady_clock::now() < deadline) {
            timer.expires_after(std::chrono::milliseconds(1));
            co_await timer.async_wait(asio::use_awaitable);
        }
    }

    std::shared_ptr<DataStore> inner_;
    std::shared_ptr<StoreHooks> hooks_;
};

} // namespace asched::test
