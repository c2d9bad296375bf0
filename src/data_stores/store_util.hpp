// Steps every data store shares: publishing an operation's events, a result for a job that
// ended without running to completion.
#pragma once

#include <asched/event_broker.hpp>
#include <asched/model.hpp>

#include <asio/awaitable.hpp>

#include <memory>
#include <vector>

namespace asched::detail {

/// Publishes `events` in order, after the store's change is committed.
inline asio::awaitable<void> publish_all(std::shared_ptr<EventBroker> broker,
                                         std::vector<Event> events) {
    if (!broker || events.empty())
        co_return;
    co_await broker->publish_batch(std::move(events));
}

/// The result a store records for `job` when it ends at `at` without a return value
/// (abandoned, missed its start deadline).
inline JobResult store_result(const Job &job, JobOutcome outcome, time_point at,
                              std::optional<std::string> message) {
    JobResult r;
    r.job_id = job.id;
    r.task_id = job.task_id;
    r.schedule_id = job.schedule_id;
    r.outcome = outcome;
    r.finished_at = at;
    r.expires_at = at + job.result_expiration_time;
    r.exception_message = std::move(message);
    return r;
}

/// The JobReleased event for `job` ending with `result`, released by `scheduler_id`.
inline JobReleased released_event(const Job &job, const JobResult &result,
                                  const std::string &scheduler_id) {
    return JobReleased{result.finished_at,    job.id,
                       scheduler_id,          job.task_id,
                       job.schedule_id,       job.scheduled_fire_time,
                       result.started_at,     result.outcome,
                       result.exception_type, result.exception_message};
}

} // namespace asched::detail
