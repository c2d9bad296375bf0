// scale: N (default 1,000,000) interval schedules in MemoryDataStore: bytes per schedule from
// the process's resident set, the time to add them, and the cost of acquiring (and
// releasing) the next due batch of 100 while they are all stored.
//
// usage: bench_scale [repetitions] [schedules]
#include <asched/asched.hpp>

#include <asio.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

std::size_t rss_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * std::size_t(::sysconf(_SC_PAGESIZE));
}

struct Figures {
    double bytes_per_schedule = 0;
    double add_us = 0;     // microseconds per add_schedule
    double acquire_us = 0; // microseconds per acquire+release of a batch of 100 due schedules
};

asio::awaitable<void> run(std::size_t n, Figures *f) {
    const auto t0 = asched::parse_time("2025-01-01T00:00:00Z");
    auto clock = std::make_shared<asched::ManualClock>(t0);
    auto store = std::make_shared<asched::MemoryDataStore>();
    asched::StoreContext context;
    context.clock = clock;
    co_await store->start(std::move(context));
    asched::Task task;
    task.id = "t";
    co_await store->add_task(std::move(task));

    const auto before = rss_bytes();
    const auto start = steady::now();
    for (std::size_t i = 0; i < n; ++i) {
        // Each schedule its own trigger, first due spread over a day.
        asched::Schedule s;
        s.id = "schedule-" + std::to_string(i);
        s.task_id = "t";
        const auto first = t0 + std::chrono::seconds(std::int64_t(i % 86'400));
        s.trigger = std::make_shared<const asched::IntervalTrigger>(
            asched::IntervalTriggerOptions{.seconds = 86'400, .start_time = first});
        s.next_fire_time = first;
        co_await store->add_schedule(std::move(s), asched::ConflictPolicy::exception);
    }
    const auto added = steady::now();
    f->add_us = std::chrono::duration<double, std::micro>(added - start).count() / double(n);
    f->bytes_per_schedule = double(rss_bytes() - before) / double(n);

    // Acquire the due ones in batches of 100 and release each to its next fire, an hour of
    // schedule time in total.
    clock->set(t0 + 1h);
    std::size_t batches = 0;
    const auto a0 = steady::now();
    for (;;) {
        auto due = co_await store->acquire_schedules("bench", 30s, 100);
        if (due.empty())
            break;
        std::vector<asched::ScheduleRelease> releases;
        for (auto &s : due)
            releases.push_back(
                {s.id, s.lease_token, s.next_fire_time, s.trigger->next(s.next_fire_time), {}, {}});
        co_await store->release_schedules("bench", std::move(releases));
        ++batches;
    }
    f->acquire_us =
        std::chrono::duration<double, std::micro>(steady::now() - a0).count() / double(batches);
}

Figures once(std::size_t n) {
    Figures f;
    asio::io_context ioc;
    asio::co_spawn(ioc, run(n, &f), [](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
    });
    ioc.run();
    return f;
}

void print(const char *name, const char *unit, std::vector<double> v, int reps) {
    std::sort(v.begin(), v.end());
    std::printf("%-34s %12.2f %12.2f %12.2f %s\n", name, v[v.size() / 2], v.front(), v.back(),
                unit);
    std::printf("{\"name\":\"%s\",\"unit\":\"%s\",\"median\":%.3f,\"min\":%.3f,\"max\":%.3f,"
                "\"repetitions\":%d}\n",
                name, unit, v[v.size() / 2], v.front(), v.back(), reps);
}

} // namespace

int main(int argc, char **argv) {
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
    const std::size_t n = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1'000'000;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::vector<double> bytes, add, acquire;
    for (int r = 0; r < reps; ++r) {
        // Each repetition in a fresh child process: memory freed by an earlier one would be
        // reused and hide the growth of the resident set.
        int fds[2];
        if (::pipe(fds) != 0)
            return 1;
        const pid_t child = ::fork();
        if (child == 0) {
            const Figures mine = once(n);
            const bool ok = ::write(fds[1], &mine, sizeof mine) == ssize_t(sizeof mine);
            ::_exit(ok ? 0 : 1);
        }
        Figures f;
        const bool ok = ::read(fds[0], &f, sizeof f) == ssize_t(sizeof f);
        ::waitpid(child, nullptr, 0);
        ::close(fds[0]);
        ::close(fds[1]);
        if (!ok)
            return 1;
        bytes.push_back(f.bytes_per_schedule);
        add.push_back(f.add_us);
        acquire.push_back(f.acquire_us);
    }
    std::printf("%-34s %12s %12s %12s (%zu schedules)\n", "figure", "median", "min", "max", n);
    print("scale_bytes_per_schedule", "bytes", bytes, reps);
    print("scale_add_schedule", "us", add, reps);
    print("scale_acquire_release_batch_100", "us", acquire, reps);
}
