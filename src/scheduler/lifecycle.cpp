// The lifecycle driver: performs what the transition table (lifecycle_table.cpp) names, in
// one coroutine per run (run_main), so that stopping happens in one order, in one place.
#include "../core/json_limits.hpp"
#include "scheduler_state.hpp"

#include <asched/data_stores/memory_data_store.hpp>
#include <asched/event_brokers/local_event_broker.hpp>
#include <asched/job_executors/inline_executor.hpp>
#include <asched/job_executors/thread_pool_executor.hpp>

#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <unistd.h>

namespace asched::detail {
namespace {

std::string default_identity(const void *self) {
    return fmt::format("{}-{}-{:x}", host_name(), ::getpid(),
                       reinterpret_cast<std::uintptr_t>(self));
}

void on_event(const std::weak_ptr<SchedulerState> &weak, const Event &event) {
    auto self = weak.lock();
    if (!self)
        return;
    if (std::holds_alternative<JobAdded>(event)) {
        self->job_wake.notify();
    } else if (auto *r = std::get_if<JobReleased>(&event)) {
        self->job_wake.notify();
        // A misfire is decided by the store when this node acquires (or by start_job): count
        // this node's from the release event, the one place every misfire passes.
        if (r->outcome == JobOutcome::missed_start_deadline && r->scheduler_id == self->identity)
            ++self->metrics[r->task_id].outcomes[std::size_t(JobOutcome::missed_start_deadline)];
        auto [begin, end] = self->result_waiters.equal_range(r->job_id);
        for (auto it = begin; it != end; ++it)
            it->second->wake.notify();
    } else if (std::holds_alternative<ScheduleAdded>(event) ||
               std::holds_alternative<ScheduleUpdated>(event)) {
        self->schedule_wake.notify();
    } else if (auto *c = std::get_if<JobCancelRequested>(&event)) {
        // The store has the flag (the lease renewal would find it); this is only sooner.
        if (c->scheduler_id == self->identity)
            if (auto it = self->running.find(c->job_id); it != self->running.end())
                cancel_job(*it->second, CancelKind::user);
    }
}

std::string what_of(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception &ex) {
        return ex.what();
    } catch (...) {
        return "unknown error";
    }
}

// The startup half of a run: register (or be refused), reap, start the executors, spawn
// the loops.
asio::awaitable<void> start_up(std::shared_ptr<SchedulerState> self) {
    bool registered = false;
    try {
        auto call = register_worker(self);
        registered = co_await std::move(call);
    } catch (const Error &e) {
        // Refused: nothing of the live holder's is touched (no reaping, no leases freed).
        self->start_error = std::current_exception();
        crash(*self, e.what());
    }
    if (self->start_error)
        co_return;
    // Reaping without a registered row could take a live twin's jobs: only once registered.
    if (registered && self->options.role != SchedulerRole::scheduler) {
        try {
            co_await self->store->reap_abandoned_jobs(self->identity);
        } catch (const std::exception &e) {
            self->log(LogLevel::warning, "reaping abandoned jobs failed: {}", e.what());
        }
    }
    for (auto &[name, executor] : self->options.job_executors) {
        auto started = executor->start(self->executor, self->logger);
        co_await std::move(started);
    }
    if (fire(*self, LifeEvent::ready)) {
        self->log(LogLevel::info, "scheduler '{}' started", self->identity);
        self->broker->publish_local(SchedulerStarted{self->clock->now()});
        spawn_loops(self);
    }
}

// The stopping half: drain for the grace period, cancel, wait for every release to commit,
// then stop. Never throws: whatever happens, the scheduler ends stopped.
asio::awaitable<void> shut_down(std::shared_ptr<SchedulerState> self) {
    const auto deadline = steady::now() + self->options.stop_grace_period;
    while (!self->idle()) {
        const auto now = steady::now();
        if (self->phase == Phase::draining && now >= deadline) {
            if (!self->running.empty())
                self->log(LogLevel::warning, "stop: cancelling {} job(s) still running after {}",
                          self->running.size(), format_duration(self->options.stop_grace_period));
            fire(*self, LifeEvent::grace_over);
        }
        // Blocking tasks cannot be interrupted: their threads are waited for.
        const auto wait = self->phase == Phase::draining
                              ? std::max(deadline - now, steady::duration(0))
                              : steady::duration(std::chrono::seconds(1));
        co_await self->main_wake.wait(wait);
    }
    fire(*self, LifeEvent::idle);
    while (self->lease_loop_running)
        co_await self->main_wake.wait(std::chrono::seconds(1));
    for (auto &[name, executor] : self->options.job_executors) {
        try {
            auto stopped = executor->stop();
            co_await std::move(stopped);
        } catch (const std::exception &e) {
            self->log(LogLevel::warning, "job executor '{}' failed to stop: {}", name, e.what());
        }
    }
    co_await unregister_worker(self);
    fire(*self, LifeEvent::released);
}

asio::awaitable<void> run_main(std::shared_ptr<SchedulerState> self) {
    try {
        co_await start_up(self);
        while (self->phase == Phase::started)
            co_await self->main_wake.wait(std::chrono::hours(24));
    } catch (const std::exception &e) {
        crash(*self, e.what());
    }
    co_await shut_down(self);
}

void publish_state(SchedulerState &s) {
    s.run_state = run_state_of(s.phase);
    for (auto &w : s.state_waiters)
        w->notify();
}

} // namespace

