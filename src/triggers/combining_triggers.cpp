// AndTrigger and OrTrigger. Like the reference, each keeps every child's pending fire time;
// unlike it, that state lives in the schedule (Trigger::advance), not in the trigger object,
// and all comparisons are between instants.
#include "../core/json_util.hpp"

#include <asched/triggers/combining_triggers.hpp>

#include <algorithm>

namespace asched {
namespace {

using nlohmann::json;

void check_children(const std::vector<TriggerPtr> &triggers, std::string_view what,
                    std::size_t min) {
    if (triggers.size() < min)
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field 'triggers': needs at least {} trigger{}, got {}", what,
                                min, min == 1 ? "" : "s", triggers.size()));
    for (std::size_t i = 0; i < triggers.size(); ++i)
        if (!triggers[i])
            throw Error(errc::invalid_argument,
                        fmt::format("{}: field 'triggers': entry {} is null", what, i));
}

// The children's pending fire times and states, unpacked from and packed into the JSON state.
struct Pending {
    std::vector<std::optional<time_point>> times;
    std::vector<json> states;

    // Reads `state`, or (when null: the first call) asks every child for its first fire time.
    static Pending load(const std::vector<TriggerPtr> &children, const json &state,
                        std::string_view what) {
        Pending p;
        p.times.resize(children.size());
        p.states.resize(children.size());
        if (state.is_null()) {
            for (std::size_t i = 0; i < children.size(); ++i)
                p.times[i] = children[i]->advance(std::nullopt, p.states[i]);
            return p;
        }
        const auto *times = detail::find(state, "pending");
        const auto *states = detail::find(state, "states");
        if (!times || !states || !times->is_array() || !states->is_array() ||
            times->size() != children.size() || states->size() != children.size())
            throw Error(errc::deserialization,
                        fmt::format("{}: trigger state does not fit its {} children: {}", what,
                                    children.size(), state.dump()));
        for (std::size_t i = 0; i < children.size(); ++i) {
            const json &t = (*times)[i];
            if (!t.is_null() && !t.is_number_integer())
                throw Error(errc::deserialization,
                            fmt::format("{}: trigger state: pending time {} is not an integer: {}",
                                        what, i, t.dump()));
            if (!t.is_null())
                p.times[i] = time_point(duration(t.get<std::int64_t>()));
            p.states[i] = (*states)[i];
        }
        return p;
    }

    void store(json &state, const TimeZone &zone) {
        json times = json::array();
        for (const auto &t : this->times)
            times.push_back(t ? json(t->time_since_epoch().count()) : json());
        state = json{
            {"pending", std::move(times)}, {"states", std::move(states)}, {"zone", zone.name()}};
    }
};

// Replays advance() from the first fire until it passes `previous`: O(fires so far).
template <class T>
std::optional<time_point> replay(const T &trigger, std::optional<time_point> previous) {
    json state;
    std::optional<time_point> t;
    do {
        t = trigger.advance(t, state);
    } while (t && previous && *t <= *previous);
    return t;
}

TimeZone zone_in(const json &state, const TimeZone &fallback) {
    if (const auto *z = detail::find(state, "zone"); z && z->is_string())
        return TimeZone(z->get<std::string>());
    return fallback;
}

json children_json(const std::vector<TriggerPtr> &triggers) {
    json out = json::array();
    for (const auto &t : triggers)
        out.push_back(t->to_json());
    return out;
}

std::vector<TriggerPtr> children_from_json(const json &j, std::string_view what) {
    const auto *list = detail::find(j, "triggers");
    if (!list || !list->is_array())
        detail::bad_field(what, "triggers", "expected an array of triggers");
    std::vector<TriggerPtr> out;
    for (std::size_t i = 0; i < list->size(); ++i) {
        try {
            out.push_back(trigger_from_json((*list)[i]));
        } catch (const Error &e) {
            detail::bad_field(what, "triggers", fmt::format("entry {}: {}", i, e.what()));
        }
    }
    return out;
}

std::vector<TriggerPtr> children_with_start(const std::vector<TriggerPtr> &triggers, time_point now,
                                            bool &changed) {
    std::vector<TriggerPtr> out;
    for (const auto &t : triggers) {
        auto bound = t->with_start(now);
        changed |= bound != nullptr;
        out.push_back(bound ? std::move(bound) : t);
    }
    return out;
}

std::string describe_children(std::string_view name, const std::vector<TriggerPtr> &triggers,
                              std::string_view extra) {
    std::string out = std::string(name) + "[";
    for (std::size_t i = 0; i < triggers.size(); ++i)
        out += (i ? ", " : "") + triggers[i]->describe();
    return out + std::string(extra) + "]";
}

} // namespace

// ---- AndTrigger -----------------------------------------------------------------------------

AndTrigger::AndTrigger(std::vector<TriggerPtr> triggers, duration threshold,
                       std::size_t max_iterations)
    : triggers_(std::move(triggers)), threshold_(threshold), max_iterations_(max_iterations) {
    check_children(triggers_, "and trigger", 1);
    if (threshold_ < duration(0))
        throw Error(errc::invalid_argument,
                    fmt::format("and trigger: field 'threshold': must not be negative, got {}s",
                                to_seconds(threshold_)));
    if (max_iterations_ == 0)
        throw Error(errc::invalid_argument,
                    "and trigger: field 'max_iterations': must be at least 1, got 0");
}

