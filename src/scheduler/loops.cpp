// The loops: due schedules become jobs, queued jobs are acquired and started, leases of
// running jobs are renewed, and cleanup runs. Each ends when the lifecycle leaves `started`
// (the lease loop: when nothing can run any more).
#include "../core/fault_points.hpp"
#include "scheduler_state.hpp"

#include <asched/policies.hpp>

namespace asched::detail {
namespace {

ScheduleRelease plan_release(SchedulerState &self, const Schedule &s, time_point now,
                             std::vector<Event> &dropped) {
    ScheduleRelease r{s.id, s.lease_token, s.last_fire_time, s.next_fire_time, {}, s.trigger_state};
    try {
        std::uniform_real_distribution<double> uniform(0.0, 1.0);
        auto plan = plan_fires(
            s, now, [&] { return uniform(self.rng); }, [] { return make_uuid(); });
        if (const auto &d = plan.dropped; d.count > 0) {
            auto &m = self.metrics[s.task_id];
            (d.reason == DropReason::coalesced ? m.coalesced : m.catchup_dropped) += d.count;
            dropped.push_back(FiresDropped{now, s.id, s.task_id, d.count, d.first, d.last,
                                           std::string(to_string(d.reason))});
        }
        r.jobs = std::move(plan.jobs);
        r.last_fire_time = plan.last_fire_time ? plan.last_fire_time : s.last_fire_time;
        r.next_fire_time = plan.next_fire_time;
        r.trigger_state = std::move(plan.trigger_state);
        self.log_with(LogLevel::debug, {{}, s.task_id, s.id, {}, 0},
                      "schedule '{}': {} job(s), next fire {}", s.id, r.jobs.size(),
                      r.next_fire_time ? format_time(*r.next_fire_time) : "none");
    } catch (const std::exception &e) {
        // A trigger that cannot say its next time finishes the schedule; the loop goes on.
        self.log_with(LogLevel::error, {{}, s.task_id, s.id, {}, 0},
                      "schedule '{}': trigger failed, the schedule is finished: {}", s.id,
                      e.what());
        r.jobs.clear();
        r.next_fire_time.reset();
    }
    return r;
}

// Called once the releases that dropped these fires have committed.
asio::awaitable<void> report_dropped(std::shared_ptr<SchedulerState> self,
                                     std::vector<Event> dropped) {
    for (const auto &e : dropped) {
        const auto &d = std::get<FiresDropped>(e);
        self->log_with(LogLevel::info, {{}, d.task_id, d.schedule_id, {}, 0},
                       "schedule '{}': {} due fire(s) from {} to {} made no job ({})",
                       d.schedule_id, d.count, format_time(d.first_fire_time),
                       format_time(d.last_fire_time), d.reason);
    }
    try {
        co_await self->broker->publish_batch(std::move(dropped));
    } catch (const std::exception &e) {
        self->log(LogLevel::warning, "publishing FiresDropped failed: {}", e.what());
    }
}

// A loop's store call failed: report the health, and say how long to wait (capped backoff).
duration loop_failed(SchedulerState &s, const std::exception &e, unsigned &failures,
                     const char *loop) {
    s.store_failed(e);
    const auto retry = backoff_delay(
        failures++, std::max<duration>(s.options.poll_interval, std::chrono::seconds(1)));
    s.log(LogLevel::warning, "{}: store failed ({}), retrying in {}", loop, e.what(),
          format_duration(retry));
    return retry;
}

// One iteration acquires and releases in full, so a stop never leaves a schedule leased.
asio::awaitable<void> schedule_loop(std::shared_ptr<SchedulerState> self) {
    constexpr std::size_t batch = 100;
    unsigned failures = 0;
    while (acquiring(self->phase)) {
        std::optional<time_point> wake_at;
        bool more = false;
        std::optional<duration> retry;
        try {
            auto schedules = co_await self->store->acquire_schedules(
                self->identity, self->options.lease_duration, batch);
            if (!schedules.empty())
                fault_point("schedules.acquired");
            self->check_clock_offset();
            const auto now = self->store_now();
            std::vector<ScheduleRelease> releases;
            releases.reserve(schedules.size());
            std::vector<Event> dropped;
            for (const auto &s : schedules)
                releases.push_back(plan_release(*self, s, now, dropped));
            co_await self->store->release_schedules(self->identity, std::move(releases));
            if (!dropped.empty())
                co_await report_dropped(self, std::move(dropped));
            more = schedules.size() == batch;
            if (!more) {
                auto next = co_await self->store->get_next_schedule_run_time();
                wake_at = next;
            }
            failures = 0;
            self->store_ok();
        } catch (const std::exception &e) {
            retry = loop_failed(*self, e, failures, "schedule loop");
        }
        if (more)
            continue;
        co_await self->schedule_wake.wait(retry ? steady::duration(*retry)
                                                : delay_until(*self, wake_at, WakeClock::store));
    }
}

// Jobs acquired by a call that was in flight when the stop came are still started: they are
// leased to this node, and the stop waits for this loop to end before it counts what runs.
asio::awaitable<void> job_loop(std::shared_ptr<SchedulerState> self) {
    unsigned failures = 0;
    std::vector<std::string> task_ids;
    while (acquiring(self->phase)) {
        std::optional<time_point> wake_at;
        std::optional<duration> retry;
        try {
            const std::size_t cap = self->options.max_concurrent_jobs;
            const std::size_t limit = cap > self->running.size() ? cap - self->running.size() : 0;
            if (limit > 0 && !self->functions.empty()) {
                task_ids.clear();
                for (auto &[id, fn] : self->functions)
                    task_ids.push_back(id);
                auto acquired = co_await self->store->acquire_jobs(
                    self->identity, self->options.lease_duration, limit, task_ids);
                if (!acquired.jobs.empty())
                    fault_point("jobs.acquired");
                for (auto &job : acquired.jobs)
                    start_job(self, std::move(job));
                wake_at = acquired.next_ready_time;
            }
            failures = 0;
            self->store_ok();
        } catch (const std::exception &e) {
            retry = loop_failed(*self, e, failures, "job loop");
        }
        co_await self->job_wake.wait(retry ? steady::duration(*retry)
                                           : delay_until(*self, wake_at, WakeClock::store));
    }
}

asio::awaitable<void> lease_loop(std::shared_ptr<SchedulerState> self) {
    const duration period = std::max<duration>(self->options.lease_duration / 2, duration(1000));
    time_point next = self->clock->now() + period;
    // Whether it renews the registry row or not, the loop runs on: a takeover crashes the
    // scheduler, whose stop still needs this loop until nothing runs.
    std::vector<std::string> ids;
    while (jobs_may_run(self->phase)) {
        const auto next_deadline = enforce_timeouts(*self);
        const bool due = self->clock->now() >= next;
        // The registry row is renewed with the leases (and at once when the task list grew).
        if (due || self->worker_dirty)
            co_await renew_worker(self);
        if (due) {
            next = self->clock->now() + period;
            if (!self->running.empty()) {
                ids.clear();
                for (auto &[id, rj] : self->running)
                    ids.push_back(id);
                try {
                    auto renewal = self->store->extend_acquired_job_leases(
                        self->identity, ids, self->options.lease_duration);
                    const auto cancel = co_await std::move(renewal);
                    for (const auto &id : cancel)
                        if (auto it = self->running.find(id); it != self->running.end())
                            cancel_job(*it->second, CancelKind::user);
                } catch (const std::exception &e) {
                    self->log(LogLevel::warning, "lease renewal failed: {}", e.what());
                    ++self->lease_renewals_failed;
                    next = self->clock->now() + std::min<duration>(period, std::chrono::seconds(1));
                }
            }
        }
        co_await self->lease_wake.wait(
            delay_until(*self, next_deadline ? std::min(next, *next_deadline) : next));
    }
}

asio::awaitable<void> cleanup_loop(std::shared_ptr<SchedulerState> self) {
    const duration interval = *self->options.cleanup_interval;
    time_point next = self->clock->now();
    while (acquiring(self->phase)) {
        if (self->clock->now() >= next) {
            next = self->clock->now() + interval;
            try {
                co_await self->store->cleanup();
                auto prune = self->store->prune_history(self->clock->now() -
                                                        self->options.history_retention);
                const auto pruned = co_await std::move(prune);
                if (pruned > 0)
                    self->log(LogLevel::debug, "cleanup: {} history record(s) pruned", pruned);
            } catch (const std::exception &e) {
                self->log(LogLevel::warning, "cleanup failed: {}", e.what());
            }
        }
        co_await self->cleanup_wake.wait(delay_until(*self, next));
    }
}

// A loop's end is counted whether it returned or threw; a throw is a bug and crashes the
// scheduler (spawn_logged), which then stops in order.
asio::awaitable<void> counted(std::shared_ptr<SchedulerState> self, asio::awaitable<void> loop) {
    OnExit count{[s = self.get()] {
        --s->loops;
        s->main_wake.notify();
    }};
    co_await std::move(loop);
}

asio::awaitable<void> lease_loop_flagged(std::shared_ptr<SchedulerState> self) {
    OnExit flag{[s = self.get()] {
        s->lease_loop_running = false;
        s->main_wake.notify();
    }};
    co_await lease_loop(self);
}

void spawn_counted(const std::shared_ptr<SchedulerState> &self, asio::awaitable<void> loop,
                   const char *name) {
    ++self->loops;
    spawn_logged(self, counted(self, std::move(loop)), name, true);
}

} // namespace

steady::duration delay_until(const SchedulerState &s, std::optional<time_point> at,
                             WakeClock clock) {
    const steady::duration poll = s.options.poll_interval;
    if (!at)
        return poll;
    const auto d = *at - (clock == WakeClock::store ? s.store_now() : s.clock->now());
    if (d <= duration(0))
        return steady::duration(0);
    if (s.clock->is_manual())
        return poll; // the clock's own notifications end the sleep
    return std::min<steady::duration>(poll, d);
}

void spawn_loops(const std::shared_ptr<SchedulerState> &self) {
    const auto role = self->options.role;
    if (role != SchedulerRole::worker)
        spawn_counted(self, schedule_loop(self), "schedule loop");
    if (role != SchedulerRole::scheduler)
        spawn_counted(self, job_loop(self), "job loop");
    if (self->options.cleanup_interval)
        spawn_counted(self, cleanup_loop(self), "cleanup loop");
    self->lease_loop_running = true;
    spawn_logged(self, lease_loop_flagged(self), "lease loop", true);
}

} // namespace asched::detail
