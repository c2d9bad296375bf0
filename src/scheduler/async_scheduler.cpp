// AsyncScheduler: the loops (schedules, jobs, leases, cleanup), job execution and stopping.
#include "scheduler_state.hpp"

#include <asched/data_stores/memory_data_store.hpp>
#include <asched/event_brokers/local_event_broker.hpp>
#include <asched/policies.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <unistd.h>

#include <algorithm>

namespace asched {
namespace detail {
namespace {

using steady = std::chrono::steady_clock;

std::string default_identity(const void* self) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0)
        std::snprintf(host, sizeof host, "localhost");
    return fmt::format("{}-{}-{:x}", host, ::getpid(), reinterpret_cast<std::uintptr_t>(self));
}

void set_state(SchedulerState& s, RunState state) {
    s.run_state = state;
    for (auto& w : s.state_waiters)
        w->notify();
}

// Runs `op` on the scheduler's strand; the caller resumes on its own executor.
template <class T>
asio::awaitable<T> on_strand(std::shared_ptr<SchedulerState> self, asio::awaitable<T> op) {
    auto strand = self->strand;
    if constexpr (std::is_void_v<T>) {
        co_await asio::co_spawn(strand, std::move(op), asio::use_awaitable);
    } else {
        co_return co_await asio::co_spawn(strand, std::move(op), asio::use_awaitable);
    }
}

// How long a loop may sleep before `at` (real time), bounded by the poll interval. On a
// manual clock the clock's own notifications end the sleep.
steady::duration delay_until(const SchedulerState& s, std::optional<time_point> at) {
    const steady::duration poll = s.options.poll_interval;
    if (!at)
        return poll;
    const auto d = *at - s.clock->now();
    if (d <= duration(0))
        return steady::duration(0);
    if (s.clock->is_manual())
        return poll;
    return std::min<steady::duration>(poll, d);
}

void on_event(const std::weak_ptr<SchedulerState>& weak, const Event& event) {
    auto self = weak.lock();
    if (!self)
        return;
    if (std::holds_alternative<JobAdded>(event)) {
        self->job_wake.notify();
    } else if (auto* r = std::get_if<JobReleased>(&event)) {
        self->job_wake.notify();
        auto [begin, end] = self->result_waiters.equal_range(r->job_id);
        for (auto it = begin; it != end; ++it) {
            it->second->released = true;
            it->second->wake.notify();
        }
    } else if (std::holds_alternative<ScheduleAdded>(event) ||
               std::holds_alternative<ScheduleUpdated>(event)) {
        self->schedule_wake.notify();
    }
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
        [weak](const Event& e) { on_event(weak, e); },
        event_mask<JobAdded, JobReleased, ScheduleAdded, ScheduleUpdated>(), self->strand);
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

nlohmann::json merged_metadata(const nlohmann::json& base, const nlohmann::json& extra,
                               std::string_view what) {
    if (!extra.is_object())
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field 'metadata': expected a JSON object, got {}", what,
                                extra.type_name()));
    nlohmann::json out = base.is_object() ? base : nlohmann::json::object();
    out.update(extra);
    return out;
}

void check_args(const nlohmann::json& args, std::string_view what) {
    if (!args.is_array())
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field 'args': expected a JSON array, got {}", what,
                                args.type_name()));
}

void check_non_negative(std::optional<duration> d, std::string_view what, std::string_view field) {
    if (d && *d < duration(0))
        throw Error(errc::invalid_argument, fmt::format("{}: field '{}': must not be negative, got {}",
                                                        what, field, format_duration(*d)));
}

// ---- tasks ---------------------------------------------------------------------------------

asio::awaitable<std::optional<Task>> try_get_task(std::shared_ptr<SchedulerState> self,
                                                  std::string id) {
    try {
        co_return co_await self->store->get_task(id);
    } catch (const Error& e) {
        if (e.code_value() != errc::task_lookup)
            throw;
    }
    co_return std::nullopt;
}

asio::awaitable<Task> do_add_task(std::shared_ptr<SchedulerState> self, std::string id,
                                  std::shared_ptr<const TaskFunction> fn, TaskOptions options,
                                  bool must_exist) {
    if (id.empty())
        throw Error(errc::invalid_argument, "task: field 'id': must not be empty");
    co_await ensure_open(self);
    auto existing = co_await try_get_task(self, id);
    if (!existing && must_exist)
        throw Error(errc::task_lookup, fmt::format("task '{}' not found", id));
    Task task;
    if (existing) {
        task = *existing;
    } else {
        const auto& d = self->options.task_defaults;
        task.id = id;
        task.max_running_jobs = d.max_running_jobs;
        task.misfire_grace_time = d.misfire_grace_time;
        task.metadata = d.metadata.is_object() ? d.metadata : nlohmann::json::object();
    }
    if (options.max_running_jobs)
        task.max_running_jobs = *options.max_running_jobs;
    if (task.max_running_jobs && *task.max_running_jobs <= 0)
        throw Error(errc::invalid_argument,
                    fmt::format("task '{}': field 'max_running_jobs': must be positive, got {}", id,
                                *task.max_running_jobs));
    if (options.misfire_grace_time)
        task.misfire_grace_time = *options.misfire_grace_time;
    check_non_negative(task.misfire_grace_time, fmt::format("task '{}'", id), "misfire_grace_time");
    if (options.metadata)
        task.metadata = merged_metadata(task.metadata, *options.metadata, fmt::format("task '{}'", id));
    if (fn)
        task.job_executor = fn->is_coroutine ? "async" : "threadpool";
    co_await self->store->add_task(task);
    if (fn) {
        self->functions[id] = std::move(fn);
        self->job_wake.notify();
    }
    co_return task;
}

