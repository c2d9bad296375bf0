// 05: the blocking Scheduler facade, for code without an event loop.
#include <asched/asched.hpp>

#include <cstdio>
#include <thread>

using namespace std::chrono_literals;

int main() try {
    asched::Scheduler scheduler;
    scheduler.add_task("greet", [](std::string name) { return "hello, " + name; });
    scheduler.add_task("report", [](asched::JobContext &job) {
        std::printf("report job %s fired at %s\n", job.job_id.c_str(),
                    asched::format_time(*job.scheduled_fire_time).c_str());
    });
    scheduler.start_in_background();
    asched::JobOptions who{.args = {"world"}};
    std::printf("%s\n", scheduler.run_job("greet", who).get<std::string>().c_str());
    asched::DateTrigger soon(asched::SystemClock().now() + 200ms);
    scheduler.add_schedule("report", soon);
    const auto e = scheduler.next_event(asched::event_mask<asched::JobReleased>());
    const auto outcome = std::get<asched::JobReleased>(e).outcome;
    std::printf("report ended: %s\n", std::string(asched::to_string(outcome)).c_str());
    return outcome == asched::JobOutcome::success ? 0 : 1;
    // The destructor stops the scheduler gracefully and joins its thread.
} catch (const std::exception &e) {
    std::fprintf(stderr, "05_blocking_facade: %s\n", e.what());
    return 1;
}
