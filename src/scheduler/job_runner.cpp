// The job runner: an acquired job goes to its task's executor; its outcome becomes a
// JobResult; finished jobs are released to the store in batches.
#include "../core/fault_points.hpp"
#include "../core/json_limits.hpp"
#include "../core/text.hpp"
#include "scheduler_state.hpp"

#include <asched/policies.hpp>

#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

namespace asched::detail {
namespace {

void queue_release(const std::shared_ptr<SchedulerState> &self, std::shared_ptr<RunningJob> rj,
                   JobResult result);

JobResult result_of(const Job &job) {
    JobResult r;
    r.job_id = job.id;
    r.task_id = job.task_id;
    r.schedule_id = job.schedule_id;
    r.attempt = job.attempt;
    return r;
}

// A return value the store could not keep (too deep to copy safely, too big, or with invalid
// UTF-8) becomes an error result that says why; the value itself is dropped.
std::exception_ptr check_return_value(const SchedulerState &self, const nlohmann::json &value) {
    if (value.is_null() || value.is_number() || value.is_boolean())
        return nullptr;
    const auto check = inspect_payload(value, self.options.limits);
    using Problem = PayloadCheck::Problem;
    if (check.problem == Problem::none)
        return nullptr;
    const char *type = check.problem == Problem::too_deep    ? "asched::ResultTooDeep"
                       : check.problem == Problem::too_large ? "asched::ResultTooLarge"
                                                             : "asched::InvalidResult";
    return std::make_exception_ptr(
        JobError(type, fmt::format("the return value is {}: not stored", check.detail)));
}

// The type and message of a job's exception.
void describe(std::exception_ptr error, JobResult &result) {
    try {
        std::rethrow_exception(error);
    } catch (const JobError &e) {
        result.exception_type = e.type();
        result.exception_message = e.what();
    } catch (const std::exception &e) {
        result.exception_type = demangle(typeid(e).name());
        result.exception_message = e.what();
    } catch (...) {
        result.exception_type = "unknown";
        result.exception_message = "a non-standard exception was thrown";
    }
    // JSON (every store but memory, every network broker) cannot carry invalid UTF-8: the
    // release would fail forever and hold the task's slot. Keep the text, say what changed.
    for (auto *text : {&result.exception_type, &result.exception_message})
        if (first_invalid_utf8(**text)) {
            **text = valid_utf8(std::move(**text));
            if (text == &result.exception_message)
                **text += " [invalid UTF-8 replaced by U+FFFD]";
        }
}

void finish(const std::shared_ptr<SchedulerState> &self, std::shared_ptr<RunningJob> rj,
            JobResult result, std::exception_ptr error, nlohmann::json value) {
    rj->finished = true;
    // The task has returned: its handle goes here, on the strand (it holds the state).
    rj->context.scheduler = nullptr;
    rj->handle.reset();
    const RunningJob &job = *rj;
    if (job.cancel_kind == CancelKind::timeout || job.cancel_kind == CancelKind::user) {
        // Asked to end: whatever it returned or threw, the outcome says why it ended.
        const bool timeout = job.cancel_kind == CancelKind::timeout;
        result.outcome = timeout ? JobOutcome::timed_out : JobOutcome::cancelled;
        result.exception_type = timeout ? "asched::JobTimedOut" : "asched::JobCancelled";
        result.exception_message = timeout ? fmt::format("timed out: still running {} after "
                                                         "its start, so it was cancelled",
                                                         format_duration(*job.job.timeout))
                                           : std::string("cancelled by cancel_job()");
        self->log_job(LogLevel::warning, job.job, "job '{}' of task '{}': {}", job.job.id,
                      job.job.task_id, *result.exception_message);
    } else {
        if (!error && (error = check_return_value(*self, value)))
            value = nullptr;
        if (!error) {
            result.outcome = JobOutcome::success;
            result.return_value = std::move(value);
        } else if (job.cancel_requested) {
            describe(error, result);
            result.outcome = JobOutcome::cancelled;
            result.exception_message = "cancelled: the scheduler stopped";
        } else {
            describe(error, result);
            result.outcome = JobOutcome::error;
            self->log_job(LogLevel::warning, job.job, "job '{}' of task '{}' failed: {}: {}",
                          job.job.id, job.job.task_id, *result.exception_type,
                          *result.exception_message);
        }
    }
    result.finished_at = self->clock->now();
    result.expires_at = result.finished_at + rj->job.result_expiration_time;
    queue_release(self, std::move(rj), std::move(result));
}

// Commits one batch. While the scheduler runs, a failing store is retried until it answers
// (releases are fenced: a late one is refused, never applied twice). While it stops, for at
// most lease_duration of real time from the first failure: by then the leases have expired,
// cleanup will mark the jobs abandoned, and a release would be refused anyway.
asio::awaitable<void> commit(std::shared_ptr<SchedulerState> self, std::vector<JobRelease> batch) {
    std::optional<steady::time_point> first_failure;
    std::string failure;
    for (unsigned attempt = 0;; ++attempt) {
        bool done = false;
        try {
            auto copy = batch;
            fault_point("jobs.releasing");
            co_await self->store->release_jobs(self->identity, std::move(copy));
            self->store_ok();
            done = true;
        } catch (const std::exception &e) {
            self->store_failed(e);
            failure = e.what();
        }
        if (done)
            break;
        const auto now = steady::now();
        if (!first_failure)
            first_failure = now;
        if (!acquiring(self->phase) && now - *first_failure >= self->options.lease_duration) {
            for (const auto &r : batch)
                self->log_job(LogLevel::error, r.job,
                              "job '{}': result lost, the store could not be reached for {}: {}",
                              r.job.id, format_duration(self->options.lease_duration), failure);
            break;
        }
        const auto delay = backoff_delay(attempt, std::chrono::seconds(5));
        self->log(LogLevel::warning, "releasing {} job(s) failed ({}), retrying in {}",
                  batch.size(), failure, format_duration(delay));
        asio::steady_timer timer(self->strand, delay);
        co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
}

// Takes what finished while the last batch was committing, up to max_release_batch at a time.
asio::awaitable<void> flush_releases(std::shared_ptr<SchedulerState> self) {
    std::vector<PendingRelease> taken;
    while (!self->pending_releases.empty()) {
        taken.clear();
        const std::size_t n =
            std::min(self->pending_releases.size(), self->options.max_release_batch);
        if (n == self->pending_releases.size()) {
            taken.swap(self->pending_releases);
        } else {
            std::move(self->pending_releases.begin(), self->pending_releases.begin() + n,
                      std::back_inserter(taken));
            self->pending_releases.erase(self->pending_releases.begin(),
                                         self->pending_releases.begin() + n);
        }
        std::vector<JobRelease> batch;
        batch.reserve(taken.size());
        for (auto &p : taken) {
            // The store reads ids, token and expiry; the arguments stay behind.
            Job slim = std::move(p.job->job);
            slim.args = nullptr;
            slim.metadata = nullptr;
            p.job->job.id = slim.id;
            batch.push_back(JobRelease{std::move(slim), std::move(p.result)});
        }
        co_await commit(self, std::move(batch));
        for (auto &p : taken)
            self->running.erase(p.job->job.id);
        self->job_wake.notify();
        self->main_wake.notify();
    }
}

asio::awaitable<void> flush_and_clear(std::shared_ptr<SchedulerState> self) {
    OnExit clear{[s = self.get()] {
        s->release_flushing = false;
        s->main_wake.notify();
    }};
    co_await flush_releases(self);
}

// Every finished attempt passes here once: its outcome, lateness and run time are counted.
void count_finished(SchedulerState &self, const Job &job, const JobResult &result) {
    TaskMetrics &m = self.metrics[job.task_id];
    if (result.outcome == JobOutcome::missed_start_deadline)
        return; // counted from its JobReleased event (on_event), with the store's own misfires
    ++m.outcomes[std::size_t(result.outcome)];
    if (job.retry && job.retry->retries(result.outcome) && job.attempt < job.retry->max_attempts)
        ++m.retries;
    if (result.started_at) {
        if (job.scheduled_fire_time && job.attempt == 1)
            m.lateness.observe(to_seconds(*result.started_at - *job.scheduled_fire_time));
        m.duration.observe(to_seconds(result.finished_at - *result.started_at));
    }
}

void queue_release(const std::shared_ptr<SchedulerState> &self, std::shared_ptr<RunningJob> rj,
                   JobResult result) {
    count_finished(*self, rj->job, result);
    self->pending_releases.push_back(PendingRelease{std::move(rj), std::move(result)});
    if (self->release_flushing)
        return;
    self->release_flushing = true;
    // Posted, so that every job finishing in this turn of the strand joins the first batch.
    asio::post(self->strand,
               [self] { spawn_logged(self, flush_and_clear(self), "releasing jobs", true); });
}

} // namespace

void cancel_job(RunningJob &rj, CancelKind why) {
    if (rj.cancel_requested || rj.finished)
        return;
    rj.cancel_requested = true;
    rj.cancel_kind = why;
    rj.stop.request_stop();
    rj.signal.emit(asio::cancellation_type::terminal);
}

std::optional<time_point> enforce_timeouts(SchedulerState &self) {
    std::optional<time_point> next;
    const auto now = self.clock->now();
    for (auto &[id, rj] : self.running) {
        if (!rj->deadline || rj->finished || rj->cancel_requested)
            continue;
        if (now >= *rj->deadline)
            cancel_job(*rj, CancelKind::timeout);
        else if (!next || *rj->deadline < *next)
            next = rj->deadline;
    }
    return next;
}

void start_job(const std::shared_ptr<SchedulerState> &self, Job job) {
    auto rj = std::make_shared<RunningJob>();
    rj->job = std::move(job);
    const Job &j = rj->job;
    self->running.emplace(j.id, rj);
    JobResult result = result_of(j);
    // The deadline was computed from the fire time, on the store's clock.
    const auto now = self->store_now();
    if (missed_deadline(j, now)) {
        result.outcome = JobOutcome::missed_start_deadline;
        result.exception_message =
            fmt::format("start deadline {} passed", format_time(*j.start_deadline));
        result.finished_at = now;
        result.expires_at = now + j.result_expiration_time;
        queue_release(self, std::move(rj), std::move(result));
        return;
    }
    auto fn = self->functions.find(j.task_id);
    auto ex = self->task_executors.find(j.task_id);
    result.started_at = now;
    if (fn == self->functions.end() || ex == self->task_executors.end()) {
        // Acquired for a task id this node registered: cannot happen unless a bug.
        finish(self, std::move(rj), std::move(result),
               std::make_exception_ptr(Error(
                   errc::task_lookup, fmt::format("task '{}' is not registered here", j.task_id))),
               nullptr);
        return;
    }
    rj->function = fn->second;
    rj->executor = ex->second.get();
    // The job's metadata goes to the context: the release needs only ids and the token.
    rj->context = JobContext{j.id,
                             j.task_id,
                             j.schedule_id,
                             j.scheduled_fire_time,
                             std::move(rj->job.metadata),
                             rj->stop.get_token()};
    rj->context.attempt = j.attempt;
    rj->context.start_deadline = j.start_deadline;
    rj->context.jitter = j.jitter;
    rj->handle.emplace(SchedulerAccess::borrow(self));
    rj->context.scheduler = &*rj->handle;
    self->log_job(LogLevel::debug, j, "job '{}' of task '{}' started", j.id, j.task_id);
    // The completion holds the job, not the scheduler: run_main keeps the state alive while
    // jobs run, and the last reference must never drop on an executor's thread.
    rj->result = std::move(result);
    if (j.timeout) {
        rj->deadline = now + *j.timeout;
        self->lease_wake.notify(); // the lease loop watches the deadlines
    }
    std::weak_ptr<SchedulerState> weak = self;
    JobCompletion done = [weak, rj](std::exception_ptr e, nlohmann::json v) mutable {
        auto s = weak.lock(); // run_main holds the state while the job is in `running`
        if (!s)
            return;
        auto strand = s->strand;
        s.reset();
        asio::post(strand,
                   [weak, rj = std::move(rj), e = std::move(e), v = std::move(v)]() mutable {
                       if (auto s = weak.lock()) {
                           JobResult r = std::move(rj->result);
                           finish(s, std::move(rj), std::move(r), e, std::move(v));
                       }
                   });
    };
    rj->executor->execute(
        JobRun{j.task_id, *rj->function, rj->context, j.args, self->executor, rj->signal.slot()},
        std::move(done));
    // A job that was in flight when the grace period ended is cancelled like the others.
    if (self->phase == Phase::cancelling || self->phase == Phase::crashed)
        cancel_job(*rj);
}

} // namespace asched::detail