// ---- schedules -----------------------------------------------------------------------------

asio::awaitable<std::string> do_add_schedule(std::shared_ptr<SchedulerState> self,
                                             std::string task_id, TriggerPtr trigger,
                                             ScheduleOptions options) {
    if (!trigger)
        throw Error(errc::invalid_argument, "add_schedule: field 'trigger': must not be null");
    co_await ensure_open(self);
    const Task task = co_await self->store->get_task(task_id);
    const std::string what = fmt::format("schedule '{}'", options.id);
    check_args(options.args, what);
    check_non_negative(options.max_jitter, what, "max_jitter");
    check_non_negative(options.job_result_expiration_time, what, "job_result_expiration_time");
    if (auto bound = trigger->with_start(self->clock->now()))
        trigger = std::move(bound);

    Schedule s;
    s.id = options.id.empty() ? make_uuid() : options.id;
    s.task_id = task_id;
    s.trigger = trigger;
    s.args = std::move(options.args);
    s.paused = options.paused;
    s.coalesce = options.coalesce;
    s.misfire_grace_time =
        options.misfire_grace_time ? *options.misfire_grace_time : task.misfire_grace_time;
    check_non_negative(s.misfire_grace_time, what, "misfire_grace_time");
    s.max_jitter = options.max_jitter;
    s.job_result_expiration_time = options.job_result_expiration_time;
    s.metadata = merged_metadata(task.metadata, options.metadata, what);
    s.next_fire_time = trigger->advance(std::nullopt, s.trigger_state);
    const bool stored = co_await self->store->add_schedule(s, options.conflict_policy);
    if (stored)
        self->log(LogLevel::info, "added schedule '{}' of task '{}': {}, next fire {}", s.id, task_id,
                  trigger->describe(),
                  s.next_fire_time ? trigger->timezone().format(*s.next_fire_time) : "none");
    co_return s.id;
}

asio::awaitable<std::optional<Schedule>> do_try_get_schedule(std::shared_ptr<SchedulerState> self,
                                                             std::string id) {
    co_await ensure_open(self);
    std::optional<std::vector<std::string>> ids(std::in_place, 1, id);
    auto found = co_await self->store->get_schedules(std::move(ids));
    if (found.empty())
        co_return std::nullopt;
    co_return std::move(found.front());
}

asio::awaitable<Schedule> do_get_schedule(std::shared_ptr<SchedulerState> self, std::string id) {
    auto s = co_await do_try_get_schedule(self, id);
    if (!s)
        throw Error(errc::schedule_lookup, fmt::format("schedule '{}' not found", id));
    co_return std::move(*s);
}

asio::awaitable<void> do_set_paused(std::shared_ptr<SchedulerState> self, std::string id,
                                    bool paused, ResumeFrom resume_from) {
    Schedule s = co_await do_get_schedule(self, id);
    s.paused = paused;
    if (!paused && resume_from.kind != ResumeFrom::Kind::stored) {
        const auto from =
            resume_from.kind == ResumeFrom::Kind::now ? self->clock->now() : resume_from.at;
        skip_fires_before(s, from);
    }
    co_await self->store->add_schedule(std::move(s), ConflictPolicy::replace);
}

// ---- jobs ----------------------------------------------------------------------------------

asio::awaitable<std::string> do_add_job(std::shared_ptr<SchedulerState> self, std::string task_id,
                                        JobOptions options) {
    co_await ensure_open(self);
    const Task task = co_await self->store->get_task(task_id);
    const std::string what = fmt::format("job of task '{}'", task_id);
    check_args(options.args, what);
    check_non_negative(options.result_expiration_time, what, "result_expiration_time");
    Job job;
    if (options.id && options.id->empty())
        throw Error(errc::invalid_argument, fmt::format("{}: field 'id': must not be empty", what));
    job.id = options.id ? *options.id : make_uuid();
    job.task_id = task_id;
    job.args = std::move(options.args);
    job.result_expiration_time = options.result_expiration_time;
    job.metadata = merged_metadata(task.metadata, options.metadata, what);
    job.created_at = self->clock->now();
    const auto id = job.id;
    co_await self->store->add_job(std::move(job));
    co_return id;
}

