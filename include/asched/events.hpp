// The event catalogue: one closed std::variant of small structs, each with a timestamp.
#pragma once

#include <asched/model.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

namespace asched {

struct SchedulerStarted {
    time_point timestamp{};
};
struct SchedulerStopped {
    time_point timestamp{};
    std::optional<std::string> exception; ///< why it stopped, when it crashed
};
struct TaskAdded {
    time_point timestamp{};
    std::string task_id;
};
struct TaskUpdated {
    time_point timestamp{};
    std::string task_id;
};
struct TaskRemoved {
    time_point timestamp{};
    std::string task_id;
};
struct ScheduleAdded {
    time_point timestamp{};
    std::string schedule_id;
    std::string task_id;
    std::optional<time_point> next_fire_time;
};
struct ScheduleUpdated {
    time_point timestamp{};
    std::string schedule_id;
    std::string task_id;
    std::optional<time_point> next_fire_time;
};
struct ScheduleRemoved {
    time_point timestamp{};
    std::string schedule_id;
    std::string task_id;
    bool finished = false; ///< removed by cleanup because its trigger is exhausted
};
struct JobAdded {
    time_point timestamp{};
    std::string job_id;
    std::string task_id;
    std::optional<std::string> schedule_id;
};
struct JobRemoved {
    time_point timestamp{};
    std::string job_id;
    std::string task_id;
};
struct JobAcquired {
    time_point timestamp{};
    std::string job_id;
    std::string scheduler_id;
    std::string task_id;
    std::optional<std::string> schedule_id;
    std::optional<time_point> scheduled_start;
};
struct JobReleased {
    time_point timestamp{};
    std::string job_id;
    std::string scheduler_id;
    std::string task_id;
    std::optional<std::string> schedule_id;
    std::optional<time_point> scheduled_start;
    std::optional<time_point> started_at;
    JobOutcome outcome = JobOutcome::success;
    std::optional<std::string> exception_type;
    std::optional<std::string> exception_message;
    std::uint64_t attempt = 1;
    /// Set when the job is retried: its next attempt is due then (the job is not over).
    std::optional<time_point> retry_at;
};

/// A stored record that could not be decoded (corrupt JSON, an unknown trigger type) was moved
/// out of the way, into the store's quarantine; the scheduler goes on without it.
struct RecordQuarantined {
    time_point timestamp{};
    std::string kind; ///< "task", "schedule", "job" or "result"
    std::string record_id;
    std::string error;
};

/// A scheduler's view of its data store changed: `degraded` after a store call failed (the
/// scheduler keeps running and retries with capped backoff), back to ok after the first call
/// that succeeds. Published locally and to other nodes where the broker reaches them.
struct StoreHealthChanged {
    time_point timestamp{};
    std::string scheduler_id;
    bool degraded = false;
    std::string reason; ///< the failure (degraded) or empty (ok)
};

/// Due fires of a schedule that became no job: left out by its coalesce policy (reason
/// "coalesced") or beyond its max_catchup (reason "max_catchup"), typically after downtime.
/// Published once per catch-up, after the schedule's release has committed.
struct FiresDropped {
    time_point timestamp{};
    std::string schedule_id;
    std::string task_id;
    std::uint64_t count = 0;
    time_point first_fire_time{}; ///< the oldest dropped fire
    time_point last_fire_time{};  ///< the newest dropped fire
    std::string reason;           ///< "coalesced" or "max_catchup"
};

/// cancel_job() flagged a running job; `scheduler_id` is the node running it, which cancels
/// it (at once when this event reaches it, else at its next lease renewal).
struct JobCancelRequested {
    time_point timestamp{};
    std::string job_id;
    std::string task_id;
    std::string scheduler_id;
};

using Event = std::variant<SchedulerStarted, SchedulerStopped, TaskAdded, TaskUpdated, TaskRemoved,
                           ScheduleAdded, ScheduleUpdated, ScheduleRemoved, JobAdded, JobRemoved,
                           JobAcquired, JobReleased, RecordQuarantined, StoreHealthChanged,
                           FiresDropped, JobCancelRequested>;

/// A set of event types, one bit per alternative of Event.
using EventMask = std::uint32_t;
inline constexpr EventMask all_events = ~EventMask{0};

namespace detail {
template <class T, class V> struct variant_index;
template <class T, class... Ts> struct variant_index<T, std::variant<Ts...>> {
    static constexpr std::size_t value = [] {
        std::size_t i = 0;
        ((std::is_same_v<T, Ts> ? false : (++i, true)) && ...);
        return i;
    }();
};
} // namespace detail

/// The mask that selects the event types `Ts...`.
template <class... Ts> constexpr EventMask event_mask() {
    static_assert(sizeof...(Ts) > 0);
    static_assert((... && (detail::variant_index<Ts, Event>::value < std::variant_size_v<Event>)),
                  "not an asched event type");
    return (EventMask{0} | ... | (EventMask{1} << detail::variant_index<Ts, Event>::value));
}

inline bool matches(EventMask mask, const Event &e) noexcept {
    return (mask >> e.index()) & 1U;
}

time_point event_timestamp(const Event &e) noexcept;
/// The event's class name, e.g. "JobReleased".
std::string_view event_name(const Event &e) noexcept;

/// {"type": "JobReleased", "version": 1, ...fields}; the wire form brokers send.
void to_json(nlohmann::json &j, const Event &e);
/// Throws Error(deserialization) naming the type or field that is wrong.
void from_json(const nlohmann::json &j, Event &e);

} // namespace asched
