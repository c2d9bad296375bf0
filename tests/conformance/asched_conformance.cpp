// asched_conformance: checks asched's triggers against the JSONL corpus produced by running
// APScheduler 4 (see README.md beside the corpus for the format).
//
// usage: asched_conformance [--type T[,T...]] [--verbose] FILE...
// Ends with one line: "conformance: P passed, F failed, Q quirk-deviations"; exit 0 iff F == 0.
#include <asched/asched.hpp>
#include <asched/triggers/cron_trigger.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

using namespace asched;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Unsupported : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A corpus datetime: zoned "…+01:00[Europe/Berlin]", fixed "…+01:00", or (cron only) naive
// "…", read as a wall time in `zone` (first occurrence if repeated; an error in a gap).
ZonedTime read_time(const std::string &text, const TimeZone &zone, const char *field) {
    const bool naive = text.size() >= 19 && text.find('Z', 19) == std::string::npos &&
                       text.find('+', 19) == std::string::npos &&
                       text.find('-', 19) == std::string::npos;
    if (!naive)
        return parse_zoned_time(text);
    auto as_utc = parse_zoned_time(text + "Z").instant;
    const auto info = zone.resolve(local_time(as_utc.time_since_epoch()));
    if (info.kind == LocalTimeInfo::Kind::nonexistent)
        throw Error(errc::invalid_argument,
                    std::string(field) + "=" + text + " does not exist in " + zone.name());
    return {info.first, zone};
}

std::optional<std::string> cron_value(const json &spec, const char *key) {
    auto it = spec.find(key);
    if (it == spec.end() || it->is_null())
        return std::nullopt;
    if (it->is_number_integer())
        return std::to_string(it->get<long long>());
    return it->get<std::string>();
}

// The reference's interval arithmetic (corpus README 4.1), used only to show that a
// difference comes from asched's documented elapsed-time intervals: fire k is the start's wall
// time plus k steps, read as its first occurrence, or with the offset before the jump when it
// falls into a gap. Its state keeps the wall time.
class WallClockInterval final : public Trigger {
  public:
    WallClockInterval(ZonedTime start, duration step, std::optional<ZonedTime> end)
        : start_(std::move(start)), step_(step), end_(std::move(end)) {}

    std::optional<time_point> next(std::optional<time_point>) const override {
        throw std::logic_error("WallClockInterval: use advance()");
    }
    std::optional<time_point> advance(std::optional<time_point> previous,
                                      json &state) const override {
        const TimeZone &zone = start_.zone;
        local_time wall = previous
                              ? local_time(duration(state.at("wall").get<std::int64_t>())) + step_
                              : zone.to_local(start_.instant);
        time_point at = start_.instant;
        if (previous) {
            const auto info = zone.resolve(wall);
            if (info.kind == LocalTimeInfo::Kind::nonexistent)
                at = time_point(wall.time_since_epoch() -
                                zone.offset_at(zone.period_at(info.first).begin - duration(1)));
            else
                at = info.first;
        }
        state = json{{"wall", wall.time_since_epoch().count()}};
        if (end_) {
            const bool same_zone = end_->zone == zone && !zone.is_fixed();
            if (same_zone ? wall > end_->zone.to_local(end_->instant) : at > end_->instant)
                return std::nullopt;
        }
        return at;
    }
    json to_json() const override { return json{{"type", "wall-clock-interval"}}; }
    std::string describe() const override { return "wall-clock-interval"; }
    TimeZone timezone() const override { return start_.zone; }

  private:
    ZonedTime start_;
    duration step_;
    std::optional<ZonedTime> end_;
};