asio::awaitable<std::optional<JobResult>> do_get_job_result(std::shared_ptr<SchedulerState> self,
                                                            std::string job_id, bool wait) {
    co_await ensure_open(self);
    // Register before looking, so a release that lands while we look is not missed.
    auto waiter = std::make_shared<ResultWaiter>(self->strand);
    auto it = self->result_waiters.emplace(job_id, waiter);
    struct Unregister {
        SchedulerState& s;
        decltype(it) entry;
        ~Unregister() { s.result_waiters.erase(entry); }
    } unregister{*self, it};

    // One co_return, after the loop, of a variable declared outside it; every co_await's
    // result is a named local first. GCC 12 returned a destroyed JobResult when the loop
    // body declared the result and co_returned it on a later iteration.
    std::optional<JobResult> found;
    bool unknown = false, unfinished = false;
    for (;;) {
        // Whether the job had ended before this read began: a release that lands while the
        // read runs may be invisible to it, so only an earlier one proves "no kept result".
        const bool ended_before = waiter->released;
        auto result = co_await self->store->get_job_result(job_id);
        if (result) {
            found = std::move(result);
            break;
        }
        if (ended_before)
            break; // it ended without a kept result
        if (waiter->released)
            continue; // it ended during the read: read again
        std::optional<std::vector<std::string>> ids(std::in_place, 1, job_id);
        auto jobs = co_await self->store->get_jobs(std::move(ids));
        if (jobs.empty()) {
            // The job may have finished between the two reads (the store's calls can take
            // another thread): look for its result again, then give its JobReleased event a
            // moment to arrive before calling the id unknown.
            auto late = co_await self->store->get_job_result(job_id);
            if (late) {
                found = std::move(late);
                break;
            }
            if (!waiter->released)
                co_await waiter->wake.wait(std::chrono::milliseconds(200));
            if (waiter->released)
                continue;
            unknown = true;
            break;
        }
        if (!wait) {
            unfinished = true;
            break;
        }
        co_await waiter->wake.wait(self->options.poll_interval);
    }
    if (unknown)
        throw Error(errc::job_lookup, fmt::format("job '{}' not found (unknown, or its result expired)", job_id));
    if (unfinished)
        throw Error(errc::job_lookup, fmt::format("job '{}' has not finished yet", job_id));
    co_return found;
}

asio::awaitable<nlohmann::json> do_run_job(std::shared_ptr<SchedulerState> self,
                                           std::string task_id, JobOptions options) {
    options.result_expiration_time =
        std::max<duration>(options.result_expiration_time, std::chrono::minutes(15));
    const auto id = co_await do_add_job(self, task_id, std::move(options));
    const auto result = co_await do_get_job_result(self, id, true);
    if (!result)
        throw Error(errc::job_lookup, fmt::format("job '{}' ended without a result", id));
    const std::string detail =
        fmt::format("job '{}' of task '{}': {}{}{}", id, task_id,
                    result->exception_type.value_or(""), result->exception_type ? ": " : "",
                    result->exception_message.value_or(std::string(to_string(result->outcome))));
    switch (result->outcome) {
    case JobOutcome::success: co_return result->return_value;
    case JobOutcome::error: throw Error(errc::job_failed, detail);
    case JobOutcome::cancelled: throw Error(errc::job_cancelled, detail);
    case JobOutcome::missed_start_deadline: throw Error(errc::job_deadline_missed, detail);
    case JobOutcome::abandoned: throw Error(errc::job_abandoned, detail);
    }
    throw Error(errc::job_failed, detail);
}

asio::awaitable<Event> do_next_event(std::shared_ptr<SchedulerState> self, EventMask mask) {
    struct Slot {
        explicit Slot(const asio::any_io_executor& ex) : wake(ex) {}
        Wakeup wake;
        std::optional<Event> event;
    };
    auto slot = std::make_shared<Slot>(self->strand);
    auto sub = self->broker->subscribe(
        [slot](const Event& e) {
            if (!slot->event) {
                slot->event = e;
                slot->wake.notify();
            }
        },
        mask, self->strand, true);
    while (!slot->event)
        co_await slot->wake.wait(std::chrono::hours(24));
    co_return std::move(*slot->event);
}

// ---- running jobs --------------------------------------------------------------------------

asio::awaitable<nlohmann::json> run_coroutine_task(std::shared_ptr<const TaskFunction> fn,
                                                   std::shared_ptr<JobContext> context,
                                                   nlohmann::json args) {
    co_return co_await fn->coroutine(*context, args);
}

asio::awaitable<nlohmann::json> run_blocking_task(std::shared_ptr<const TaskFunction> fn,
                                                  std::shared_ptr<JobContext> context,
                                                  nlohmann::json args) {
    co_return fn->blocking(*context, args);
}

