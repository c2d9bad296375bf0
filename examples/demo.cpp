// The main demo: a heartbeat schedule, a coroutine task and a blocking task side by side, on
// the embedded persistent store, with the admin dashboard served while it runs. Run it twice:
// the second run finds the schedule (with its last fire time) and the previous run's result
// in the database file.
//
// usage: demo [DATABASE] [--serve]   (default: asched-demo.db in the current directory;
//        --serve: keep running, and serving the dashboard, until Ctrl-C)
#include <asched/asched.hpp>
#ifdef ASCHED_DEMO_DASHBOARD
#include <asched/admin_server.hpp>
#endif

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

using namespace std::chrono_literals;

namespace {

asio::awaitable<std::string> fetch_status(std::string service) {
    // A coroutine task: it waits without holding a thread.
    asio::steady_timer t(co_await asio::this_coro::executor, 150ms);
    co_await t.async_wait(asio::use_awaitable);
    co_return service + ": ok";
}

long long sum_of_squares(int n) {
    // A blocking task: it runs on the thread pool, never on the scheduler's executor.
    long long total = 0;
    for (int i = 1; i <= n; ++i)
        total += 1LL * i * i;
    std::this_thread::sleep_for(100ms);
    return total;
}

asio::awaitable<void> beat(std::shared_ptr<std::atomic<int>> beats) {
    std::printf("  heartbeat %d\n", ++*beats);
    co_return;
}

std::string database = "asched-demo.db";
bool serve = false;

asio::awaitable<void> body(asched::AsyncScheduler &s) {
    // Shared with the task: a heartbeat may still run while the scheduler stops, after body()
    // has returned.
    auto beats = std::make_shared<std::atomic<int>>(0);
    auto heartbeat = [beats]() { return beat(beats); };
    co_await s.add_task("heartbeat", heartbeat);
    co_await s.add_task("fetch_status", fetch_status);
    co_await s.add_task("sum_of_squares", sum_of_squares);

    // What an earlier run left in the database.
    auto previous = co_await s.try_get_schedule("heartbeat");
    if (previous) {
        std::printf(
            "asched demo: %s holds schedule 'heartbeat' from an earlier run (last fired %s)\n",
            database.c_str(),
            previous->last_fire_time ? asched::format_time(*previous->last_fire_time).c_str()
                                     : "never");
        try {
            auto kept = co_await s.get_job_result("demo-squares", false);
            if (kept)
                std::printf("  result kept from that run: sum_of_squares -> %s\n",
                            kept->return_value.dump().c_str());
        } catch (const asched::Error &) {
            std::printf("  its result has expired\n");
        }
    } else {
        std::printf("asched demo: new database %s\n", database.c_str());
    }

    // do_nothing (the default conflict policy): a restart keeps the stored schedule.
    asched::IntervalTrigger every_250ms({.seconds = 0.25});
    asched::ScheduleOptions options;
    options.id = "heartbeat";
    co_await s.add_schedule("heartbeat", every_250ms, options);
    co_await s.start_in_background();
    std::printf("asched demo: scheduler '%s' started\n", s.identity().c_str());
#ifdef ASCHED_DEMO_DASHBOARD
    // The dashboard, /metrics and /healthz of this scheduler, on a free loopback port.
    asched::AdminServer dashboard(s);
    co_await dashboard.start();
    std::printf("asched demo: dashboard at %s%s\n", dashboard.url().c_str(),
                serve ? "" : " (run with --serve to keep it up)");
#endif

    // Both jobs run at once: the coroutine on the executor, the blocking one on the pool.
    asched::JobOptions web{.args = {"web"}, .result_expiration_time = 1min};
    asched::JobOptions squares{.id = "demo-squares", .args = {1000}, .result_expiration_time = 24h};
    const auto a = co_await s.add_job("fetch_status", web);
    const auto b = co_await s.add_job("sum_of_squares", squares);
    const auto ra = co_await s.get_job_result(a);
    const auto rb = co_await s.get_job_result(b);
    std::printf("  fetch_status   -> %s (%s)\n", ra->return_value.dump().c_str(),
                std::string(asched::to_string(ra->outcome)).c_str());
    std::printf("  sum_of_squares -> %s (%s)\n", rb->return_value.dump().c_str(),
                std::string(asched::to_string(rb->outcome)).c_str());

    asio::steady_timer pause(co_await asio::this_coro::executor, 800ms);
    co_await pause.async_wait(asio::use_awaitable);
    if (serve) {
        std::printf("asched demo: serving until Ctrl-C\n");
        std::fflush(stdout);
        asio::signal_set stop_signals(co_await asio::this_coro::executor, SIGINT, SIGTERM);
        co_await stop_signals.async_wait(asio::use_awaitable);
    }
    const auto schedule = co_await s.get_schedule("heartbeat");
    std::printf("asched demo: %d heartbeats, next at %s; stopping\n", beats->load(),
                asched::format_time(*schedule.next_fire_time).c_str());
#ifdef ASCHED_DEMO_DASHBOARD
    co_await dashboard.stop();
#endif
}

} // namespace

int main(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--serve") == 0)
            serve = true;
        else
            database = argv[i];
    }
    asio::io_context ioc;
    asched::AsyncSchedulerOptions options;
    options.data_store =
        std::make_shared<asched::SqliteDataStore>(asched::SqliteDataStoreOptions{.path = database});
    asched::AsyncScheduler scheduler(ioc.get_executor(), std::move(options));
    std::exception_ptr failure;
    // scoped() is the C++ form of `async with`: it stops and closes whatever happens in body.
    std::function<asio::awaitable<void>(asched::AsyncScheduler &)> run = body;
    asio::co_spawn(ioc, scheduler.scoped(run), [&](std::exception_ptr e) { failure = e; });
    ioc.run();
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "asched demo failed: %s\n", e.what());
            return 1;
        }
    }
    std::printf("asched demo: stopped cleanly\n");
    return 0;
}
