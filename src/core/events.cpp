// Event names, timestamps and the wire JSON form; one field list per event drives both ways.
#include "json_util.hpp"

#include <asched/events.hpp>

#include <array>

namespace asched {
namespace {

using nlohmann::json;

template <class V> void fields(V &, SchedulerStarted &) {}
template <class V> void fields(V &v, SchedulerStopped &e) {
    v("exception", e.exception);
}
template <class V> void fields(V &v, TaskAdded &e) {
    v("task_id", e.task_id);
}
template <class V> void fields(V &v, TaskUpdated &e) {
    v("task_id", e.task_id);
}
template <class V> void fields(V &v, TaskRemoved &e) {
    v("task_id", e.task_id);
}
template <class V> void fields(V &v, ScheduleAdded &e) {
    v("schedule_id", e.schedule_id);
    v("task_id", e.task_id);
    v("next_fire_time", e.next_fire_time);
}
template <class V> void fields(V &v, ScheduleUpdated &e) {
    v("schedule_id", e.schedule_id);
    v("task_id", e.task_id);
    v("next_fire_time", e.next_fire_time);
}
template <class V> void fields(V &v, ScheduleRemoved &e) {
    v("schedule_id", e.schedule_id);
    v("task_id", e.task_id);
    v("finished", e.finished);
}
template <class V> void fields(V &v, JobAdded &e) {
    v("job_id", e.job_id);
    v("task_id", e.task_id);
    v("schedule_id", e.schedule_id);
}
template <class V> void fields(V &v, JobRemoved &e) {
    v("job_id", e.job_id);
    v("task_id", e.task_id);
}
template <class V> void fields(V &v, JobAcquired &e) {
    v("job_id", e.job_id);
    v("scheduler_id", e.scheduler_id);
    v("task_id", e.task_id);
    v("schedule_id", e.schedule_id);
    v("scheduled_start", e.scheduled_start);
}
template <class V> void fields(V &v, JobReleased &e) {
    v("job_id", e.job_id);
    v("scheduler_id", e.scheduler_id);
    v("task_id", e.task_id);
    v("schedule_id", e.schedule_id);
    v("scheduled_start", e.scheduled_start);
    v("started_at", e.started_at);
    v("outcome", e.outcome);
    v("exception_type", e.exception_type);
    v("exception_message", e.exception_message);
    v("attempt", e.attempt);
    v("retry_at", e.retry_at);
}

template <class V> void fields(V &v, RecordQuarantined &e) {
    v("kind", e.kind);
    v("record_id", e.record_id);
    v("error", e.error);
}

template <class V> void fields(V &v, StoreHealthChanged &e) {
    v("scheduler_id", e.scheduler_id);
    v("degraded", e.degraded);
    v("reason", e.reason);
}

template <class V> void fields(V &v, FiresDropped &e) {
    v("schedule_id", e.schedule_id);
    v("task_id", e.task_id);
    v("count", e.count);
    v("first_fire_time", e.first_fire_time);
    v("last_fire_time", e.last_fire_time);
    v("reason", e.reason);
}

template <class V> void fields(V &v, JobCancelRequested &e) {
    v("job_id", e.job_id);
    v("task_id", e.task_id);
    v("scheduler_id", e.scheduler_id);
}

constexpr std::array<std::string_view, std::variant_size_v<Event>> names{
    "SchedulerStarted",  "SchedulerStopped",   "TaskAdded",       "TaskUpdated",
    "TaskRemoved",       "ScheduleAdded",      "ScheduleUpdated", "ScheduleRemoved",
    "JobAdded",          "JobRemoved",         "JobAcquired",     "JobReleased",
    "RecordQuarantined", "StoreHealthChanged", "FiresDropped",    "JobCancelRequested"};

struct Writer {
    json &j;
    void operator()(const char *k, const std::string &v) { j[k] = v; }
    void operator()(const char *k, const std::optional<std::string> &v) {
        j[k] = detail::opt_json(v);
    }
    void operator()(const char *k, const std::optional<time_point> &v) {
        j[k] = detail::time_json(v);
    }
    void operator()(const char *k, time_point v) { j[k] = format_time(v); }
    void operator()(const char *k, bool v) { j[k] = v; }
    void operator()(const char *k, std::uint64_t v) { j[k] = v; }
    void operator()(const char *k, JobOutcome v) { j[k] = to_string(v); }
};

struct Reader {
    const json &j;
    std::string_view what;
    void operator()(const char *k, std::string &v) { v = detail::get<std::string>(j, what, k); }
    void operator()(const char *k, std::optional<std::string> &v) {
        v = detail::get_opt<std::string>(j, what, k);
    }
    void operator()(const char *k, std::optional<time_point> &v) {
        v = detail::get_time(j, what, k);
    }
    void operator()(const char *k, time_point &v) {
        const auto t = detail::get_time(j, what, k);
        if (!t)
            detail::bad_field(what, k, "missing");
        v = *t;
    }
    void operator()(const char *k, bool &v) { v = detail::get_or<bool>(j, what, k, false); }
    // Counters added later read as their default when an older node sent the event.
    void operator()(const char *k, std::uint64_t &v) {
        v = detail::get_or<std::uint64_t>(j, what, k, v);
    }
    void operator()(const char *k, JobOutcome &v) {
        if (!detail::find(j, k))
            detail::bad_field(what, k, "missing");
        v = detail::get_enum(j, what, k, JobOutcome::success);
    }
};

template <std::size_t I = 0> Event make_event(std::size_t index) {
    if constexpr (I == std::variant_size_v<Event>) {
        return Event{};
    } else {
        if (index == I)
            return Event{std::in_place_index<I>};
        return make_event<I + 1>(index);
    }
}

} // namespace

time_point event_timestamp(const Event &e) noexcept {
    return std::visit([](const auto &v) { return v.timestamp; }, e);
}

std::string_view event_name(const Event &e) noexcept {
    return names[e.index()];
}

void to_json(json &j, const Event &e) {
    j = json{{"type", event_name(e)},
             {"version", json_format_version},
             {"timestamp", format_time(event_timestamp(e))}};
    std::visit(
        [&](const auto &v) {
            Writer w{j};
            fields(w, const_cast<std::decay_t<decltype(v)> &>(v));
        },
        e);
}

void from_json(const json &j, Event &e) {
    detail::check_version(j, "event");
    const auto type = detail::get<std::string>(j, "event", "type");
    std::size_t index = names.size();
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == type)
            index = i;
    if (index == names.size())
        detail::bad_field("event", "type", fmt::format("unknown event type \"{}\"", type));
    e = make_event(index);
    const std::string what = fmt::format("event {}", type);
    std::visit(
        [&](auto &v) {
            const auto ts = detail::get_time(j, what, "timestamp");
            if (!ts)
                detail::bad_field(what, "timestamp", "missing");
            v.timestamp = *ts;
            Reader r{j, what};
            fields(r, v);
        },
        e);
}

} // namespace asched