asio::awaitable<void> release_with_retry(std::shared_ptr<SchedulerState> self, Job job,
                                         JobResult result) {
    for (unsigned attempt = 0;; ++attempt) {
        std::string failure;
        try {
            co_await self->store->release_job(self->identity, job, result);
            self->store_ok();
            co_return;
        } catch (const std::exception& e) {
            self->store_failed(e);
            failure = e.what();
        }
        // While running, retry until the store answers (the release is fenced: one that comes
        // too late is refused, not applied twice). When stopping, give up once the lease would
        // have expired anyway: cleanup then abandons the job.
        const auto delay = backoff_delay(attempt, std::chrono::seconds(5));
        if (self->run_state != RunState::started && attempt > 0 && delay * attempt > self->options.lease_duration) {
            self->log(LogLevel::error, "job '{}': result lost, the store kept failing: {}", job.id,
                      failure);
            co_return;
        }
        self->log(LogLevel::warning, "job '{}': releasing failed ({}), retrying", job.id, failure);
        asio::steady_timer timer(self->strand, delay);
        co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
}

asio::awaitable<void> run_job(std::shared_ptr<SchedulerState> self, std::shared_ptr<RunningJob> rj,
                              std::shared_ptr<const TaskFunction> fn) {
    const Job& job = rj->job;
    JobResult result;
    result.job_id = job.id;
    result.task_id = job.task_id;
    result.schedule_id = job.schedule_id;
    const auto now = self->clock->now();
    if (missed_deadline(job, now)) {
        result.outcome = JobOutcome::missed_start_deadline;
        result.exception_message =
            fmt::format("start deadline {} passed", format_time(*job.start_deadline));
    } else {
        result.started_at = now;
        rj->context = std::make_shared<JobContext>(JobContext{job.id, job.task_id, job.schedule_id,
                                                              job.scheduled_fire_time, job.metadata,
                                                              rj->stop.get_token()});
        self->log(LogLevel::debug, "job '{}' of task '{}' started", job.id, job.task_id);
        try {
            // Named locals, no temporaries, in these co_awaits: a task that throws must not
            // trip GCC 12's double destruction of co_await temporaries.
            if (fn->is_coroutine) {
                auto task = run_coroutine_task(fn, rj->context, job.args);
                auto token = asio::bind_cancellation_slot(rj->signal.slot(), asio::use_awaitable);
                auto value = co_await asio::co_spawn(self->executor, std::move(task), token);
                result.return_value = std::move(value);
            } else {
                auto task = run_blocking_task(fn, rj->context, job.args);
                auto pool = self->pool.get_executor();
                auto value = co_await asio::co_spawn(pool, std::move(task), asio::use_awaitable);
                result.return_value = std::move(value);
            }
            result.outcome = JobOutcome::success;
        } catch (const std::exception& e) {
            result.outcome = rj->cancel_requested ? JobOutcome::cancelled : JobOutcome::error;
            result.exception_type = demangle(typeid(e).name());
            result.exception_message = e.what();
        } catch (...) {
            result.outcome = rj->cancel_requested ? JobOutcome::cancelled : JobOutcome::error;
            result.exception_type = "unknown";
            result.exception_message = "a non-standard exception was thrown";
        }
        if (result.outcome == JobOutcome::cancelled)
            result.exception_message = "cancelled: the scheduler stopped";
    }
    result.finished_at = self->clock->now();
    result.expires_at = result.finished_at + job.result_expiration_time;
    if (result.outcome == JobOutcome::error)
        self->log(LogLevel::warning, "job '{}' of task '{}' failed: {}: {}", job.id, job.task_id,
                  *result.exception_type, *result.exception_message);
    co_await release_with_retry(self, job, std::move(result));
    self->running.erase(job.id);
    self->job_wake.notify();
    self->main_wake.notify();
}

void start_job(const std::shared_ptr<SchedulerState>& self, Job job) {
    auto fn = self->functions.at(job.task_id);
    auto rj = std::make_shared<RunningJob>();
    rj->job = std::move(job);
    self->running.emplace(rj->job.id, rj);
    asio::co_spawn(self->strand, run_job(self, rj, std::move(fn)),
                   asio::bind_executor(self->strand, [self, id = rj->job.id](std::exception_ptr e) {
                       if (!e)
                           return;
                       // run_job catches the task's exceptions; this is a bug in asched.
                       self->running.erase(id);
                       self->main_wake.notify();
                       try {
                           std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                           self->log(LogLevel::error, "job '{}': internal error: {}", id, ex.what());
                       } catch (...) {
                           self->log(LogLevel::error, "job '{}': internal error", id);
                       }
                   }));
}

// ---- loops ---------------------------------------------------------------------------------

ScheduleRelease plan_release(SchedulerState& self, const Schedule& s, time_point now) {
    ScheduleRelease r{s.id, s.lease_token, s.last_fire_time, s.next_fire_time, {}, s.trigger_state};
    try {
        std::uniform_real_distribution<double> uniform(0.0, 1.0);
        auto plan = plan_fires(
            s, now, [&] { return uniform(self.rng); }, [] { return make_uuid(); });
        r.jobs = std::move(plan.jobs);
        r.last_fire_time = plan.last_fire_time ? plan.last_fire_time : s.last_fire_time;
        r.next_fire_time = plan.next_fire_time;
        r.trigger_state = std::move(plan.trigger_state);
        self.log(LogLevel::debug, "schedule '{}': {} job(s), next fire {}", s.id, r.jobs.size(),
                 r.next_fire_time ? format_time(*r.next_fire_time) : "none");
    } catch (const std::exception& e) {
        // A trigger that cannot say its next time finishes the schedule; the loop goes on.
        self.log(LogLevel::error, "schedule '{}': trigger failed, the schedule is finished: {}",
                 s.id, e.what());
        r.jobs.clear();
        r.next_fire_time.reset();
    }
    return r;
}

asio::awaitable<void> schedule_loop(std::shared_ptr<SchedulerState> self) {
    constexpr std::size_t batch = 100;
    unsigned failures = 0;
    while (self->run_state == RunState::started) {
        std::optional<time_point> wake_at;
        bool more = false;
        std::optional<duration> retry;
        try {
            auto schedules =
                co_await self->store->acquire_schedules(self->identity, self->options.lease_duration, batch);
            const auto now = self->clock->now();
            std::vector<ScheduleRelease> releases;
            releases.reserve(schedules.size());
            for (const auto& s : schedules)
                releases.push_back(plan_release(*self, s, now));
            co_await self->store->release_schedules(self->identity, std::move(releases));
            more = schedules.size() == batch;
            if (!more) {
                auto next = co_await self->store->get_next_schedule_run_time();
                wake_at = next;
            }
            failures = 0;
            self->store_ok();
        } catch (const std::exception& e) {
            self->store_failed(e);
            retry = backoff_delay(failures++, std::max<duration>(self->options.poll_interval, std::chrono::seconds(1)));
            self->log(LogLevel::warning, "schedule loop: store failed ({}), retrying in {}", e.what(),
                      format_duration(*retry));
        }
        if (more)
            continue;
        co_await self->schedule_wake.wait(retry ? steady::duration(*retry) : delay_until(*self, wake_at));
    }
}

asio::awaitable<void> job_loop(std::shared_ptr<SchedulerState> self) {
    unsigned failures = 0;
    while (self->run_state == RunState::started) {
        std::optional<time_point> wake_at;
        std::optional<duration> retry;
        try {
            const std::size_t cap = self->options.max_concurrent_jobs;
            const std::size_t limit = cap > self->running.size() ? cap - self->running.size() : 0;
            if (limit > 0 && !self->functions.empty()) {
                std::vector<std::string> ids;
                ids.reserve(self->functions.size());
                for (auto& [id, fn] : self->functions)
                    ids.push_back(id);
                auto acquired = co_await self->store->acquire_jobs(
                    self->identity, self->options.lease_duration, limit, std::move(ids));
                for (auto& job : acquired.jobs)
                    start_job(self, std::move(job));
                wake_at = acquired.next_ready_time;
            }
            failures = 0;
            self->store_ok();
        } catch (const std::exception& e) {
            self->store_failed(e);
            retry = backoff_delay(failures++, std::max<duration>(self->options.poll_interval, std::chrono::seconds(1)));
            self->log(LogLevel::warning, "job loop: store failed ({}), retrying in {}", e.what(),
                      format_duration(*retry));
        }
        co_await self->job_wake.wait(retry ? steady::duration(*retry) : delay_until(*self, wake_at));
    }
}

asio::awaitable<void> lease_loop(std::shared_ptr<SchedulerState> self) {
    const duration period = std::max<duration>(self->options.lease_duration / 2, duration(1000));
    time_point next = self->clock->now() + period;
    while (!self->lease_loop_done) {
        if (self->clock->now() >= next) {
            next = self->clock->now() + period;
            if (!self->running.empty()) {
                std::vector<std::string> ids;
                for (auto& [id, rj] : self->running)
                    ids.push_back(id);
                try {
                    co_await self->store->extend_acquired_job_leases(self->identity, std::move(ids),
                                                                     self->options.lease_duration);
                } catch (const std::exception& e) {
                    self->log(LogLevel::warning, "lease renewal failed: {}", e.what());
                    next = self->clock->now() + std::min<duration>(period, std::chrono::seconds(1));
                }
            }
        }
        co_await self->lease_wake.wait(delay_until(*self, next));
    }
}

asio::awaitable<void> cleanup_loop(std::shared_ptr<SchedulerState> self) {
    const duration interval = *self->options.cleanup_interval;
    time_point next = self->clock->now();
    while (self->run_state == RunState::started) {
        if (self->clock->now() >= next) {
            next = self->clock->now() + interval;
            try {
                co_await self->store->cleanup();
            } catch (const std::exception& e) {
                self->log(LogLevel::warning, "cleanup failed: {}", e.what());
            }
        }
        co_await self->cleanup_wake.wait(delay_until(*self, next));
    }
}

void spawn_loop(const std::shared_ptr<SchedulerState>& self, asio::awaitable<void> loop,
                const char* name) {
    ++self->loops;
    asio::co_spawn(self->strand, std::move(loop),
                   asio::bind_executor(self->strand, [self, name](std::exception_ptr e) {
                       --self->loops;
                       self->main_wake.notify();
                       if (!e)
                           return;
                       try {
                           std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                           self->log(LogLevel::error, "{} loop ended by an error: {}", name, ex.what());
                       } catch (...) {
                           self->log(LogLevel::error, "{} loop ended by an error", name);
                       }
                   }));
}

asio::awaitable<void> run_main(std::shared_ptr<SchedulerState> self) {
    const auto role = self->options.role;
    if (role != SchedulerRole::scheduler) {
        try {
            co_await self->store->reap_abandoned_jobs(self->identity);
        } catch (const std::exception& e) {
            self->log(LogLevel::warning, "reaping abandoned jobs failed: {}", e.what());
        }
    }
    self->lease_loop_done = false;
    set_state(*self, RunState::started);
    self->log(LogLevel::info, "scheduler '{}' started", self->identity);
    self->broker->publish_local(SchedulerStarted{self->clock->now()});
    if (role != SchedulerRole::worker)
        spawn_loop(self, schedule_loop(self), "schedule");
    if (role != SchedulerRole::scheduler)
        spawn_loop(self, job_loop(self), "job");
    spawn_loop(self, lease_loop(self), "lease");
    if (self->options.cleanup_interval)
        spawn_loop(self, cleanup_loop(self), "cleanup");
    if (self->stop_requested)
        set_state(*self, RunState::stopping);

    while (self->run_state == RunState::started)
        co_await self->main_wake.wait(std::chrono::hours(24));

    // Stopping: the loops acquire nothing more; running jobs get the grace period.
    self->wake_all();
    const auto deadline = steady::now() + self->options.stop_grace_period;
    while (!self->running.empty() && steady::now() < deadline)
        co_await self->main_wake.wait(deadline - steady::now());
    if (!self->running.empty()) {
        self->log(LogLevel::warning, "stop: cancelling {} job(s) still running after {}",
                  self->running.size(), format_duration(self->options.stop_grace_period));
        for (auto& [id, rj] : self->running) {
            rj->cancel_requested = true;
            rj->stop.request_stop();
            rj->signal.emit(asio::cancellation_type::terminal);
        }
    }
    // Blocking tasks cannot be interrupted: their threads are waited for.
    while (!self->running.empty())
        co_await self->main_wake.wait(std::chrono::seconds(1));
    self->lease_loop_done = true;
    self->wake_all();
    while (self->loops > 0)
        co_await self->main_wake.wait(std::chrono::seconds(1));

    self->stop_requested = false;
    set_state(*self, RunState::stopped);
    self->log(LogLevel::info, "scheduler '{}' stopped", self->identity);
    self->broker->publish_local(SchedulerStopped{self->clock->now(), self->crash});
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
    if (self->run_state != RunState::stopped)
        throw Error(errc::not_running, fmt::format("scheduler '{}' is already {}", self->identity,
                                                   to_string(self->run_state.load())));
    co_await ensure_open(self);
    set_state(*self, RunState::starting);
    self->crash.reset();
    asio::co_spawn(self->strand, run_main(self),
                   asio::bind_executor(self->strand, [self](std::exception_ptr e) {
                       if (!e)
                           return;
                       try {
                           std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                           self->crash = ex.what();
                       } catch (...) {
                           self->crash = "unknown error";
                       }
                       self->log(LogLevel::error, "scheduler '{}' crashed: {}", self->identity,
                                 *self->crash);
                       for (auto& [id, rj] : self->running) {
                           rj->stop.request_stop();
                           rj->signal.emit(asio::cancellation_type::terminal);
                       }
                       self->lease_loop_done = true;
                       set_state(*self, RunState::stopped);
                       self->wake_all();
                       self->broker->publish_local(SchedulerStopped{self->clock->now(), self->crash});
                   }));
    if (wait_started)
        co_await wait_for_state(self, [](RunState s) { return s != RunState::starting; });
}

asio::awaitable<void> do_stop(std::shared_ptr<SchedulerState> self) {
    if (self->run_state == RunState::started) {
        set_state(*self, RunState::stopping);
        self->main_wake.notify();
    } else if (self->run_state == RunState::starting) {
        self->stop_requested = true;
    }
    co_return;
}

asio::awaitable<void> do_close(std::shared_ptr<SchedulerState> self) {
    if (self->run_state != RunState::stopped)
        throw Error(errc::not_running, "close: the scheduler must be stopped first");
    if (!self->services_open)
        co_return;
    self->services_open = false;
    self->internal_subscription.unsubscribe();
    co_await self->store->stop();
    co_await self->broker->stop();
}

} // namespace

