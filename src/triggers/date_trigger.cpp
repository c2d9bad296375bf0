// DateTrigger: one fire time.
#include "../core/json_util.hpp"

#include <asched/triggers/date_trigger.hpp>

namespace asched {

DateTrigger::DateTrigger(time_point run_time, TimeZone zone)
    : run_time_(run_time), zone_(std::move(zone)) {}

DateTrigger::DateTrigger(std::string_view run_time) {
    auto z = parse_zoned_time(run_time);
    run_time_ = z.instant;
    zone_ = std::move(z.zone);
}

std::optional<time_point> DateTrigger::next(std::optional<time_point> previous) const {
    if (!previous || *previous < run_time_)
        return run_time_;
    return std::nullopt;
}

nlohmann::json DateTrigger::to_json() const {
    return {{"type", "date"},
            {"version", json_format_version},
            {"run_time", format_time(run_time_)},
            {"timezone", zone_.name()}};
}

std::string DateTrigger::describe() const {
    return fmt::format("date[{}]", zone_.format(run_time_));
}

std::shared_ptr<const DateTrigger> DateTrigger::from_json(const nlohmann::json &j) {
    constexpr std::string_view what = "date trigger";
    detail::check_version(j, what);
    const auto run_time = detail::get_time(j, what, "run_time");
    if (!run_time)
        detail::bad_field(what, "run_time", "missing");
    const TimeZone zone = detail::get_timezone(j, what);
    return std::make_shared<const DateTrigger>(*run_time, zone);
}

} // namespace asched
