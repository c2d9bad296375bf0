// AndTrigger and OrTrigger: combine other triggers, nestable.
#pragma once

#include <asched/trigger.hpp>

#include <vector>

namespace asched {

/// Fires when all children fire within `threshold` of each other, at the earliest of those
/// fire times. Each step looks at the children's pending fire times: if they all lie within
/// `threshold` of the earliest, that one is returned; otherwise the children within
/// `threshold` of the earliest are advanced and the step is repeated, at most
/// `max_iterations` times per call, after which advance() throws Error(max_iterations).
/// Exhausted as soon as any child is. Instants are compared, whatever the children's zones.
class AndTrigger final : public Trigger {
  public:
    /// Throws Error(invalid_argument) for no children, a null child, a negative
    /// threshold or max_iterations of 0.
    explicit AndTrigger(std::vector<TriggerPtr> triggers,
                        duration threshold = std::chrono::seconds(1),
                        std::size_t max_iterations = 10'000);

    const std::vector<TriggerPtr> &triggers() const noexcept { return triggers_; }
    duration threshold() const noexcept { return threshold_; }
    std::size_t max_iterations() const noexcept { return max_iterations_; }

    std::optional<time_point> next(std::optional<time_point> previous) const override;
    std::optional<time_point> advance(std::optional<time_point> previous,
                                      nlohmann::json &state) const override;
    TimeZone zone_of(const nlohmann::json &state) const override;
    nlohmann::json to_json() const override;
    std::string describe() const override;
    TimeZone timezone() const override { return triggers_.front()->timezone(); }
    std::shared_ptr<const Trigger> with_start(time_point now) const override;

    static std::shared_ptr<const AndTrigger> from_json(const nlohmann::json &j);

  private:
    std::vector<TriggerPtr> triggers_;
    duration threshold_;
    std::size_t max_iterations_;
};

/// Fires whenever any child fires: the earliest of the children's pending fire times; every
/// child that produced that instant is advanced, so one instant fires once. On a tie the
/// child listed first supplies the value (and its zone). Exhausted when all children are.
class OrTrigger final : public Trigger {
  public:
    /// Throws Error(invalid_argument) for a null child. With no children it never fires.
    explicit OrTrigger(std::vector<TriggerPtr> triggers);

    const std::vector<TriggerPtr> &triggers() const noexcept { return triggers_; }

    std::optional<time_point> next(std::optional<time_point> previous) const override;
    std::optional<time_point> advance(std::optional<time_point> previous,
                                      nlohmann::json &state) const override;
    TimeZone zone_of(const nlohmann::json &state) const override;
    nlohmann::json to_json() const override;
    std::string describe() const override;
    TimeZone timezone() const override {
        return triggers_.empty() ? TimeZone::utc() : triggers_.front()->timezone();
    }
    std::shared_ptr<const Trigger> with_start(time_point now) const override;

    static std::shared_ptr<const OrTrigger> from_json(const nlohmann::json &j);

  private:
    std::vector<TriggerPtr> triggers_;
};

} // namespace asched