asio::awaitable<void> Wakeup::wait(std::chrono::steady_clock::duration timeout) {
    if (!pending_ && timeout > steady::duration(0)) {
        timer_.expires_after(timeout);
        co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    pending_ = false;
}

SchedulerState::SchedulerState(asio::any_io_executor ex, AsyncSchedulerOptions opts)
    : executor(ex), strand(asio::make_strand(ex)), options(std::move(opts)),
      pool(std::max<std::size_t>(1, options.thread_pool_size)), schedule_wake(strand),
      job_wake(strand), lease_wake(strand), cleanup_wake(strand), main_wake(strand),
      rng(std::random_device{}()) {
    store = options.data_store ? options.data_store : std::make_shared<MemoryDataStore>();
    broker = options.event_broker ? options.event_broker : std::make_shared<LocalEventBroker>();
    clock = options.clock ? options.clock : std::make_shared<SystemClock>();
    logger = options.logger;
    identity = options.identity.empty() ? default_identity(this) : options.identity;
    if (options.lease_duration <= duration(0))
        throw Error(errc::invalid_argument, "scheduler: field 'lease_duration': must be positive");
    if (options.poll_interval <= duration(0))
        throw Error(errc::invalid_argument, "scheduler: field 'poll_interval': must be positive");
    if (options.cleanup_interval && *options.cleanup_interval <= duration(0))
        throw Error(errc::invalid_argument, "scheduler: field 'cleanup_interval': must be positive");
    if (options.stop_grace_period < duration(0))
        throw Error(errc::invalid_argument, "scheduler: field 'stop_grace_period': must not be negative");
}

SchedulerState::~SchedulerState() {
    if (clock_listener)
        clock->remove_listener(clock_listener);
    pool.join();
}

void SchedulerState::store_failed(const std::exception& e) {
    if (store_degraded)
        return;
    store_degraded = true;
    log(LogLevel::error, "store health: degraded ({}); the scheduler keeps running and retries", e.what());
    broker->publish_local(StoreHealthChanged{clock->now(), identity, true, e.what()});
}

void SchedulerState::store_ok() {
    if (!store_degraded)
        return;
    store_degraded = false;
    log(LogLevel::info, "store health: ok again");
    broker->publish_local(StoreHealthChanged{clock->now(), identity, false, {}});
}

void SchedulerState::wake_all() {
    schedule_wake.notify();
    job_wake.notify();
    lease_wake.notify();
    cleanup_wake.notify();
    main_wake.notify();
}

} // namespace detail

