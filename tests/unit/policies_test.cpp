// Catch-up, coalescing, jitter and misfire deadlines as pure functions of `now`.
#include "test_support.hpp"

using namespace asched;
using namespace std::chrono_literals;

namespace {

Schedule every_second(CoalescePolicy coalesce) {
    Schedule s;
    s.id = "s";
    s.task_id = "t";
    s.trigger = std::make_shared<IntervalTrigger>(
        IntervalTriggerOptions{.seconds = 1, .start_time = test::t0});
    s.coalesce = coalesce;
    s.next_fire_time = test::t0;
    return s;
}

int counter = 0;
std::string next_id() {
    return "job-" + std::to_string(++counter);
}

} // namespace

BOOST_AUTO_TEST_SUITE(policies)

BOOST_AUTO_TEST_CASE(coalesce_latest_earliest_all_over_100_missed_fires) {
    const auto now = test::t0 + 99s + 500ms; // fires at 0..99 s are due
    auto half = [] { return 0.5; };

    auto all = plan_fires(every_second(CoalescePolicy::all), now, half, next_id);
    BOOST_TEST(all.jobs.size() == 100u);
    BOOST_TEST((all.jobs.front().scheduled_fire_time == test::t0));
    BOOST_TEST((all.jobs.back().scheduled_fire_time == test::t0 + 99s));
    BOOST_TEST((all.next_fire_time == test::t0 + 100s));
    BOOST_TEST((all.last_fire_time == test::t0 + 99s));

    auto latest = plan_fires(every_second(CoalescePolicy::latest), now, half, next_id);
    BOOST_TEST(latest.jobs.size() == 1u);
    BOOST_TEST((latest.jobs[0].scheduled_fire_time == test::t0 + 99s));
    BOOST_TEST((latest.next_fire_time == test::t0 + 100s));

    auto earliest = plan_fires(every_second(CoalescePolicy::earliest), now, half, next_id);
    BOOST_TEST(earliest.jobs.size() == 1u);
    BOOST_TEST((earliest.jobs[0].scheduled_fire_time == test::t0));
    BOOST_TEST((earliest.last_fire_time == test::t0 + 99s));
}

// R13 in small: 3 h behind on a 1-minute schedule, 181 fires due (0..180 min).
BOOST_AUTO_TEST_CASE(dropped_fires_are_counted_with_their_first_and_last) {
    auto every_minute = [](CoalescePolicy c) {
        Schedule s = every_second(c);
        s.trigger = std::make_shared<IntervalTrigger>(
            IntervalTriggerOptions{.minutes = 1, .start_time = test::t0});
        return s;
    };
    const auto now = test::t0 + 3h;
    auto zero = [] { return 0.0; };

    auto latest = plan_fires(every_minute(CoalescePolicy::latest), now, zero, next_id);
    BOOST_REQUIRE(latest.jobs.size() == 1u);
    BOOST_TEST((latest.jobs[0].scheduled_fire_time == now));
    BOOST_TEST(latest.dropped.count == 180u);
    BOOST_TEST((latest.dropped.first == test::t0));
    BOOST_TEST((latest.dropped.last == now - 1min));
    BOOST_TEST(to_string(latest.dropped.reason) == "coalesced");

    auto earliest = plan_fires(every_minute(CoalescePolicy::earliest), now, zero, next_id);
    BOOST_TEST((earliest.jobs.at(0).scheduled_fire_time == test::t0));
    BOOST_TEST(earliest.dropped.count == 180u);
    BOOST_TEST((earliest.dropped.first == test::t0 + 1min));
    BOOST_TEST((earliest.dropped.last == now));

    auto all = plan_fires(every_minute(CoalescePolicy::all), now, zero, next_id);
    BOOST_TEST(all.jobs.size() == 181u);
    BOOST_TEST(all.dropped.count == 0u);

    Schedule capped = every_minute(CoalescePolicy::all);
    capped.max_catchup = 10;
    auto cut = plan_fires(capped, now, zero, next_id);
    BOOST_REQUIRE(cut.jobs.size() == 10u);
    BOOST_TEST((cut.jobs.front().scheduled_fire_time == now - 9min)); // the newest ten
    BOOST_TEST((cut.jobs.back().scheduled_fire_time == now));
    BOOST_TEST(cut.dropped.count == 171u);
    BOOST_TEST((cut.dropped.first == test::t0));
    BOOST_TEST((cut.dropped.last == now - 10min));
    BOOST_TEST(to_string(cut.dropped.reason) == "max_catchup");
    BOOST_TEST((cut.next_fire_time == now + 1min)); // it keeps firing afterwards

    // On time: nothing dropped.
    auto on_time = plan_fires(every_minute(CoalescePolicy::latest), test::t0, zero, next_id);
    BOOST_TEST(on_time.jobs.size() == 1u);
    BOOST_TEST(on_time.dropped.count == 0u);
}