void crash(SchedulerState &self, const std::string &why) {
    if (!self.crash)
        self.crash = why;
    self.log(LogLevel::error, "scheduler '{}' crashed: {}", self.identity, why);
    fire(self, LifeEvent::crash);
}

bool fire(SchedulerState &self, LifeEvent event) {
    const auto t = next_transition(self.phase, event);
    if (!t)
        return false;
    self.log(LogLevel::debug, "scheduler '{}': {} --{}--> {}", self.identity, to_string(t->from),
             to_string(event), to_string(t->to));
    self.phase = t->to;
    publish_state(self);
    switch (t->action) {
    case LifeAction::open:
    case LifeAction::spawn_loops:
        break; // run_main performs these
    case LifeAction::stop_acquiring:
        self.wake_all();
        break;
    case LifeAction::cancel_jobs:
        for (auto &[id, rj] : self.running)
            cancel_job(*rj);
        self.wake_all();
        break;
    case LifeAction::release_leases:
        self.lease_wake.notify();
        break;
    case LifeAction::finish:
        self.log(LogLevel::info, "scheduler '{}' stopped", self.identity);
        self.broker->publish_local(SchedulerStopped{self.clock->now(), self.crash});
        break;
    }
    self.main_wake.notify();
    return true;
}

void spawn_logged(const std::shared_ptr<SchedulerState> &self, asio::awaitable<void> op,
                  const char *what, bool fatal) {
    asio::co_spawn(self->strand, std::move(op),
                   asio::bind_executor(self->strand, [self, what, fatal](std::exception_ptr e) {
                       if (!e)
                           return;
                       const auto why = what_of(e);
                       if (fatal)
                           crash(*self, fmt::format("{}: {}", what, why));
                       else
                           self->log(LogLevel::error, "{} failed: {}", what, why);
                   }));
}

asio::awaitable<void> ensure_open(std::shared_ptr<SchedulerState> self) {
    if (self->services_open)
        co_return;
    co_await self->broker->start(self->executor, self->logger);
    // Named locals, not temporaries, inside co_await: GCC 12 miscompiles the latter.
    StoreContext context{self->broker, self->clock, self->logger};
    co_await self->store->start(std::move(context));
    std::weak_ptr<SchedulerState> weak = self;
    self->internal_subscription = self->broker->subscribe(
        [weak](const Event &e) { on_event(weak, e); },
        event_mask<JobAdded, JobReleased, ScheduleAdded, ScheduleUpdated, JobCancelRequested>(),
        self->strand);
    if (self->clock->is_manual() && self->clock_listener == 0) {
        self->clock_listener = self->clock->add_listener([weak] {
            if (auto s = weak.lock())
                asio::post(s->strand, [weak] {
                    if (auto s2 = weak.lock())
                        s2->wake_all();
                });
        });
    }
    self->services_open = true;
}

asio::awaitable<void> wait_for_state(std::shared_ptr<SchedulerState> self,
                                     std::function<bool(RunState)> done) {
    auto w = std::make_shared<Wakeup>(self->strand);
    self->state_waiters.push_back(w);
    while (!done(self->run_state))
        co_await w->wait(std::chrono::hours(24));
    std::erase(self->state_waiters, w);
}

asio::awaitable<void> do_start(std::shared_ptr<SchedulerState> self, bool wait_started) {
    if (self->phase != Phase::stopped)
        throw Error(errc::not_running, fmt::format("scheduler '{}' is already {}", self->identity,
                                                   to_string(self->run_state.load())));
    co_await ensure_open(self);
    self->crash.reset();
    self->start_error = nullptr;
    fire(*self, LifeEvent::start);
    spawn_logged(self, run_main(self), "the scheduler's main coroutine", true);
    if (wait_started) {
        co_await wait_for_state(self, [](RunState s) { return s != RunState::starting; });
        if (self->start_error) {
            // Refused at start: report it once the scheduler is stopped again.
            co_await wait_for_state(self, [](RunState s) { return s == RunState::stopped; });
            std::rethrow_exception(self->start_error);
        }
    }
}

