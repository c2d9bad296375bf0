// The scheduler's policies end to end on a manual clock, as scenarios any store can run:
// tests/integration runs them on the memory store, tests/backends on SQLite and PostgreSQL.
#pragma once

#include "fixture.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_future.hpp>
#include <fmt/format.h>

#include <thread>
#include <unistd.h>

namespace asched::test::scenarios {

using namespace std::chrono_literals;
using nlohmann::json;

inline asio::awaitable<void> interval_fires_on_the_manual_clock(SchedulerFixture *f) {
    auto &s = f->s();
    std::vector<time_point> fired;
    co_await s.add_task("tick", [&fired](JobContext &job) -> asio::awaitable<void> {
        fired.push_back(*job.scheduled_fire_time);
        co_return;
    });
    IntervalTrigger every_10s({.seconds = 10, .start_time = test::t0 + 5s});
    ScheduleOptions options;
    options.id = "tick-10s";
    co_await s.add_schedule("tick", every_10s, options);
    // Positional arguments for a schedule, default options.
    co_await s.add_task("note", [](std::string what, int n) { return what + std::to_string(n); });
    const auto noted = co_await s.add_schedule("note", every_10s, "n=", 3);
    auto with_args = co_await s.get_schedule(noted);
    BOOST_TEST(with_args.args == json::array({"n=", 3}));
    co_await s.start_in_background();
    BOOST_TEST(s.state() == RunState::started);
    BOOST_TEST(fired.empty());
    f->clock->advance(5s);
    co_await eventually([&] { return fired.size() == 1; }, "first fire");
    f->clock->advance(10s);
    co_await eventually([&] { return fired.size() == 2; }, "second fire");
    BOOST_TEST((fired == std::vector<time_point>{test::t0 + 5s, test::t0 + 15s}));
    auto sched = co_await s.get_schedule("tick-10s");
    BOOST_TEST((sched.next_fire_time == test::t0 + 25s));
    BOOST_TEST((sched.last_fire_time == test::t0 + 15s));
}

inline asio::awaitable<void> combining_trigger_state_is_kept_by_the_store(SchedulerFixture *f) {
    auto &s = f->s();
    std::vector<time_point> fired;
    co_await s.add_task("tick", [&fired](JobContext &job) -> asio::awaitable<void> {
        fired.push_back(*job.scheduled_fire_time);
        co_return;
    });
    // Fires at +5, +15, +20, +25, +35: which child is pending lives in the schedule's state.
    auto from = [](int secs, int offset) {
        return std::make_shared<IntervalTrigger>(IntervalTriggerOptions{
            .seconds = double(secs), .start_time = test::t0 + std::chrono::seconds(offset)});
    };
    auto either = std::make_shared<OrTrigger>(std::vector<TriggerPtr>{from(10, 5), from(15, 5)});
    ScheduleOptions options;
    options.id = "either";
    co_await s.add_schedule("tick", either, options);
    co_await s.start_in_background();
    const std::vector<int> steps{5, 10, 5, 5, 10};
    for (std::size_t i = 0; i < steps.size(); ++i) {
        f->clock->advance(std::chrono::seconds(steps[i]));
        co_await eventually([&] { return fired.size() == i + 1; }, "or trigger fire");
    }
    BOOST_TEST((fired == std::vector<time_point>{test::t0 + 5s, test::t0 + 15s, test::t0 + 20s,
                                                 test::t0 + 25s, test::t0 + 35s}));
    auto sched = co_await s.get_schedule("either");
    BOOST_TEST((sched.next_fire_time == test::t0 + 45s));
    BOOST_TEST(sched.trigger_state.is_object());
}

inline asio::awaitable<void> one_off_job_and_its_result(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.add_task("add", [](int a, int b) { return a + b; });
    co_await s.add_task(
        "greet", [](std::string who) -> asio::awaitable<std::string> { co_return "hello " + who; });
    co_await s.start_in_background();
    JobOptions two_three{.args = {2, 3}};
    BOOST_TEST((co_await s.run_job("add", two_three)) == 5);
    // The variadic forms build no option struct.
    BOOST_TEST((co_await s.run_job("add", 40, 2)) == 42);
    BOOST_TEST((co_await s.run_job("greet", "world")) == "hello world");
    const auto plain = co_await s.add_job("add", 1, 1);
    BOOST_TEST(!plain.empty());
    JobOptions who{.args = {"asched"}};
    BOOST_TEST((co_await s.run_job("greet", who)) == "hello asched");

    JobOptions kept{.args = {20, 22}, .result_expiration_time = 1min};
    const auto id = co_await s.add_job("add", kept);
    auto r = co_await s.get_job_result(id);
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::success);
    BOOST_TEST(r->return_value == 42);
    BOOST_TEST(r->started_at.has_value());
    auto again = co_await s.get_job_result(id, false); // reading does not delete
    BOOST_TEST(again.has_value());
    f->clock->advance(2min);
    try {
        co_await s.get_job_result(id, false);
        BOOST_FAIL("expired result still readable");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::job_lookup);
    }
    // Without a kept result: waiting returns nullopt once the job ends.
    JobOptions unkept{.args = {1, 1}};
    const auto quiet = co_await s.add_job("add", unkept);
    auto none = co_await s.get_job_result(quiet);
    BOOST_TEST(!none.has_value());
}

inline asio::awaitable<void> failing_tasks_become_results(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.add_task("boom", []() -> int { throw std::runtime_error("disk full"); });
    co_await s.add_task("coro_boom", []() -> asio::awaitable<void> {
        throw std::logic_error("bad state");
        co_return;
    });
    co_await s.add_task("add", [](int a, int b) { return a + b; });
    co_await s.start_in_background();
    try {
        co_await s.run_job("boom");
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::job_failed);
        BOOST_TEST(std::string(e.what()).find("std::runtime_error: disk full") != std::string::npos,
                   e.what());
    }
    JobOptions keep{.result_expiration_time = 1h};
    const auto id = co_await s.add_job("coro_boom", keep);
    auto r = co_await s.get_job_result(id);
    BOOST_TEST(r->outcome == JobOutcome::error);
    BOOST_TEST(*r->exception_type == "std::logic_error");
    BOOST_TEST(*r->exception_message == "bad state");
    // Arguments that do not fit: the job ends in error naming the argument.
    JobOptions wrong_type{.args = {1, "two"}, .result_expiration_time = 1h};
    const auto bad = co_await s.add_job("add", wrong_type);
    auto br = co_await s.get_job_result(bad);
    BOOST_TEST(br->outcome == JobOutcome::error);
    BOOST_TEST(br->exception_message->find("task argument 2 (of type int)") != std::string::npos,
               *br->exception_message);
    JobOptions too_few{.args = {1}, .result_expiration_time = 1h};
    const auto few = co_await s.add_job("add", too_few);
    BOOST_TEST((co_await s.get_job_result(few))->exception_message->find("takes 2 arguments") !=
               std::string::npos);
    // A message JSON cannot hold (invalid UTF-8) is stored with replacement characters and a
    // note; the release goes through (one slot: the next job of the task runs too).
    TaskOptions one_slot{.max_running_jobs = 1};
    co_await s.add_task(
        "garbled", []() -> int { throw std::runtime_error("caf\xC3( \xFF"); }, one_slot);
    const auto g1 = co_await s.add_job("garbled", keep);
    const auto g2 = co_await s.add_job("garbled", keep);
    for (const auto &id : std::vector<std::string>{g1, g2}) {
        auto gr = co_await s.get_job_result(id);
        BOOST_REQUIRE(gr);
        BOOST_TEST(gr->outcome == JobOutcome::error);
        BOOST_TEST(*gr->exception_message ==
                   "caf\xEF\xBF\xBD( \xEF\xBF\xBD [invalid UTF-8 replaced by U+FFFD]");
    }
    // The scheduler is still running and runs the next job.
    BOOST_TEST(s.state() == RunState::started);
    JobOptions one_two{.args = {1, 2}};
    BOOST_TEST((co_await s.run_job("add", one_two)) == 3);
}