TriggerPtr build(const json &spec, bool wall_clock_intervals = false) {
    const auto type = spec.at("type").get<std::string>();
    if (type == "date") {
        auto run = parse_zoned_time(spec.at("run_time").get<std::string>());
        return std::make_shared<DateTrigger>(run.instant, run.zone);
    }
    if (type == "interval") {
        IntervalTriggerOptions o;
        o.weeks = spec.value("weeks", 0.0);
        o.days = spec.value("days", 0.0);
        o.hours = spec.value("hours", 0.0);
        o.minutes = spec.value("minutes", 0.0);
        o.seconds = spec.value("seconds", 0.0);
        o.microseconds = spec.value("microseconds", 0.0);
        auto start = parse_zoned_time(spec.at("start_time").get<std::string>());
        o.start_time = start.instant;
        o.timezone = start.zone;
        std::optional<ZonedTime> end;
        if (spec.contains("end_time") && !spec["end_time"].is_null())
            end = parse_zoned_time(spec["end_time"].get<std::string>());
        if (end)
            o.end_time = end->instant;
        auto trigger = std::make_shared<IntervalTrigger>(o);
        if (wall_clock_intervals && !start.zone.is_fixed())
            return std::make_shared<WallClockInterval>(start, trigger->interval(), end);
        return trigger;
    }
    if (type == "cron") {
        const TimeZone zone(spec.value("timezone", std::string("UTC")));
        std::optional<time_point> start, end;
        if (spec.contains("start_time") && !spec["start_time"].is_null())
            start = read_time(spec["start_time"].get<std::string>(), zone, "start_time").instant;
        if (spec.contains("end_time") && !spec["end_time"].is_null())
            end = read_time(spec["end_time"].get<std::string>(), zone, "end_time").instant;
        if (spec.contains("crontab"))
            return std::make_shared<CronTrigger>(
                CronTrigger::from_crontab(spec["crontab"].get<std::string>(), zone, start, end));
        CronTriggerOptions o;
        o.year = cron_value(spec, "year");
        o.month = cron_value(spec, "month");
        o.day = cron_value(spec, "day");
        o.week = cron_value(spec, "week");
        o.day_of_week = cron_value(spec, "day_of_week");
        o.hour = cron_value(spec, "hour");
        o.minute = cron_value(spec, "minute");
        o.second = cron_value(spec, "second");
        o.start_time = start;
        o.end_time = end;
        o.timezone = zone;
        return std::make_shared<CronTrigger>(o);
    }
    if (type == "calendarinterval") {
        // The corpus form is APScheduler's, the same field names as asched's JSON.
        json j = spec;
        j["version"] = 1;
        if (!j.contains("timezone"))
            j["timezone"] = "UTC";
        try {
            return CalendarIntervalTrigger::from_json(j);
        } catch (const Error &e) {
            throw Error(errc::invalid_argument, e.what());
        }
    }
    if (type == "and" || type == "or") {
        std::vector<TriggerPtr> children;
        for (const auto &child : spec.at("triggers"))
            children.push_back(build(child, wall_clock_intervals));
        if (type == "or")
            return std::make_shared<OrTrigger>(std::move(children));
        return std::make_shared<AndTrigger>(std::move(children),
                                            from_seconds(spec.value("threshold", 1.0)),
                                            spec.value("max_iterations", std::size_t(10000)));
    }
    throw Unsupported("trigger type '" + type + "' is not implemented yet");
}

struct Outcome {
    bool ok = true;
    std::string detail;
    bool reference_defect = false; ///< asched differs where the reference is provably wrong
    bool documented = false;       ///< asched differs in a way its README documents
};

// A model of a trigger tree for the reference-defect proofs. It answers "is t a fire of this
// tree?" from each leaf's own definition (a cron's fields through matches() and its bounds, an
// interval's grid, a date's instant), never from the next-fire search the corpus checks; where
// that cannot be decided (calendar intervals, an `and` with a threshold) the answer is unknown.
struct Node {
    std::string type;
    std::shared_ptr<const CronTrigger> cron;
    std::shared_ptr<const IntervalTrigger> interval;
    std::shared_ptr<const DateTrigger> date;
    std::optional<time_point> start, end; // cron bounds (inclusive)
    double threshold = 0;
    std::vector<Node> children;
};

