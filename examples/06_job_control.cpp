// 06: job control: a timeout, cancelling a running job, running a schedule now, a task that
// adds a job through its context, and the variadic forms that build no option struct.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <cstdio>
#include <stdexcept>

using namespace std::chrono_literals;

// Sleeps an hour unless cancelled: a timeout or cancel_job() ends the wait.
asio::awaitable<void> sleep_an_hour() {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
    co_await timer.async_wait(asio::use_awaitable);
}

// Adds a job of "add" through the scheduler that runs this one.
asio::awaitable<std::string> fan_out(asched::JobContext &job) {
    asched::JobOptions keep{.args = {20, 22}, .result_expiration_time = 5min};
    auto op = job.scheduler->add_job("add", keep);
    const auto id = co_await std::move(op);
    co_return id;
}

void expect(bool ok, const char *what) {
    if (!ok)
        throw std::runtime_error(std::string("unexpected: ") + what);
}

asio::awaitable<void> body(asched::AsyncScheduler &s) {
    co_await s.add_task("add", [](int a, int b) { return a + b; });
    co_await s.add_task("sleep", &sleep_an_hour);
    co_await s.add_task("fan_out", &fan_out);
    co_await s.start_in_background();

    // Variadic: no JobOptions to name.
    const auto sum = co_await s.run_job("add", 2, 3);
    std::printf("run_job(\"add\", 2, 3) = %s\n", sum.dump().c_str());
    expect(sum == 5, "add(2, 3)");

    // A timeout: the job is cancelled at its deadline and ends timed_out.
    asched::JobOptions limited{.result_expiration_time = 5min, .timeout = 300ms};
    const auto slow = co_await s.add_job("sleep", limited);
    const auto timed = co_await s.get_job_result(slow);
    expect(timed && timed->outcome == asched::JobOutcome::timed_out, "a timed-out job");
    std::printf("sleep with a 300 ms timeout: %s (%s)\n",
                std::string(asched::to_string(timed->outcome)).c_str(),
                timed->exception_message->c_str());

    // Cancelling a running job.
    asched::JobOptions keep{.result_expiration_time = 5min};
    const auto running = co_await s.add_job("sleep", keep);
    while (true) { // until it has started
        auto jobs = co_await s.get_jobs();
        if (!jobs.empty() && jobs.front().acquired_by)
            break;
        asio::steady_timer pause(co_await asio::this_coro::executor, 10ms);
        co_await pause.async_wait(asio::use_awaitable);
    }
    const auto how = co_await s.cancel_job(running);
    const auto cancelled = co_await s.get_job_result(running);
    expect(how == asched::JobCancellation::requested && cancelled &&
               cancelled->outcome == asched::JobOutcome::cancelled,
           "a cancelled job");
    std::printf("cancel_job on a running job: %s\n",
                std::string(asched::to_string(cancelled->outcome)).c_str());

    // Running a schedule now: one job with its args; the next fire time stays.
    asched::IntervalTrigger hourly({.hours = 1, .start_time = s.clock()->now() + 1h});
    asched::ScheduleOptions hourly_sum;
    hourly_sum.id = "hourly-sum";
    hourly_sum.args = {40, 2};
    hourly_sum.job_result_expiration_time = 5min;
    co_await s.add_schedule("add", hourly, hourly_sum);
    const auto before = co_await s.get_schedule("hourly-sum");
    const auto now_id = co_await s.run_schedule_now("hourly-sum");
    const auto now_result = co_await s.get_job_result(now_id);
    const auto after = co_await s.get_schedule("hourly-sum");
    expect(now_result && now_result->return_value == 42, "run_schedule_now's result");
    expect(before.next_fire_time == after.next_fire_time, "the next fire time is unmoved");
    std::printf("run_schedule_now(\"hourly-sum\") = %s, next fire unchanged\n",
                now_result->return_value.dump().c_str());

    // A task adds a job through its context.
    const auto child = co_await s.run_job("fan_out");
    const auto child_result = co_await s.get_job_result(child.get<std::string>());
    expect(child_result && child_result->return_value == 42, "the child job's result");
    std::printf("fan_out added a job of \"add\": %s\n", child_result->return_value.dump().c_str());
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
    std::fprintf(stderr, "06_job_control: %s\n", e.what());
    return 1;
}