using detail::on_strand;

AsyncScheduler::AsyncScheduler(asio::any_io_executor executor, AsyncSchedulerOptions options)
    : state_(std::make_shared<detail::SchedulerState>(std::move(executor), options)) {}

AsyncScheduler::AsyncScheduler(asio::io_context& context, AsyncSchedulerOptions options)
    : AsyncScheduler(context.get_executor(), options) {}

AsyncScheduler::AsyncScheduler(AsyncScheduler&&) noexcept = default;
AsyncScheduler& AsyncScheduler::operator=(AsyncScheduler&& other) noexcept {
    if (this != &other) {
        AsyncScheduler old(std::move(*this));
        state_ = std::move(other.state_);
    }
    return *this;
}

AsyncScheduler::~AsyncScheduler() {
    if (!state_)
        return;
    // The loops hold the state; asking them to stop lets everything unwind.
    if (state_->run_state != RunState::stopped)
        asio::post(state_->strand, [s = state_] {
            if (s->run_state == RunState::started) {
                detail::set_state(*s, RunState::stopping);
                s->main_wake.notify();
            } else if (s->run_state == RunState::starting) {
                s->stop_requested = true;
            }
        });
}

const std::string& AsyncScheduler::identity() const noexcept { return state_->identity; }
RunState AsyncScheduler::state() const noexcept { return state_->run_state; }
asio::any_io_executor AsyncScheduler::get_executor() const noexcept { return state_->executor; }
std::shared_ptr<DataStore> AsyncScheduler::data_store() const noexcept { return state_->store; }
std::shared_ptr<EventBroker> AsyncScheduler::event_broker() const noexcept { return state_->broker; }
std::shared_ptr<Clock> AsyncScheduler::clock() const noexcept { return state_->clock; }