Node model(const json &spec) {
    Node n;
    n.type = spec.at("type").get<std::string>();
    if (n.type == "and" || n.type == "or") {
        n.threshold = spec.value("threshold", 1.0);
        for (const auto &child : spec.at("triggers"))
            n.children.push_back(model(child));
        return n;
    }
    const TriggerPtr t = build(spec);
    n.cron = std::dynamic_pointer_cast<const CronTrigger>(t);
    n.interval = std::dynamic_pointer_cast<const IntervalTrigger>(t);
    n.date = std::dynamic_pointer_cast<const DateTrigger>(t);
    if (n.cron) {
        const TimeZone &zone = n.cron->timezone();
        if (spec.contains("start_time") && !spec["start_time"].is_null())
            n.start = read_time(spec["start_time"].get<std::string>(), zone, "start_time").instant;
        if (spec.contains("end_time") && !spec["end_time"].is_null())
            n.end = read_time(spec["end_time"].get<std::string>(), zone, "end_time").instant;
    }
    return n;
}

std::optional<bool> fires_at(const Node &n, time_point t) {
    if (n.cron)
        return n.cron->matches(t) && (!n.start || t >= *n.start) && (!n.end || t <= *n.end);
    if (n.interval) {
        // A zoned interval counts wall-clock time in the reference and elapsed time in asched
        // (a documented difference, proven by interval_deviation): no proof may rest on it.
        if (!n.interval->timezone().is_fixed())
            return std::nullopt;
        const auto start = *n.interval->start_time();
        const auto end = n.interval->end_time();
        return t >= start && (!end || t <= *end) && (t - start) % n.interval->interval() == 0us;
    }
    if (n.date)
        return t == n.date->run_time();
    if (n.type == "or" || (n.type == "and" && n.threshold == 0)) {
        const bool any = n.type == "or";
        bool unknown = false;
        for (const auto &c : n.children) {
            const auto f = fires_at(c, t);
            if (!f)
                unknown = true;
            else if (*f == any)
                return any;
        }
        if (unknown)
            return std::nullopt;
        return !any;
    }
    return std::nullopt;
}

void cron_leaves(const Node &n, std::vector<const Node *> &out) {
    if (n.cron)
        out.push_back(&n);
    for (const auto &c : n.children)
        cron_leaves(c, out);
}

std::string offset_text(std::chrono::seconds s) {
    const auto a = s.count() < 0 ? -s.count() : s.count();
    return fmt::format("{}{:02}:{:02}", s.count() < 0 ? '-' : '+', a / 3600, a / 60 % 60);
}

struct OffsetChange {
    time_point at;
    bool gap; ///< the offset grew: wall times were skipped (else a wall span repeats)
    std::string text;
};

// The latest change of UTC offset in `zone` inside (after, t]; nothing when there is none.
std::optional<OffsetChange> offset_change(const TimeZone &zone, time_point after, time_point t) {
    for (OffsetPeriod p = zone.period_at(t); p.begin > after && p.begin != time_point::min();
         p = zone.period_at(p.begin - 1us)) {
        const auto before = zone.offset_at(p.begin - 1us);
        if (before != p.offset)
            return OffsetChange{
                p.begin, before < p.offset,
                fmt::format("the change {} -> {} at {} ({}) in {}", offset_text(before),
                            offset_text(p.offset), TimeZone::utc().format(p.begin),
                            before < p.offset ? "a gap" : "a repeated wall span", zone.name())};
    }
    return std::nullopt;
}

// Whether no whole second in [from, until) is a fire of the cron leaf: a plain scan with
// matches(), bounded (nothing when the span is too long to scan).
std::optional<bool> no_fire_between(const Node &leaf, time_point from, time_point until) {
    constexpr auto limit = std::chrono::days(120);
    if (until - from > limit)
        return std::nullopt;
    for (auto t = std::chrono::ceil<std::chrono::seconds>(from); t < until;
         t += std::chrono::seconds(1))
        if (fires_at(leaf, t) == true)
            return false;
    return true;
}

