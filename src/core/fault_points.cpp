#include "fault_points.hpp"

#if ASCHED_FAULTPOINTS

#include <asched/error.hpp>

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unistd.h>
#include <vector>

namespace asched::detail {
namespace {

enum class Action { kill, stop, abort, exit, raise, drop };

struct Point {
    std::string name;
    Action action;
    long at = 1; // the hit that acts
    long hits = 0;
};

struct Points {
    std::mutex mutex;
    std::vector<Point> points;
    std::atomic<bool> any{false};
};

// "name=action[@n]" entries, comma-separated; a malformed one is reported once and ignored.
Points &points() {
    static Points *p = [] {
        auto *out = new Points; // never destroyed: a point may be hit during static destruction
        const char *env = std::getenv("ASCHED_FAULTPOINTS");
        std::string spec = env ? env : "";
        std::size_t pos = 0;
        while (pos < spec.size()) {
            auto end = spec.find(',', pos);
            if (end == std::string::npos)
                end = spec.size();
            const std::string entry = spec.substr(pos, end - pos);
            pos = end + 1;
            const auto eq = entry.find('=');
            std::string action = eq == std::string::npos ? "" : entry.substr(eq + 1);
            long at = 1;
            if (const auto amp = action.find('@'); amp != std::string::npos) {
                at = std::strtol(action.c_str() + amp + 1, nullptr, 10);
                action.resize(amp);
            }
            Point point{entry.substr(0, eq), Action::kill, at};
            if (action == "kill")
                point.action = Action::kill;
            else if (action == "stop")
                point.action = Action::stop;
            else if (action == "abort")
                point.action = Action::abort;
            else if (action == "exit")
                point.action = Action::exit;
            else if (action == "throw")
                point.action = Action::raise;
            else if (action == "drop")
                point.action = Action::drop;
            else
                action.clear();
            if (action.empty() || point.name.empty() || at < 1) {
                std::fprintf(stderr,
                             "asched: ASCHED_FAULTPOINTS: ignoring '%s' (want name=kill|stop|"
                             "abort|exit|throw|drop[@n])\n",
                             entry.c_str());
                continue;
            }
            out->points.push_back(point);
        }
        out->any = !out->points.empty();
        return out;
    }();
    return *p;
}

} // namespace

bool fault_point(const char *name) {
    auto &p = points();
    if (!p.any.load(std::memory_order_relaxed))
        return false;
    Action act{};
    bool acts = false;
    {
        std::lock_guard lock(p.mutex);
        for (auto &point : p.points)
            if (point.name == name) {
                ++point.hits;
                if (point.hits == point.at ||
                    (point.action == Action::raise && point.hits > point.at)) {
                    act = point.action;
                    acts = true;
                }
            }
    }
    if (!acts)
        return false;
    std::fprintf(stderr, "asched: fault point %s hit (pid %d)\n", name, int(::getpid()));
    std::fflush(stderr);
    switch (act) {
    case Action::kill:
        ::kill(::getpid(), SIGKILL);
        break;
    case Action::stop:
        ::kill(::getpid(), SIGSTOP);
        break;
    case Action::abort:
        std::abort();
    case Action::exit:
        ::_exit(86);
    case Action::raise:
        throw Error(errc::store_failure, fmt::format("fault point {}", name));
    case Action::drop:
        return true;
    }
    return false;
}

} // namespace asched::detail

#endif // ASCHED_FAULTPOINTS
