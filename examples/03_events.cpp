// 03: subscribing to events, for audit and alerting.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <cstdio>
#include <stdexcept>

asio::awaitable<void> body(asched::AsyncScheduler &s) {
    auto audit = s.subscribe([](const asched::Event &e) {
        std::printf("event %-16s %s\n", std::string(asched::event_name(e)).c_str(),
                    nlohmann::json(e).dump().c_str());
    });
    auto alert = s.subscribe(
        [](const asched::Event &e) {
            const auto &released = std::get<asched::JobReleased>(e);
            if (released.outcome != asched::JobOutcome::success)
                std::printf("ALERT: job %s of task %s ended %s\n", released.job_id.c_str(),
                            released.task_id.c_str(),
                            std::string(asched::to_string(released.outcome)).c_str());
        },
        asched::event_mask<asched::JobReleased>());
    co_await s.add_task("flaky", []() -> int { throw std::runtime_error("upstream timeout"); });
    co_await s.start_in_background();
    co_await s.add_job("flaky");
    const auto released = co_await asched::next_event<asched::JobReleased>(s);
    std::printf("awaited JobReleased: %s\n",
                std::string(asched::to_string(released.outcome)).c_str());
    if (released.outcome != asched::JobOutcome::error)
        throw std::runtime_error("the flaky job did not end with an error");
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
    std::fprintf(stderr, "03_events: %s\n", e.what());
    return 1;
}
