// dispatch: jobs per second for N one-off jobs due at once through MemoryDataStore, for
// coroutine and thread-pool tasks, at N, 10 N and 100 N (10k, 100k, 1M in a full run), beside
// two raw baselines in the same run: N steady_timers expiring at once, each co_spawning a
// trivial coroutine, and N trivial functions posted to an asio::thread_pool. Also the memory
// per queued job at the largest N: resident memory grown while queueing (first repetition)
// and heap bytes in use (mallinfo2), which later repetitions measure as well.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <malloc.h>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;
constexpr std::size_t pool_threads = 2;

asio::awaitable<void> add_jobs(asched::AsyncScheduler &s, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        co_await s.add_job("work");
}

double rss_bytes() {
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = 0;
    statm >> size >> resident;
    return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

double heap_bytes() {
    return static_cast<double>(::mallinfo2().uordblks);
}

struct Run {
    double rate = 0;
    double rss_per_queued_job = 0;  // resident memory grown while queueing, per job
    double heap_per_queued_job = 0; // heap bytes in use grown while queueing, per job
};

// Jobs per second from start until the last JobReleased.
Run run_once(std::size_t n, bool coroutine) {
    asio::io_context ioc;
    asched::AsyncSchedulerOptions o;
    o.max_concurrent_jobs = 1000;
    o.logger.level = asched::LogLevel::error;
    o.thread_pool_size = pool_threads;
    asched::AsyncScheduler s(ioc, o);
    std::atomic<std::size_t> done{0};
    auto sub = s.subscribe([&](const asched::Event &) { ++done; },
                           asched::event_mask<asched::JobReleased>());
    auto call = [&](asio::awaitable<void> op) {
        auto f = asio::co_spawn(ioc, std::move(op), asio::use_future);
        while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
            if (ioc.stopped()) // it ran out of work between two calls
                ioc.restart();
            ioc.run_one();
        }
        f.get();
    };
    auto task = [&]() -> asio::awaitable<void> {
        asched::TaskOptions unlimited{.max_running_jobs = asched::unlimited};
        if (coroutine)
            co_await s.add_task(
                "work", []() -> asio::awaitable<int> { co_return 1; }, unlimited);
        else
            co_await s.add_task(
                "work", []() { return 1; }, unlimited);
    };
    call(task());
    const double rss_before = rss_bytes(), heap_before = heap_bytes();
    call(add_jobs(s, n)); // all due at once before the scheduler starts
    Run run;
    run.rss_per_queued_job = (rss_bytes() - rss_before) / static_cast<double>(n);
    run.heap_per_queued_job = (heap_bytes() - heap_before) / static_cast<double>(n);
    const auto start = steady::now();
    call(s.start_in_background());
    while (done < n)
        ioc.run_one();
    const double seconds = std::chrono::duration<double>(steady::now() - start).count();
    call(s.stop());
    call(s.wait_until_stopped());
    run.rate = static_cast<double>(n) / seconds;
    return run;
}

asio::awaitable<void> trivial(std::size_t *done) {
    ++*done;
    co_return;
}

// The raw Asio baseline of the coroutine figure: N timers due at once, each co_spawning a
// trivial coroutine when it expires.
double raw_timers_once(std::size_t n) {
    asio::io_context ioc(1);
    std::vector<asio::steady_timer> timers;
    timers.reserve(n);
    std::size_t done = 0;
    const auto due = steady::now();
    for (std::size_t i = 0; i < n; ++i) {
        timers.emplace_back(ioc, due);
        timers.back().async_wait(
            [&](std::error_code) { asio::co_spawn(ioc, trivial(&done), asio::detached); });
    }
    const auto start = steady::now();
    ioc.run();
    const double seconds = std::chrono::duration<double>(steady::now() - start).count();
    return done == n ? static_cast<double>(n) / seconds : 0;
}

// The raw baseline of the thread-pool figure: N trivial functions posted to a pool.
double raw_pool_once(std::size_t n) {
    asio::thread_pool pool(pool_threads);
    std::atomic<std::size_t> done{0};
    const auto start = steady::now();
    for (std::size_t i = 0; i < n; ++i)
        asio::post(pool, [&done] { done.fetch_add(1, std::memory_order_relaxed); });
    pool.join();
    const double seconds = std::chrono::duration<double>(steady::now() - start).count();
    return done == n ? static_cast<double>(n) / seconds : 0;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

std::string label(std::size_t n) {
    if (n % 1'000'000 == 0)
        return std::to_string(n / 1'000'000) + "M";
    if (n % 1000 == 0)
        return std::to_string(n / 1000) + "k";
    return std::to_string(n);
}

void print(const std::string &name, const char *unit, const std::vector<double> &v, int reps) {
    const double med = median(v);
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    std::printf("%-34s %14.0f %14.0f %14.0f %s\n", name.c_str(), med, *lo, *hi, unit);
    std::printf("{\"name\":\"%s\",\"unit\":\"%s\",\"median\":%.2f,\"min\":%.2f,\"max\":%.2f,"
                "\"repetitions\":%d}\n",
                name.c_str(), unit, med, *lo, *hi, reps);
}

} // namespace

int main(int argc, char **argv) {
    const int repetitions = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
    const std::size_t small = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 10'000;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf("%-34s %14s %14s %14s\n", "figure", "median", "min", "max");
    for (std::size_t n : {small, small * 10, small * 100}) {
        // The largest size takes seconds per repetition: three are enough for a median.
        const int reps = n == small * 100 ? std::min(repetitions, 3) : repetitions;
        std::vector<double> timers, pool;
        for (int r = 0; r < reps; ++r) {
            timers.push_back(raw_timers_once(n));
            pool.push_back(raw_pool_once(n));
        }
        print("dispatch_raw_timer_" + label(n), "jobs/s", timers, reps);
        print("dispatch_raw_threadpool_" + label(n), "jobs/s", pool, reps);
        for (bool coroutine : {true, false}) {
            std::vector<double> rates, heap;
            double first_rss = 0;
            for (int r = 0; r < reps; ++r) {
                const auto run = run_once(n, coroutine);
                rates.push_back(run.rate);
                heap.push_back(run.heap_per_queued_job);
                if (r == 0)
                    first_rss = run.rss_per_queued_job; // later repetitions reuse freed pages
            }
            const std::string kind = coroutine ? "coroutine" : "threadpool";
            print("dispatch_" + kind + "_" + label(n), "jobs/s", rates, reps);
            if (coroutine && n == small * 100) {
                print("dispatch_rss_per_queued_job_" + label(n), "bytes", {first_rss}, 1);
                print("dispatch_heap_per_queued_job_" + label(n), "bytes", heap, reps);
            }
        }
    }
}