// How an offset change explains that the reference has no fire at `t`, a fire of the cron
// leaf: after a gap, t is the leaf's first fire (the reference stepped from a wall time that
// does not exist); after a backward change, t is the second occurrence of a repeated wall time
// (the reference set a field with the first occurrence and went past the span).
bool change_explains(const Node &leaf, const OffsetChange &change, time_point t) {
    const TimeZone &zone = leaf.cron->timezone();
    if (change.gap)
        return no_fire_between(leaf, change.at, t) == true;
    const auto info = zone.resolve(zone.to_local(t));
    return info.kind == LocalTimeInfo::Kind::ambiguous && info.second == t;
}

// The reference-defect proofs. Each names the cron leaf and the offset change that it rests
// on, so that a fire dropped or moved elsewhere (a real difference) is never excused.
class Proofs {
  public:
    explicit Proofs(const json &spec) : tree_(model(spec)) { cron_leaves(tree_, leaves_); }

    // The reference returned `t` again right after emitting that instant: an `or` emits each
    // instant once. It rests on t being a repeated wall time in a cron leaf's zone, where the
    // reference's cross-zone equality is false.
    std::optional<std::string> repeated(time_point t, const std::string &text) const {
        for (const Node *leaf : leaves_) {
            const TimeZone &zone = leaf->cron->timezone();
            if (zone.resolve(zone.to_local(t)).kind == LocalTimeInfo::Kind::ambiguous)
                return fmt::format("the reference returned the instant {} twice in a row; it "
                                   "reads {} in {}, a wall time that occurs twice there",
                                   text, zone.format(t), zone.name());
        }
        return std::nullopt;
    }

    // The reference went past `t`, a fire of the whole tree after its previous one, because a
    // cron leaf that fires at t crossed an offset change on the way.
    std::optional<std::string> skipped(time_point t, std::optional<time_point> previous) const {
        if (fires_at(tree_, t) != true)
            return std::nullopt;
        for (const Node *leaf : leaves_) {
            const auto since = previous ? previous : leaf->start;
            if (!since || t <= *since || fires_at(*leaf, t) != true)
                continue;
            const auto change = offset_change(leaf->cron->timezone(), *since, t);
            if (change && change_explains(*leaf, *change, t))
                return fmt::format("the reference skipped {}, a fire of the tree (its cron child "
                                   "in {} matches it), {} after {}",
                                   leaf->cron->timezone().format(t), leaf->cron->timezone().name(),
                                   change->gap ? "the child's first fire"
                                               : "the second occurrence of a repeated wall time",
                                   change->text);
        }
        return std::nullopt;
    }

    // The reference returned asched's instant `t` with another child's offset: the cron leaf
    // whose reading asched shows (listed first among those that fire at t) fires at t, and the
    // reference went past it because that leaf crossed an offset change; the reference's text is
    // the reading of another leaf that fires at t.
    std::optional<std::string> skipped_child(time_point t, const std::string &actual,
                                             const std::string &expected,
                                             std::optional<time_point> previous) const {
        if (fires_at(tree_, t) != true)
            return std::nullopt;
        const Node *shown = nullptr, *other = nullptr;
        for (const Node *leaf : leaves_) {
            if (fires_at(*leaf, t) != true)
                continue;
            const std::string reading = leaf->cron->timezone().format(t);
            if (!shown && reading == actual)
                shown = leaf;
            else if (!other && reading == expected)
                other = leaf;
        }
        if (!shown || !other)
            return std::nullopt;
        const auto since = previous ? previous : shown->start;
        if (!since || t <= *since)
            return std::nullopt;
        const auto change = offset_change(shown->cron->timezone(), *since, t);
        if (!change || !change_explains(*shown, *change, t))
            return std::nullopt;
        return fmt::format("the reference returned {} from its cron child in {}; its cron child "
                           "in {}, listed before it, fires at the same instant ({}) and was "
                           "skipped just after {}",
                           expected, other->cron->timezone().name(), shown->cron->timezone().name(),
                           actual, change->text);
    }

