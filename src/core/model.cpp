// Enum names, the versioned JSON form of the model, and id generation.
#include "json_util.hpp"

#include <asched/trigger.hpp>

#include <array>
#include <random>

namespace asched {
namespace {

template <class E, std::size_t N>
E lookup(std::string_view name, const std::array<std::string_view, N> &names,
         std::string_view enum_name) {
    for (std::size_t i = 0; i < N; ++i)
        if (names[i] == name)
            return static_cast<E>(i);
    std::string valid;
    for (auto n : names)
        valid += (valid.empty() ? "" : ", ") + std::string(n);
    throw Error(errc::invalid_argument, fmt::format("{}: unknown value \"{}\" (expected one of {})",
                                                    enum_name, name, valid));
}

constexpr std::array<std::string_view, 3> role_names{"scheduler", "worker", "both"};
constexpr std::array<std::string_view, 4> state_names{"starting", "started", "stopping", "stopped"};
constexpr std::array<std::string_view, 6> outcome_names{
    "success", "error", "missed_start_deadline", "cancelled", "abandoned", "timed_out"};
constexpr std::array<std::string_view, 3> coalesce_names{"earliest", "latest", "all"};
constexpr std::array<std::string_view, 3> conflict_names{"replace", "do_nothing", "exception"};

using detail::duration_json;
using detail::get;
using detail::get_duration;
using detail::get_opt;
using detail::get_or;
using detail::get_time;
using detail::time_json;
using nlohmann::json;

json max_running_json(const std::optional<int> &v) {
    return v ? json(*v) : json();
}

std::optional<int> read_max_running(const json &j, std::string_view what) {
    auto v = get_opt<int>(j, what, "max_running_jobs");
    if (v && *v <= 0)
        detail::bad_field(what, "max_running_jobs", fmt::format("must be positive, got {}", *v));
    return v;
}

std::optional<duration> read_timeout(const json &j, std::string_view what) {
    auto v = get_duration(j, what, "timeout");
    if (v && *v <= duration(0))
        detail::bad_field(what, "timeout",
                          fmt::format("must be positive, got {}", format_duration(*v)));
    return v;
}

json read_args(const json &j, std::string_view what) {
    const auto *v = detail::find(j, "args");
    if (!v)
        return json::array();
    if (!v->is_array())
        detail::bad_field(what, "args", "expected a JSON array");
    return *v;
}

json read_metadata(const json &j, std::string_view what) {
    const auto *v = detail::find(j, "metadata");
    if (!v)
        return json::object();
    if (!v->is_object())
        detail::bad_field(what, "metadata", "expected a JSON object");
    return *v;
}

} // namespace

std::string_view to_string(SchedulerRole v) noexcept {
    return role_names[std::size_t(v)];
}
std::string_view to_string(RunState v) noexcept {
    return state_names[std::size_t(v)];
}
std::string_view to_string(JobOutcome v) noexcept {
    return outcome_names[std::size_t(v)];
}
std::string_view to_string(CoalescePolicy v) noexcept {
    return coalesce_names[std::size_t(v)];
}
std::string_view to_string(ConflictPolicy v) noexcept {
    return conflict_names[std::size_t(v)];
}

template <> SchedulerRole enum_from_string<SchedulerRole>(std::string_view s) {
    return lookup<SchedulerRole>(s, role_names, "SchedulerRole");
}
template <> RunState enum_from_string<RunState>(std::string_view s) {
    return lookup<RunState>(s, state_names, "RunState");
}
template <> JobOutcome enum_from_string<JobOutcome>(std::string_view s) {
    return lookup<JobOutcome>(s, outcome_names, "JobOutcome");
}
template <> CoalescePolicy enum_from_string<CoalescePolicy>(std::string_view s) {
    return lookup<CoalescePolicy>(s, coalesce_names, "CoalescePolicy");
}
template <> ConflictPolicy enum_from_string<ConflictPolicy>(std::string_view s) {
    return lookup<ConflictPolicy>(s, conflict_names, "ConflictPolicy");
}

bool RetryPolicy::retries(JobOutcome outcome) const noexcept {
    switch (outcome) {
    case JobOutcome::error:
        return on_error;
    case JobOutcome::timed_out:
        return on_timed_out;
    case JobOutcome::abandoned:
        return on_abandoned;
    default:
        return false;
    }
}

duration RetryPolicy::delay_before(unsigned next, double u01) const noexcept {
    double d = double(initial_delay.count());
    for (unsigned a = 2; a < next && d < double(max_delay.count()); ++a)
        d *= multiplier;
    d = std::min(d, double(max_delay.count()));
    d *= 1.0 + jitter * std::clamp(u01, 0.0, 1.0);
    return duration(static_cast<duration::rep>(d));
}

void RetryPolicy::check(std::string_view what) const {
    auto bad = [&](const char *field, std::string why) {
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field 'retry.{}': {}", what, field, why));
    };
    if (max_attempts < 1)
        bad("max_attempts", "must be at least 1, got 0");
    if (initial_delay < duration(0))
        bad("initial_delay", "must not be negative, got " + format_duration(initial_delay));
    if (!(multiplier >= 1.0))
        bad("multiplier", fmt::format("must be at least 1, got {}", multiplier));
    if (max_delay < initial_delay)
        bad("max_delay", fmt::format("must not be below initial_delay ({}), got {}",
                                     format_duration(initial_delay), format_duration(max_delay)));
    if (!(jitter >= 0.0 && jitter <= 1.0))
        bad("jitter", fmt::format("must be within 0 and 1, got {}", jitter));
}

void to_json(json &j, const RetryPolicy &v) {
    j = json{{"max_attempts", v.max_attempts},
             {"initial_delay", to_seconds(v.initial_delay)},
             {"multiplier", v.multiplier},
             {"max_delay", to_seconds(v.max_delay)},
             {"jitter", v.jitter},
             {"on_error", v.on_error},
             {"on_timed_out", v.on_timed_out},
             {"on_abandoned", v.on_abandoned}};
}

void from_json(const json &j, RetryPolicy &v) {
    constexpr std::string_view what = "retry policy";
    if (!j.is_object())
        detail::bad_field(what, "retry", "expected a JSON object");
    RetryPolicy d;
    v.max_attempts = get_or<unsigned>(j, what, "max_attempts", d.max_attempts);
    v.initial_delay = get_duration(j, what, "initial_delay").value_or(d.initial_delay);
    v.multiplier = get_or<double>(j, what, "multiplier", d.multiplier);
    v.max_delay = get_duration(j, what, "max_delay").value_or(d.max_delay);
    v.jitter = get_or<double>(j, what, "jitter", d.jitter);
    v.on_error = get_or<bool>(j, what, "on_error", d.on_error);
    v.on_timed_out = get_or<bool>(j, what, "on_timed_out", d.on_timed_out);
    v.on_abandoned = get_or<bool>(j, what, "on_abandoned", d.on_abandoned);
    try {
        v.check(what);
    } catch (const Error &e) {
        throw Error(errc::deserialization, e.what());
    }
}

std::optional<RetryPolicy> read_retry(const json &j, std::string_view what) {
    const auto *v = detail::find(j, "retry");
    if (!v)
        return std::nullopt;
    try {
        return v->get<RetryPolicy>();
    } catch (const Error &e) {
        detail::bad_field(what, "retry", e.what());
    }
}

json retry_json(const std::optional<RetryPolicy> &r) {
    return r ? json(*r) : json();
}

void to_json(json &j, const TaskDefaults &v) {
    j = json{{"version", json_format_version},
             {"max_running_jobs", max_running_json(v.max_running_jobs)},
             {"misfire_grace_time", duration_json(v.misfire_grace_time)},
             {"timeout", duration_json(v.timeout)},
             {"retry", retry_json(v.retry)},
             {"metadata", v.metadata}};
}

void from_json(const json &j, TaskDefaults &v) {
    constexpr std::string_view what = "task defaults";
    detail::check_version(j, what);
    v.max_running_jobs = read_max_running(j, what);
    v.misfire_grace_time = get_duration(j, what, "misfire_grace_time");
    v.timeout = read_timeout(j, what);
    v.retry = read_retry(j, what);
    v.metadata = read_metadata(j, what);
}

void to_json(json &j, const Task &v) {
    j = json{{"version", json_format_version},
             {"id", v.id},
             {"job_executor", v.job_executor},
             {"max_running_jobs", max_running_json(v.max_running_jobs)},
             {"misfire_grace_time", duration_json(v.misfire_grace_time)},
             {"timeout", duration_json(v.timeout)},
             {"retry", retry_json(v.retry)},
             {"metadata", v.metadata},
             {"running_jobs", v.running_jobs}};
}

void from_json(const json &j, Task &v) {
    constexpr std::string_view what = "task";
    detail::check_version(j, what);
    v.id = get<std::string>(j, what, "id");
    v.job_executor = get_or<std::string>(j, what, "job_executor", "async");
    v.max_running_jobs = read_max_running(j, what);
    v.misfire_grace_time = get_duration(j, what, "misfire_grace_time");
    v.timeout = read_timeout(j, what);
    v.retry = read_retry(j, what);
    v.metadata = read_metadata(j, what);
    v.running_jobs = get_or<int>(j, what, "running_jobs", 0);
}

bool Schedule::operator==(const Schedule &o) const {
    auto trigger_json = [](const TriggerPtr &t) { return t ? t->to_json() : json(); };
    return id == o.id && task_id == o.task_id && trigger_json(trigger) == trigger_json(o.trigger) &&
           args == o.args && paused == o.paused && coalesce == o.coalesce &&
           max_catchup == o.max_catchup && misfire_grace_time == o.misfire_grace_time &&
           max_jitter == o.max_jitter && timeout == o.timeout && retry == o.retry &&
           job_result_expiration_time == o.job_result_expiration_time && metadata == o.metadata &&
           next_fire_time == o.next_fire_time && trigger_state == o.trigger_state &&
           last_fire_time == o.last_fire_time && acquired_by == o.acquired_by &&
           acquired_until == o.acquired_until && lease_token == o.lease_token;
}

void to_json(json &j, const Schedule &v) {
    j = json{{"version", json_format_version},
             {"id", v.id},
             {"task_id", v.task_id},
             {"trigger", v.trigger ? v.trigger->to_json() : json()},
             {"args", v.args},
             {"paused", v.paused},
             {"coalesce", to_string(v.coalesce)},
             {"max_catchup", v.max_catchup ? json(*v.max_catchup) : json()},
             {"misfire_grace_time", duration_json(v.misfire_grace_time)},
             {"max_jitter", duration_json(v.max_jitter)},
             {"timeout", duration_json(v.timeout)},
             {"retry", retry_json(v.retry)},
             {"job_result_expiration_time", to_seconds(v.job_result_expiration_time)},
             {"metadata", v.metadata},
             {"next_fire_time", time_json(v.next_fire_time)},
             {"trigger_state", v.trigger_state},
             {"last_fire_time", time_json(v.last_fire_time)},
             {"acquired_by", detail::opt_json(v.acquired_by)},
             {"acquired_until", time_json(v.acquired_until)},
             {"lease_token", v.lease_token}};
}

void from_json(const json &j, Schedule &v) {
    constexpr std::string_view what = "schedule";
    detail::check_version(j, what);
    v.id = get<std::string>(j, what, "id");
    v.task_id = get<std::string>(j, what, "task_id");
    const auto *t = detail::find(j, "trigger");
    if (!t)
        detail::bad_field(what, "trigger", "missing");
    try {
        v.trigger = trigger_from_json(*t);
    } catch (const Error &e) {
        detail::bad_field(what, "trigger", e.what());
    }
    v.args = read_args(j, what);
    v.paused = get_or<bool>(j, what, "paused", false);
    v.coalesce = detail::get_enum(j, what, "coalesce", CoalescePolicy::latest);
    if (auto cap = get_opt<std::int64_t>(j, what, "max_catchup")) {
        if (*cap <= 0)
            detail::bad_field(what, "max_catchup", fmt::format("must be positive, got {}", *cap));
        v.max_catchup = std::size_t(*cap);
    } else {
        v.max_catchup.reset();
    }
    v.misfire_grace_time = get_duration(j, what, "misfire_grace_time");
    v.max_jitter = get_duration(j, what, "max_jitter");
    v.timeout = read_timeout(j, what);
    v.retry = read_retry(j, what);
    v.job_result_expiration_time =
        get_duration(j, what, "job_result_expiration_time").value_or(duration(0));
    v.metadata = read_metadata(j, what);
    v.next_fire_time = get_time(j, what, "next_fire_time");
    v.trigger_state = j.value("trigger_state", json());
    v.last_fire_time = get_time(j, what, "last_fire_time");
    v.acquired_by = get_opt<std::string>(j, what, "acquired_by");
    v.acquired_until = get_time(j, what, "acquired_until");
    v.lease_token = get_or<std::uint64_t>(j, what, "lease_token", 0);
}

void to_json(json &j, const Job &v) {
    j = json{{"version", json_format_version},
             {"id", v.id},
             {"task_id", v.task_id},
             {"args", v.args},
             {"schedule_id", detail::opt_json(v.schedule_id)},
             {"scheduled_fire_time", time_json(v.scheduled_fire_time)},
             {"jitter", to_seconds(v.jitter)},
             {"start_deadline", time_json(v.start_deadline)},
             {"timeout", duration_json(v.timeout)},
             {"retry", retry_json(v.retry)},
             {"attempt", v.attempt},
             {"retry_at", time_json(v.retry_at)},
             {"result_expiration_time", to_seconds(v.result_expiration_time)},
             {"metadata", v.metadata},
             {"created_at", format_time(v.created_at)},
             {"acquired_by", detail::opt_json(v.acquired_by)},
             {"acquired_until", time_json(v.acquired_until)},
             {"lease_token", v.lease_token}};
}

void from_json(const json &j, Job &v) {
    constexpr std::string_view what = "job";
    detail::check_version(j, what);
    v.id = get<std::string>(j, what, "id");
    v.task_id = get<std::string>(j, what, "task_id");
    v.args = read_args(j, what);
    v.schedule_id = get_opt<std::string>(j, what, "schedule_id");
    v.scheduled_fire_time = get_time(j, what, "scheduled_fire_time");
    v.jitter = get_duration(j, what, "jitter").value_or(duration(0));
    v.start_deadline = get_time(j, what, "start_deadline");
    v.timeout = read_timeout(j, what);
    v.retry = read_retry(j, what);
    v.attempt = get_or<unsigned>(j, what, "attempt", 1);
    v.retry_at = get_time(j, what, "retry_at");
    v.result_expiration_time =
        get_duration(j, what, "result_expiration_time").value_or(duration(0));
    v.metadata = read_metadata(j, what);
    const auto created = get_time(j, what, "created_at");
    if (!created)
        detail::bad_field(what, "created_at", "missing");
    v.created_at = *created;
    v.acquired_by = get_opt<std::string>(j, what, "acquired_by");
    v.acquired_until = get_time(j, what, "acquired_until");
    v.lease_token = get_or<std::uint64_t>(j, what, "lease_token", 0);
}

void to_json(json &j, const JobResult &v) {
    j = json{{"version", json_format_version},
             {"job_id", v.job_id},
             {"task_id", v.task_id},
             {"schedule_id", detail::opt_json(v.schedule_id)},
             {"outcome", to_string(v.outcome)},
             {"started_at", time_json(v.started_at)},
             {"finished_at", format_time(v.finished_at)},
             {"expires_at", format_time(v.expires_at)},
             {"exception_type", detail::opt_json(v.exception_type)},
             {"exception_message", detail::opt_json(v.exception_message)},
             {"return_value", v.return_value},
             {"attempt", v.attempt}};
}

void from_json(const json &j, JobResult &v) {
    constexpr std::string_view what = "job result";
    detail::check_version(j, what);
    v.job_id = get<std::string>(j, what, "job_id");
    v.task_id = get_or<std::string>(j, what, "task_id", "");
    v.schedule_id = get_opt<std::string>(j, what, "schedule_id");
    if (!detail::find(j, "outcome"))
        detail::bad_field(what, "outcome", "missing");
    v.outcome = detail::get_enum(j, what, "outcome", JobOutcome::success);
    v.started_at = get_time(j, what, "started_at");
    const auto finished = get_time(j, what, "finished_at");
    const auto expires = get_time(j, what, "expires_at");
    if (!finished)
        detail::bad_field(what, "finished_at", "missing");
    if (!expires)
        detail::bad_field(what, "expires_at", "missing");
    v.finished_at = *finished;
    v.expires_at = *expires;
    v.exception_type = get_opt<std::string>(j, what, "exception_type");
    v.exception_message = get_opt<std::string>(j, what, "exception_message");
    auto it = j.find("return_value");
    v.return_value = it == j.end() ? json() : *it;
    v.attempt = get_or<unsigned>(j, what, "attempt", 1);
}

std::string make_uuid() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const std::uint64_t a = rng(), b = rng();
    std::array<unsigned char, 16> bytes{};
    for (int i = 0; i < 8; ++i) {
        bytes[i] = static_cast<unsigned char>(a >> (8 * i));
        bytes[8 + i] = static_cast<unsigned char>(b >> (8 * i));
    }
    bytes[6] = (bytes[6] & 0x0F) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3F) | 0x80; // RFC 4122 variant
    std::string out;
    out.reserve(36);
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out += '-';
        out += hex[bytes[i] >> 4];
        out += hex[bytes[i] & 0xF];
    }
    return out;
}

} // namespace asched
