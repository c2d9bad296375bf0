// The data model: Task, TaskDefaults, Schedule, Job, JobResult and their enums, with their
// versioned JSON form (what stores persist and brokers send).
#pragma once

#include <asched/time.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace asched {

class Trigger;
using TriggerPtr = std::shared_ptr<const Trigger>;

/// The JSON form's version; readers refuse a newer one with errc::deserialization.
inline constexpr int json_format_version = 1;

enum class SchedulerRole { scheduler, worker, both };
enum class RunState { starting, started, stopping, stopped };
enum class JobOutcome { success, error, missed_start_deadline, cancelled, abandoned, timed_out };
enum class CoalescePolicy { earliest, latest, all };
enum class ConflictPolicy { replace, do_nothing, exception };

std::string_view to_string(SchedulerRole v) noexcept;
std::string_view to_string(RunState v) noexcept;
std::string_view to_string(JobOutcome v) noexcept;
std::string_view to_string(CoalescePolicy v) noexcept;
std::string_view to_string(ConflictPolicy v) noexcept;

/// Parse an enum from its member name; throws Error(invalid_argument) naming the value.
template <class E> E enum_from_string(std::string_view name);
template <> SchedulerRole enum_from_string<SchedulerRole>(std::string_view);
template <> RunState enum_from_string<RunState>(std::string_view);
template <> JobOutcome enum_from_string<JobOutcome>(std::string_view);
template <> CoalescePolicy enum_from_string<CoalescePolicy>(std::string_view);
template <> ConflictPolicy enum_from_string<ConflictPolicy>(std::string_view);

/// Which outcomes of an attempt are tried again, and when. A retry is a row in the store,
/// due at its backoff time: a crash loses none. The job keeps its id and fire time.
struct RetryPolicy {
    unsigned max_attempts = 3; ///< attempts in all, the first included (1: never retried)
    duration initial_delay = std::chrono::seconds(1); ///< before the second attempt
    double multiplier = 2.0;                          ///< each further delay, times this
    duration max_delay = std::chrono::minutes(5);     ///< the delays' cap
    double jitter = 0.1; ///< each delay is stretched by a random part of up to this fraction
    bool on_error = true;
    bool on_timed_out = true;
    bool on_abandoned = true; ///< the node running it died (its lease ran out)

    bool retries(JobOutcome outcome) const noexcept;
    /// The delay before attempt `next` (2: the first retry), `u01` in [0, 1] drawing the jitter.
    duration delay_before(unsigned next, double u01) const noexcept;
    /// Throws Error(invalid_argument) naming the field, `what` saying whose policy it is.
    void check(std::string_view what) const;
    friend bool operator==(const RetryPolicy &, const RetryPolicy &) = default;
};

/// Settings a task gets when they are not given at registration.
struct TaskDefaults {
    std::optional<int> max_running_jobs = 1; ///< nullopt: unlimited
    std::optional<duration> misfire_grace_time;
    nlohmann::json metadata = nlohmann::json::object();
    std::optional<duration> timeout; ///< a job running longer is cancelled as timed_out
    std::optional<RetryPolicy> retry;

    friend bool operator==(const TaskDefaults &, const TaskDefaults &) = default;
};

/// What to run: an id that every process registers a callable under, plus its limits.
struct Task {
    std::string id;
    std::string job_executor = "async";      ///< the name of the JobExecutor that runs its jobs
    std::optional<int> max_running_jobs = 1; ///< cluster-wide cap; nullopt: unlimited
    std::optional<duration> misfire_grace_time;
    nlohmann::json metadata = nlohmann::json::object();
    int running_jobs = 0;             ///< maintained by the data store
    std::optional<duration> timeout;  ///< the default of its jobs; nullopt: no limit
    std::optional<RetryPolicy> retry; ///< the default of its jobs; nullopt: never retried

    friend bool operator==(const Task &, const Task &) = default;
};

