// CalendarIntervalTrigger: month ends, DST gaps and overlaps, bounds, errors, JSON.
#include "test_support.hpp"

#include <asched/triggers/calendar_interval_trigger.hpp>

using namespace asched;
using namespace std::chrono;
using test::fires;

BOOST_AUTO_TEST_SUITE(calendar_interval_trigger)

BOOST_AUTO_TEST_CASE(month_ends_are_skipped_not_clamped) {
    CalendarIntervalTrigger monthly({.months = 1, .hour = 9, .start_date = 2025y / January / 31});
    BOOST_TEST(fires(monthly, 3) ==
               (std::vector<std::string>{"2025-01-31T09:00:00+00:00", "2025-03-31T09:00:00+00:00",
                                         "2025-05-31T09:00:00+00:00"}));
    CalendarIntervalTrigger leap({.years = 1, .start_date = 2024y / February / 29});
    BOOST_TEST(fires(leap, 2) == (std::vector<std::string>{"2024-02-29T00:00:00+00:00",
                                                           "2028-02-29T00:00:00+00:00"}));
}

BOOST_AUTO_TEST_CASE(gaps_skip_the_date_and_overlaps_use_the_first_occurrence) {
    const TimeZone berlin("Europe/Berlin");
    CalendarIntervalTrigger at_0230(
        {.days = 1, .hour = 2, .minute = 30, .start_date = 2025y / March / 29, .timezone = berlin});
    BOOST_TEST(fires(at_0230, 2) == (std::vector<std::string>{"2025-03-29T02:30:00+01:00",
                                                              "2025-03-31T02:30:00+02:00"}));
    CalendarIntervalTrigger autumn({.days = 1,
                                    .hour = 2,
                                    .minute = 30,
                                    .start_date = 2025y / October / 26,
                                    .timezone = berlin});
    BOOST_TEST(fires(autumn, 2) == (std::vector<std::string>{"2025-10-26T02:30:00+02:00",
                                                             "2025-10-27T02:30:00+01:00"}));
}

BOOST_AUTO_TEST_CASE(end_date_is_inclusive_and_errors_name_the_field) {
    CalendarIntervalTrigger weekly(
        {.weeks = 1, .start_date = 2025y / January / 1, .end_date = 2025y / January / 15});
    BOOST_TEST(fires(weekly, 10).size() == 3u);
    auto error_of = [](CalendarIntervalTriggerOptions o) -> std::string {
        try {
            CalendarIntervalTrigger t(o);
        } catch (const Error &e) {
            return e.what();
        }
        return "";
    };
    BOOST_TEST(error_of({}).find("field 'interval'") != std::string::npos);
    BOOST_TEST(error_of({.days = -1}).find("field 'days'") != std::string::npos);
    BOOST_TEST(error_of({.days = 1, .hour = 24}).find("field 'hour'") != std::string::npos);
    BOOST_TEST(error_of({.days = 1, .start_date = 2025y / March / 4, .end_date = 2025y / March / 3})
                   .find("field 'end_date'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(json_round_trip_and_default_start) {
    CalendarIntervalTrigger t({.months = 2,
                               .days = 3,
                               .hour = 7,
                               .start_date = 2025y / January / 31,
                               .timezone = TimeZone("Asia/Kathmandu")});
    auto back = trigger_from_json(nlohmann::json::parse(t.to_json().dump()));
    BOOST_TEST(back->to_json() == t.to_json());
    BOOST_TEST(fires(*back, 12) == fires(t, 12));
    CalendarIntervalTrigger unbound({.days = 1});
    auto bound = unbound.with_start(test::at("2025-06-01T20:00:00Z"));
    BOOST_REQUIRE(bound);
    BOOST_TEST(fires(*bound, 1) == std::vector<std::string>{"2025-06-01T00:00:00+00:00"});
}

BOOST_AUTO_TEST_SUITE_END()
