// CronTrigger: fires when the wall-clock time in its zone matches every field.
#pragma once

#include <asched/trigger.hpp>

#include <array>
#include <memory>

namespace asched {

/// How `day` and `day_of_week` combine when both are restricted.
enum class CronDayMatch {
    both,   ///< a day must match both (APScheduler, Quartz, croner's default)
    either, ///< Vixie cron: a day matching either fires, unless one field starts with `*`
};

/// Cron fields as APScheduler writes them; unset fields follow its defaults (an unset field
/// more significant than the least significant set one is `*`, a less significant one its
/// minimum). Each is a comma list of `*`, `*/n`, `a`, `a-b`, `a-b/n`, `a/n`; month and weekday
/// names (`jan`, `mon-fri`, wrapping `sat-mon`); in `day` also `last`, `1st`..`5th <weekday>`
/// and `last <weekday>`. Numeric day_of_week counts crontab style: 0 and 7 are Sunday.
/// The Quartz/croner forms are accepted too: in `day` `L` (last day), `L-3` (three days before
/// the last), `15W` (the weekday nearest the 15th, within the month), `LW` (the last weekday);
/// in `day_of_week` `5#2` or `fri#2` (the second Friday) and `5L` or `friL` (the last Friday);
/// `?` in either means `*`.
struct CronTriggerOptions {
    std::optional<std::string> year;
    std::optional<std::string> month;
    std::optional<std::string> day;
    std::optional<std::string> week; ///< ISO week 1-53
    std::optional<std::string> day_of_week;
    std::optional<std::string> hour;
    std::optional<std::string> minute;
    std::optional<std::string> second;
    std::optional<time_point> start_time; ///< inclusive; default: when scheduled
    std::optional<time_point> end_time;   ///< inclusive
    TimeZone timezone;
    CronDayMatch day_match = CronDayMatch::both;
};

/// Which fields a crontab line has. Never guessed from the count alone: a 6-field line reads
/// differently as `with_seconds` and as `with_year`.
enum class CrontabFields {
    standard,              ///< 5: minute hour day month day_of_week (second 0)
    with_seconds,          ///< 6: second minute hour day month day_of_week
    with_year,             ///< 6: minute hour day month day_of_week year
    with_seconds_and_year, ///< 7: second minute hour day month day_of_week year
    croner,                ///< 5, 6 or 7 as croner reads them: 6 = leading seconds, 7 = and year
};

struct CrontabOptions {
    CrontabFields fields = CrontabFields::standard;
    CronDayMatch day_match = CronDayMatch::both;
    std::optional<time_point> start_time; ///< inclusive; default: when scheduled
    std::optional<time_point> end_time;   ///< inclusive
};

/// Fires at every instant whose wall time in `timezone` matches all fields (day and
/// day_of_week must both match). A wall time that does not exist (a DST gap) is skipped; a
/// repeated one fires at both occurrences. Resolution: whole seconds.
class CronTrigger final : public Trigger {
  public:
    /// Throws Error(invalid_argument) naming the field and the expression, e.g.
    /// `cron field 'hour': 25 is out of range 0-23 in "25"`.
    explicit CronTrigger(CronTriggerOptions options);
    /// A standard 5-field crontab line: minute hour day month day_of_week (second 0), or one of
    /// `@yearly @annually @monthly @weekly @daily @midnight @hourly`.
    /// Throws Error(invalid_argument) naming the field, its position and the line.
    static CronTrigger from_crontab(std::string_view line, TimeZone timezone = TimeZone(),
                                    std::optional<time_point> start_time = std::nullopt,
                                    std::optional<time_point> end_time = std::nullopt);
    /// A crontab line with the fields `fields` names, e.g. `CrontabFields::with_seconds` for
    /// "30 */5 * * * *".
    static CronTrigger from_crontab(std::string_view line, TimeZone timezone, CrontabFields fields);
    /// A crontab line with its layout, the day/day_of_week reading and the bounds.
    static CronTrigger from_crontab(std::string_view line, TimeZone timezone,
                                    const CrontabOptions &options);

    std::optional<time_point> next(std::optional<time_point> previous) const override;
    /// Whether the wall time (whole seconds) that `t` reads in the trigger's zone matches every
    /// field. start_time and end_time are not consulted.
    bool matches(time_point t) const;
    nlohmann::json to_json() const override;
    std::string describe() const override;
    /// Warns on `* */4 * * *` and the like: a wildcard minute (or second) under a restricted
    /// hour (or minute) fires every minute of those hours, which is seldom what was meant.
    std::vector<std::string> lint() const override;
    TimeZone timezone() const override { return options_.timezone; }
    std::shared_ptr<const Trigger> with_start(time_point now) const override;

    static std::shared_ptr<const CronTrigger> from_json(const nlohmann::json &j);

    struct Fields;

  private:
    CronTriggerOptions options_;
    std::shared_ptr<const Fields> fields_;
};

} // namespace asched
