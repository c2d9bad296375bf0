// 01: an interval schedule on the default in-memory store.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <cstdio>

using namespace std::chrono_literals;

asio::awaitable<void> body(asched::AsyncScheduler& s) {
    int ticks = 0;
    auto tick = [&ticks](asched::JobContext& job) -> asio::awaitable<void> {
        std::printf("tick %d, scheduled for %s\n", ++ticks,
                    asched::format_time(*job.scheduled_fire_time).c_str());
        co_return;
    };
    co_await s.add_task("tick", tick);
    asched::IntervalTrigger every_200ms({.seconds = 0.2});
    co_await s.add_schedule("tick", every_200ms);
    co_await s.start_in_background();
    asio::steady_timer t(co_await asio::this_coro::executor, 1s);
    co_await t.async_wait(asio::use_awaitable);
    std::printf("%d ticks in one second\n", ticks);
}

int main() {
    asio::io_context ioc;
    asched::AsyncScheduler scheduler(ioc);
    std::function<asio::awaitable<void>(asched::AsyncScheduler&)> run = body;
    asio::co_spawn(ioc, scheduler.scoped(run), asio::detached);
    ioc.run();
}