inline asio::awaitable<void> blocking_tasks_do_not_block_the_executor(SchedulerFixture *f) {
    auto &s = f->s();
    auto promise = std::make_shared<std::promise<int>>();
    auto future = promise->get_future().share();
    auto blocker_fn = [future]() {
        // Waits for a coroutine job: it can only run if this thread is not the executor's.
        if (future.wait_for(10s) != std::future_status::ready)
            throw std::runtime_error("the coroutine task never ran");
        return future.get();
    };
    co_await s.add_task("blocker", blocker_fn);
    auto release_fn = [promise]() -> asio::awaitable<void> {
        promise->set_value(7);
        co_return;
    };
    co_await s.add_task("release", release_fn);
    co_await s.start_in_background();
    JobOptions keep{.result_expiration_time = 1h};
    const auto blocked = co_await s.add_job("blocker", keep);
    co_await eventually([f] { return f->recorder->count<JobAcquired>() == 1; }, "blocker started");
    co_await s.run_job("release");
    auto r = co_await s.get_job_result(blocked);
    BOOST_TEST(r->outcome == JobOutcome::success);
    BOOST_TEST(r->return_value == 7);
    auto tasks = co_await s.get_tasks();
    BOOST_TEST(tasks[0].job_executor == "threadpool");
    BOOST_TEST(tasks[1].job_executor == "async");
}

inline asio::awaitable<int> result_value(AsyncScheduler *s, std::string id) {
    auto r = co_await s->get_job_result(id);
    BOOST_TEST_REQUIRE(r.has_value());
    BOOST_TEST(r->job_id == id);
    const int value = r->return_value.get<int>();
    co_return value;
}

inline asio::awaitable<void> max_running_jobs_under_contention(SchedulerFixture *f) {
    auto &s = f->s();
    auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor);
    TaskOptions two{.max_running_jobs = 2};
    auto limited_fn = [gate](int v) { return wait_at(gate, v); };
    co_await s.add_task("limited", limited_fn, two);
    co_await s.start_in_background();
    std::vector<std::string> ids;
    for (int i = 0; i < 10; ++i) {
        JobOptions o{.args = {i}, .result_expiration_time = 1h};
        ids.push_back(co_await s.add_job("limited", o));
    }
    co_await eventually([&] { return gate->inside == 2; }, "two running");
    BOOST_TEST((co_await s.get_jobs()).size() == 10u);
    BOOST_TEST((co_await s.get_tasks())[0].running_jobs == 2);
    gate->open();
    int sum = 0;
    for (auto &id : ids) {
        // The result is co_awaited in a coroutine of its own, not in this loop's body: GCC 12
        // handed this loop a destroyed JobResult now and then (a local of a loop body in a
        // coroutine, initialised from a co_await).
        const int value = co_await result_value(&s, id);
        sum += value;
    }
    BOOST_TEST(sum == 45);
    BOOST_TEST(gate->peak == 2);
}

inline asio::awaitable<void> global_max_concurrent_jobs(SchedulerFixture *f) {
    auto &s = f->s();
    auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor);
    TaskOptions any{.max_running_jobs = asched::unlimited};
    auto any_fn = [gate](int v) { return wait_at(gate, v); };
    co_await s.add_task("any", any_fn, any);
    co_await s.start_in_background();
    for (int i = 0; i < 8; ++i) {
        JobOptions o{.args = {i}};
        co_await s.add_job("any", o);
    }
    co_await eventually([&] { return gate->inside == 3; }, "three running");
    gate->open();
    co_await eventually([f] { return f->released(JobOutcome::success) == 8; }, "all done");
    BOOST_TEST(gate->peak == 3);
}

inline asio::awaitable<void> coalescing_100_missed_fires(SchedulerFixture *f, CoalescePolicy policy,
                                                         std::size_t expected) {
    auto &s = f->s();
    std::vector<time_point> fired;
    TaskOptions unlimited_jobs{.max_running_jobs = asched::unlimited};
    co_await s.add_task(
        "tick",
        [&fired](JobContext &job) -> asio::awaitable<void> {
            fired.push_back(*job.scheduled_fire_time);
            co_return;
        },
        unlimited_jobs);
    IntervalTrigger every_second({.seconds = 1, .start_time = test::t0});
    ScheduleOptions options;
    options.id = "s";
    options.coalesce = policy;
    co_await s.add_schedule("tick", every_second, options);
    f->clock->advance(99s + 500ms); // the scheduler was down: 100 fires missed
    co_await s.start_in_background();
    co_await eventually([&] { return fired.size() == expected; }, "catch-up jobs ran");
    std::sort(fired.begin(), fired.end());
    if (policy == CoalescePolicy::earliest)
        BOOST_TEST((fired.front() == test::t0));
    else
        BOOST_TEST((fired.back() == test::t0 + 99s));
    auto sched = co_await s.get_schedule("s");
    BOOST_TEST((sched.next_fire_time == test::t0 + 100s));
    BOOST_TEST(fired.size() == expected);
}

// R13: 3 h of downtime under a 1-minute cron (181 fires due at t0 + 3h). Each policy gives its
// jobs, the fires it leaves out are reported once as FiresDropped, and the schedule keeps firing.
inline asio::awaitable<void> r13_long_downtime(SchedulerFixture *f, CoalescePolicy policy,
                                               std::optional<std::size_t> max_catchup,
                                               std::size_t expected_jobs) {
    auto &s = f->s();
    std::vector<time_point> fired;
    TaskOptions unlimited_jobs{.max_running_jobs = asched::unlimited};
    co_await s.add_task(
        "tick",
        [&fired](JobContext &job) -> asio::awaitable<void> {
            fired.push_back(*job.scheduled_fire_time);
            co_return;
        },
        unlimited_jobs);
    auto every_minute = CronTrigger::from_crontab("* * * * *", TimeZone("UTC"));
    ScheduleOptions options;
    options.id = "minutely";
    options.coalesce = policy;
    options.max_catchup = max_catchup;
    co_await s.add_schedule("tick", every_minute, options);
    auto added = co_await s.get_schedule("minutely");
    BOOST_TEST((added.next_fire_time == test::t0)); // t0 is on a whole minute
    f->clock->advance(3h);                          // down for 3 h: 181 fires due
    co_await s.start_in_background();
    co_await eventually([&] { return fired.size() == expected_jobs; }, "catch-up jobs ran");
    co_await eventually([f] { return f->recorder->count<FiresDropped>() == 1; },
                        "FiresDropped published");
    const auto drops = f->recorder->of<FiresDropped>();
    const auto &d = drops.front();
    BOOST_TEST(d.schedule_id == "minutely");
    BOOST_TEST(d.task_id == "tick");
    BOOST_TEST(d.count + expected_jobs == 181u);
    std::sort(fired.begin(), fired.end());
    if (policy == CoalescePolicy::earliest) {
        BOOST_TEST((fired.front() == test::t0));
        BOOST_TEST((d.first_fire_time == test::t0 + 1min));
        BOOST_TEST((d.last_fire_time == test::t0 + 3h));
    } else {
        BOOST_TEST((fired.back() == test::t0 + 3h));
        BOOST_TEST((fired.front() == test::t0 + 3h - (expected_jobs - 1) * 1min));
        BOOST_TEST((d.first_fire_time == test::t0));
        BOOST_TEST((d.last_fire_time == fired.front() - 1min));
    }
    BOOST_TEST(d.reason == (max_catchup ? "max_catchup" : "coalesced"));
    // Afterwards it fires on time, one job per minute, and drops nothing more.
    f->clock->advance(1min);
    co_await eventually([&] { return fired.size() == expected_jobs + 1; }, "next fire");
    BOOST_TEST((fired.back() == test::t0 + 3h + 1min));
    BOOST_TEST(f->recorder->count<FiresDropped>() == 1u);
}

