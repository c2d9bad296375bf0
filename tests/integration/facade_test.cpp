// The blocking Scheduler facade.
#include "fixture.hpp"

using namespace asched;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(facade)

// Calls that could never finish fail at once, saying why, instead of hanging.
BOOST_AUTO_TEST_CASE(calls_that_could_never_finish_say_so) {
    auto o = test::SchedulerFixture::base_options();
    o.clock = std::make_shared<SystemClock>();
    Scheduler s(o);
    s.add_task("mul", [](int a, int b) { return a * b; });
    try {
        s.run_job("mul", {.args = {6, 7}});
        BOOST_FAIL("run_job on a scheduler never started returned");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::not_running);
        BOOST_TEST(std::string(e.what()).find("run_job of task 'mul': this scheduler is not "
                                              "started") != std::string::npos,
                   e.what());
    }
    // A thread-pool job that stops its own scheduler and then waits for the stop.
    std::string refused;
    s.add_task("stop_self", [&s, &refused] {
        s.stop();
        try {
            s.wait_until_stopped();
        } catch (const Error &e) {
            refused = e.what();
        }
        return 0;
    });
    s.start_in_background();
    s.add_job("stop_self");
    s.wait_until_stopped();
    BOOST_TEST(refused.find("wait_until_stopped() called from one of this scheduler's own jobs") !=
                   std::string::npos,
               refused);
}

BOOST_AUTO_TEST_CASE(blocking_operations) {
    auto clock = std::make_shared<ManualClock>(test::t0);
    auto o = test::SchedulerFixture::base_options();
    o.clock = clock;
    Scheduler s(o);
    s.add_task("mul", [](int a, int b) { return a * b; });
    s.add_task("fail", []() -> int { throw std::invalid_argument("nope"); });
    s.start_in_background();
    BOOST_TEST(s.state() == RunState::started);
    BOOST_TEST(s.run_job("mul", {.args = {6, 7}}) == 42);
    BOOST_CHECK_THROW(s.run_job("fail"), Error);

    std::atomic<int> released{0};
    std::mutex mutex;
    std::optional<std::string> released_schedule;
    auto sub = s.subscribe(
        [&](const Event &e) {
            std::lock_guard lock(mutex);
            released_schedule = std::get<JobReleased>(e).schedule_id;
            ++released;
        },
        event_mask<JobReleased>());
    IntervalTrigger every_minute({.minutes = 1, .start_time = test::t0 + 1min});
    ScheduleOptions so;
    so.id = "m";
    so.args = {2, 2};
    s.add_schedule("mul", every_minute, so);
    BOOST_TEST(s.get_schedules().size() == 1u);
    // Watched by the subscription made before the fire: next_event() here could subscribe only
    // after the job was released (it sees events after the call) and wait for ever.
    clock->advance(1min);
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (released == 0 && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(1ms); // bounded wait for the scheduler's thread
    BOOST_REQUIRE(released == 1);
    {
        std::lock_guard lock(mutex);
        BOOST_TEST(released_schedule == std::optional<std::string>("m"));
    }
    s.pause_schedule("m");
    BOOST_TEST(s.get_schedule("m").paused);
    s.unpause_schedule("m", ResumeFrom::time(test::t0 + 10min));
    BOOST_TEST((s.get_schedule("m").next_fire_time == test::t0 + 10min));
    s.remove_schedule("m");
    BOOST_TEST(!s.try_get_schedule("m"));
    BOOST_TEST(s.get_tasks().size() == 2u);
    s.stop();
    s.wait_until_stopped();
    BOOST_TEST(s.state() == RunState::stopped);
    BOOST_TEST(released == 1); // subscribed after the two run_job calls
}

BOOST_AUTO_TEST_CASE(destructor_stops_a_running_scheduler) {
    auto o = test::SchedulerFixture::base_options();
    o.stop_grace_period = 50ms;
    Scheduler s(o);
    s.add_task("t", [](JobContext &job) {
        while (!job.cancelled())
            std::this_thread::yield();
    });
    s.start_in_background();
    s.add_job("t");
    // Leaves scope with the job running: the destructor drains, cancels and joins.
}

BOOST_AUTO_TEST_SUITE_END()
