// R18: every zone of the system tzdata (its zones and links, from tzdata.zi) through four cron
// lines across 2024-2026: each next() must return within a bound and strictly after the
// previous fire. A watchdog thread ends the run, naming the zone, the line and the last fire,
// when one call takes longer than the bound.
#include <asched/error.hpp>
#include <asched/triggers/cron_trigger.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace asched;
using steady = std::chrono::steady_clock;

namespace {

std::vector<std::string> zone_names(const std::string &file) {
    std::ifstream in(file);
    std::vector<std::string> names;
    for (std::string line; std::getline(in, line);) {
        std::istringstream words(line);
        std::string kind, a, b;
        words >> kind >> a >> b;
        if (kind == "Z")
            names.push_back(a); // Z NAME ...
        else if (kind == "L")
            names.push_back(b); // L TARGET NAME
    }
    return names;
}

// What the watchdog reads: set before each call, under the mutex.
struct Progress {
    std::mutex mutex;
    std::string what;
    steady::time_point since = steady::now();
    bool done = false;
    std::condition_variable wake;
};

} // namespace

int main(int argc, char **argv) {
    const std::string file = argc > 1 ? argv[1] : "/usr/share/zoneinfo/tzdata.zi";
    const auto bound = std::chrono::seconds(argc > 2 ? std::atoi(argv[2]) : 5);
    const auto names = zone_names(file);
    const std::string zoneinfo = file.substr(0, file.rfind('/'));
    if (names.empty()) {
        std::fprintf(stderr, "zone_sweep: no zone in %s\n", file.c_str());
        return 2;
    }
    const std::vector<std::string> lines{"0 * * * *", "*/30 * * * *", "30 2 * * *", "0 0 29 2 *"};
    const auto from = parse_time("2024-01-01T00:00:00Z") - std::chrono::hours(14);
    const auto until = parse_time("2027-01-01T00:00:00Z") + std::chrono::hours(14);

    Progress progress;
    std::thread watchdog([&] {
        std::unique_lock lock(progress.mutex);
        while (!progress.done) {
            progress.wake.wait_for(lock, std::chrono::milliseconds(200));
            if (!progress.done && steady::now() - progress.since > bound) {
                std::fprintf(stderr, "zone_sweep: FAILED: next() did not return within %llds: %s\n",
                             static_cast<long long>(bound.count()), progress.what.c_str());
                std::fflush(stderr);
                std::_Exit(1);
            }
        }
    });

    std::size_t calls = 0, failures = 0, zones = 0, absent = 0;
    steady::duration slowest{};
    std::string slowest_what;
    const auto began = steady::now();
    for (const auto &name : names) {
        // "Factory" is the placeholder for "no zone set" (offset 0, abbreviation "-00"); date's
        // system-tzdata reader skips it, so TimeZone refuses it by name like any unknown zone.
        // A name with no file is not installed here.
        if (name == "Factory" || !std::ifstream(zoneinfo + "/" + name)) {
            ++absent;
            continue;
        }
        std::optional<TimeZone> zone;
        try {
            zone.emplace(name);
        } catch (const Error &e) {
            std::printf("%s: cannot load: %s\n", name.c_str(), e.what());
            ++failures;
            continue;
        }
        ++zones;
        for (const auto &line : lines) {
            const auto trigger = CronTrigger::from_crontab(line, *zone, from, until);
            std::optional<time_point> previous;
            for (;;) {
                const auto t0 = steady::now();
                {
                    std::lock_guard lock(progress.mutex);
                    progress.since = t0;
                    progress.what = name + " '" + line + "' after " +
                                    (previous ? format_time(*previous) : std::string("the start"));
                }
                std::optional<time_point> fire;
                try {
                    fire = trigger.next(previous);
                } catch (const std::exception &e) {
                    std::printf("%s '%s': next() threw: %s\n", name.c_str(), line.c_str(),
                                e.what());
                    ++failures;
                    break;
                }
                ++calls;
                const auto took = steady::now() - t0;
                if (took > slowest) {
                    slowest = took;
                    std::lock_guard lock(progress.mutex);
                    slowest_what = progress.what;
                }
                if (!fire)
                    break;
                if (previous && *fire <= *previous) {
                    std::printf("%s '%s': %s does not come after %s\n", name.c_str(), line.c_str(),
                                format_time(*fire).c_str(), format_time(*previous).c_str());
                    ++failures;
                    break;
                }
                previous = fire;
            }
        }
    }
    {
        std::lock_guard lock(progress.mutex);
        progress.done = true;
    }
    progress.wake.notify_all();
    watchdog.join();
    const auto secs = std::chrono::duration<double>(steady::now() - began).count();
    std::printf(
        "zone_sweep: %zu zones (%zu skipped: Factory or no file), %zu next() calls in %.1f s, "
        "slowest %.3f ms (%s), %zu "
        "failures\n",
        zones, absent, calls, secs, std::chrono::duration<double, std::milli>(slowest).count(),
        slowest_what.c_str(), failures);
    return failures == 0 ? 0 : 1;
}