inline asio::awaitable<void> paused_schedules(SchedulerFixture *f) {
    auto &s = f->s();
    std::atomic<int> runs{0};
    co_await s.add_task("tick", [&runs]() -> asio::awaitable<void> {
        ++runs;
        co_return;
    });
    IntervalTrigger every_10s({.seconds = 10, .start_time = test::t0 + 10s});
    ScheduleOptions options;
    options.id = "p";
    options.paused = true;
    co_await s.add_schedule("tick", every_10s, options);
    co_await s.start_in_background();
    f->clock->advance(35s);
    co_await s.cleanup();
    BOOST_TEST(runs == 0);
    BOOST_TEST(f->recorder->count<JobAdded>() == 0u);
    // Resume from now: the missed fires at 10, 20, 30 s are skipped.
    co_await s.unpause_schedule("p", ResumeFrom::now());
    auto sched = co_await s.get_schedule("p");
    BOOST_TEST(!sched.paused);
    BOOST_TEST((sched.next_fire_time == test::t0 + 40s));
    f->clock->advance(5s);
    co_await eventually([&] { return runs == 1; }, "fire after resume");
    co_await s.pause_schedule("p");
    f->clock->advance(30s);
    co_await s.cleanup();
    BOOST_TEST(runs == 1);
    // Resume with the stored next fire time: the catch-up coalesces into one job.
    co_await s.unpause_schedule("p");
    co_await eventually([&] { return runs == 2; }, "catch-up after resume");
    BOOST_CHECK_THROW(co_await s.pause_schedule("missing"), Error);
}

inline asio::awaitable<void> unknown_task_ids(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.start_in_background();
    IntervalTrigger t({.seconds = 1});
    try {
        co_await s.add_schedule("nope", t);
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::task_lookup);
        BOOST_TEST(std::string(e.what()).find("'nope'") != std::string::npos);
    }
    BOOST_CHECK_THROW(co_await s.add_job("nope"), Error);
    TaskOptions none;
    BOOST_CHECK_THROW(co_await s.configure_task("nope", none), Error);
    BOOST_CHECK_THROW(co_await s.get_schedule("nope"), Error);
    BOOST_TEST(!(co_await s.try_get_schedule("nope")).has_value());
    BOOST_CHECK_THROW(co_await s.get_job_result("no-such-job"), Error);
    co_await s.remove_schedule("nope"); // ignored
}

inline asio::awaitable<void> conflicting_schedule_ids(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.add_task("t", []() -> asio::awaitable<void> { co_return; });
    IntervalTrigger first({.seconds = 10, .start_time = test::t0});
    IntervalTrigger second({.seconds = 20, .start_time = test::t0});
    ScheduleOptions o;
    o.id = "same";
    co_await s.add_schedule("t", first, o);
    o.conflict_policy = ConflictPolicy::do_nothing;
    co_await s.add_schedule("t", second, o);
    BOOST_TEST((co_await s.get_schedule("same")).trigger->to_json() == first.to_json());
    o.conflict_policy = ConflictPolicy::exception;
    try {
        co_await s.add_schedule("t", second, o);
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::conflicting_id);
    }
    o.conflict_policy = ConflictPolicy::replace;
    co_await s.add_schedule("t", second, o);
    BOOST_TEST((co_await s.get_schedule("same")).trigger->to_json() == second.to_json());
    BOOST_TEST((co_await s.get_schedules()).size() == 1u);
}

inline asio::awaitable<void> misfire_grace_time(SchedulerFixture *f) {
    auto &s = f->s();
    auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor);
    auto slow_fn = [gate](int v) { return wait_at(gate, v); };
    co_await s.add_task("slow", slow_fn);
    IntervalTrigger every_10s({.seconds = 10, .start_time = test::t0});
    ScheduleOptions o;
    o.id = "m";
    o.args = {1};
    o.misfire_grace_time = 2s;
    o.coalesce = CoalescePolicy::all;
    co_await s.add_schedule("slow", every_10s, o);
    co_await s.start_in_background();
    co_await eventually([&] { return gate->inside == 1; }, "first running");
    f->clock->advance(10s); // the second fire queues behind the first (max_running_jobs 1)
    co_await eventually([f] { return f->recorder->count<JobAdded>() == 2; }, "second queued");
    f->clock->advance(3s); // past its deadline of 12 s
    gate->open();
    co_await eventually([f] { return f->released(JobOutcome::missed_start_deadline) == 1; },
                        "second misfired");
    BOOST_TEST(f->released(JobOutcome::success) == 1u);
}

inline asio::awaitable<void> jitter_delays_the_start(SchedulerFixture *f) {
    auto &s = f->s();
    std::vector<std::pair<time_point, time_point>> starts; // (fire, started)
    auto clock = f->clock;
    auto j_fn = [&starts, clock](JobContext &job) -> asio::awaitable<void> {
        starts.emplace_back(*job.scheduled_fire_time, clock->now());
        co_return;
    };
    co_await s.add_task("j", j_fn);
    DateTrigger once(test::t0 + 10s);
    ScheduleOptions o;
    o.max_jitter = 4s;
    co_await s.add_schedule("j", once, o);
    co_await s.start_in_background();
    f->clock->advance(10s);
    co_await eventually([f] { return f->recorder->count<JobAdded>() == 1; }, "job created");
    auto jobs = co_await s.get_jobs();
    const duration jitter = jobs.empty() ? duration(0) : jobs[0].jitter;
    if (jitter > 0s) {
        BOOST_TEST(starts.empty());
        f->clock->advance(jitter);
    }
    co_await eventually([&] { return starts.size() == 1; }, "jittered job ran");
    BOOST_TEST((starts[0].first == test::t0 + 10s));
    BOOST_TEST((starts[0].second == test::t0 + 10s + jitter));
}

inline asio::awaitable<void> events_are_published(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.add_task("t", []() -> asio::awaitable<int> { co_return 1; });
    co_await s.start_in_background();
    DateTrigger once(test::t0);
    co_await s.add_schedule("t", once);
    auto released = co_await next_event<JobReleased>(s);
    BOOST_TEST(released.outcome == JobOutcome::success);
    BOOST_TEST(released.task_id == "t");
    BOOST_TEST(released.scheduler_id == "test-node");
    co_await s.stop();
    co_await s.wait_until_stopped();
    co_await eventually([f] { return f->recorder->count<SchedulerStopped>() == 1; },
                        "stopped event");
    auto &r = *f->recorder;
    BOOST_TEST(r.count<SchedulerStarted>() == 1u);
    BOOST_TEST(r.count<TaskAdded>() == 1u);
    BOOST_TEST(r.count<ScheduleAdded>() == 1u);
    BOOST_TEST(r.count<JobAdded>() == 1u);
    BOOST_TEST(r.count<JobAcquired>() == 1u);
    BOOST_TEST(r.count<JobReleased>() == 1u);
    BOOST_TEST(r.count<ScheduleUpdated>() >= 1u);
    for (auto &e : r.events)
        BOOST_TEST((event_timestamp(e) == test::t0));
}

inline asio::awaitable<void> cleanup_removes_finished_schedules(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.add_task("t", []() -> asio::awaitable<void> { co_return; });
    co_await s.start_in_background();
    DateTrigger once(test::t0 + 1s);
    ScheduleOptions o;
    o.id = "once";
    co_await s.add_schedule("t", once, o);
    f->clock->advance(1s);
    co_await eventually([f] { return f->released(JobOutcome::success) == 1; }, "ran");
    co_await eventually([f] { return f->recorder->count<ScheduleUpdated>() >= 1; }, "released");
    BOOST_TEST((co_await s.try_get_schedule("once")).has_value());
    co_await s.cleanup();
    BOOST_TEST(!(co_await s.try_get_schedule("once")).has_value());
    co_await eventually([f] { return f->recorder->count<ScheduleRemoved>() == 1; },
                        "removed event");
    BOOST_TEST(f->recorder->of<ScheduleRemoved>()[0].finished);
}

