// IntervalTrigger: fires every fixed amount of elapsed time.
#pragma once

#include <asched/trigger.hpp>

namespace asched {

/// The interval (its parts add up; they may be fractional) and its bounds.
struct IntervalTriggerOptions {
    double weeks = 0;
    double days = 0;
    double hours = 0;
    double minutes = 0;
    double seconds = 0;
    double microseconds = 0;
    std::optional<time_point> start_time; ///< the first fire time; default: when scheduled
    std::optional<time_point> end_time;   ///< inclusive upper bound
    TimeZone timezone;                    ///< the zone fire times are shown in
};

/// Fires at start_time + k * interval, k = 0, 1, 2, ... up to end_time inclusive. Counted in
/// elapsed time, so it never yields a non-existent wall time (use CalendarIntervalTrigger for
/// "the same wall time every day").
class IntervalTrigger final : public Trigger {
  public:
    /// Throws Error(invalid_argument) naming the field: a total interval that is not
    /// positive, or end_time before start_time.
    explicit IntervalTrigger(IntervalTriggerOptions options);

    duration interval() const noexcept { return interval_; }
    std::optional<time_point> start_time() const noexcept { return start_; }
    std::optional<time_point> end_time() const noexcept { return end_; }

    std::optional<time_point> next(std::optional<time_point> previous) const override;
    nlohmann::json to_json() const override;
    std::string describe() const override;
    TimeZone timezone() const override { return zone_; }
    std::shared_ptr<const Trigger> with_start(time_point now) const override;

    static std::shared_ptr<const IntervalTrigger> from_json(const nlohmann::json &j);

  private:
    IntervalTrigger(duration interval, std::optional<time_point> start,
                    std::optional<time_point> end, TimeZone zone);

    duration interval_;
    std::optional<time_point> start_;
    std::optional<time_point> end_;
    TimeZone zone_;
};

} // namespace asched
