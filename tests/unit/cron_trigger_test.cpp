// CronTrigger: grammar, defaults, errors that name the field, DST and JSON round trips.
#include "test_support.hpp"

#include <asched/triggers/cron_trigger.hpp>

using namespace asched;
using namespace std::chrono_literals;
using test::fires;

namespace {

std::string error_of(CronTriggerOptions o) {
    try {
        CronTrigger t(std::move(o));
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

} // namespace

BOOST_AUTO_TEST_SUITE(cron_trigger)

BOOST_AUTO_TEST_CASE(defaults_below_the_last_given_field_are_minimums) {
    CronTrigger daily({.hour = "5", .start_time = test::t0});
    BOOST_TEST(fires(daily, 2) == (std::vector<std::string>{"2025-01-01T05:00:00+00:00",
                                                            "2025-01-02T05:00:00+00:00"}));
    CronTrigger yearly({.start_time = test::t0 + 1s});
    BOOST_TEST(fires(yearly, 1) == std::vector<std::string>{"2026-01-01T00:00:00+00:00"});
}

BOOST_AUTO_TEST_CASE(names_ranges_steps_and_day_forms) {
    CronTrigger weekdays({.day_of_week = "mon-fri", .hour = "9", .start_time = test::t0});
    // 2025-01-01 is a Wednesday.
    BOOST_TEST(
        fires(weekdays, 4) ==
        (std::vector<std::string>{"2025-01-01T09:00:00+00:00", "2025-01-02T09:00:00+00:00",
                                  "2025-01-03T09:00:00+00:00", "2025-01-06T09:00:00+00:00"}));
    CronTrigger odd({.day_of_week = "1-5/2", .hour = "9", .start_time = test::t0}); // mon, wed, fri
    BOOST_TEST(fires(odd, 3) ==
               (std::vector<std::string>{"2025-01-01T09:00:00+00:00", "2025-01-03T09:00:00+00:00",
                                         "2025-01-06T09:00:00+00:00"}));
    CronTrigger last({.day = "last", .start_time = test::t0});
    BOOST_TEST(fires(last, 2) == (std::vector<std::string>{"2025-01-31T00:00:00+00:00",
                                                           "2025-02-28T00:00:00+00:00"}));
    CronTrigger second_friday({.day = "2nd fri", .start_time = test::t0});
    BOOST_TEST(fires(second_friday, 1) == std::vector<std::string>{"2025-01-10T00:00:00+00:00"});
    CronTrigger feb29({.month = "feb", .day = "29", .start_time = test::t0});
    BOOST_TEST(fires(feb29, 2) == (std::vector<std::string>{"2028-02-29T00:00:00+00:00",
                                                            "2032-02-29T00:00:00+00:00"}));
    CronTrigger never({.month = "2", .day = "30", .start_time = test::t0});
    BOOST_TEST(fires(never, 1).empty());
}

BOOST_AUTO_TEST_CASE(an_end_before_the_start_is_exhausted_as_in_the_reference) {
    // The trigger keeps the reference's behaviour (no fire time; the corpus checks it), and
    // add_schedule refuses it as a schedule that never fires.
    CronTrigger backwards({.hour = "3", .start_time = test::t0, .end_time = test::t0 - 1s});
    BOOST_TEST(fires(backwards, 1).empty());
}

// Issue 14, defect 9: a 10,000-character input made a 30 KB message, and a NUL cut it short.
BOOST_AUTO_TEST_CASE(error_messages_quote_at_most_200_characters_and_show_nul) {
    std::string message;
    try {
        CronTrigger::from_crontab(std::string(10000, 'x') + " * * * *");
    } catch (const Error &e) {
        message = e.what();
    }
    BOOST_TEST(message.size() < 800u, message.size());
    BOOST_TEST(message.find("(10008 bytes in all)") != std::string::npos, message);
    message.clear();
    try {
        CronTrigger::from_crontab(std::string("0\0x * * * *", 11));
    } catch (const Error &e) {
        message = e.what();
    }
    BOOST_TEST(message.find("0\\x00x") != std::string::npos, message);
}

BOOST_AUTO_TEST_CASE(lint_names_a_wildcard_minute_under_a_restricted_hour) {
    const auto every_minute_of_every_4th_hour = CronTrigger::from_crontab("* */4 * * *");
    const auto warnings = every_minute_of_every_4th_hour.lint();
    BOOST_REQUIRE(warnings.size() == 1u);
    BOOST_TEST(warnings[0].find("minute is '*' under hour '*/4'") != std::string::npos,
               warnings[0]);
    BOOST_TEST(CronTrigger::from_crontab("0 */4 * * *").lint().empty());
    BOOST_TEST(CronTrigger::from_crontab("* * * * *").lint().empty());
    BOOST_TEST(CronTrigger::from_crontab("*/5 9-17 * * mon-fri").lint().empty());
    CronTrigger seconds({.minute = "30", .second = "*"});
    BOOST_TEST(seconds.lint().size() == 1u);
}

BOOST_AUTO_TEST_CASE(dst_gaps_are_skipped_and_repeated_hours_fire_twice) {
    const TimeZone berlin("Europe/Berlin");
    CronTrigger at_0230({.hour = "2",
                         .minute = "30",
                         .start_time = test::at("2025-03-29T00:00:00Z"),
                         .timezone = berlin});
    BOOST_TEST(fires(at_0230, 2) == (std::vector<std::string>{"2025-03-29T02:30:00+01:00",
                                                              "2025-03-31T02:30:00+02:00"}));
    CronTrigger half_hourly(
        {.minute = "*/30", .start_time = test::at("2025-10-25T23:30:00Z"), .timezone = berlin});
    BOOST_TEST(
        fires(half_hourly, 6) ==
        (std::vector<std::string>{"2025-10-26T01:30:00+02:00", "2025-10-26T02:00:00+02:00",
                                  "2025-10-26T02:30:00+02:00", "2025-10-26T02:00:00+01:00",
                                  "2025-10-26T02:30:00+01:00", "2025-10-26T03:00:00+01:00"}));
}

// R19: exact instants across both 2026 transitions of three zones, one of them a 30-minute
// shift: a local time that does not exist is skipped, one that occurs twice fires twice.
BOOST_AUTO_TEST_CASE(r19_dst_vectors_new_york_berlin_lord_howe) {
    using V = std::vector<std::string>;
    auto cron = [](const char *expr, const char *zone, const char *start, std::size_t n) {
        auto t = CronTrigger::from_crontab(expr, TimeZone(zone), test::at(start));
        return fires(t, n);
    };
    const char *ny = "America/New_York", *berlin = "Europe/Berlin",
               *lord_howe = "Australia/Lord_Howe";
    // New York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    BOOST_TEST(cron("30 2 * * *", ny, "2026-03-07T00:00:00Z", 2) ==
               (V{"2026-03-07T02:30:00-05:00", "2026-03-09T02:30:00-04:00"}));
    BOOST_TEST(
        cron("30 2 * * *", ny, "2026-10-31T00:00:00Z", 3) ==
        (V{"2026-10-31T02:30:00-04:00", "2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"}));
    BOOST_TEST(
        cron("0 1-3 * * *", ny, "2026-03-08T00:00:00Z", 3) ==
        (V{"2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T01:00:00-04:00"}));
    BOOST_TEST(cron("0 1-3 * * *", ny, "2026-11-01T00:00:00Z", 4) ==
               (V{"2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00",
                  "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"}));
    BOOST_TEST(
        cron("0 * * * *", ny, "2026-11-01T04:30:00Z", 3) ==
        (V{"2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"}));
    BOOST_TEST(
        cron("*/30 * * * *", ny, "2026-03-08T06:10:00Z", 3) ==
        (V{"2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"}));
    // Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    BOOST_TEST(cron("30 2 * * *", berlin, "2026-03-28T00:00:00Z", 2) ==
               (V{"2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00"}));
    BOOST_TEST(cron("30 2 * * *", berlin, "2026-10-24T00:00:00Z", 4) ==
               (V{"2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00",
                  "2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00"}));
    BOOST_TEST(
        cron("0 1-3 * * *", berlin, "2026-03-28T23:30:00Z", 3) ==
        (V{"2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T01:00:00+02:00"}));
    BOOST_TEST(cron("0 1-3 * * *", berlin, "2026-10-24T22:30:00Z", 4) ==
               (V{"2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
                  "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"}));
    // Lord Howe (30 minutes): 2026-04-05 02:00 +11:00 -> 01:30 +10:30 (01:30-02:00 twice);
    // 2026-10-04 02:00 +10:30 -> 02:30 +11:00 (02:00-02:30 never).
    BOOST_TEST(
        cron("30 2 * * *", lord_howe, "2026-04-03T12:00:00Z", 3) ==
        (V{"2026-04-04T02:30:00+11:00", "2026-04-05T02:30:00+10:30", "2026-04-06T02:30:00+10:30"}));
    BOOST_TEST(
        cron("30 2 * * *", lord_howe, "2026-10-02T12:00:00Z", 3) ==
        (V{"2026-10-03T02:30:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-05T02:30:00+11:00"}));
    BOOST_TEST(
        cron("0 1-3 * * *", lord_howe, "2026-04-04T12:00:00Z", 3) ==
        (V{"2026-04-05T01:00:00+11:00", "2026-04-05T02:00:00+10:30", "2026-04-05T03:00:00+10:30"}));
    BOOST_TEST(
        cron("0 1-3 * * *", lord_howe, "2026-10-03T12:00:00Z", 3) ==
        (V{"2026-10-04T01:00:00+10:30", "2026-10-04T03:00:00+11:00", "2026-10-05T01:00:00+11:00"}));
    BOOST_TEST(cron("0 * * * *", lord_howe, "2026-04-04T12:30:00Z", 4) ==
               (V{"2026-04-05T00:00:00+11:00", "2026-04-05T01:00:00+11:00",
                  "2026-04-05T02:00:00+10:30", "2026-04-05T03:00:00+10:30"}));
    BOOST_TEST(cron("*/30 * * * *", lord_howe, "2026-04-04T13:45:00Z", 4) ==
               (V{"2026-04-05T01:00:00+11:00", "2026-04-05T01:30:00+11:00",
                  "2026-04-05T01:30:00+10:30", "2026-04-05T02:00:00+10:30"}));
    BOOST_TEST(cron("*/30 * * * *", lord_howe, "2026-10-03T14:15:00Z", 4) ==
               (V{"2026-10-04T01:00:00+10:30", "2026-10-04T01:30:00+10:30",
                  "2026-10-04T02:30:00+11:00", "2026-10-04T03:00:00+11:00"}));
}

