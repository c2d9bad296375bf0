// dispatch: jobs per second for N one-off jobs due at once through MemoryDataStore, for
// coroutine and thread-pool tasks, and how the rate changes from 10k to 100k jobs.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;

asio::awaitable<void> add_jobs(asched::AsyncScheduler& s, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        co_await s.add_job("work");
}

// Returns jobs per second from start until the last JobReleased.
double run_once(std::size_t n, bool coroutine) {
    asio::io_context ioc;
    asched::AsyncSchedulerOptions o;
    o.max_concurrent_jobs = 1000;
    o.logger.level = asched::LogLevel::error;
    o.thread_pool_size = 2;
    asched::AsyncScheduler s(ioc, o);
    std::atomic<std::size_t> done{0};
    auto sub = s.subscribe([&](const asched::Event&) { ++done; },
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
            co_await s.add_task("work", []() -> asio::awaitable<int> { co_return 1; }, unlimited);
        else
            co_await s.add_task("work", []() { return 1; }, unlimited);
    };
    call(task());
    call(add_jobs(s, n)); // all due at once before the scheduler starts
    const auto start = steady::now();
    call(s.start_in_background());
    while (done < n)
        ioc.run_one();
    const double seconds = std::chrono::duration<double>(steady::now() - start).count();
    call(s.stop());
    call(s.wait_until_stopped());
    return static_cast<double>(n) / seconds;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
    const int repetitions = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
    const std::size_t small = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 10'000;
    const std::size_t large = small * 10;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf("%-28s %14s %14s %14s\n", "figure", "median jobs/s", "min", "max");
    for (bool coroutine : {true, false}) {
        double rate10k = 0;
        for (std::size_t n : {small, large}) {
            std::vector<double> rates;
            for (int r = 0; r < repetitions; ++r)
                rates.push_back(run_once(n, coroutine));
            const double med = median(rates);
            const auto [lo, hi] = std::minmax_element(rates.begin(), rates.end());
            const std::string name = std::string("dispatch_") + (coroutine ? "coroutine_" : "threadpool_") +
                                     (n % 1000 ? std::to_string(n) : std::to_string(n / 1000) + "k");
            std::printf("%-28s %14.0f %14.0f %14.0f\n", name.c_str(), med, *lo, *hi);
            std::printf("{\"name\":\"%s\",\"unit\":\"jobs/s\",\"median\":%.0f,\"min\":%.0f,\"max\":%.0f,"
                        "\"repetitions\":%d}\n",
                        name.c_str(), med, *lo, *hi, repetitions);
            if (n == small)
                rate10k = med;
            else
                std::printf("%-28s %14.2f (rate at 10x the jobs / rate at 1x; 1.0 is flat)\n",
                            (std::string("dispatch_") + (coroutine ? "coroutine" : "threadpool") + "_flatness").c_str(),
                            med / rate10k);
        }
    }
}
