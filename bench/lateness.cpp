// lateness: how late jobs start (start time minus scheduled time) for a 10 ms interval job
// over 5 s and for 10,000 schedules due within one second, beside a raw Asio steady_timer
// doing the same 10 ms period in the same run: p50, p99, max in microseconds.
//
// usage: bench_lateness [repetitions] [seconds]
#include <asched/asched.hpp>

#include <asio.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

namespace {

using namespace std::chrono_literals;

asched::time_point wall_now() {
    return std::chrono::time_point_cast<asched::duration>(std::chrono::system_clock::now());
}

struct Percentiles {
    double p50 = 0, p99 = 0, max = 0;
};

Percentiles percentiles(std::vector<double> v) {
    if (v.empty())
        return {};
    std::sort(v.begin(), v.end());
    auto at = [&](double q) {
        return v[std::min(v.size() - 1, std::size_t(q * double(v.size())))];
    };
    return {at(0.50), at(0.99), v.back()};
}

// A periodic steady_timer with the same period: how late each wake-up is.
asio::awaitable<void> raw_timer(std::chrono::milliseconds period, std::chrono::seconds total,
                                std::vector<double> *out) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    auto next = std::chrono::steady_clock::now() + period;
    const auto end = next + total;
    while (next < end) {
        t.expires_at(next);
        co_await t.async_wait(asio::use_awaitable);
        out->push_back(
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - next)
                .count());
        next += period;
    }
}

std::vector<double> raw_run(std::chrono::seconds total) {
    asio::io_context ioc;
    std::vector<double> out;
    asio::co_spawn(ioc, raw_timer(10ms, total, &out), asio::detached);
    ioc.run();
    return out;
}

asio::awaitable<void> record(std::shared_ptr<std::vector<double>> out, asched::JobContext &job) {
    out->push_back(double((wall_now() - *job.scheduled_fire_time).count()));
    co_return;
}

asio::awaitable<void> wait_for(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::use_awaitable);
}

// Interval: one schedule every 10 ms for `total`. Burst: `burst` date schedules due within
// one second, 1 s from now.
asio::awaitable<void> scheduler_run(asched::AsyncScheduler &s, std::chrono::seconds total,
                                    std::size_t burst, std::shared_ptr<std::vector<double>> out) {
    auto task = [out](asched::JobContext &job) { return record(out, job); };
    asched::TaskOptions options;
    options.max_running_jobs = asched::unlimited;
    co_await s.add_task("record", task, options);
    const auto start = wall_now() + 500ms;
    if (burst == 0) {
        asched::IntervalTrigger every(
            {.seconds = 0.010, .start_time = start, .end_time = start + total});
        asched::ScheduleOptions o;
        o.coalesce = asched::CoalescePolicy::all;
        co_await s.add_schedule("record", every, o);
    } else {
        for (std::size_t i = 0; i < burst; ++i) {
            const auto due =
                start + 500ms + asched::duration(std::int64_t(i) * 1'000'000 / std::int64_t(burst));
            auto trigger = std::make_shared<asched::DateTrigger>(due);
            co_await s.add_schedule("record", trigger);
        }
    }
    co_await s.start_in_background();
    const auto expected = burst == 0 ? std::size_t(total / 10ms) + 1 : burst;
    for (int waited = 0; out->size() < expected && waited < 60'000; waited += 10)
        co_await wait_for(10ms);
}

std::vector<double> asched_run(std::chrono::seconds total, std::size_t burst) {
    asio::io_context ioc;
    asched::AsyncSchedulerOptions o;
    o.logger.level = asched::LogLevel::error;
    o.max_concurrent_jobs = 1000;
    asched::AsyncScheduler s(ioc.get_executor(), std::move(o));
    auto out = std::make_shared<std::vector<double>>();
    std::function<asio::awaitable<void>(asched::AsyncScheduler &)> body =
        [total, burst, out](asched::AsyncScheduler &s) {
            return scheduler_run(s, total, burst, out);
        };
    asio::co_spawn(ioc, s.scoped(body), asio::detached);
    ioc.run();
    return *out;
}

void report(const char *name, const std::vector<Percentiles> &runs, int reps) {
    auto med = [&](auto member) {
        std::vector<double> v;
        for (auto &r : runs)
            v.push_back(r.*member);
        std::sort(v.begin(), v.end());
        return std::array<double, 3>{v[v.size() / 2], v.front(), v.back()};
    };
    for (auto [suffix, member] :
         {std::pair{"p50", &Percentiles::p50}, std::pair{"p99", &Percentiles::p99},
          std::pair{"max", &Percentiles::max}}) {
        const auto [m, lo, hi] = med(member);
        std::printf("%-34s %10.0f %10.0f %10.0f us\n", (std::string(name) + "_" + suffix).c_str(),
                    m, lo, hi);
        std::printf("{\"name\":\"%s_%s\",\"unit\":\"us\",\"median\":%.1f,\"min\":%.1f,\"max\":%.1f,"
                    "\"repetitions\":%d}\n",
                    name, suffix, m, lo, hi, reps);
    }
}

} // namespace

int main(int argc, char **argv) {
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
    const auto seconds = std::chrono::seconds(argc > 2 ? std::max(1, std::atoi(argv[2])) : 5);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::vector<Percentiles> raw, interval, burst;
    for (int r = 0; r < reps; ++r) {
        raw.push_back(percentiles(raw_run(seconds)));
        interval.push_back(percentiles(asched_run(seconds, 0)));
        burst.push_back(percentiles(asched_run(seconds, 10'000)));
    }
    std::printf("%-34s %10s %10s %10s\n", "figure (start - scheduled)", "median", "min", "max");
    report("lateness_raw_asio_timer_10ms", raw, reps);
    report("lateness_interval_10ms", interval, reps);
    report("lateness_10k_due_in_1s", burst, reps);
}
