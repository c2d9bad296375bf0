// DateTrigger: fires once.
#pragma once

#include <asched/trigger.hpp>

namespace asched {

/// Fires once, at `run_time`.
class DateTrigger final : public Trigger {
  public:
    explicit DateTrigger(time_point run_time, TimeZone zone = TimeZone::utc());
    /// From ISO 8601 text with an offset and optional [zone]; throws Error(invalid_argument).
    explicit DateTrigger(std::string_view run_time);

    time_point run_time() const noexcept { return run_time_; }

    std::optional<time_point> next(std::optional<time_point> previous) const override;
    nlohmann::json to_json() const override;
    std::string describe() const override;
    TimeZone timezone() const override { return zone_; }

    static std::shared_ptr<const DateTrigger> from_json(const nlohmann::json &j);

  private:
    time_point run_time_;
    TimeZone zone_;
};

} // namespace asched
