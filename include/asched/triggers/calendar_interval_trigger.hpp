// CalendarIntervalTrigger: the same wall-clock time every N years/months/weeks/days.
#pragma once

#include <asched/trigger.hpp>

#include <chrono>

namespace asched {

struct CalendarIntervalTriggerOptions {
    int years = 0;
    int months = 0;
    int weeks = 0;
    int days = 0;
    int hour = 0; ///< time of day, in `timezone`
    int minute = 0;
    int second = 0;
    std::optional<std::chrono::year_month_day> start_date; ///< default: today when scheduled
    std::optional<std::chrono::year_month_day> end_date;   ///< inclusive
    TimeZone timezone;
};

/// Fires at hour:minute:second on start_date, then every years/months (keeping the day of
/// month; a month without that day is skipped: Jan 31 + 1 month is Mar 31) plus weeks/days.
/// A date whose time falls in a DST gap is skipped; a repeated time fires at its first
/// occurrence.
class CalendarIntervalTrigger final : public Trigger {
  public:
    /// Throws Error(invalid_argument) naming the field: no positive step, a negative step, a
    /// time of day out of range, end_date before start_date.
    explicit CalendarIntervalTrigger(CalendarIntervalTriggerOptions options);

    std::optional<time_point> next(std::optional<time_point> previous) const override;
    nlohmann::json to_json() const override;
    std::string describe() const override;
    TimeZone timezone() const override { return options_.timezone; }
    std::shared_ptr<const Trigger> with_start(time_point now) const override;

    static std::shared_ptr<const CalendarIntervalTrigger> from_json(const nlohmann::json &j);

  private:
    std::chrono::year_month_day advance(std::chrono::year_month_day d) const;
    CalendarIntervalTriggerOptions options_;
};

} // namespace asched
