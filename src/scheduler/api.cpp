// AsyncScheduler's API: each call checks its input, then does its work on the strand.
#include "../core/json_limits.hpp"
#include "../data_stores/store_util.hpp"
#include "scheduler_state.hpp"

#include <asched/policies.hpp>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>

namespace asched {
namespace detail {
namespace {

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

nlohmann::json merged_metadata(const nlohmann::json &base, const nlohmann::json &extra,
                               std::string_view what) {
    if (!extra.is_object())
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field 'metadata': expected a JSON object, got {}", what,
                                extra.type_name()));
    nlohmann::json out = base.is_object() ? base : nlohmann::json::object();
    out.update(extra);
    return out;
}

void check_args(const nlohmann::json &args, std::string_view what) {
    if (!args.is_array())
        throw Error(
            errc::invalid_argument,
            fmt::format("{}: field 'args': expected a JSON array, got {}", what, args.type_name()));
}

void check_non_negative(std::optional<duration> d, std::string_view what, std::string_view field) {
    if (d && *d < duration(0))
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field '{}': must not be negative, got {}", what, field,
                                format_duration(*d)));
}

void check_timeout(std::optional<duration> d, std::string_view what) {
    if (d && *d <= duration(0))
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field 'timeout': must be positive, got {}", what,
                                format_duration(*d)));
}

// A schedule's or job's timeout and retry policy: what its options give, else the task's;
// both checked, `what` naming whose they are.
void take_policies(std::optional<duration> &timeout, std::optional<RetryPolicy> &retry,
                   const std::optional<std::optional<duration>> &given_timeout,
                   const std::optional<std::optional<RetryPolicy>> &given_retry, const Task &task,
                   std::string_view what) {
    timeout = given_timeout ? *given_timeout : task.timeout;
    check_timeout(timeout, what);
    retry = given_retry ? *given_retry : task.retry;
    if (retry)
        retry->check(what);
}

// ---- input bounds (checked synchronously, before the options are copied) -----------------

} // namespace

void check_task_input(const SchedulerState &self, std::string_view id, const TaskOptions &options) {
    const auto &limits = self.options.limits;
    check_id(id, limits, "task", "id");
    if (options.metadata)
        check_payload(*options.metadata, limits, fmt::format("task '{}'", id), "metadata");
}

void check_schedule_input(const SchedulerState &self, std::string_view task_id,
                          const ScheduleOptions &options) {
    const auto &limits = self.options.limits;
    check_id(task_id, limits, "add_schedule", "task_id");
    if (!options.id.empty())
        check_id(options.id, limits, "add_schedule", "id");
    const std::string what = fmt::format("schedule '{}'", options.id);
    check_payload(options.args, limits, what, "args");
    check_payload(options.metadata, limits, what, "metadata");
}

void check_job_input(const SchedulerState &self, std::string_view task_id,
                     const JobOptions &options) {
    const auto &limits = self.options.limits;
    check_id(task_id, limits, "add_job", "task_id");
    if (options.id)
        check_id(*options.id, limits, "add_job", "id");
    const std::string what = fmt::format("job of task '{}'", task_id);
    check_payload(options.args, limits, what, "args");
    check_payload(options.metadata, limits, what, "metadata");
}

void check_lookup_id(const SchedulerState &self, std::string_view id, std::string_view what) {
    check_id(id, self.options.limits, what, "id");
}

