// cron_next: nanoseconds per CronTrigger::next() for a fixed set of expressions (with full
// time-zone support), their geometric mean, and the worst one against the mean.
#include <asched/triggers/cron_trigger.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

struct Case {
    const char *name;
    asched::CronTrigger trigger;
};

double ns_per_next(const asched::CronTrigger &t, int calls) {
    using clock = std::chrono::steady_clock;
    std::optional<asched::time_point> prev;
    const auto start = clock::now();
    int made = 0;
    for (int i = 0; i < calls; ++i) {
        auto next = t.next(prev);
        if (!next)
            prev.reset(); // an exhausted trigger starts over: every call is a real search
        else
            prev = next;
        ++made;
    }
    const auto ns = std::chrono::duration<double, std::nano>(clock::now() - start).count();
    return ns / made;
}

} // namespace

int main(int argc, char **argv) {
    const int repetitions = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    const int calls = argc > 2 ? std::max(100, std::atoi(argv[2])) : 20000;
    const auto start = asched::parse_time("2025-01-01T00:00:00Z");
    const asched::TimeZone berlin("Europe/Berlin");
    std::vector<Case> cases{
        {"every_5_minutes", asched::CronTrigger({.minute = "*/5", .start_time = start})},
        {"9_to_17_weekdays",
         asched::CronTrigger({.day_of_week = "mon-fri", .hour = "9-17", .start_time = start})},
        {"feb_29_yearly", asched::CronTrigger({.month = "2", .day = "29", .start_time = start})},
        {"0230_daily_berlin_dst",
         asched::CronTrigger(
             {.hour = "2", .minute = "30", .start_time = start, .timezone = berlin})},
        {"last_day_of_month", asched::CronTrigger({.day = "last", .start_time = start})},
        {"seconds_field", asched::CronTrigger({.second = "*/10", .start_time = start})},
        {"crontab_line", asched::CronTrigger::from_crontab("15 3 * * 1-5", berlin, start)},
    };
    std::printf("%-26s %12s %12s %12s\n", "cron_next", "median ns", "min", "max");
    double log_sum = 0, worst = 0;
    for (const auto &c : cases) {
        std::vector<double> v;
        for (int r = 0; r < repetitions; ++r)
            v.push_back(ns_per_next(c.trigger, calls));
        std::sort(v.begin(), v.end());
        const double med = v[v.size() / 2];
        log_sum += std::log(med);
        worst = std::max(worst, med);
        std::printf("%-26s %12.0f %12.0f %12.0f\n", c.name, med, v.front(), v.back());
        std::printf(
            "{\"name\":\"cron_next_%s\",\"unit\":\"ns\",\"median\":%.1f,\"min\":%.1f,\"max\":%.1f,"
            "\"repetitions\":%d}\n",
            c.name, med, v.front(), v.back(), repetitions);
    }
    const double geomean = std::exp(log_sum / double(cases.size()));
    std::printf("%-26s %12.0f\n", "geometric_mean", geomean);
    std::printf("%-26s %12.2f (worst / geometric mean; target <= 5)\n", "worst_ratio",
                worst / geomean);
    std::printf(
        "{\"name\":\"cron_next_geomean\",\"unit\":\"ns\",\"median\":%.1f,\"repetitions\":%d}\n",
        geomean, repetitions);
}