asio::awaitable<void> do_close(std::shared_ptr<SchedulerState> self) {
    if (self->phase != Phase::stopped)
        throw Error(errc::not_running, "close: the scheduler must be stopped first");
    if (!self->services_open)
        co_return;
    self->services_open = false;
    self->internal_subscription.unsubscribe();
    co_await self->store->stop();
    co_await self->broker->stop();
}

asio::awaitable<void> Wakeup::wait(std::chrono::steady_clock::duration timeout) {
    if (!pending_ && timeout > steady::duration(0)) {
        timer_.expires_after(timeout);
        co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    pending_ = false;
}

SchedulerState::SchedulerState(asio::any_io_executor ex, AsyncSchedulerOptions opts)
    : executor(ex), strand(asio::make_strand(ex)), options(std::move(opts)), schedule_wake(strand),
      job_wake(strand), lease_wake(strand), cleanup_wake(strand), main_wake(strand),
      rng(std::random_device{}()) {
    store = options.data_store ? options.data_store : std::make_shared<MemoryDataStore>();
    broker = options.event_broker ? options.event_broker : std::make_shared<LocalEventBroker>();
    clock = options.clock ? options.clock : std::make_shared<SystemClock>();
    logger = options.logger;
    identity = options.identity.empty() ? default_identity(this) : options.identity;
    check_limits(options.limits);
    if (options.lease_duration <= duration(0))
        throw Error(errc::invalid_argument, "scheduler: field 'lease_duration': must be positive");
    if (options.poll_interval <= duration(0))
        throw Error(errc::invalid_argument, "scheduler: field 'poll_interval': must be positive");
    if (options.cleanup_interval && *options.cleanup_interval <= duration(0))
        throw Error(errc::invalid_argument,
                    "scheduler: field 'cleanup_interval': must be positive");
    if (options.stop_grace_period < duration(0))
        throw Error(errc::invalid_argument,
                    "scheduler: field 'stop_grace_period': must not be negative");
    if (options.max_clock_offset < duration(0))
        throw Error(errc::invalid_argument,
                    "scheduler: field 'max_clock_offset': must not be negative");
    if (options.max_release_batch == 0)
        throw Error(errc::invalid_argument,
                    "scheduler: field 'max_release_batch': must be positive");
    for (auto &[name, executor] : options.job_executors)
        if (!executor)
            throw Error(errc::invalid_argument,
                        fmt::format("scheduler: field 'job_executors': '{}' is null", name));
    if (!options.job_executors.count("async"))
        options.job_executors["async"] = std::make_shared<InlineExecutor>();
    if (!options.job_executors.count("threadpool"))
        options.job_executors["threadpool"] =
            std::make_shared<ThreadPoolExecutor>(options.thread_pool_size);
}

SchedulerState::~SchedulerState() {
    if (clock_listener)
        clock->remove_listener(clock_listener);
}

void SchedulerState::store_failed(const std::exception &e) {
    if (store_degraded)
        return;
    store_degraded = true;
    store_problem = e.what();
    log(LogLevel::error, "store health: degraded ({}); the scheduler keeps running and retries",
        e.what());
    broker->publish_local(StoreHealthChanged{clock->now(), identity, true, e.what()});
}

void SchedulerState::store_ok() {
    if (!store_degraded)
        return;
    store_degraded = false;
    store_problem.clear();
    log(LogLevel::info, "store health: ok again");
    broker->publish_local(StoreHealthChanged{clock->now(), identity, false, {}});
}

void SchedulerState::check_clock_offset() {
    const auto offset = std::chrono::round<std::chrono::milliseconds>(store->clock_offset());
    const bool exceeded = std::chrono::abs(offset) > options.max_clock_offset;
    if (exceeded == clock_offset_exceeded)
        return;
    clock_offset_exceeded = exceeded;
    if (exceeded)
        log(LogLevel::warning,
            "clock offset: the store's clock runs {} {} this node's (over max_clock_offset, {}); "
            "fires are planned on the store's clock, but this node's timestamps (results, "
            "lateness) are off by as much: synchronise its clock (NTP)",
            format_duration(std::chrono::abs(offset)),
            offset > duration::zero() ? "ahead of" : "behind",
            format_duration(options.max_clock_offset));
    else
        log(LogLevel::info,
            "clock offset: the store's clock and this node's agree again ({} apart)",
            format_duration(std::chrono::abs(offset)));
}

void SchedulerState::wake_all() {
    schedule_wake.notify();
    job_wake.notify();
    lease_wake.notify();
    cleanup_wake.notify();
    main_wake.notify();
}

} // namespace asched::detail