std::optional<time_point> AndTrigger::next(std::optional<time_point> previous) const {
    return replay(*this, previous);
}

std::optional<time_point> AndTrigger::advance(std::optional<time_point>, json &state) const {
    Pending p = Pending::load(triggers_, state, "and trigger");
    for (std::size_t round = 0; round < max_iterations_; ++round) {
        if (std::any_of(p.times.begin(), p.times.end(), [](const auto &t) { return !t; })) {
            p.store(state, timezone());
            return std::nullopt;
        }
        std::size_t first = 0;
        time_point latest = *p.times[0];
        for (std::size_t i = 1; i < p.times.size(); ++i) {
            if (*p.times[i] < *p.times[first])
                first = i;
            latest = std::max(latest, *p.times[i]);
        }
        const time_point earliest = *p.times[first];
        const TimeZone zone = triggers_[first]->zone_of(p.states[first]);
        for (std::size_t i = 0; i < p.times.size(); ++i)
            if (*p.times[i] - earliest <= threshold_)
                p.times[i] = triggers_[i]->advance(p.times[i], p.states[i]);
        if (latest - earliest <= threshold_) {
            p.store(state, zone);
            return earliest;
        }
    }
    p.store(state, timezone());
    throw Error(errc::max_iterations,
                fmt::format("and trigger: no common fire time within {} iterations (threshold {}s)",
                            max_iterations_, to_seconds(threshold_)));
}

TimeZone AndTrigger::zone_of(const json &state) const {
    return zone_in(state, timezone());
}

json AndTrigger::to_json() const {
    return json{{"type", "and"},
                {"version", json_format_version},
                {"triggers", children_json(triggers_)},
                {"threshold", to_seconds(threshold_)},
                {"max_iterations", max_iterations_}};
}

std::string AndTrigger::describe() const {
    return describe_children("and", triggers_,
                             fmt::format(", threshold={}s", to_seconds(threshold_)));
}

std::shared_ptr<const Trigger> AndTrigger::with_start(time_point now) const {
    bool changed = false;
    auto children = children_with_start(triggers_, now, changed);
    return changed ? std::make_shared<const AndTrigger>(std::move(children), threshold_,
                                                        max_iterations_)
                   : nullptr;
}

std::shared_ptr<const AndTrigger> AndTrigger::from_json(const json &j) {
    constexpr std::string_view what = "and trigger";
    detail::check_version(j, what);
    auto children = children_from_json(j, what);
    const auto threshold =
        detail::get_duration(j, what, "threshold").value_or(std::chrono::seconds(1));
    const auto iterations = detail::get_or<std::int64_t>(j, what, "max_iterations", 10'000);
    if (iterations < 1)
        detail::bad_field(what, "max_iterations",
                          fmt::format("must be at least 1, got {}", iterations));
    return detail::deserializing([&] {
        return std::make_shared<const AndTrigger>(std::move(children), threshold,
                                                  std::size_t(iterations));
    });
}

// ---- OrTrigger ------------------------------------------------------------------------------

OrTrigger::OrTrigger(std::vector<TriggerPtr> triggers) : triggers_(std::move(triggers)) {
    check_children(triggers_, "or trigger", 0);
}

std::optional<time_point> OrTrigger::next(std::optional<time_point> previous) const {
    return replay(*this, previous);
}

std::optional<time_point> OrTrigger::advance(std::optional<time_point>, json &state) const {
    Pending p = Pending::load(triggers_, state, "or trigger");
    std::optional<std::size_t> first;
    for (std::size_t i = 0; i < p.times.size(); ++i)
        if (p.times[i] && (!first || *p.times[i] < *p.times[*first]))
            first = i;
    if (!first) {
        p.store(state, timezone());
        return std::nullopt;
    }
    const time_point earliest = *p.times[*first];
    const TimeZone zone = triggers_[*first]->zone_of(p.states[*first]);
    for (std::size_t i = 0; i < p.times.size(); ++i)
        if (p.times[i] == earliest)
            p.times[i] = triggers_[i]->advance(p.times[i], p.states[i]);
    p.store(state, zone);
    return earliest;
}

TimeZone OrTrigger::zone_of(const json &state) const {
    return zone_in(state, timezone());
}

json OrTrigger::to_json() const {
    return json{
        {"type", "or"}, {"version", json_format_version}, {"triggers", children_json(triggers_)}};
}

std::string OrTrigger::describe() const {
    return describe_children("or", triggers_, "");
}

std::shared_ptr<const Trigger> OrTrigger::with_start(time_point now) const {
    bool changed = false;
    auto children = children_with_start(triggers_, now, changed);
    return changed ? std::make_shared<const OrTrigger>(std::move(children)) : nullptr;
}

std::shared_ptr<const OrTrigger> OrTrigger::from_json(const json &j) {
    constexpr std::string_view what = "or trigger";
    detail::check_version(j, what);
    auto children = children_from_json(j, what);
    return detail::deserializing(
        [&] { return std::make_shared<const OrTrigger>(std::move(children)); });
}

} // namespace asched