inline asio::awaitable<void> leases_are_renewed_while_jobs_run(SchedulerFixture *f) {
    auto &s = f->s();
    auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor);
    auto long_fn = [gate]() { return wait_at(gate, 1); };
    co_await s.add_task("long", long_fn);
    co_await s.start_in_background();
    JobOptions keep{.result_expiration_time = 1h};
    const auto id = co_await s.add_job("long", keep);
    co_await eventually([&] { return gate->inside == 1; }, "running");
    for (int i = 0; i < 6; ++i) { // 60 s of manual time, lease 10 s
        f->clock->advance(3s);
        co_await eventually(
            [&, until = f->clock->now()] {
                auto jobs = test::sync(f->s().data_store()->get_jobs(std::nullopt));
                return !jobs.empty() && jobs[0].acquired_until && *jobs[0].acquired_until > until;
            },
            "lease renewed");
        co_await s.cleanup();
    }
    gate->open();
    BOOST_TEST((co_await s.get_job_result(id))->outcome == JobOutcome::success);
}

/// JSON nested `depth` arrays deep, built without recursion (an initializer list would copy).
inline nlohmann::json nested_arrays(std::size_t depth) {
    nlohmann::json root = nlohmann::json::array();
    nlohmann::json *cur = &root;
    for (std::size_t i = 1; i < depth; ++i) {
        cur->push_back(nlohmann::json::array());
        cur = &cur->back();
    }
    return root;
}

/// What `call` (an API call) throws synchronously, before anything copies its input:
/// the message of an errc::invalid_argument, or "accepted".
template <class Call> std::string refusal(Call call) {
    try {
        auto op = call(); // lazy: destroyed without running when the check passed
        (void)op;
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::invalid_argument, e.what());
        return e.what();
    } catch (const std::exception &e) {
        return std::string("not an asched::Error: ") + e.what();
    }
    return "accepted";
}

inline bool mentions(const std::string &message, std::string_view part) {
    const bool found = message.find(part) != std::string::npos;
    BOOST_TEST_MESSAGE(message);
    return found;
}

/// The errc of an asched::Error in `e`, or -1 (no exception, or another kind).
inline int error_code_of(std::exception_ptr e) {
    try {
        if (e)
            std::rethrow_exception(e);
    } catch (const Error &err) {
        return int(err.code_value());
    } catch (...) {
    }
    return -1;
}

// Jobs of the tasks below that have started; a coroutine task cannot capture (GCC 12).
inline std::atomic<int> hangers_started{0};

// Waits an hour of real time unless cancelled (terminal cancellation throws out of the wait).
inline asio::awaitable<int> hang_until_cancelled() {
    ++hangers_started;
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::hours(1));
    co_await timer.async_wait(asio::use_awaitable);
    co_return 1;
}

inline asio::awaitable<void> started_hangers(int n) {
    co_await eventually([n] { return hangers_started.load() >= n; }, "the job started");
}

// Timeouts on the scheduler's clock: each executor's job is cancelled at its deadline and ends
// timed_out; a job done in time is a success; run_job reports job_timed_out.
inline asio::awaitable<void> jobs_time_out(SchedulerFixture *f) {
    auto &s = f->s();
    hangers_started = 0;
    auto pool_started = std::make_shared<std::atomic<bool>>(false);
    TaskOptions no_cap{.max_running_jobs = asched::unlimited};
    co_await s.add_task("hang", &hang_until_cancelled, no_cap);
    TaskOptions five_seconds{.max_running_jobs = asched::unlimited, .timeout = 5s};
    // Named first: a capture with a destructor, built inside co_await, is freed twice (GCC 12).
    auto spinner = [pool_started](JobContext &job) {
        *pool_started = true;
        while (!job.cancelled())
            std::this_thread::sleep_for(1ms);
        return 7; // returned after the stop was requested: still timed_out
    };
    co_await s.add_task("spin", std::move(spinner), five_seconds);
    co_await s.add_task(
        "add", [](int a, int b) { return a + b; }, five_seconds);
    co_await s.start_in_background();

    JobOptions hang_options{.result_expiration_time = 1h, .timeout = 3s};
    const auto hang = co_await s.add_job("hang", hang_options);
    JobOptions keep{.result_expiration_time = 1h}; // the task's 5 s
    const auto spin = co_await s.add_job("spin", keep);
    co_await started_hangers(1);
    co_await eventually([&] { return pool_started->load(); }, "the pool job started");
    JobOptions in_time{.args = {2, 3}};
    BOOST_TEST((co_await s.run_job("add", in_time)) == 5);

    f->clock->advance(3s);
    auto h = co_await s.get_job_result(hang);
    BOOST_REQUIRE(h);
    BOOST_TEST(h->outcome == JobOutcome::timed_out);
    BOOST_TEST(h->exception_type.value_or("") == "asched::JobTimedOut");
    BOOST_TEST(mentions(h->exception_message.value_or(""), "timed out"));
    BOOST_TEST(mentions(h->exception_message.value_or(""), "3s"));
    BOOST_TEST(f->released(JobOutcome::timed_out) == 1u); // the spinner's 5 s are not up
    f->clock->advance(2s);
    auto p = co_await s.get_job_result(spin);
    BOOST_REQUIRE(p);
    BOOST_TEST(p->outcome == JobOutcome::timed_out);
    BOOST_TEST(p->return_value.is_null()); // what it returned late is not its result

    // run_job maps the outcome to errc::job_timed_out; a non-positive timeout is refused.
    const int before = hangers_started;
    std::exception_ptr failure;
    bool done = false;
    JobOptions run_options{.timeout = 1s};
    auto op = s.run_job("hang", run_options);
    asio::co_spawn(f->ioc, std::move(op), [&](std::exception_ptr e, nlohmann::json) {
        failure = e;
        done = true;
    });
    co_await started_hangers(before + 1);
    f->clock->advance(1s);
    co_await eventually([&] { return done; }, "run_job returned");
    BOOST_TEST(error_code_of(failure) == int(errc::job_timed_out));
    JobOptions zero{.timeout = 0s};
    std::string refused;
    try {
        co_await s.add_job("add", zero);
    } catch (const Error &err) {
        refused = err.what();
    }
    BOOST_TEST(mentions(refused, "field 'timeout': must be positive"), refused);
}

// cancel_job: a queued job is removed and ends cancelled; a running one (coroutine or
// thread pool) is cancelled through its signal or stop token; unknown ids are job_lookup.
inline asio::awaitable<void> jobs_are_cancelled(SchedulerFixture *f) {
    auto &s = f->s();
    hangers_started = 0;
    TaskOptions one_at_a_time{.max_running_jobs = 1};
    co_await s.add_task("hang", &hang_until_cancelled, one_at_a_time);
    co_await s.add_task("spin", [](JobContext &job) {
        while (!job.cancelled())
            std::this_thread::sleep_for(1ms);
        return 7;
    });
    co_await s.start_in_background();
    JobOptions keep{.result_expiration_time = 1h};
    const auto running = co_await s.add_job("hang", keep);
    co_await started_hangers(1);
    const auto queued = co_await s.add_job("hang", keep); // waits for the task's one slot

    const auto removed = co_await s.cancel_job(queued);
    BOOST_TEST((removed == JobCancellation::removed));
    auto q = co_await s.get_job_result(queued);
    BOOST_REQUIRE(q);
    BOOST_TEST(q->outcome == JobOutcome::cancelled);
    BOOST_TEST(!q->started_at);

    const auto requested = co_await s.cancel_job(running);
    BOOST_TEST((requested == JobCancellation::requested));
    auto r = co_await s.get_job_result(running);
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::cancelled);
    BOOST_TEST(r->exception_message.value_or("") == "cancelled by cancel_job()");

    const auto spin = co_await s.add_job("spin", keep);
    co_await eventually([f] { return f->recorder->count<JobAcquired>() >= 2; }, "spin acquired");
    // As another node would: through the store; the broker's event reaches the holder.
    auto store = s.data_store();
    auto flag = store->cancel_job(spin, "another-node");
    const auto how = co_await std::move(flag);
    BOOST_TEST((how == JobCancellation::requested));
    auto sp = co_await s.get_job_result(spin);
    BOOST_REQUIRE(sp);
    BOOST_TEST(sp->outcome == JobOutcome::cancelled);
    BOOST_TEST(sp->return_value.is_null());

    const std::vector<std::string> gone{running, "no-such-job"}; // named: GCC 12
    for (const auto &id : gone) {
        std::exception_ptr e;
        try {
            co_await s.cancel_job(id);
        } catch (...) {
            e = std::current_exception();
        }
        BOOST_TEST(error_code_of(e) == int(errc::job_lookup), id);
    }
    BOOST_TEST(s.state() == RunState::started);
}

