// IntervalTrigger: start + k * interval, counted in elapsed time.
#include "../core/json_util.hpp"

#include <asched/triggers/interval_trigger.hpp>

#include <cfenv>
#include <cmath>
#include <limits>

namespace asched {
namespace {

[[noreturn]] void bad(std::string_view field, std::string_view why) {
    throw Error(errc::invalid_argument,
                fmt::format("interval trigger: field '{}': {}", field, why));
}

duration total_interval(const IntervalTriggerOptions &o) {
    const struct {
        const char *name;
        double value;
        long double us;
    } parts[] = {{"weeks", o.weeks, 604800e6L}, {"days", o.days, 86400e6L},
                 {"hours", o.hours, 3600e6L},   {"minutes", o.minutes, 60e6L},
                 {"seconds", o.seconds, 1e6L},  {"microseconds", o.microseconds, 1.0L}};
    long double total = 0;
    for (const auto &p : parts) {
        if (!std::isfinite(p.value))
            bad(p.name, fmt::format("must be a finite number, got {}", p.value));
        total += static_cast<long double>(p.value) * p.us;
    }
    if (std::fabs(total) > 1e18L)
        bad("interval", "total interval is out of range");
    const int mode = std::fegetround();
    std::fesetround(FE_TONEAREST);
    const auto rounded = static_cast<std::int64_t>(std::nearbyint(total));
    std::fesetround(mode);
    if (rounded <= 0)
        bad("interval", fmt::format("total interval must be positive, got {}",
                                    format_duration(duration(rounded))));
    return duration(rounded);
}

} // namespace

IntervalTrigger::IntervalTrigger(IntervalTriggerOptions o)
    : IntervalTrigger(total_interval(o), o.start_time, o.end_time, o.timezone) {}

IntervalTrigger::IntervalTrigger(duration interval, std::optional<time_point> start,
                                 std::optional<time_point> end, TimeZone zone)
    : interval_(interval), start_(start), end_(end), zone_(std::move(zone)) {
    if (interval_ <= duration(0))
        bad("interval",
            fmt::format("total interval must be positive, got {}", format_duration(interval_)));
    if (start_ && end_ && *end_ < *start_)
        bad("end_time",
            fmt::format("{} is before start_time {}", format_time(*end_), format_time(*start_)));
}

std::optional<time_point> IntervalTrigger::next(std::optional<time_point> previous) const {
    if (!start_)
        throw Error(errc::invalid_argument,
                    "interval trigger: field 'start_time': not set (add the trigger to a "
                    "scheduler, which fixes it to now, or give one)");
    time_point candidate = *start_;
    if (previous && *previous >= *start_) {
        const auto k = (*previous - *start_) / interval_ + 1;
        const auto room = (time_point::max() - *start_) / interval_;
        if (k > room)
            return std::nullopt;
        candidate = *start_ + k * interval_;
    }
    if (end_ && candidate > *end_)
        return std::nullopt;
    return candidate;
}

std::shared_ptr<const Trigger> IntervalTrigger::with_start(time_point now) const {
    if (start_)
        return nullptr;
    return std::shared_ptr<const IntervalTrigger>(new IntervalTrigger(interval_, now, end_, zone_));
}

nlohmann::json IntervalTrigger::to_json() const {
    return {{"type", "interval"},
            {"version", json_format_version},
            {"interval", to_seconds(interval_)},
            {"start_time", detail::time_json(start_)},
            {"end_time", detail::time_json(end_)},
            {"timezone", zone_.name()}};
}

std::string IntervalTrigger::describe() const {
    std::string out = fmt::format("interval[every {}", format_duration(interval_));
    if (start_)
        out += fmt::format(" from {}", zone_.format(*start_));
    if (end_)
        out += fmt::format(" until {}", zone_.format(*end_));
    return out + "]";
}

std::shared_ptr<const IntervalTrigger> IntervalTrigger::from_json(const nlohmann::json &j) {
    constexpr std::string_view what = "interval trigger";
    detail::check_version(j, what);
    const auto interval = detail::get_duration(j, what, "interval");
    if (!interval)
        detail::bad_field(what, "interval", "missing");
    const TimeZone zone = detail::get_timezone(j, what);
    const auto start = detail::get_time(j, what, "start_time");
    const auto end = detail::get_time(j, what, "end_time");
    return detail::deserializing([&] {
        return std::shared_ptr<const IntervalTrigger>(
            new IntervalTrigger(*interval, start, end, zone));
    });
}

} // namespace asched
