// CalendarIntervalTrigger: calendar steps between dates, then the time of day in the zone.
#include "../core/json_util.hpp"

#include <asched/triggers/calendar_interval_trigger.hpp>

#include <sstream>

namespace asched {
namespace {

using namespace std::chrono;

[[noreturn]] void bad(std::string_view field, std::string_view why) {
    throw Error(errc::invalid_argument,
                fmt::format("calendar interval trigger: field '{}': {}", field, why));
}

std::string format_date(const year_month_day &d) {
    return fmt::format("{:04}-{:02}-{:02}", int(d.year()), unsigned(d.month()), unsigned(d.day()));
}

std::optional<year_month_day> read_date(const nlohmann::json &j, const char *field) {
    const auto *v = detail::find(j, field);
    if (!v)
        return std::nullopt;
    if (!v->is_string())
        detail::bad_field("calendar interval trigger", field, "expected YYYY-MM-DD");
    const auto s = v->get<std::string>();
    int y = 0;
    unsigned m = 0, d = 0;
    char dash1 = 0, dash2 = 0;
    std::istringstream in(s);
    in >> y >> dash1 >> m >> dash2 >> d;
    const year_month_day ymd{year(y), month(m), day(d)};
    if (!in || dash1 != '-' || dash2 != '-' || !ymd.ok() || s.size() != 10)
        detail::bad_field("calendar interval trigger", field, fmt::format("not a date: \"{}\"", s));
    return ymd;
}

} // namespace

CalendarIntervalTrigger::CalendarIntervalTrigger(CalendarIntervalTriggerOptions o)
    : options_(std::move(o)) {
    const auto &x = options_;
    for (auto [name, v] :
         {std::pair{"years", x.years}, {"months", x.months}, {"weeks", x.weeks}, {"days", x.days}})
        if (v < 0)
            bad(name, fmt::format("must not be negative, got {}", v));
    if (x.years == 0 && x.months == 0 && x.weeks == 0 && x.days == 0)
        bad("interval", "at least one of years, months, weeks, days must be positive");
    if (x.hour < 0 || x.hour > 23)
        bad("hour", fmt::format("{} is out of range 0-23", x.hour));
    if (x.minute < 0 || x.minute > 59)
        bad("minute", fmt::format("{} is out of range 0-59", x.minute));
    if (x.second < 0 || x.second > 59)
        bad("second", fmt::format("{} is out of range 0-59", x.second));
    for (auto [name, d] : {std::pair{"start_date", x.start_date}, {"end_date", x.end_date}})
        if (d && !d->ok())
            bad(name, "not a valid date");
    if (x.start_date && x.end_date && sys_days(*x.end_date) < sys_days(*x.start_date))
        bad("end_date", fmt::format("{} is before start_date {}", format_date(*x.end_date),
                                    format_date(*x.start_date)));
}

year_month_day CalendarIntervalTrigger::advance(year_month_day d) const {
    const auto &x = options_;
    if (x.years || x.months) {
        // Keep the day of month; where it does not exist, step again (Jan 31 -> Mar 31).
        const int step = x.years * 12 + x.months;
        year_month_day next = d;
        for (int k = 1; k <= 48; ++k) {
            next = year_month_day(d.year() / d.month() / d.day() + months(step * k));
            if (next.ok())
                break;
        }
        d = next;
    }
    return year_month_day(sys_days(d) + std::chrono::days(x.weeks * 7 + x.days));
}

std::optional<time_point> CalendarIntervalTrigger::next(std::optional<time_point> previous) const {
    const auto &x = options_;
    if (!x.start_date)
        throw Error(errc::invalid_argument,
                    "calendar interval trigger: field 'start_date': not set (add the trigger to a "
                    "scheduler, which fixes it to today, or give one)");
    year_month_day d = *x.start_date;
    if (previous) {
        const auto local = x.timezone.to_local(*previous);
        d = year_month_day(floor<std::chrono::days>(local).time_since_epoch() + sys_days());
        d = advance(d);
    }
    for (int guard = 0; guard < 100000; ++guard) {
        if (int(d.year()) > 9999 || (x.end_date && sys_days(d) > sys_days(*x.end_date)))
            return std::nullopt;
        const local_time when(sys_days(d).time_since_epoch() + hours(x.hour) + minutes(x.minute) +
                              seconds(x.second));
        const auto info = x.timezone.resolve(when);
        if (info.kind != LocalTimeInfo::Kind::nonexistent)
            return info.first; // a repeated time: its first occurrence
        d = advance(d);        // the time does not exist on that date: skip the date
    }
    return std::nullopt;
}

std::shared_ptr<const Trigger> CalendarIntervalTrigger::with_start(time_point now) const {
    if (options_.start_date)
        return nullptr;
    auto o = options_;
    const auto local = o.timezone.to_local(now);
    o.start_date = year_month_day(floor<std::chrono::days>(local).time_since_epoch() + sys_days());
    if (o.end_date && sys_days(*o.end_date) < sys_days(*o.start_date))
        o.end_date = o.start_date;
    return std::make_shared<const CalendarIntervalTrigger>(std::move(o));
}

nlohmann::json CalendarIntervalTrigger::to_json() const {
    const auto &x = options_;
    return {{"type", "calendarinterval"},
            {"version", json_format_version},
            {"years", x.years},
            {"months", x.months},
            {"weeks", x.weeks},
            {"days", x.days},
            {"hour", x.hour},
            {"minute", x.minute},
            {"second", x.second},
            {"start_date",
             x.start_date ? nlohmann::json(format_date(*x.start_date)) : nlohmann::json()},
            {"end_date", x.end_date ? nlohmann::json(format_date(*x.end_date)) : nlohmann::json()},
            {"timezone", x.timezone.name()}};
}

std::string CalendarIntervalTrigger::describe() const {
    const auto &x = options_;
    std::string step;
    for (auto [name, v] :
         {std::pair{"y", x.years}, {"mo", x.months}, {"w", x.weeks}, {"d", x.days}})
        if (v)
            step += fmt::format("{}{}", v, name);
    return fmt::format("calendarinterval[every {} at {:02}:{:02}:{:02} {}{}]", step, x.hour,
                       x.minute, x.second, x.timezone.name(),
                       x.start_date ? " from " + format_date(*x.start_date) : std::string());
}

std::shared_ptr<const CalendarIntervalTrigger>
CalendarIntervalTrigger::from_json(const nlohmann::json &j) {
    constexpr std::string_view what = "calendar interval trigger";
    detail::check_version(j, what);
    CalendarIntervalTriggerOptions o;
    o.years = detail::get_or<int>(j, what, "years", 0);
    o.months = detail::get_or<int>(j, what, "months", 0);
    o.weeks = detail::get_or<int>(j, what, "weeks", 0);
    o.days = detail::get_or<int>(j, what, "days", 0);
    o.hour = detail::get_or<int>(j, what, "hour", 0);
    o.minute = detail::get_or<int>(j, what, "minute", 0);
    o.second = detail::get_or<int>(j, what, "second", 0);
    o.start_date = read_date(j, "start_date");
    o.end_date = read_date(j, "end_date");
    o.timezone = detail::get_timezone(j, what);
    return detail::deserializing(
        [&] { return std::make_shared<const CalendarIntervalTrigger>(std::move(o)); });
}

} // namespace asched