// run_schedule_now: one job now with the schedule's args and policies; the trigger is kept.
inline asio::awaitable<void> a_schedule_runs_now(SchedulerFixture *f) {
    auto &s = f->s();
    std::vector<std::optional<time_point>> fire_times;
    // A coroutine task: it runs on the test's own thread, so fire_times needs no lock.
    co_await s.add_task("echo", [&fire_times](JobContext &job, int v) -> asio::awaitable<int> {
        fire_times.push_back(job.scheduled_fire_time);
        co_return v;
    });
    IntervalTrigger hourly({.hours = 1, .start_time = test::t0 + 1h});
    ScheduleOptions options;
    options.id = "hourly";
    options.args = {7};
    options.job_result_expiration_time = 1h;
    options.metadata = {{"team", "ops"}};
    co_await s.add_schedule("echo", hourly, options);
    co_await s.start_in_background();
    const auto id = co_await s.run_schedule_now("hourly");
    auto r = co_await s.get_job_result(id);
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::success);
    BOOST_TEST(r->return_value == 7);
    BOOST_TEST((r->schedule_id == std::optional<std::string>("hourly")));
    BOOST_REQUIRE(fire_times.size() == 1u);
    BOOST_TEST(!fire_times[0]); // not a fire of the trigger
    auto sched = co_await s.get_schedule("hourly");
    BOOST_TEST((sched.next_fire_time == test::t0 + 1h)); // unmoved
    f->clock->advance(1h);
    co_await eventually([&] { return fire_times.size() == 2; }, "the regular fire");
    BOOST_TEST((fire_times[1] == test::t0 + 1h));
    std::exception_ptr e;
    try {
        co_await s.run_schedule_now("no-such-schedule");
    } catch (...) {
        e = std::current_exception();
    }
    BOOST_TEST(error_code_of(e) == int(errc::schedule_lookup));
}

// run_job on a scheduler that is not started fails at once (nothing would run the job or end
// the wait); on a started one, its own wait bound gives up on a job that cannot start yet (its
// task's only slot is taken), which stays queued and runs later.
inline asio::awaitable<void> run_job_gives_up_waiting(SchedulerFixture *f) {
    auto &s = f->s();
    auto gate = std::make_shared<std::atomic<bool>>(false);
    co_await s.add_task("add", [](int a, int b) { return a + b; });
    // A named local: a capturing lambda built inside co_await is the GCC 12 double free.
    auto gated = [gate] {
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!*gate && std::chrono::steady_clock::now() < give_up)
            std::this_thread::sleep_for(std::chrono::milliseconds(1)); // bounded: the test opens it
        return 0;
    };
    co_await s.add_task("gated", gated);
    JobOptions unstarted{.args = {1, 2}, .wait_timeout = 200ms};
    std::exception_ptr refused;
    try {
        co_await s.run_job("add", unstarted);
    } catch (...) {
        refused = std::current_exception();
    }
    BOOST_TEST(error_code_of(refused) == int(errc::not_running));
    BOOST_TEST((co_await s.get_jobs()).empty()); // refused before anything was queued

    co_await s.start_in_background();
    co_await s.add_job("gated");
    co_await eventually([f] { return f->recorder->of<JobAcquired>().size() == 1; },
                        "the first gated job runs");
    JobOptions bounded{.wait_timeout = 200ms};
    std::exception_ptr e;
    std::string message;
    try {
        co_await s.run_job("gated", bounded);
    } catch (const std::exception &ex) {
        e = std::current_exception();
        message = ex.what();
    }
    BOOST_TEST(error_code_of(e) == int(errc::wait_timed_out));
    BOOST_TEST(mentions(message, "no result within 200ms"), message);
    // The job is still queued and runs once the slot is free.
    *gate = true;
    co_await eventually([f] { return f->released(JobOutcome::success) == 2; }, "both ran");
}

// Retries with backoff on the manual clock: attempts 1 and 2 fail, 3 succeeds; JobContext
// counts them, run_job waits through them, and the history has every attempt.
inline asio::awaitable<void> failed_attempts_are_retried(SchedulerFixture *f) {
    auto &s = f->s();
    RetryPolicy policy;
    policy.max_attempts = 3;
    policy.initial_delay = 5s;
    policy.multiplier = 2;
    policy.jitter = 0;
    TaskOptions retried{.retry = policy};
    co_await s.add_task(
        "flaky",
        [](JobContext &job) -> int {
            if (job.attempt < 3)
                throw std::runtime_error("attempt " + std::to_string(job.attempt) + " failed");
            return int(job.attempt);
        },
        retried);
    co_await s.start_in_background();
    JobOptions keep{.result_expiration_time = 1h};
    const auto id = co_await s.add_job("flaky", keep);
    auto retried_releases = [f] {
        std::size_t n = 0;
        for (const auto &r : f->recorder->of<JobReleased>())
            n += r.retry_at.has_value();
        return n;
    };
    co_await eventually([&] { return retried_releases() == 1; }, "attempt 1 failed");
    auto queued = co_await s.get_jobs();
    BOOST_REQUIRE(queued.size() == 1u);
    BOOST_TEST(queued[0].attempt == 2u);
    f->clock->advance(4s);
    BOOST_TEST(retried_releases() == 1u); // not before its backoff
    f->clock->advance(1s);
    co_await eventually([&] { return retried_releases() == 2; }, "attempt 2 failed");
    f->clock->advance(10s);
    auto r = co_await s.get_job_result(id);
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::success);
    BOOST_TEST(r->return_value == 3);
    BOOST_TEST(r->attempt == 3u);

    JobHistoryFilter mine;
    mine.task_id = "flaky";
    auto page = co_await s.get_job_results(mine);
    BOOST_REQUIRE(page.records.size() == 3u);
    BOOST_TEST(page.records[0].outcome == JobOutcome::success);
    BOOST_TEST(page.records[1].outcome == JobOutcome::error);
    BOOST_TEST(page.records[1].exception_message.value_or("") == "attempt 2 failed");
    BOOST_TEST((page.records[2].retry_at == test::t0 + 5s));
    for (const auto &rec : page.records)
        BOOST_TEST(rec.job_id == id);

    // A bad policy is refused naming the field.
    RetryPolicy none;
    none.max_attempts = 0;
    JobOptions bad{.retry = none};
    std::string refused;
    try {
        co_await s.add_job("flaky", bad);
    } catch (const Error &e) {
        refused = e.what();
    }
    BOOST_TEST(mentions(refused, "field 'retry.max_attempts'"), refused);
    // The history is pruned after history_retention (24 h).
    f->clock->advance(25h);
    co_await s.cleanup();
    auto later = co_await s.get_job_results(mine);
    BOOST_TEST(later.records.empty());
}

// A coroutine task adds a job through JobContext::scheduler and reports what its context says.
inline asio::awaitable<nlohmann::json> parent_task(JobContext &job) {
    JobOptions o{.args = {int(job.attempt)}, .result_expiration_time = 1h};
    auto op = job.scheduler->add_job("child", o);
    const auto child = co_await std::move(op);
    co_return nlohmann::json{
        {"child", child},
        {"attempt", job.attempt},
        {"deadline", job.start_deadline ? format_time(*job.start_deadline) : "none"},
        {"jitter_us", job.jitter.count()}};
}