BOOST_AUTO_TEST_CASE(after_2037_the_zone_files_footer_rule_applies) {
    CronTrigger noon({.hour = "12",
                      .start_time = test::at("2040-07-01T00:00:00Z"),
                      .timezone = TimeZone("Europe/Berlin")});
    BOOST_TEST(fires(noon, 1) == std::vector<std::string>{"2040-07-01T12:00:00+02:00"});
    BOOST_TEST(TimeZone("America/New_York").format(test::at("2050-01-01T12:00:00Z")) ==
               "2050-01-01T07:00:00-05:00");
    BOOST_TEST(TimeZone("America/New_York").format(test::at("2050-07-01T12:00:00Z")) ==
               "2050-07-01T08:00:00-04:00");
}

BOOST_AUTO_TEST_CASE(errors_name_the_field_and_the_expression) {
    BOOST_TEST(error_of({.hour = "25"}) == "cron field 'hour': 25 is out of range 0-23 in \"25\"");
    BOOST_TEST(error_of({.minute = "*/0"}) ==
               "cron field 'minute': step must be positive, got 0 in \"*/0\"");
    BOOST_TEST(error_of({.month = "fab"}) ==
               "cron field 'month': invalid month name 'fab' in \"fab\"");
    BOOST_TEST(error_of({.day = "lastday"}).find("cron field 'day'") == 0u);
    BOOST_TEST(error_of({.day_of_week = "mon#2"}).find("cron field 'day_of_week'") == 0u);
    BOOST_TEST(error_of({.hour = "5-3"}).find("range start 5 is after its end 3") !=
               std::string::npos);
    BOOST_TEST(error_of({.second = "*/60"}).find("step 60 is larger") != std::string::npos);
    for (const char *junk : {"L", "?", "@daily", "1,,2", "1-", "*/", "5L", "1W", "1#2"})
        BOOST_TEST(!error_of({.hour = junk}).empty(), junk);
    try {
        CronTrigger::from_crontab("*/5 25 * * *");
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()) == "crontab \"*/5 25 * * *\" at position 5: cron field "
                                            "'hour': 25 is out of range 0-23 in \"25\"");
    }
    BOOST_CHECK_THROW(CronTrigger::from_crontab("* * * *"), Error);
}

BOOST_AUTO_TEST_CASE(crontab_lines_and_json_round_trips) {
    auto t = CronTrigger::from_crontab("*/15 9-17 * * 1-5", TimeZone("America/New_York"), test::t0);
    auto back = trigger_from_json(nlohmann::json::parse(t.to_json().dump()));
    BOOST_TEST(back->to_json() == t.to_json());
    BOOST_TEST(fires(*back, 40) == fires(t, 40));
    BOOST_TEST(fires(t, 1) == std::vector<std::string>{"2025-01-01T09:00:00-05:00"});
    BOOST_TEST(t.describe() == "cron[month='*', day='*', day_of_week='1-5', hour='9-17', "
                               "minute='*/15', timezone='America/New_York']");
}

BOOST_AUTO_TEST_SUITE_END()
