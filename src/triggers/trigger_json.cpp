// Rebuilds built-in triggers from their JSON form.
#include "../core/json_util.hpp"

#include <asched/triggers/calendar_interval_trigger.hpp>
#include <asched/triggers/combining_triggers.hpp>
#include <asched/triggers/cron_trigger.hpp>
#include <asched/triggers/date_trigger.hpp>
#include <asched/triggers/interval_trigger.hpp>

namespace asched {

TriggerPtr trigger_from_json(const nlohmann::json &j) {
    detail::check_version(j, "trigger");
    const auto type = detail::get<std::string>(j, "trigger", "type");
    if (type == "date")
        return DateTrigger::from_json(j);
    if (type == "interval")
        return IntervalTrigger::from_json(j);
    if (type == "cron")
        return CronTrigger::from_json(j);
    if (type == "calendarinterval")
        return CalendarIntervalTrigger::from_json(j);
    if (type == "and")
        return AndTrigger::from_json(j);
    if (type == "or")
        return OrTrigger::from_json(j);
    detail::bad_field("trigger", "type", fmt::format("unknown trigger type \"{}\"", type));
}

} // namespace asched