inline asio::awaitable<void> tasks_see_their_context_and_the_scheduler(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.add_task("parent", &parent_task);
    co_await s.add_task("child", [](int v) { return v * 10; });
    // A thread-pool task waits on the scheduler's awaitables with use_future.
    co_await s.add_task("pool_parent", [](JobContext &job) {
        JobOptions o{.args = {4}, .result_expiration_time = 1h};
        auto op = job.scheduler->add_job("child", o);
        return asio::co_spawn(job.scheduler->get_executor(), std::move(op), asio::use_future).get();
    });
    DateTrigger once(test::t0);
    ScheduleOptions options;
    options.id = "once";
    options.misfire_grace_time = 30s;
    options.job_result_expiration_time = 1h;
    co_await s.add_schedule("parent", once, options);
    co_await s.start_in_background();
    co_await eventually([f] { return f->released(JobOutcome::success) >= 2; }, "parent and child");
    auto results = f->recorder->of<JobReleased>();
    std::optional<std::string> parent_job;
    for (const auto &r : results)
        if (r.task_id == "parent")
            parent_job = r.job_id;
    BOOST_REQUIRE(parent_job);
    auto pr = co_await s.get_job_result(*parent_job);
    BOOST_REQUIRE(pr);
    BOOST_TEST(pr->outcome == JobOutcome::success);
    const auto &v = pr->return_value;
    BOOST_TEST(v["attempt"] == 1);
    BOOST_TEST(v["deadline"] == format_time(test::t0 + 30s));
    BOOST_TEST(v["jitter_us"] == 0);
    auto cr = co_await s.get_job_result(v["child"].get<std::string>());
    BOOST_REQUIRE(cr);
    BOOST_TEST(cr->return_value == 10);

    JobOptions keep{.result_expiration_time = 1h};
    const auto pool = co_await s.add_job("pool_parent", keep);
    auto pp = co_await s.get_job_result(pool);
    BOOST_REQUIRE(pp);
    BOOST_REQUIRE(pp->outcome == JobOutcome::success);
    auto pc = co_await s.get_job_result(pp->return_value.get<std::string>());
    BOOST_REQUIRE(pc);
    BOOST_TEST(pc->return_value == 40);
}

// The bound on the scenario below, which builds and checks payloads of 17 and 50 MB: a
// sanitizer build on a loaded machine takes several times its 7 s (ThreadSanitizer, idle).
inline constexpr std::chrono::seconds heavy_payload_bound{120};

// R21/R22 at the API: hostile ids and payloads are refused before they are copied or stored,
// with an error that names the field and the limit, and the scheduler goes on working.
inline asio::awaitable<void> hostile_input_is_refused_at_the_api(SchedulerFixture *f) {
    auto &s = f->s();
    using namespace std::string_literals;
    const std::string nul_id = "task\0two"s;
    const std::string bad_utf8 = "caf\xC3(";
    co_await s.add_task("echo", [](std::vector<std::string> v) { return v; });
    co_await s.add_task("deep", [] { return nested_arrays(100); });
    co_await s.add_task("bad_text", [] { return std::string("\xFF\xFE"); });
    co_await s.start_in_background();

    std::string m = refusal([&] { return s.add_task(nul_id, [] { return 1; }); });
    BOOST_TEST(mentions(m, "task: field 'id': contains a NUL byte at position 4: 'task\\x00two'"));
    m = refusal([&] { return s.add_task(bad_utf8, [] { return 1; }); });
    BOOST_TEST(mentions(m, "field 'id': not valid UTF-8 (byte 0xC3 at position 3)"));
    m = refusal([&] { return s.add_job(nul_id); });
    BOOST_TEST(mentions(m, "add_job: field 'task_id': contains a NUL byte"));
    JobOptions named;
    named.id = std::string(2000, 'j');
    m = refusal([&] { return s.add_job("echo", named); });
    BOOST_TEST(mentions(m, "field 'id': 2000 bytes, over max_id_bytes (1024)"));
    BOOST_TEST(m.size() < 400u); // the id is quoted, cut at 200 characters
    ScheduleOptions so;
    so.id = bad_utf8;
    IntervalTrigger every({.seconds = 10});
    m = refusal([&] { return s.add_schedule("echo", every, so); });
    BOOST_TEST(mentions(m, "add_schedule: field 'id': not valid UTF-8"));
    m = refusal([&] { return s.get_schedule(nul_id); });
    BOOST_TEST(mentions(m, "schedule: field 'id': contains a NUL byte"));
    m = refusal([&] { return s.get_job_result(bad_utf8); });
    BOOST_TEST(mentions(m, "job: field 'id': not valid UTF-8"));

    JobOptions deep{.args = nlohmann::json::array({1})};
    deep.args.push_back(nested_arrays(100000));
    m = refusal([&] { return s.run_job("echo", deep); });
    BOOST_TEST(
        mentions(m, "job of task 'echo': field 'args': nested deeper than max_json_depth (64)"));
    JobOptions text{.args = nlohmann::json::array({bad_utf8})};
    m = refusal([&] { return s.add_job("echo", text); });
    BOOST_TEST(mentions(m, "job of task 'echo': field 'args': not valid JSON text"));
    JobOptions meta;
    meta.metadata = {{"note", bad_utf8}};
    m = refusal([&] { return s.add_job("echo", meta); });
    BOOST_TEST(mentions(m, "field 'metadata': not valid JSON text"));
    JobOptions big{.args = nlohmann::json::array({std::string(std::size_t(17) << 20, 'x')})};
    m = refusal([&] { return s.add_job("echo", big); });
    BOOST_TEST(mentions(m, "field 'args': 17825796 bytes, over max_payload_bytes (16777216)"));
    ScheduleOptions deep_schedule;
    deep_schedule.args = nlohmann::json::array({nested_arrays(65)});
    m = refusal([&] { return s.add_schedule("echo", every, deep_schedule); });
    BOOST_TEST(mentions(m, "field 'args': nested deeper than max_json_depth"));

    // Return values the store could not keep end as errors that say why.
    JobOptions keep{.result_expiration_time = 1h};
    const auto deep_id = co_await s.add_job("deep", keep);
    const auto deep_result = co_await s.get_job_result(deep_id);
    BOOST_REQUIRE(deep_result);
    BOOST_TEST(deep_result->outcome == JobOutcome::error);
    BOOST_TEST(deep_result->exception_type.value_or("") == "asched::ResultTooDeep");
    BOOST_TEST(deep_result->return_value.is_null());
    const auto text_id = co_await s.add_job("bad_text", keep);
    const auto text_result = co_await s.get_job_result(text_id);
    BOOST_REQUIRE(text_result);
    BOOST_TEST(text_result->outcome == JobOutcome::error);
    BOOST_TEST(text_result->exception_type.value_or("") == "asched::InvalidResult");
    // An oversized result (R22: 50 MB), made inside the task from a small argument.
    JobOptions count{.args = nlohmann::json::array({50 << 20}), .result_expiration_time = 1h};
    co_await s.add_task("grow", [](int n) { return std::string(std::size_t(n), 'z'); });
    const auto grow_id = co_await s.add_job("grow", count);
    const auto grow_result = co_await s.get_job_result(grow_id);
    BOOST_REQUIRE(grow_result);
    BOOST_TEST(grow_result->outcome == JobOutcome::error);
    BOOST_TEST(grow_result->exception_type.value_or("") == "asched::ResultTooLarge");
    BOOST_TEST(mentions(grow_result->exception_message.value_or(""), "over max_payload_bytes"));

    // R21: ids and values that are valid but hostile to SQL and to format strings are kept
    // exactly, on every store; a 1 MB id is refused by name.
    const std::vector<std::string> hostile{
        "'; DROP TABLE jobs;--", "%_", "a\\b\\", "$1", "{}{0}%s", "caf\xC3\xA9 \xF0\x9F\x98\x80"};
    for (const auto &id : hostile) {
        co_await s.add_task(id, [](std::string v) { return v; });
        JobOptions o{.args = nlohmann::json::array({id}), .result_expiration_time = 1h};
        o.id = id;
        o.metadata = {{id, id}};
        const auto job_id = co_await s.add_job(id, o);
        BOOST_TEST(job_id == id);
        const auto r = co_await s.get_job_result(job_id);
        BOOST_REQUIRE(r);
        BOOST_TEST(r->return_value == id);
        BOOST_TEST(r->task_id == id);
        ScheduleOptions sched;
        sched.id = id;
        sched.paused = true;
        sched.args = nlohmann::json::array({id});
        co_await s.add_schedule(id, every, sched);
        const auto back = co_await s.get_schedule(id);
        BOOST_TEST(back.task_id == id);
        BOOST_TEST(back.args == nlohmann::json::array({id}));
        co_await s.remove_schedule(id);
    }
    JobOptions megabyte;
    megabyte.id = std::string(1 << 20, 'i');
    m = refusal([&] { return s.add_job("echo", megabyte); });
    BOOST_TEST(mentions(m, "field 'id': 1048576 bytes, over max_id_bytes (1024)"));
    BOOST_TEST(m.size() < 400u);

    // Nothing of the above was stored, and the scheduler still works.
    JobOptions fine{.args = nlohmann::json::array({nlohmann::json::array({"caf\xC3\xA9"})})};
    const auto value = co_await s.run_job("echo", fine);
    BOOST_TEST(value == nlohmann::json::array({"caf\xC3\xA9"}));
    const auto jobs = co_await s.get_jobs();
    BOOST_TEST(jobs.empty());
    const auto schedules = co_await s.get_schedules();
    BOOST_TEST(schedules.empty());
}

