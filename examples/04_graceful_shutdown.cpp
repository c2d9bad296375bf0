// 04: graceful shutdown: running jobs get a grace period, then are cancelled.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <cstdio>
#include <stdexcept>

using namespace std::chrono_literals;

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::use_awaitable);
}

asio::awaitable<void> body(asched::AsyncScheduler &s) {
    co_await s.add_task("quick", []() -> asio::awaitable<std::string> {
        co_await sleep_for(100ms);
        co_return "finished within the grace period";
    });
    co_await s.add_task("endless", []() -> asio::awaitable<void> { co_await sleep_for(1h); });
    co_await s.start_in_background();
    asched::JobOptions keep{.result_expiration_time = 1min};
    const auto quick = co_await s.add_job("quick", keep);
    const auto endless = co_await s.add_job("endless", keep);
    co_await sleep_for(20ms);
    std::printf("stopping with 2 jobs running (grace period 300 ms)\n");
    co_await s.stop();
    co_await s.wait_until_stopped();
    for (const auto &id : {quick, endless}) {
        const auto r = co_await s.get_job_result(id, false);
        if (!r)
            throw std::runtime_error("job " + id + " left no result");
        const auto expected =
            id == quick ? asched::JobOutcome::success : asched::JobOutcome::cancelled;
        if (r->outcome != expected)
            throw std::runtime_error("job " + id + " ended " +
                                     std::string(asched::to_string(r->outcome)));
        std::printf("job %s: %s%s%s\n", id.c_str(),
                    std::string(asched::to_string(r->outcome)).c_str(),
                    r->return_value.is_null() ? "" : " ",
                    r->return_value.is_null() ? "" : r->return_value.dump().c_str());
    }
}

int main() try {
    asio::io_context ioc;
    asched::AsyncSchedulerOptions options;
    options.stop_grace_period = 300ms;
    asched::AsyncScheduler scheduler(ioc, options);
    std::function<asio::awaitable<void>(asched::AsyncScheduler &)> run = body;
    auto done = asio::co_spawn(ioc, scheduler.scoped(run), asio::use_future);
    ioc.run();
    done.get(); // rethrows what body() or the scheduler threw
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "04_graceful_shutdown: %s\n", e.what());
    return 1;
}