namespace {

// ---- tasks ---------------------------------------------------------------------------------

asio::awaitable<std::optional<Task>> try_get_task(std::shared_ptr<SchedulerState> self,
                                                  std::string id) {
    try {
        co_return co_await self->store->get_task(id);
    } catch (const Error &e) {
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
        const auto &d = self->options.task_defaults;
        task.id = id;
        task.max_running_jobs = d.max_running_jobs;
        task.misfire_grace_time = d.misfire_grace_time;
        task.timeout = d.timeout;
        task.retry = d.retry;
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
    if (options.timeout)
        task.timeout = *options.timeout;
    check_timeout(task.timeout, fmt::format("task '{}'", id));
    if (options.retry)
        task.retry = *options.retry;
    if (task.retry)
        task.retry->check(fmt::format("task '{}'", id));
    if (options.metadata)
        task.metadata =
            merged_metadata(task.metadata, *options.metadata, fmt::format("task '{}'", id));
    std::shared_ptr<JobExecutor> executor;
    if (fn) {
        const std::string name = options.job_executor ? *options.job_executor
                                                      : (fn->is_coroutine ? "async" : "threadpool");
        auto it = self->options.job_executors.find(name);
        if (it == self->options.job_executors.end())
            throw Error(
                errc::invalid_argument,
                fmt::format("task '{}': field 'job_executor': no executor named '{}'", id, name));
        it->second->check(id, *fn);
        executor = it->second;
        task.job_executor = name;
    } else if (options.job_executor) {
        throw Error(
            errc::invalid_argument,
            fmt::format("task '{}': field 'job_executor': only add_task can change it", id));
    }
    co_await self->store->add_task(task);
    if (fn) {
        const bool added = self->functions.insert_or_assign(id, std::move(fn)).second;
        self->task_executors[id] = std::move(executor);
        self->job_wake.notify();
        if (added && self->worker_registered) {
            self->worker_dirty = true; // other nodes' add_job sees the task at once
            self->lease_wake.notify();
        }
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
    if (options.max_catchup && *options.max_catchup == 0)
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field 'max_catchup': must be positive, got 0", what));
    s.max_catchup = options.max_catchup;
    s.misfire_grace_time =
        options.misfire_grace_time ? *options.misfire_grace_time : task.misfire_grace_time;
    check_non_negative(s.misfire_grace_time, what, "misfire_grace_time");
    s.max_jitter = options.max_jitter;
    take_policies(s.timeout, s.retry, options.timeout, options.retry, task, what);
    s.job_result_expiration_time = options.job_result_expiration_time;
    s.metadata = merged_metadata(task.metadata, options.metadata, what);
    s.next_fire_time = trigger->advance(std::nullopt, s.trigger_state);
    if (!s.next_fire_time)
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field 'trigger': {} never fires (no fire time at all from {})",
                                what, trigger->describe(), format_time(self->clock->now())));
    for (const auto &warning : trigger->lint())
        self->log(LogLevel::warning, "{}: trigger {}: {}", what, trigger->describe(), warning);
    const bool stored = co_await self->store->add_schedule(s, options.conflict_policy);
    if (stored) {
        self->log_with(LogLevel::info, {{}, task_id, s.id, {}, 0},
                       "added schedule '{}' of task '{}': {}, next fire {}", s.id, task_id,
                       trigger->describe(),
                       s.next_fire_time ? trigger->timezone().format(*s.next_fire_time) : "none");
        auto check = warn_if_unserved(self, task_id, fmt::format("schedule '{}'", s.id));
        co_await std::move(check);
    }
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
    take_policies(job.timeout, job.retry, options.timeout, options.retry, task, what);
    job.metadata = merged_metadata(task.metadata, options.metadata, what);
    job.created_at = self->clock->now();
    const auto id = job.id;
    co_await self->store->add_job(std::move(job));
    auto check = warn_if_unserved(self, task_id, fmt::format("job '{}'", id));
    co_await std::move(check);
    co_return id;
}

asio::awaitable<JobHistoryPage> do_get_job_results(std::shared_ptr<SchedulerState> self,
                                                   JobHistoryFilter filter) {
    co_await ensure_open(self);
    auto call = self->store->get_job_history(std::move(filter));
    auto page = co_await std::move(call);
    co_return page;
}

asio::awaitable<JobCancellation> do_cancel_job(std::shared_ptr<SchedulerState> self,
                                               std::string job_id) {
    co_await ensure_open(self);
    auto call = self->store->cancel_job(job_id, self->identity);
    const JobCancellation done = co_await std::move(call);
    // Running here: cancel now rather than at the next lease renewal.
    if (done == JobCancellation::requested)
        if (auto it = self->running.find(job_id); it != self->running.end())
            cancel_job(*it->second, CancelKind::user);
    self->log(LogLevel::info, "job '{}': {}", job_id,
              done == JobCancellation::removed ? "cancelled before it started"
                                               : "cancellation requested from the node running it");
    co_return done;
}

// One job of the schedule, due now, with its args and policies; the trigger is not touched.
// It has no scheduled fire time: it is no fire of the trigger (and cannot collide with one).
asio::awaitable<std::string> do_run_schedule_now(std::shared_ptr<SchedulerState> self,
                                                 std::string schedule_id) {
    Schedule s = co_await do_get_schedule(self, schedule_id);
    const auto now = self->clock->now();
    Job job;
    job.id = make_uuid();
    job.task_id = s.task_id;
    job.args = std::move(s.args);
    job.schedule_id = s.id;
    if (s.misfire_grace_time)
        job.start_deadline = now + *s.misfire_grace_time;
    job.timeout = s.timeout;
    job.retry = s.retry;
    job.result_expiration_time = s.job_result_expiration_time;
    job.metadata = std::move(s.metadata);
    job.created_at = now;
    const auto id = job.id;
    const auto task_id = job.task_id;
    co_await self->store->add_job(std::move(job));
    self->log_with(LogLevel::info, {{}, task_id, schedule_id, id, 1},
                   "schedule '{}': run now as job '{}'", schedule_id, id);
    auto check = warn_if_unserved(self, task_id, fmt::format("job '{}'", id));
    co_await std::move(check);
    co_return id;
}

// `wait_bound`: how long (real time) a waiting call waits before Error(wait_timed_out).
asio::awaitable<std::optional<JobResult>> do_get_job_result(std::shared_ptr<SchedulerState> self,
                                                            std::string job_id, bool wait,
                                                            std::optional<duration> wait_bound) {
    const auto give_up =
        wait_bound ? std::optional(steady::now() + steady::duration(*wait_bound)) : std::nullopt;
    co_await ensure_open(self);
    // Register before looking, so a release that lands while we look is not missed.
    auto waiter = std::make_shared<ResultWaiter>(self->strand);
    auto it = self->result_waiters.emplace(job_id, waiter);
    struct Unregister {
        SchedulerState &s;
        decltype(it) entry;
        ~Unregister() { s.result_waiters.erase(entry); }
    } unregister{*self, it};

    // One co_return, after the loop, of a variable declared outside it; every co_await's
    // result is a named local first (GCC 12 returned a destroyed value otherwise). Each read
    // is one snapshot of the store: a result, a queued or running job, or neither.
    std::optional<JobResult> found;
    bool seen_pending = false, unknown = false, unfinished = false, gave_up = false;
    for (;;) {
        auto status = co_await self->store->get_job_status(job_id);
        if (status.result) {
            found = std::move(status.result);
            break;
        }
        if (!status.pending) {
            unknown =
                !seen_pending; // seen queued or running before: it ended without a kept result
            break;
        }
        if (!wait) {
            unfinished = true;
            break;
        }
        seen_pending = true;
        steady::duration pause = self->options.poll_interval;
        if (give_up) {
            const auto now = steady::now();
            if (now >= *give_up) {
                gave_up = true;
                break;
            }
            pause = std::min(pause, *give_up - now);
        }
        co_await waiter->wake.wait(pause);
    }
    if (gave_up)
        throw Error(errc::wait_timed_out,
                    fmt::format("job '{}': no result within {} (the job is still queued or "
                                "running; is a worker with its task running?)",
                                job_id, format_duration(*wait_bound)));
    if (unknown)
        throw Error(errc::job_lookup,
                    fmt::format("job '{}' not found (unknown, or its result expired)", job_id));
    if (unfinished)
        throw Error(errc::job_lookup, fmt::format("job '{}' has not finished yet", job_id));
    co_return found;
}

asio::awaitable<nlohmann::json> do_run_job(std::shared_ptr<SchedulerState> self,
                                           std::string task_id, JobOptions options) {
    options.result_expiration_time =
        std::max<duration>(options.result_expiration_time, std::chrono::minutes(15));
    const auto wait_bound = options.wait_timeout;
    if (wait_bound && *wait_bound <= duration(0))
        throw Error(errc::invalid_argument,
                    fmt::format("run_job of task '{}': field 'wait_timeout': must be positive, "
                                "got {}",
                                task_id, format_duration(*wait_bound)));
    if (self->run_state == RunState::stopped)
        // Nothing here would run the job or wake the wait: it would hang without a word.
        throw Error(errc::not_running,
                    fmt::format("run_job of task '{}': this scheduler is not started (call "
                                "start_in_background() first, or add_job() to leave the job to "
                                "other nodes)",
                                task_id));
    const auto id = co_await do_add_job(self, task_id, std::move(options));
    std::optional<JobResult> result;
    bool gave_up = false;
    try {
        auto wait = do_get_job_result(self, id, true, wait_bound);
        result = co_await std::move(wait);
    } catch (const Error &e) {
        if (e.code_value() != errc::wait_timed_out)
            throw;
        gave_up = true;
    }
    if (gave_up) {
        // Say whether any worker could have run it (no co_await inside a handler).
        auto count = live_workers_of(self, task_id);
        const auto live = co_await std::move(count);
        throw Error(errc::wait_timed_out,
                    fmt::format("job '{}' of task '{}': no result within {}; {} (the job stays "
                                "queued)",
                                id, task_id, format_duration(*wait_bound),
                                !live ? std::string("the worker registry could not be read")
                                : *live == 0
                                    ? std::string("no live worker has registered the task")
                                    : fmt::format("{} live worker(s) run the task", *live)));
    }
    if (!result)
        throw Error(errc::job_lookup, fmt::format("job '{}' ended without a result", id));
    const std::string detail =
        fmt::format("job '{}' of task '{}': {}{}{}", id, task_id,
                    result->exception_type.value_or(""), result->exception_type ? ": " : "",
                    result->exception_message.value_or(std::string(to_string(result->outcome))));
    switch (result->outcome) {
    case JobOutcome::success:
        co_return result->return_value;
    case JobOutcome::error:
        throw Error(errc::job_failed, detail);
    case JobOutcome::cancelled:
        throw Error(errc::job_cancelled, detail);
    case JobOutcome::missed_start_deadline:
        throw Error(errc::job_deadline_missed, detail);
    case JobOutcome::abandoned:
        throw Error(errc::job_abandoned, detail);
    case JobOutcome::timed_out:
        throw Error(errc::job_timed_out, detail);
    }
    throw Error(errc::job_failed, detail);
}

asio::awaitable<Event> do_next_event(std::shared_ptr<SchedulerState> self, EventMask mask) {
    struct Slot {
        explicit Slot(const asio::any_io_executor &ex) : wake(ex) {}
        Wakeup wake;
        std::optional<Event> event;
    };
    auto slot = std::make_shared<Slot>(self->strand);
    auto sub = self->broker->subscribe(
        [slot](const Event &e) {
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

asio::awaitable<void> do_stop(std::shared_ptr<SchedulerState> self) {
    fire(*self, LifeEvent::stop);
    co_return;
}

} // namespace
} // namespace detail

using detail::on_strand;

AsyncScheduler::AsyncScheduler(asio::any_io_executor executor, AsyncSchedulerOptions options)
    : state_(std::make_shared<detail::SchedulerState>(std::move(executor), options)) {}

AsyncScheduler::AsyncScheduler(asio::io_context &context, AsyncSchedulerOptions options)
    : AsyncScheduler(context.get_executor(), options) {}

AsyncScheduler::AsyncScheduler(AsyncScheduler &&) noexcept = default;
AsyncScheduler &AsyncScheduler::operator=(AsyncScheduler &&other) noexcept {
    if (this != &other) {
        AsyncScheduler old(std::move(*this));
        old.borrowed_ = borrowed_;
        state_ = std::move(other.state_);
        borrowed_ = other.borrowed_;
    }
    return *this;
}

AsyncScheduler::~AsyncScheduler() {
    if (!state_ || borrowed_)
        return;
    // The running coroutines hold the state: a stop through the lifecycle lets everything
    // unwind in order. The store and broker stay open (they may be shared with other
    // schedulers); their own destructors free them.
    asio::post(state_->strand, [s = state_] { detail::fire(*s, detail::LifeEvent::stop); });
}

const std::string &AsyncScheduler::identity() const noexcept {
    return state_->identity;
}
RunState AsyncScheduler::state() const noexcept {
    return state_->run_state;
}
asio::any_io_executor AsyncScheduler::get_executor() const noexcept {
    return state_->executor;
}
std::shared_ptr<DataStore> AsyncScheduler::data_store() const noexcept {
    return state_->store;
}
std::shared_ptr<EventBroker> AsyncScheduler::event_broker() const noexcept {
    return state_->broker;
}
std::shared_ptr<Clock> AsyncScheduler::clock() const noexcept {
    return state_->clock;
}

asio::awaitable<void>
AsyncScheduler::scoped(std::function<asio::awaitable<void>(AsyncScheduler &)> body) {
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

asio::awaitable<void> AsyncScheduler::close() {
    return on_strand(state_, detail::do_close(state_));
}

asio::awaitable<Task>
AsyncScheduler::add_task_function(std::string_view id, std::shared_ptr<const TaskFunction> function,
                                  const TaskOptions &options) {
    if (!function)
        throw Error(errc::invalid_argument, "add_task: field 'function': must not be null");
    detail::check_task_input(*state_, id, options);
    return on_strand(
        state_, detail::do_add_task(state_, std::string(id), std::move(function), options, false));
}

asio::awaitable<Task> AsyncScheduler::configure_task(std::string_view id,
                                                     const TaskOptions &options) {
    detail::check_task_input(*state_, id, options);
    return on_strand(state_, detail::do_add_task(state_, std::string(id), nullptr, options, true));
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
asio::awaitable<std::vector<WorkerInfo>> do_get_workers(std::shared_ptr<SchedulerState> self) {
    co_await ensure_open(self);
    auto call = self->store->get_workers();
    auto rows = co_await std::move(call);
    co_return rows;
}
asio::awaitable<StoreCheck> do_check_store(std::shared_ptr<SchedulerState> self) {
    co_await ensure_open(self);
    auto call = self->store->check();
    auto found = co_await std::move(call);
    co_return found;
}
// This node's counters and histograms, its running jobs, and what the store says of the
// backlog and the schedules. A store that fails is reported (store_healthy 0), never thrown.
asio::awaitable<std::string> do_metrics(std::shared_ptr<SchedulerState> self) {
    MetricsSnapshot m;
    m.tasks = self->metrics;
    for (const auto &[id, fn] : self->functions)
        m.tasks.try_emplace(id); // a registered task shows its zeros before its first job
    for (const auto &[id, rj] : self->running)
        ++m.running[rj->job.task_id];
    for (const auto &[task, t] : m.tasks)
        m.running.try_emplace(task, 0);
    m.store_healthy = !self->store_degraded;
    m.broker_connected = self->broker->connected();
    m.broker_reconnects = self->broker->reconnects();
    m.lease_renewals_failed = self->lease_renewals_failed;
    try {
        co_await ensure_open(self);
        auto jobs_call = self->store->get_jobs(std::nullopt);
        const auto jobs = co_await std::move(jobs_call);
        const auto now = self->store_now(); // earliest starts are on the store's clock
        std::map<std::string, std::size_t> backlog;
        for (const auto &[task, t] : m.tasks)
            backlog[task] = 0;
        for (const auto &j : jobs)
            if (!j.acquired_by && j.earliest_start() <= now)
                ++backlog[j.task_id];
        m.backlog = std::move(backlog);
        auto schedules_call = self->store->get_schedules(std::nullopt);
        const auto schedules = co_await std::move(schedules_call);
        m.schedules = schedules.size();
        m.paused_schedules = std::size_t(std::count_if(schedules.begin(), schedules.end(),
                                                       [](const Schedule &s) { return s.paused; }));
    } catch (const std::exception &e) {
        m.store_healthy = false;
        self->log(LogLevel::warning, "metrics: the store did not answer: {}", e.what());
    }
    m.clock_offset = self->store->clock_offset(); // as the calls above measured it
    co_return render_metrics(m);
}
asio::awaitable<HealthReport> do_health(std::shared_ptr<SchedulerState> self) {
    HealthReport h;
    h.state = self->run_state;
    try {
        co_await ensure_open(self);
        auto call = self->store->get_tasks();
        co_await std::move(call);
        self->store_ok();
    } catch (const std::exception &e) {
        self->store_failed(e);
        h.store_problem = e.what();
    }
    h.store_ok = !self->store_degraded;
    if (!h.store_ok && h.store_problem.empty())
        h.store_problem = self->store_problem;
    h.broker_connected = self->broker->connected();
    co_return h;
}
asio::awaitable<std::vector<Job>> do_get_jobs(std::shared_ptr<SchedulerState> self) {
    co_await ensure_open(self);
    co_return co_await self->store->get_jobs(std::nullopt);
}
asio::awaitable<void> do_cleanup(std::shared_ptr<SchedulerState> self) {
    co_await ensure_open(self);
    co_await self->store->cleanup();
    auto prune = self->store->prune_history(self->clock->now() - self->options.history_retention);
    co_await std::move(prune);
}
asio::awaitable<void> do_run_until_stopped(std::shared_ptr<SchedulerState> self) {
    if (self->phase == Phase::stopped)
        co_await do_start(self, false);
    co_await wait_for_state(self, [](RunState s) { return s == RunState::stopped; });
    if (self->start_error)
        std::rethrow_exception(self->start_error);
}
} // namespace
} // namespace detail

asio::awaitable<std::vector<Task>> AsyncScheduler::get_tasks() {
    return on_strand(state_, detail::do_get_tasks(state_));
}

asio::awaitable<std::string> AsyncScheduler::add_schedule(std::string_view task_id,
                                                          TriggerPtr trigger,
                                                          const ScheduleOptions &options) {
    detail::check_schedule_input(*state_, task_id, options);
    return on_strand(
        state_, detail::do_add_schedule(state_, std::string(task_id), std::move(trigger), options));
}

asio::awaitable<Schedule> AsyncScheduler::get_schedule(std::string_view id) {
    detail::check_lookup_id(*state_, id, "schedule");
    return on_strand(state_, detail::do_get_schedule(state_, std::string(id)));
}

asio::awaitable<std::optional<Schedule>> AsyncScheduler::try_get_schedule(std::string_view id) {
    detail::check_lookup_id(*state_, id, "schedule");
    return on_strand(state_, detail::do_try_get_schedule(state_, std::string(id)));
}

asio::awaitable<std::vector<Schedule>> AsyncScheduler::get_schedules() {
    return on_strand(state_, detail::do_get_schedules(state_));
}

asio::awaitable<void> AsyncScheduler::pause_schedule(std::string_view id) {
    detail::check_lookup_id(*state_, id, "schedule");
    return on_strand(state_, detail::do_set_paused(state_, std::string(id), true, {}));
}

asio::awaitable<void> AsyncScheduler::unpause_schedule(std::string_view id,
                                                       ResumeFrom resume_from) {
    detail::check_lookup_id(*state_, id, "schedule");
    return on_strand(state_, detail::do_set_paused(state_, std::string(id), false, resume_from));
}

asio::awaitable<void> AsyncScheduler::remove_schedule(std::string_view id) {
    detail::check_lookup_id(*state_, id, "schedule");
    return on_strand(state_, detail::do_remove_schedule(state_, std::string(id)));
}

asio::awaitable<std::string> AsyncScheduler::add_job(std::string_view task_id,
                                                     const JobOptions &options) {
    detail::check_job_input(*state_, task_id, options);
    return on_strand(state_, detail::do_add_job(state_, std::string(task_id), options));
}

asio::awaitable<nlohmann::json> AsyncScheduler::run_job(std::string_view task_id,
                                                        const JobOptions &options) {
    detail::check_job_input(*state_, task_id, options);
    return on_strand(state_, detail::do_run_job(state_, std::string(task_id), options));
}

asio::awaitable<std::optional<JobResult>> AsyncScheduler::get_job_result(std::string_view job_id,
                                                                         bool wait) {
    detail::check_lookup_id(*state_, job_id, "job");
    return on_strand(state_,
                     detail::do_get_job_result(state_, std::string(job_id), wait, std::nullopt));
}

asio::awaitable<JobHistoryPage> AsyncScheduler::get_job_results(const JobHistoryFilter &filter) {
    detail::check_history_filter(filter);
    if (filter.task_id)
        detail::check_lookup_id(*state_, *filter.task_id, "task");
    if (filter.schedule_id)
        detail::check_lookup_id(*state_, *filter.schedule_id, "schedule");
    return on_strand(state_, detail::do_get_job_results(state_, filter));
}

asio::awaitable<JobCancellation> AsyncScheduler::cancel_job(std::string_view job_id) {
    detail::check_lookup_id(*state_, job_id, "job");
    return on_strand(state_, detail::do_cancel_job(state_, std::string(job_id)));
}

asio::awaitable<std::string> AsyncScheduler::run_schedule_now(std::string_view schedule_id) {
    detail::check_lookup_id(*state_, schedule_id, "schedule");
    return on_strand(state_, detail::do_run_schedule_now(state_, std::string(schedule_id)));
}

asio::awaitable<std::vector<WorkerInfo>> AsyncScheduler::get_workers() {
    return on_strand(state_, detail::do_get_workers(state_));
}

std::string AsyncScheduler::boot_id() const {
    std::lock_guard lock(state_->boot_id_mutex);
    return state_->boot_id;
}

asio::awaitable<std::string> AsyncScheduler::metrics() {
    return on_strand(state_, detail::do_metrics(state_));
}

asio::awaitable<HealthReport> AsyncScheduler::health() {
    return on_strand(state_, detail::do_health(state_));
}

asio::awaitable<StoreCheck> AsyncScheduler::check_store() {
    return on_strand(state_, detail::do_check_store(state_));
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

asio::awaitable<void> AsyncScheduler::stop() {
    return on_strand(state_, detail::do_stop(state_));
}

asio::awaitable<void> AsyncScheduler::wait_until_stopped() {
    return on_strand(
        state_, detail::wait_for_state(state_, [](RunState s) { return s == RunState::stopped; }));
}

asio::awaitable<void> AsyncScheduler::cleanup() {
    return on_strand(state_, detail::do_cleanup(state_));
}

} // namespace asched