// Issue 14, defect 6: a trigger with no fire time at all is refused by add_schedule (it was
// stored, then removed by the next cleanup without a word).
inline asio::awaitable<void> schedules_that_never_fire_are_refused(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.add_task("t", []() -> asio::awaitable<void> { co_return; });
    CronTrigger feb30 = CronTrigger::from_crontab("0 0 30 2 *");
    CronTrigger feb31 = CronTrigger::from_crontab("0 0 31 2 *");
    CronTrigger year1970({.year = "1970"});
    CronTrigger backwards({.hour = "3", .start_time = test::t0, .end_time = test::t0 - 1s});
    const std::vector<const Trigger *> never{&feb30, &feb31, &year1970, &backwards};
    for (const Trigger *trigger : never) {
        std::string message = "accepted";
        try {
            auto ptr = std::shared_ptr<const Trigger>(std::shared_ptr<const Trigger>(), trigger);
            auto op = s.add_schedule("t", ptr);
            co_await std::move(op);
        } catch (const Error &e) {
            BOOST_TEST(e.code_value() == errc::invalid_argument);
            message = e.what();
        }
        BOOST_TEST(mentions(message, "field 'trigger': "), message);
        BOOST_TEST(
            mentions(message, "never fires (no fire time at all from 2025-01-01T00:00:00Z)"));
    }
    const auto schedules = co_await s.get_schedules();
    BOOST_TEST(schedules.empty());
    // A likely mistake is only a warning: the schedule is valid.
    CronTrigger every_minute = CronTrigger::from_crontab("* */4 * * *");
    const auto id = co_await s.add_schedule("t", every_minute);
    BOOST_TEST(!id.empty());
}

// The worker registry: a started scheduler has a live row with its tasks (a task added later
// shows at once), a second scheduler with its identity is refused without touching it, an
// add for a task no live worker runs is warned about, and the row goes at stop.
inline asio::awaitable<void> workers_are_registered(SchedulerFixture *f) {
    auto &s = f->s();
    auto none = co_await s.get_workers();
    BOOST_TEST(none.empty());
    co_await s.add_task("work", []() -> asio::awaitable<int> { co_return 1; });
    co_await s.start_in_background();
    auto rows = co_await s.get_workers();
    BOOST_REQUIRE(rows.size() == 1u);
    BOOST_TEST(rows[0].identity == "test-node");
    BOOST_TEST(rows[0].boot_id == s.boot_id());
    BOOST_TEST(rows[0].pid == std::int64_t(::getpid()));
    BOOST_TEST(!rows[0].host.empty());
    BOOST_TEST(rows[0].task_ids == std::vector<std::string>{"work"});
    BOOST_TEST(rows[0].started_at == f->clock->now());
    BOOST_TEST(rows[0].expires_at ==
               f->clock->now() + SchedulerFixture::base_options().lease_duration);
    co_await s.add_task("later", []() -> asio::awaitable<int> { co_return 2; });
    // Renewed at once, not at the next lease renewal (the manual clock does not move).
    asio::steady_timer pause(co_await asio::this_coro::executor);
    bool listed = false;
    for (int i = 0; i < 2000 && !listed; ++i) {
        auto now = co_await s.get_workers();
        listed = now.size() == 1u && now[0].task_ids.size() == 2u;
        pause.expires_after(10ms);
        co_await pause.async_wait(asio::use_awaitable);
    }
    BOOST_TEST(listed, "the row lists the task added after the start");

    // A second scheduler (same process, store and identity) is refused while the first runs.
    auto warnings = std::make_shared<std::vector<std::string>>();
    auto twin_options = SchedulerFixture::base_options();
    twin_options.clock = f->clock;
    twin_options.data_store = f->twin_store();
    twin_options.event_broker = s.event_broker();
    twin_options.role = SchedulerRole::scheduler;
    twin_options.logger.level = LogLevel::warning;
    twin_options.logger.sink = [warnings](LogLevel, std::string_view m) {
        warnings->emplace_back(m);
    };
    const auto executor = co_await asio::this_coro::executor;
    AsyncScheduler twin(executor, twin_options);
    std::exception_ptr refused;
    std::string message;
    try {
        co_await twin.start_in_background();
    } catch (const std::exception &e) {
        refused = std::current_exception();
        message = e.what();
    }
    BOOST_TEST(error_code_of(refused) == int(errc::identity_in_use));
    BOOST_TEST(mentions(message, "identity 'test-node' is in use"), message);
    BOOST_TEST(mentions(message, fmt::format("pid {}", ::getpid())), message);
    BOOST_TEST(twin.state() == RunState::stopped);
    rows = co_await s.get_workers();
    BOOST_REQUIRE(rows.size() == 1u);
    BOOST_TEST(rows[0].boot_id == s.boot_id()); // untouched
    const JobOptions plain;
    const auto value = co_await s.run_job("work", plain);
    BOOST_TEST(value == 1); // the first runs on

    // Adds through the twin (not started: it runs nothing itself): a task the first runs is
    // fine, one that no live worker runs is warned about, naming the job and the task.
    warnings->clear();
    co_await twin.add_job("work");
    BOOST_TEST(warnings->empty());
    Task orphan;
    orphan.id = "orphan";
    co_await s.data_store()->add_task(orphan);
    const auto orphan_job = co_await twin.add_job("orphan");
    BOOST_REQUIRE(warnings->size() == 1u);
    BOOST_TEST(
        mentions(warnings->front(),
                 fmt::format("job '{}': no live worker has registered task 'orphan'", orphan_job)),
        warnings->front());
    co_await twin.add_job("orphan"); // checked once per lease period, not per add
    BOOST_TEST(warnings->size() == 1u);

    // A stopped scheduler leaves no row; then the identity is free for the twin.
    co_await s.stop();
    co_await s.wait_until_stopped();
    auto after = co_await s.get_workers();
    BOOST_TEST(after.empty());
    co_await twin.start_in_background();
    rows = co_await twin.get_workers();
    BOOST_REQUIRE(rows.size() == 1u);
    BOOST_TEST(rows[0].boot_id == twin.boot_id());
    BOOST_TEST(rows[0].task_ids.empty()); // role scheduler: it runs no task
    co_await twin.stop();
    co_await twin.wait_until_stopped();
    co_await twin.close();
}