    // The reference returned `t`, which is no fire of the tree, after crossing an offset change
    // of a cron leaf since its previous fire.
    std::optional<std::string> not_a_fire(time_point t, const std::string &text,
                                          std::optional<time_point> previous) const {
        if (fires_at(tree_, t) != false)
            return std::nullopt;
        for (const Node *leaf : leaves_) {
            const auto since = previous ? previous : leaf->start;
            if (!since || t <= *since)
                continue;
            // Between the change and the leaf's first fire after it: the reference stepped
            // from a wall time inside the gap.
            const auto change = offset_change(leaf->cron->timezone(), *since, t);
            if (change && change->gap && no_fire_between(*leaf, change->at, t) == true)
                return fmt::format("the reference returned {}, which reads {} in {} and is no "
                                   "fire of the tree, before the cron child's first fire after {}",
                                   text, leaf->cron->timezone().format(t),
                                   leaf->cron->timezone().name(), change->text);
        }
        return std::nullopt;
    }

  private:
    Node tree_;
    std::vector<const Node *> leaves_;
};

// Whether the reference's fire instants (and its exhaustion or error) come out of `trigger`.
bool same_instants(const Trigger &trigger, const json &c) {
    std::optional<time_point> prev;
    json state;
    try {
        for (const auto &f : c.at("fire_times")) {
            prev = trigger.advance(prev, state);
            if (!prev || *prev != parse_time(f.get<std::string>()))
                return false;
        }
        if (c.value("exhausted", false))
            return !trigger.advance(prev, state);
        if (c.value("error_stage", "") == "next") {
            trigger.advance(prev, state);
            return false;
        }
    } catch (const Error &) {
        return c.value("error_stage", "") == "next";
    }
    return true;
}

bool has_zoned_interval(const json &spec) {
    if (spec.value("type", "") == "interval")
        return !parse_zoned_time(spec.at("start_time").get<std::string>()).zone.is_fixed();
    if (spec.contains("triggers"))
        for (const auto &child : spec["triggers"])
            if (has_zoned_interval(child))
                return true;
    return false;
}

// A documented difference inside a combining trigger: the same tree with the reference's
// wall-clock intervals reproduces the reference exactly.
std::optional<std::string> interval_deviation(const json &c) {
    const json &spec = c.at("trigger");
    const auto type = spec.value("type", "");
    if ((type != "and" && type != "or") || !has_zoned_interval(spec))
        return std::nullopt;
    try {
        if (same_instants(*build(spec, true), c))
            return "with the reference's wall-clock interval arithmetic the same tree gives the "
                   "reference's fire times; asched counts intervals in elapsed time";
    } catch (const std::exception &) {
    }
    return std::nullopt;
}

// A cron step on a weekday or month name, which the reference drops and asched honours (so
// "mon/0" is rejected), nested in a combining trigger.
std::optional<std::string> step_on_name_deviation(const json &spec, const std::string &error) {
    if (spec.value("type", "") == "cron") {
        for (const char *f : {"month", "day_of_week"}) {
            const auto v = cron_value(spec, f);
            if (!v)
                continue;
            for (std::size_t slash = v->find('/'); slash != std::string::npos;
                 slash = v->find('/', slash + 1))
                if (slash > 0 && std::isalpha(static_cast<unsigned char>((*v)[slash - 1])) &&
                    error.find(*v) != std::string::npos)
                    return std::string("cron field '") + f + "': a step on a name (" + *v +
                           ") is honoured by asched and dropped by the reference";
        }
    }
    if (spec.contains("triggers"))
        for (const auto &child : spec["triggers"])
            if (auto d = step_on_name_deviation(child, error))
                return d;
    return std::nullopt;
}