asio::awaitable<void>
AsyncScheduler::scoped(std::function<asio::awaitable<void>(AsyncScheduler&)> body) {
    co_await open();
    std::exception_ptr failure;
    try {
        co_await body(*this);
    } catch (...) {
        failure = std::current_exception();
    }
    co_await stop();
    co_await wait_until_stopped();
    co_await close();
    if (failure)
        std::rethrow_exception(failure);
}

asio::awaitable<void> AsyncScheduler::open() {
    return on_strand(state_, detail::ensure_open(state_));
}

asio::awaitable<void> AsyncScheduler::close() { return on_strand(state_, detail::do_close(state_)); }

asio::awaitable<Task> AsyncScheduler::add_task_function(std::string_view id,
                                                        std::shared_ptr<const TaskFunction> function,
                                                        const TaskOptions& options) {
    if (!function)
        throw Error(errc::invalid_argument, "add_task: field 'function': must not be null");
    return on_strand(state_, detail::do_add_task(state_, std::string(id), std::move(function),
                                                 options, false));
}

asio::awaitable<Task> AsyncScheduler::configure_task(std::string_view id, const TaskOptions& options) {
    return on_strand(state_,
                     detail::do_add_task(state_, std::string(id), nullptr, options, true));
}

namespace detail {
namespace {
asio::awaitable<std::vector<Task>> do_get_tasks(std::shared_ptr<SchedulerState> self) {
    co_await ensure_open(self);
    co_return co_await self->store->get_tasks();
}
asio::awaitable<std::vector<Schedule>> do_get_schedules(std::shared_ptr<SchedulerState> self) {
    co_await ensure_open(self);
    co_return co_await self->store->get_schedules(std::nullopt);
}
asio::awaitable<void> do_remove_schedule(std::shared_ptr<SchedulerState> self, std::string id) {
    co_await ensure_open(self);
    std::vector<std::string> ids{std::string(id)};
    co_await self->store->remove_schedules(std::move(ids));
}
asio::awaitable<std::vector<Job>> do_get_jobs(std::shared_ptr<SchedulerState> self) {
    co_await ensure_open(self);
    co_return co_await self->store->get_jobs(std::nullopt);
}
asio::awaitable<void> do_cleanup(std::shared_ptr<SchedulerState> self) {
    co_await ensure_open(self);
    co_await self->store->cleanup();
}
asio::awaitable<void> do_run_until_stopped(std::shared_ptr<SchedulerState> self) {
    if (self->run_state == RunState::stopped)
        co_await do_start(self, false);
    co_await wait_for_state(self, [](RunState s) { return s == RunState::stopped; });
}
} // namespace
} // namespace detail