/// When to run a task: a trigger plus the arguments and policies of the jobs it creates.
struct Schedule {
    std::string id;
    std::string task_id;
    TriggerPtr trigger;
    nlohmann::json args = nlohmann::json::array(); ///< positional arguments
    bool paused = false;
    CoalescePolicy coalesce = CoalescePolicy::latest;
    /// The most jobs one catch-up creates under CoalescePolicy::all; the newest fires are kept
    /// and the older ones dropped (reported as FiresDropped). nullopt: no cap.
    std::optional<std::size_t> max_catchup;
    std::optional<duration> misfire_grace_time; ///< nullopt: a job never misfires
    std::optional<duration> max_jitter;         ///< delays each job's start by [0, max_jitter]
    std::optional<duration> timeout;            ///< of its jobs; nullopt: no limit
    std::optional<RetryPolicy> retry;           ///< of its jobs; nullopt: never retried
    duration job_result_expiration_time{0};     ///< 0: results are not kept
    nlohmann::json metadata = nlohmann::json::object();
    std::optional<time_point> next_fire_time; ///< nullopt: the trigger is exhausted
    /// What Trigger::advance() left when it produced next_fire_time (null for stateless triggers).
    nlohmann::json trigger_state;
    std::optional<time_point> last_fire_time;
    std::optional<std::string> acquired_by;
    std::optional<time_point> acquired_until;
    std::uint64_t lease_token = 0; ///< fencing token of the current lease

    bool operator==(const Schedule &other) const; ///< compares the trigger by its JSON form
};

/// One run of a task.
struct Job {
    std::string id;
    std::string task_id;
    nlohmann::json args = nlohmann::json::array();
    std::optional<std::string> schedule_id;        ///< nullopt for an ad-hoc job
    std::optional<time_point> scheduled_fire_time; ///< the trigger's fire time (un-jittered)
    duration jitter{0};                            ///< the start is delayed by this much
    std::optional<time_point> start_deadline;      ///< a start after this is a misfire
    /// Running longer than this, the job is cancelled and ends timed_out; nullopt: no limit.
    std::optional<duration> timeout;
    std::optional<RetryPolicy> retry; ///< nullopt: never retried
    unsigned attempt = 1;             ///< the attempt it is on, from 1
    /// A retry's start: not before this (its backoff); nullopt for a first attempt.
    std::optional<time_point> retry_at;
    duration result_expiration_time{0};
    nlohmann::json metadata = nlohmann::json::object();
    time_point created_at{};
    std::optional<std::string> acquired_by;
    std::optional<time_point> acquired_until;
    std::uint64_t lease_token = 0;

    /// The earliest instant the job may start: a retry's backoff time, else the fire time plus
    /// jitter, or its creation.
    time_point earliest_start() const noexcept {
        if (retry_at)
            return *retry_at;
        return scheduled_fire_time ? *scheduled_fire_time + jitter : created_at;
    }
    friend bool operator==(const Job &, const Job &) = default;
};

/// The outcome of one job.
struct JobResult {
    std::string job_id;
    std::string task_id;
    std::optional<std::string> schedule_id;
    JobOutcome outcome = JobOutcome::success;
    std::optional<time_point> started_at; ///< nullopt when the job never started
    time_point finished_at{};
    time_point expires_at{};
    std::optional<std::string> exception_type;    ///< with outcome error
    std::optional<std::string> exception_message; ///< with outcome error, cancelled, abandoned
    nlohmann::json return_value;                  ///< with outcome success
    unsigned attempt = 1;                         ///< which attempt ended so

    friend bool operator==(const JobResult &, const JobResult &) = default;
};

void to_json(nlohmann::json &j, const RetryPolicy &v);
void from_json(const nlohmann::json &j, RetryPolicy &v);
void to_json(nlohmann::json &j, const TaskDefaults &v);
void from_json(const nlohmann::json &j, TaskDefaults &v);
void to_json(nlohmann::json &j, const Task &v);
void from_json(const nlohmann::json &j, Task &v);
void to_json(nlohmann::json &j, const Schedule &v);
void from_json(const nlohmann::json &j, Schedule &v);
void to_json(nlohmann::json &j, const Job &v);
void from_json(const nlohmann::json &j, Job &v);
void to_json(nlohmann::json &j, const JobResult &v);
void from_json(const nlohmann::json &j, JobResult &v);

/// A fresh random (version 4) UUID string.
std::string make_uuid();

} // namespace asched