Outcome check(const json &c) {
    const json &spec = c.at("trigger");
    const bool expect_error = c.value("error", false);
    const std::string stage = c.value("error_stage", "");
    const json &fires =
        c.contains("asched_fire_times") ? c["asched_fire_times"] : c.at("fire_times");
    const bool exhausted = c.contains("asched_exhausted") ? c["asched_exhausted"].get<bool>()
                                                          : c.value("exhausted", false);
    std::set<std::size_t> gaps;
    if (c.contains("gap_indices") && !c.contains("asched_fire_times"))
        for (auto &g : c["gap_indices"])
            gaps.insert(g.get<std::size_t>());

    TriggerPtr trigger;
    try {
        trigger = build(spec);
    } catch (const Unsupported &) {
        throw;
    } catch (const std::exception &e) {
        if (expect_error && stage == "construct")
            return {};
        Outcome r{false, std::string("construction failed: ") + e.what()};
        if (auto d = step_on_name_deviation(spec, e.what())) {
            r.documented = true;
            r.detail = *d;
        }
        return r;
    }
    if (expect_error && stage == "construct")
        return {false, "expected construction to fail, it succeeded"};
    if (!expect_error && !exhausted && c.contains("n") && c["n"].get<std::size_t>() != fires.size())
        return {false, "the case lists " + std::to_string(fires.size()) + " fire times for " +
                           std::to_string(c["n"].get<std::size_t>()) +
                           " calls and no exhaustion: the corpus line is damaged"};

    // Walk asched's fires (the stateful step a scheduler uses) beside the reference's. Where
    // they differ, a proven reference defect lets the walk step over the reference's value or
    // asched's and go on, so every later fire is still compared; anything else is a failure.
    const Proofs proofs(spec);
    std::vector<std::string> defects;
    const auto failed = [&](std::string why) {
        Outcome r{false, std::move(why)};
        if (!defects.empty())
            r.detail += " (after the proven reference defects: " + defects.front() + ")";
        return r;
    };
    std::optional<time_point> prev;   // asched's previous fire, the state of its walk
    std::optional<time_point> agreed; // the last fire both gave
    json state;
    std::optional<time_point> next;
    bool pending = false; // `next` holds asched's fire that is not compared yet
    std::string actual;
    const auto pull = [&] {
        if (!pending) {
            next = trigger->advance(prev, state);
            actual = next ? trigger->zone_of(state).format(*next) : std::string();
            pending = true;
        }
    };
    const auto take = [&] {
        prev = next;
        pending = false;
    };
    constexpr std::size_t max_defects = 64;
    try {
        std::size_t i = 0;
        while (i < fires.size()) {
            if (defects.size() > max_defects)
                return failed("more than " + std::to_string(max_defects) + " differences");
            pull();
            const auto expected = fires[i].get<std::string>();
            const time_point reference = parse_time(expected);
            if (next && (gaps.count(i) ? reference == *next : expected == actual)) {
                agreed = next;
                take();
                ++i;
                continue;
            }
            const std::string at = "fire " + std::to_string(i) + ": ";
            if (i > 0 && reference == parse_time(fires[i - 1].get<std::string>()))
                if (auto proof = proofs.repeated(reference, expected)) {
                    defects.push_back(at + *proof);
                    ++i;
                    continue;
                }
            if (next && *next < reference)
                if (auto proof = proofs.skipped(*next, agreed)) {
                    defects.push_back(at + *proof + ", and returned " + expected);
                    take();
                    continue;
                }
            if (next && *next == reference)
                if (auto proof = proofs.skipped_child(reference, actual, expected, agreed)) {
                    defects.push_back(at + *proof);
                    agreed = next;
                    take();
                    ++i;
                    continue;
                }
            if (auto proof = proofs.not_a_fire(reference, expected, agreed)) {
                defects.push_back(at + *proof);
                ++i;
                continue;
            }
            if (!next)
                return failed("exhausted after " + std::to_string(i) + " fire times, expected " +
                              expected);
            return failed(at + "expected " + expected + ", got " + actual);
        }
        if (exhausted) {
            for (;;) {
                pull();
                if (!next)
                    break;
                auto proof = proofs.skipped(*next, agreed);
                if (!proof || defects.size() > max_defects)
                    return failed("expected exhaustion, got " + actual);
                defects.push_back("after the last fire: " + *proof +
                                  ", and reported no more fire times");
                take();
            }
        }
        if (expect_error && stage == "next") {
            pull();
            return failed("expected the next call to fail, it succeeded");
        }
    } catch (const Error &e) {
        if (expect_error && stage == "next")
            return {};
        return failed(std::string("next() threw: ") + e.what());
    }
    if (defects.empty())
        return {};
    Outcome r{false, defects.front()};
    for (std::size_t k = 1; k < defects.size(); ++k)
        r.detail += "; " + defects[k];
    r.reference_defect = true;
    return r;
}

} // namespace

