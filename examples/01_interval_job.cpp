// 01: an interval schedule on the default in-memory store.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <atomic>
#include <cstdio>
#include <memory>
#include <stdexcept>

using namespace std::chrono_literals;

// A task's state must outlive the scheduler's stop (a job may still run then), so it is
// shared with the task rather than a local of body().
asio::awaitable<void> tick(std::shared_ptr<std::atomic<int>> ticks, asched::time_point fire) {
    std::printf("tick %d, scheduled for %s\n", ++*ticks, asched::format_time(fire).c_str());
    co_return;
}

asio::awaitable<void> body(asched::AsyncScheduler &s) {
    auto ticks = std::make_shared<std::atomic<int>>(0);
    auto task = [ticks](asched::JobContext &job) { return tick(ticks, *job.scheduled_fire_time); };
    co_await s.add_task("tick", task);
    asched::IntervalTrigger every_200ms({.seconds = 0.2});
    co_await s.add_schedule("tick", every_200ms);
    co_await s.start_in_background();
    asio::steady_timer t(co_await asio::this_coro::executor, 1s);
    co_await t.async_wait(asio::use_awaitable);
    std::printf("%d ticks in one second\n", ticks->load());
    if (ticks->load() < 3) // about 5 are due; 3 leaves room for a slow machine
        throw std::runtime_error("fewer than 3 ticks in one second");
}

int main() try {
    asio::io_context ioc;
    asched::AsyncScheduler scheduler(ioc);
    std::function<asio::awaitable<void>(asched::AsyncScheduler &)> run = body;
    auto done = asio::co_spawn(ioc, scheduler.scoped(run), asio::use_future);
    ioc.run();
    done.get(); // rethrows what body() or the scheduler threw
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "01_interval_job: %s\n", e.what());
    return 1;
}