asio::awaitable<std::vector<Task>> AsyncScheduler::get_tasks() {
    return on_strand(state_, detail::do_get_tasks(state_));
}

asio::awaitable<std::string> AsyncScheduler::add_schedule(std::string_view task_id, TriggerPtr trigger,
                                                          const ScheduleOptions& options) {
    return on_strand(state_, detail::do_add_schedule(state_, std::string(task_id), std::move(trigger),
                                                     options));
}

asio::awaitable<Schedule> AsyncScheduler::get_schedule(std::string_view id) {
    return on_strand(state_, detail::do_get_schedule(state_, std::string(id)));
}

asio::awaitable<std::optional<Schedule>> AsyncScheduler::try_get_schedule(std::string_view id) {
    return on_strand(state_, detail::do_try_get_schedule(state_, std::string(id)));
}

asio::awaitable<std::vector<Schedule>> AsyncScheduler::get_schedules() {
    return on_strand(state_, detail::do_get_schedules(state_));
}

asio::awaitable<void> AsyncScheduler::pause_schedule(std::string_view id) {
    return on_strand(state_, detail::do_set_paused(state_, std::string(id), true, {}));
}

asio::awaitable<void> AsyncScheduler::unpause_schedule(std::string_view id, ResumeFrom resume_from) {
    return on_strand(state_, detail::do_set_paused(state_, std::string(id), false, resume_from));
}

asio::awaitable<void> AsyncScheduler::remove_schedule(std::string_view id) {
    return on_strand(state_, detail::do_remove_schedule(state_, std::string(id)));
}

asio::awaitable<std::string> AsyncScheduler::add_job(std::string_view task_id, const JobOptions& options) {
    return on_strand(state_, detail::do_add_job(state_, std::string(task_id), options));
}

asio::awaitable<nlohmann::json> AsyncScheduler::run_job(std::string_view task_id, const JobOptions& options) {
    return on_strand(state_, detail::do_run_job(state_, std::string(task_id), options));
}

asio::awaitable<std::optional<JobResult>> AsyncScheduler::get_job_result(std::string_view job_id,
                                                                         bool wait) {
    return on_strand(state_, detail::do_get_job_result(state_, std::string(job_id), wait));
}

asio::awaitable<std::vector<Job>> AsyncScheduler::get_jobs() {
    return on_strand(state_, detail::do_get_jobs(state_));
}

Subscription AsyncScheduler::subscribe(EventCallback callback, EventMask mask, bool one_shot) {
    return state_->broker->subscribe(std::move(callback), mask, state_->executor, one_shot);
}

asio::awaitable<Event> AsyncScheduler::next_event(EventMask mask) {
    return on_strand(state_, detail::do_next_event(state_, mask));
}

asio::awaitable<void> AsyncScheduler::start_in_background() {
    return on_strand(state_, detail::do_start(state_, true));
}

asio::awaitable<void> AsyncScheduler::run_until_stopped() {
    return on_strand(state_, detail::do_run_until_stopped(state_));
}

asio::awaitable<void> AsyncScheduler::stop() { return on_strand(state_, detail::do_stop(state_)); }

asio::awaitable<void> AsyncScheduler::wait_until_stopped() {
    return on_strand(state_, detail::wait_for_state(state_, [](RunState s) {
                         return s == RunState::stopped;
                     }));
}

asio::awaitable<void> AsyncScheduler::cleanup() { return on_strand(state_, detail::do_cleanup(state_)); }

} // namespace asched