int main(int argc, char **argv) {
    std::set<std::string> types;
    bool verbose = false;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--verbose") {
            verbose = true;
        } else if (a == "--type" && i + 1 < argc) {
            std::stringstream ss(argv[++i]);
            for (std::string t; std::getline(ss, t, ',');)
                types.insert(t);
        } else {
            files.push_back(a);
        }
    }
    if (files.empty()) {
        std::fprintf(stderr, "usage: asched_conformance [--type T[,T...]] [--verbose] FILE...\n");
        return 2;
    }
    std::size_t passed = 0, failed = 0, quirks = 0;
    for (const auto &file : files) {
        std::ifstream in(file);
        if (!in) {
            std::fprintf(stderr, "asched_conformance: cannot read %s\n", file.c_str());
            return 2;
        }
        std::string line;
        std::size_t number = 0;
        while (std::getline(in, line)) {
            ++number;
            if (line.find_first_not_of(" \t\r") == std::string::npos)
                continue;
            json c;
            try {
                c = json::parse(line);
            } catch (const std::exception &e) {
                std::printf("%s:%zu: not JSON: %s\n", file.c_str(), number, e.what());
                ++failed;
                continue;
            }
            const auto type = c["trigger"].value("type", std::string());
            if (!types.empty() && !types.count(type))
                continue;
            bool quirk = false;
            for (auto &t : c.value("tags", json::array()))
                quirk |= t == "quirk";
            Outcome r;
            try {
                r = check(c);
            } catch (const std::exception &e) {
                r = {false, e.what()};
            }
            if (!r.ok && !quirk && !r.documented)
                if (auto d = interval_deviation(c)) {
                    r.documented = true;
                    r.reference_defect = false;
                    r.detail = *d;
                }
            if (r.ok) {
                ++passed;
            } else if (quirk) {
                ++quirks;
                if (verbose)
                    std::printf("QUIRK %s: %s\n", c.value("id", "?").c_str(), r.detail.c_str());
            } else if (r.documented) {
                // Not tagged as a quirk in the corpus, but one of asched's documented differences.
                ++quirks;
                std::printf("DEVIATION %s (documented difference): %s\n",
                            c.value("id", "?").c_str(), r.detail.c_str());
            } else if (r.reference_defect) {
                // Counted with the quirks: a documented difference where the reference is wrong.
                ++quirks;
                std::printf("DEVIATION %s (reference defect): %s\n", c.value("id", "?").c_str(),
                            r.detail.c_str());
            } else {
                ++failed;
                std::printf("FAIL %s (%s): %s\n  trigger: %s\n", c.value("id", "?").c_str(),
                            c.value("note", "").c_str(), r.detail.c_str(),
                            c["trigger"].dump().c_str());
            }
        }
    }
    std::printf("conformance: %zu passed, %zu failed, %zu quirk-deviations\n", passed, failed,
                quirks);
    return failed == 0 ? 0 : 1;
}
