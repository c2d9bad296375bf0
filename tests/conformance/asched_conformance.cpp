// asched_conformance: checks asched's triggers against the JSONL corpus produced by running
// APScheduler 4 (see README.md beside the corpus for the format).
//
// usage: asched_conformance [--type T[,T...]] [--verbose] FILE...
// Ends with one line: "conformance: P passed, F failed, Q quirk-deviations"; exit 0 iff F == 0.
#include <asched/asched.hpp>
#include <asched/triggers/cron_trigger.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

using namespace asched;
using nlohmann::json;

namespace {

struct Unsupported : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A corpus datetime: zoned "…+01:00[Europe/Berlin]", fixed "…+01:00", or (cron only) naive
// "…", read as a wall time in `zone` (first occurrence if repeated; an error in a gap).
ZonedTime read_time(const std::string& text, const TimeZone& zone, const char* field) {
    const bool naive = text.size() >= 19 && text.find('Z', 19) == std::string::npos &&
                       text.find('+', 19) == std::string::npos && text.find('-', 19) == std::string::npos;
    if (!naive)
        return parse_zoned_time(text);
    auto as_utc = parse_zoned_time(text + "Z").instant;
    const auto info = zone.resolve(local_time(as_utc.time_since_epoch()));
    if (info.kind == LocalTimeInfo::Kind::nonexistent)
        throw Error(errc::invalid_argument,
                    std::string(field) + "=" + text + " does not exist in " + zone.name());
    return {info.first, zone};
}

std::optional<std::string> cron_value(const json& spec, const char* key) {
    auto it = spec.find(key);
    if (it == spec.end() || it->is_null())
        return std::nullopt;
    if (it->is_number_integer())
        return std::to_string(it->get<long long>());
    return it->get<std::string>();
}

TriggerPtr build(const json& spec) {
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
        if (spec.contains("end_time") && !spec["end_time"].is_null())
            o.end_time = parse_zoned_time(spec["end_time"].get<std::string>()).instant;
        return std::make_shared<IntervalTrigger>(o);
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
        } catch (const Error& e) {
            throw Error(errc::invalid_argument, e.what());
        }
    }
    throw Unsupported("trigger type '" + type + "' is not implemented yet");
}

struct Outcome {
    bool ok = true;
    std::string detail;
};

Outcome check(const json& c) {
    const json& spec = c.at("trigger");
    const bool expect_error = c.value("error", false);
    const std::string stage = c.value("error_stage", "");
    const json& fires = c.contains("asched_fire_times") ? c["asched_fire_times"] : c.at("fire_times");
    const bool exhausted = c.contains("asched_exhausted") ? c["asched_exhausted"].get<bool>()
                                                           : c.value("exhausted", false);
    std::set<std::size_t> gaps;
    if (c.contains("gap_indices") && !c.contains("asched_fire_times"))
        for (auto& g : c["gap_indices"])
            gaps.insert(g.get<std::size_t>());

    TriggerPtr trigger;
    try {
        trigger = build(spec);
    } catch (const Unsupported&) {
        throw;
    } catch (const std::exception& e) {
        if (expect_error && stage == "construct")
            return {};
        return {false, std::string("construction failed: ") + e.what()};
    }
    if (expect_error && stage == "construct")
        return {false, "expected construction to fail, it succeeded"};

    std::optional<time_point> prev;
    std::vector<std::string> got;
    try {
        for (std::size_t i = 0; i < fires.size(); ++i) {
            auto next = trigger->next(prev);
            if (!next)
                return {false, "exhausted after " + std::to_string(i) + " fire times, expected " +
                                   fires[i].get<std::string>()};
            const auto expected = fires[i].get<std::string>();
            const auto actual = trigger->timezone().format(*next);
            const bool same = gaps.count(i) ? parse_time(expected) == *next : expected == actual;
            if (!same)
                return {false, "fire " + std::to_string(i) + ": expected " + expected + ", got " + actual};
            prev = next;
        }
        if (exhausted) {
            auto more = trigger->next(prev);
            if (more)
                return {false, "expected exhaustion, got " + trigger->timezone().format(*more)};
        }
        if (expect_error && stage == "next") {
            trigger->next(prev);
            return {false, "expected the next call to fail, it succeeded"};
        }
    } catch (const Error& e) {
        if (expect_error && stage == "next")
            return {};
        return {false, std::string("next() threw: ") + e.what()};
    }
    return {};
}

} // namespace

int main(int argc, char** argv) {
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
    for (const auto& file : files) {
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
            } catch (const std::exception& e) {
                std::printf("%s:%zu: not JSON: %s\n", file.c_str(), number, e.what());
                ++failed;
                continue;
            }
            const auto type = c["trigger"].value("type", std::string());
            if (!types.empty() && !types.count(type))
                continue;
            bool quirk = false;
            for (auto& t : c.value("tags", json::array()))
                quirk |= t == "quirk";
            Outcome r;
            try {
                r = check(c);
            } catch (const std::exception& e) {
                r = {false, e.what()};
            }
            if (r.ok) {
                ++passed;
            } else if (quirk) {
                ++quirks;
                if (verbose)
                    std::printf("QUIRK %s: %s\n", c.value("id", "?").c_str(), r.detail.c_str());
            } else {
                ++failed;
                std::printf("FAIL %s (%s): %s\n  trigger: %s\n", c.value("id", "?").c_str(),
                            c.value("note", "").c_str(), r.detail.c_str(), c["trigger"].dump().c_str());
            }
        }
    }
    std::printf("conformance: %zu passed, %zu failed, %zu quirk-deviations\n", passed, failed, quirks);
    return failed == 0 ? 0 : 1;
}
