// DateTrigger and IntervalTrigger: fire times, bounds, errors and JSON round trips.
#include "test_support.hpp"

using namespace asched;
using namespace std::chrono_literals;
using test::fires;

BOOST_AUTO_TEST_SUITE(triggers)

BOOST_AUTO_TEST_CASE(date_trigger_fires_once_in_its_zone) {
    DateTrigger t("2025-10-26T02:30:00+01:00[Europe/Berlin]");
    BOOST_TEST(fires(t, 3) == std::vector<std::string>{"2025-10-26T02:30:00+01:00"});
    BOOST_TEST(t.next(t.run_time() - 1s) == t.run_time());
    BOOST_TEST(!t.next(t.run_time()));
}

BOOST_AUTO_TEST_CASE(interval_counts_elapsed_time_across_dst) {
    IntervalTrigger t({.hours = 1,
                       .start_time = test::at("2025-03-30T00:30:00Z"),
                       .timezone = TimeZone("Europe/Berlin")});
    // Hourly in elapsed time: no non-existent 02:30, no repeated instant.
    BOOST_TEST(fires(t, 3) ==
               (std::vector<std::string>{"2025-03-30T01:30:00+01:00", "2025-03-30T03:30:00+02:00",
                                         "2025-03-30T04:30:00+02:00"}));
}

BOOST_AUTO_TEST_CASE(interval_end_time_is_inclusive) {
    IntervalTrigger t({.seconds = 10, .start_time = test::t0, .end_time = test::t0 + 20s});
    BOOST_TEST(fires(t, 10).size() == 3u);
    IntervalTrigger u({.seconds = 10, .start_time = test::t0, .end_time = test::t0 + 19s});
    BOOST_TEST(fires(u, 10).size() == 2u);
}

BOOST_AUTO_TEST_CASE(interval_next_after_an_arbitrary_instant) {
    IntervalTrigger t({.minutes = 5, .start_time = test::t0});
    BOOST_TEST((t.next(test::t0 + 7min) == test::t0 + 10min));
    BOOST_TEST((t.next(test::t0 + 10min) == test::t0 + 15min));
    BOOST_TEST((t.next(test::t0 - 1h) == test::t0));
}

BOOST_AUTO_TEST_CASE(interval_parts_add_up_and_may_be_fractional) {
    IntervalTrigger t({.weeks = 1,
                       .days = 1,
                       .hours = 1,
                       .minutes = 1,
                       .seconds = 1.5,
                       .microseconds = 2,
                       .start_time = test::t0});
    BOOST_TEST(t.interval().count() == 694'861'500'002LL);
}

BOOST_AUTO_TEST_CASE(interval_rejects_bad_input_by_field) {
    try {
        IntervalTrigger t({.seconds = 0});
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("'interval'") != std::string::npos, e.what());
    }
    BOOST_CHECK_THROW(IntervalTrigger({.seconds = -5}), Error);
    try {
        IntervalTrigger t({.seconds = 1, .start_time = test::t0, .end_time = test::t0 - 1s});
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("'end_time'") != std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_CASE(interval_without_start_takes_now_when_scheduled) {
    IntervalTrigger t({.seconds = 30});
    BOOST_CHECK_THROW(t.next(std::nullopt), Error);
    auto bound = t.with_start(test::t0 + 5s);
    BOOST_REQUIRE(bound);
    BOOST_TEST((bound->next(std::nullopt) == test::t0 + 5s));
    BOOST_TEST(!bound->with_start(test::t0));
}

// APScheduler's cron keeps the microseconds of "now" and fires at ...:23.268613; here the
// default start is truncated to whole seconds.
BOOST_AUTO_TEST_CASE(a_cron_started_now_fires_on_whole_seconds) {
    CronTrigger every_second({.second = "*", .timezone = TimeZone("UTC")});
    const auto now = test::t0 + 23s + 268613us;
    auto bound = every_second.with_start(now);
    BOOST_REQUIRE(bound);
    auto first = bound->next(std::nullopt);
    BOOST_REQUIRE(first);
    BOOST_TEST((*first == test::t0 + 23s));
    BOOST_TEST((bound->next(first) == test::t0 + 24s));
    // An explicit start keeps what it was given.
    CronTrigger given({.second = "*", .start_time = now, .timezone = TimeZone("UTC")});
    BOOST_TEST((given.next(std::nullopt) == now));
}

BOOST_AUTO_TEST_CASE(json_round_trip_keeps_fire_times) {
    std::vector<TriggerPtr> triggers{
        std::make_shared<DateTrigger>("2031-03-30T01:15:00.000001+01:00[Europe/Berlin]"),
        std::make_shared<IntervalTrigger>(IntervalTriggerOptions{
            .seconds = 0.1, .start_time = test::t0 + 3us, .end_time = test::t0 + 1s}),
        std::make_shared<IntervalTrigger>(IntervalTriggerOptions{
            .days = 1, .start_time = test::t0, .timezone = TimeZone("+05:45")}),
    };
    for (const auto &t : triggers) {
        auto back = trigger_from_json(nlohmann::json::parse(t->to_json().dump()));
        BOOST_TEST(back->to_json() == t->to_json());
        BOOST_TEST(fires(*back, 20) == fires(*t, 20));
        BOOST_TEST(back->describe() == t->describe());
    }
}

BOOST_AUTO_TEST_SUITE_END()