// R17: the wall clock steps back an hour, then forward two, under a running scheduler with a
// 1-minute interval (coalesce latest). The backward step re-fires nothing (the next fire stays
// where it was and comes when the clock reaches it again); the forward step is one catch-up
// job and one FiresDropped for the rest, not a storm; firing then goes on on time.
inline asio::awaitable<void> r17_wall_clock_steps(SchedulerFixture *f, SteppingClock *clock) {
    auto &s = f->s();
    std::shared_ptr<std::vector<time_point>> fires = std::make_shared<std::vector<time_point>>();
    auto record = [fires](JobContext &job) -> asio::awaitable<void> {
        fires->push_back(*job.scheduled_fire_time);
        co_return;
    };
    co_await s.add_task("tick", record);
    const auto t0 = clock->now();
    IntervalTrigger every_minute({.minutes = 1, .start_time = t0});
    ScheduleOptions latest;
    latest.id = "m";
    latest.coalesce = CoalescePolicy::latest;
    co_await s.add_schedule("tick", every_minute, latest);
    co_await s.start_in_background();
    co_await eventually([&] { return fires->size() == 1; }, "the fire at t0");
    clock->step(1min);
    co_await eventually([&] { return fires->size() == 2; }, "the fire at t0 + 1 min");

    // Back an hour: nothing is due; the next fire is still t0 + 2 min.
    clock->step(-1h);
    co_await s.cleanup();
    auto m = co_await s.get_schedule("m");
    BOOST_TEST((m.next_fire_time == t0 + 2min));
    clock->step(1h); // back at t0 + 1 min, the last fire: it does not fire again
    co_await s.cleanup();
    BOOST_TEST(fires->size() == 2u);
    clock->step(1min); // t0 + 2 min
    co_await eventually([&] { return fires->size() == 3; }, "the next fire, once");
    BOOST_TEST((fires->back() == t0 + 2min));

    // Forward two hours: one job (the latest due fire), the other 119 dropped and reported.
    clock->step(2h);
    co_await eventually([&] { return fires->size() == 4; }, "one catch-up job");
    BOOST_TEST((fires->back() == t0 + 122min));
    co_await eventually([&] { return f->recorder->count<FiresDropped>() == 1; },
                        "the dropped fires reported");
    const auto dropped = f->recorder->of<FiresDropped>().front();
    BOOST_TEST(dropped.count == 119u);
    BOOST_TEST((dropped.first_fire_time == t0 + 3min));
    BOOST_TEST((dropped.last_fire_time == t0 + 121min));
    m = co_await s.get_schedule("m");
    BOOST_TEST((m.next_fire_time == t0 + 123min));
    clock->step(1min);
    co_await eventually([&] { return fires->size() == 5; }, "on time again");
    BOOST_TEST(f->recorder->count<FiresDropped>() == 1u);
    BOOST_TEST(fires->size() == 5u);
}

inline AsyncSchedulerOptions with_concurrency(std::size_t n) {
    auto o = SchedulerFixture::base_options();
    o.max_concurrent_jobs = n;
    return o;
}

inline AsyncSchedulerOptions with_lease(duration lease) {
    auto o = SchedulerFixture::base_options();
    o.lease_duration = lease;
    return o;
}

// metrics(): this node's counters per task (outcomes, retries, misfires, coalesced fires),
// the lateness histogram, running jobs and the store's due backlog, in Prometheus text with
// escaped task-id labels and no job or schedule ids.
inline asio::awaitable<void> metrics_count_what_happened(SchedulerFixture *f) {
    auto &s = f->s();
    const auto has = [](const std::string &text, const std::string &line) {
        return text.find("\n" + line + "\n") != std::string::npos;
    };
    TaskOptions any{.max_running_jobs = asched::unlimited};
    co_await s.add_task(
        "ok", [](int) {}, any);
    co_await s.add_task(
        "strict", [](int) {}, any);
    RetryPolicy once_more;
    once_more.max_attempts = 2;
    once_more.initial_delay = 5s;
    once_more.jitter = 0;
    TaskOptions retried{.retry = once_more};
    co_await s.add_task(
        "boom", []() -> int { throw std::runtime_error("boom"); }, retried);
    auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor);
    auto gated = [gate](int v) { return wait_at(gate, v); };
    const std::string hostile = "cap\"ped\\\n";
    co_await s.add_task(hostile, gated); // max_running_jobs 1
    // Down for 95 s: the minutely schedule's two fires coalesce into one job, 35 s late; the
    // one-off with a 1 s grace misfires.
    IntervalTrigger minutely({.seconds = 60, .start_time = test::t0});
    ScheduleOptions late;
    late.id = "late";
    late.args = {1};
    co_await s.add_schedule("ok", minutely, late);
    DateTrigger at_t0(test::t0);
    ScheduleOptions strict;
    strict.id = "strict";
    strict.args = {1};
    strict.misfire_grace_time = 1s;
    co_await s.add_schedule("strict", at_t0, strict);
    f->clock->advance(95s);
    co_await s.start_in_background();
    co_await eventually([f] { return f->released(JobOutcome::success) == 1; }, "ok ran");
    co_await eventually([f] { return f->released(JobOutcome::missed_start_deadline) == 1; },
                        "strict misfired");
    const auto boom = co_await s.add_job("boom");
    co_await eventually([f] { return f->released(JobOutcome::error) == 1; }, "attempt 1");
    f->clock->advance(5s);
    co_await eventually([f] { return f->released(JobOutcome::error) == 2; }, "attempt 2");
    std::vector<std::string> ids{boom};
    for (int i = 0; i < 3; ++i) {
        JobOptions o{.args = {i}};
        ids.push_back(co_await s.add_job(hostile, o));
    }
    co_await eventually([&] { return gate->inside == 1; }, "one capped job running");

    const std::string text = "\n" + co_await s.metrics();
    BOOST_TEST(has(text, R"(asched_jobs_total{task="ok",outcome="success"} 1)"), text);
    BOOST_TEST(has(text, R"(asched_jobs_total{task="ok",outcome="error"} 0)"));
    BOOST_TEST(has(text, R"(asched_coalesced_fires_total{task="ok"} 1)"));
    BOOST_TEST(has(text, R"(asched_job_lateness_seconds_bucket{task="ok",le="30"} 0)"));
    BOOST_TEST(has(text, R"(asched_job_lateness_seconds_bucket{task="ok",le="60"} 1)"));
    BOOST_TEST(has(text, R"(asched_job_lateness_seconds_bucket{task="ok",le="+Inf"} 1)"));
    BOOST_TEST(has(text, R"(asched_job_lateness_seconds_sum{task="ok"} 35)"));
    BOOST_TEST(has(text, R"(asched_job_duration_seconds_count{task="ok"} 1)"));
    BOOST_TEST(has(text, R"(asched_jobs_total{task="boom",outcome="error"} 2)"));
    BOOST_TEST(has(text, R"(asched_job_retries_total{task="boom"} 1)"));
    BOOST_TEST(has(text, R"(asched_jobs_total{task="strict",outcome="missed_start_deadline"} 1)"));
    BOOST_TEST(has(text, R"(asched_misfires_total{task="strict"} 1)"));
    // The task id's quote, backslash and newline are escaped; nothing breaks the line.
    BOOST_TEST(has(text, R"(asched_running_jobs{task="cap\"ped\\\n"} 1)"), text);
    BOOST_TEST(has(text, R"(asched_backlog_jobs{task="cap\"ped\\\n"} 2)"));
    BOOST_TEST(has(text, R"(asched_running_jobs{task="ok"} 0)"));
    // The one-off's finished schedule is gone at once (memory) or at the next cleanup (SQL).
    const std::vector<Schedule> schedules = co_await s.get_schedules();
    BOOST_TEST(has(text, "asched_schedules " + std::to_string(schedules.size())));
    BOOST_TEST(has(text, "asched_paused_schedules 0"));
    BOOST_TEST(has(text, "asched_store_healthy 1"));
    BOOST_TEST(has(text, "asched_broker_connected 1"));
    BOOST_TEST(has(text, "asched_lease_renewals_failed_total 0"));
    BOOST_TEST(has(text, "# TYPE asched_job_lateness_seconds histogram"));
    for (const auto &id : ids)
        BOOST_TEST(text.find(id) == std::string::npos, "a job id in a label: " << id);
    BOOST_TEST(text.find("late\"") == std::string::npos); // no schedule id either
    gate->open();
}

} // namespace asched::test::scenarios