BOOST_AUTO_TEST_CASE(retry_backoff_grows_is_capped_and_jittered) {
    RetryPolicy r;
    r.initial_delay = 1s;
    r.multiplier = 3;
    r.max_delay = 20s;
    r.jitter = 0.5;
    BOOST_TEST((r.delay_before(2, 0.0) == 1s));
    BOOST_TEST((r.delay_before(3, 0.0) == 3s));
    BOOST_TEST((r.delay_before(4, 0.0) == 9s));
    BOOST_TEST((r.delay_before(5, 0.0) == 20s)); // 27 s, capped
    BOOST_TEST((r.delay_before(60, 0.0) == 20s));
    BOOST_TEST((r.delay_before(3, 1.0) == 4500ms)); // stretched by up to half
    BOOST_TEST(r.retries(JobOutcome::error));
    BOOST_TEST(r.retries(JobOutcome::abandoned));
    BOOST_TEST(!r.retries(JobOutcome::cancelled));
    BOOST_TEST(!r.retries(JobOutcome::missed_start_deadline));
    r.on_timed_out = false;
    BOOST_TEST(!r.retries(JobOutcome::timed_out));
    // JSON round trip, and a bad stored policy is named.
    const nlohmann::json j = r;
    BOOST_TEST((j.get<RetryPolicy>() == r));
    nlohmann::json bad = j;
    bad["multiplier"] = 0.5;
    try {
        (void)bad.get<RetryPolicy>();
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("retry.multiplier") != std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_CASE(jobs_carry_the_schedule_settings) {
    auto s = every_second(CoalescePolicy::latest);
    s.args = {1, 2};
    s.metadata = {{"k", "v"}};
    s.job_result_expiration_time = 5min;
    auto plan = plan_fires(
        s, test::t0, [] { return 0.0; }, next_id);
    BOOST_REQUIRE(plan.jobs.size() == 1u);
    const Job &j = plan.jobs[0];
    BOOST_TEST(j.args == s.args);
    BOOST_TEST(j.metadata == s.metadata);
    BOOST_TEST((j.schedule_id == std::optional<std::string>("s")));
    BOOST_TEST((j.result_expiration_time == 5min));
    BOOST_TEST((j.created_at == test::t0));
    BOOST_TEST(!j.start_deadline);
}

BOOST_AUTO_TEST_CASE(misfire_deadline_is_fire_plus_jitter_plus_grace) {
    auto s = every_second(CoalescePolicy::latest);
    s.misfire_grace_time = 300ms;
    s.max_jitter = 200ms;
    auto plan = plan_fires(
        s, test::t0, [] { return 0.5; }, next_id);
    BOOST_REQUIRE(plan.jobs.size() == 1u);
    BOOST_TEST((plan.jobs[0].jitter == 100ms));
    BOOST_TEST((plan.jobs[0].start_deadline == test::t0 + 400ms));
    BOOST_TEST((plan.jobs[0].earliest_start() == test::t0 + 100ms));
    BOOST_TEST(missed_deadline(plan.jobs[0], test::t0 + 401ms));
    BOOST_TEST(!missed_deadline(plan.jobs[0], test::t0 + 400ms));
}

BOOST_AUTO_TEST_CASE(jitter_never_reaches_the_following_fire) {
    auto s = every_second(CoalescePolicy::all);
    s.max_jitter = 10s;
    auto plan = plan_fires(
        s, test::t0 + 2s, [] { return 1.0; }, next_id);
    BOOST_REQUIRE(plan.jobs.size() == 3u);
    for (const auto &j : plan.jobs)
        BOOST_TEST((j.jitter == 1s - 1us));
}

BOOST_AUTO_TEST_CASE(not_due_and_exhausted) {
    auto s = every_second(CoalescePolicy::latest);
    s.next_fire_time = test::t0 + 5s;
    auto plan = plan_fires(
        s, test::t0, [] { return 0.0; }, next_id);
    BOOST_TEST(plan.jobs.empty());
    BOOST_TEST((plan.next_fire_time == test::t0 + 5s));

    Schedule once = s;
    once.trigger = std::make_shared<DateTrigger>(test::t0);
    once.next_fire_time = test::t0;
    auto done = plan_fires(
        once, test::t0 + 1h, [] { return 0.0; }, next_id);
    BOOST_TEST(done.jobs.size() == 1u);
    BOOST_TEST(!done.next_fire_time);
}

BOOST_AUTO_TEST_CASE(resume_from_skips_to_the_first_fire_at_or_after) {
    Schedule s;
    s.trigger = std::make_shared<IntervalTrigger>(
        IntervalTriggerOptions{.seconds = 10, .start_time = test::t0});
    s.next_fire_time = test::t0;
    skip_fires_before(s, test::t0 + 25s);
    BOOST_TEST((s.next_fire_time == test::t0 + 30s));
    s.next_fire_time = test::t0 + 40s;
    skip_fires_before(s, test::t0 + 25s);
    BOOST_TEST((s.next_fire_time == test::t0 + 40s));
}

BOOST_AUTO_TEST_CASE(plan_fires_carries_a_combining_triggers_state) {
    // or(every 10 s, every 15 s): 0, 10, 15, 20, 30, 40, 45 ...; the state says which child
    // is pending, so the plan must continue from it rather than from the fire time alone.
    auto every = [](int secs) {
        return std::make_shared<IntervalTrigger>(
            IntervalTriggerOptions{.seconds = double(secs), .start_time = test::t0});
    };
    Schedule s = every_second(CoalescePolicy::all);
    s.trigger = std::make_shared<OrTrigger>(std::vector<TriggerPtr>{every(10), every(15)});
    s.next_fire_time = s.trigger->advance(std::nullopt, s.trigger_state);
    BOOST_TEST((s.next_fire_time == test::t0));
    int id = 0;
    auto plan = plan_fires(
        s, test::t0 + 20s, [] { return 0.0; }, [&] { return std::to_string(++id); });
    std::vector<time_point> fires;
    for (const auto &j : plan.jobs)
        fires.push_back(*j.scheduled_fire_time);
    BOOST_TEST((fires ==
                std::vector<time_point>{test::t0, test::t0 + 10s, test::t0 + 15s, test::t0 + 20s}));
    BOOST_TEST((plan.next_fire_time == test::t0 + 30s));
    s.next_fire_time = plan.next_fire_time;
    s.trigger_state = plan.trigger_state;
    // The state survives the schedule's JSON form, as a store keeps it.
    Schedule back = nlohmann::json(s).get<Schedule>();
    BOOST_TEST((back == s));
    auto later = plan_fires(
        back, test::t0 + 45s, [] { return 0.0; }, [&] { return std::to_string(++id); });
    BOOST_TEST(later.jobs.size() == 3u); // 30, 40, 45
    BOOST_TEST((later.next_fire_time == test::t0 + 50s));
}

BOOST_AUTO_TEST_CASE(backoff_is_capped) {
    BOOST_TEST((backoff_delay(0) == 500ms));
    BOOST_TEST((backoff_delay(1) == 1s));
    BOOST_TEST((backoff_delay(30) == 20s));
}

BOOST_AUTO_TEST_SUITE_END()
