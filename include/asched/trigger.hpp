// The Trigger port: an immutable value that says when a schedule fires.
#pragma once

#include <asched/time.hpp>

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asched {

/// Decides a schedule's fire times. Immutable: the last fire time (and, for combining
/// triggers, a small state) lives in the Schedule, so a trigger is shared, serialised and
/// tested freely. Fire times must strictly increase.
class Trigger {
  public:
    virtual ~Trigger() = default;

    /// The first fire time after `previous`, or the first of all when `previous` is nullopt;
    /// nullopt once exhausted. Combining triggers answer by replaying from their first fire
    /// (O(fires so far)); schedulers use advance().
    virtual std::optional<time_point> next(std::optional<time_point> previous) const = 0;
    /// The stateful step the scheduler uses: `previous` is the fire time this trigger returned
    /// last (nullopt before the first call) and `state` what that call left in it (null
    /// before the first call). Stateless triggers leave `state` alone and call next();
    /// AndTrigger and OrTrigger keep their children's pending fire times in it. The state is
    /// JSON so stores persist it beside the schedule.
    /// Exceptions: Error(max_iterations) from AndTrigger.
    virtual std::optional<time_point> advance(std::optional<time_point> previous,
                                              nlohmann::json &state) const {
        (void)state;
        return next(previous);
    }
    /// The zone of the fire time advance() returned last, given the state it left: timezone()
    /// unless a combining trigger took the value from a child in another zone.
    virtual TimeZone zone_of(const nlohmann::json &state) const {
        (void)state;
        return timezone();
    }
    /// The versioned JSON form, with a "type" member; trigger_from_json reads it back.
    virtual nlohmann::json to_json() const = 0;
    /// A short description for logs, e.g. "interval[every 5s from 2025-01-01T00:00:00Z]".
    virtual std::string describe() const = 0;
    /// The zone fire times are shown in (for logs and formatting).
    virtual TimeZone timezone() const { return TimeZone::utc(); }
    /// Likely mistakes in the trigger's specification, as sentences for a warning (the
    /// trigger is valid; add_schedule logs them). Empty for most triggers.
    virtual std::vector<std::string> lint() const { return {}; }
    /// A copy whose defaults that depend on "now" (a start time) are fixed, or nullptr when
    /// there are none. add_schedule calls it with the scheduler clock's now().
    virtual std::shared_ptr<const Trigger> with_start(time_point now) const {
        (void)now;
        return nullptr;
    }
};

using TriggerPtr = std::shared_ptr<const Trigger>;

/// Rebuilds a built-in trigger from its JSON form. Throws Error(deserialization) naming the
/// type or field that is wrong (an unknown "type", a newer "version", a bad value).
TriggerPtr trigger_from_json(const nlohmann::json &j);

} // namespace asched
