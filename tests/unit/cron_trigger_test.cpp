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

// The dates (YYYY-MM-DD) of a crontab line's first n fires from test::t0, in UTC.
std::vector<std::string> crontab_days(std::string_view line, std::size_t n) {
    std::vector<std::string> out;
    for (const auto &f : fires(CronTrigger::from_crontab(line, TimeZone(), test::t0), n))
        out.push_back(f.substr(0, 10));
    return out;
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
    BOOST_TEST(error_of({.day_of_week = "mon#6"}) ==
               "cron field 'day_of_week': after '#' comes the occurrence in the month, 1-5, got "
               "'6' in \"mon#6\"");
    BOOST_TEST(error_of({.day_of_week = "mon#"}).find("cron field 'day_of_week'") == 0u);
    BOOST_TEST(error_of({.day_of_week = "mon-fri#2"}).find("a single weekday") !=
               std::string::npos);
    BOOST_TEST(error_of({.day_of_week = "L"}).find("ambiguous") != std::string::npos);
    BOOST_TEST(error_of({.day_of_week = "sul"}).find("cron field 'day_of_week'") == 0u);
    BOOST_TEST(error_of({.day = "L-31"}) ==
               "cron field 'day': the offset in L-31 must be 1-30 in \"l-31\"");
    BOOST_TEST(error_of({.day = "L-x"}).find("L-n takes a whole number") != std::string::npos);
    BOOST_TEST(error_of({.day = "32W"}).find("the day in 32W must be 1-31") != std::string::npos);
    BOOST_TEST(error_of({.day = "1-5W"}).find("W follows a single day") != std::string::npos);
    BOOST_TEST(error_of({.month = "?"}).find("cron field 'month'") == 0u);
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

// The forms users paste from croner, Quartz and Vixie cron; 2025-01-01 is a Wednesday.
BOOST_AUTO_TEST_CASE(crontab_last_day_forms) {
    using V = std::vector<std::string>;
    BOOST_TEST(crontab_days("0 0 L * *", 3) == (V{"2025-01-31", "2025-02-28", "2025-03-31"}));
    BOOST_TEST(crontab_days("0 0 l * *", 1) == V{"2025-01-31"});
    // Quartz's reading: L-3 is three days before the last day.
    BOOST_TEST(crontab_days("0 0 L-3 * *", 3) == (V{"2025-01-28", "2025-02-25", "2025-03-28"}));
    BOOST_TEST(crontab_days("0 0 1,L * *", 3) == (V{"2025-01-01", "2025-01-31", "2025-02-01"}));
    BOOST_TEST(crontab_days("0 0 L-30 * *", 2) ==
               (V{"2025-01-01", "2025-03-01"})); // none in February
}

BOOST_AUTO_TEST_CASE(crontab_nearest_weekday_forms) {
    using V = std::vector<std::string>;
    // 15 Feb and 15 Mar are Saturdays (Friday instead), 15 Jun a Sunday (Monday instead).
    BOOST_TEST(crontab_days("0 0 15W * *", 6) == (V{"2025-01-15", "2025-02-14", "2025-03-14",
                                                    "2025-04-15", "2025-05-15", "2025-06-16"}));
    // From a Saturday the 1st to Monday the 3rd: W never leaves the month.
    BOOST_TEST(crontab_days("0 0 1W * *", 4) ==
               (V{"2025-01-01", "2025-02-03", "2025-03-03", "2025-04-01"}));
    // From a Sunday that is the month's last day back to Friday; skipped in 30-day months.
    BOOST_TEST(crontab_days("0 0 31W * *", 5) ==
               (V{"2025-01-31", "2025-03-31", "2025-05-30", "2025-07-31", "2025-08-29"}));
    BOOST_TEST(crontab_days("0 0 LW * *", 5) ==
               (V{"2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30", "2025-05-30"}));
}

BOOST_AUTO_TEST_CASE(crontab_nth_and_last_weekday_forms) {
    using V = std::vector<std::string>;
    BOOST_TEST(crontab_days("0 0 * * 5#2", 3) == (V{"2025-01-10", "2025-02-14", "2025-03-14"}));
    BOOST_TEST(crontab_days("0 0 * * FRI#2", 3) == crontab_days("0 0 * * 5#2", 3));
    BOOST_TEST(crontab_days("0 0 * * 5L", 3) == (V{"2025-01-31", "2025-02-28", "2025-03-28"}));
    BOOST_TEST(crontab_days("0 0 * * FRIL", 3) == crontab_days("0 0 * * 5L", 3));
    BOOST_TEST(crontab_days("0 0 * * 1,5#2", 4) ==
               (V{"2025-01-06", "2025-01-10", "2025-01-13", "2025-01-20"}));
    BOOST_TEST(crontab_days("0 0 ? * MON", 2) == (V{"2025-01-06", "2025-01-13"}));
    // The same forms in APScheduler's field style.
    CronTrigger second_friday({.day_of_week = "fri#2", .start_time = test::t0});
    BOOST_TEST(fires(second_friday, 1) == V{"2025-01-10T00:00:00+00:00"});
}

BOOST_AUTO_TEST_CASE(crontab_macros) {
    using V = std::vector<std::string>;
    const auto at = [](std::string_view line, std::size_t n) {
        return fires(CronTrigger::from_crontab(line, TimeZone(), test::t0 + 1s), n);
    };
    BOOST_TEST(at("@yearly", 2) == (V{"2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"}));
    BOOST_TEST(at("@annually", 2) == at("@yearly", 2));
    BOOST_TEST(at("@monthly", 2) == (V{"2025-02-01T00:00:00+00:00", "2025-03-01T00:00:00+00:00"}));
    BOOST_TEST(at("@weekly", 2) == (V{"2025-01-05T00:00:00+00:00", "2025-01-12T00:00:00+00:00"}));
    BOOST_TEST(at(" @DAILY ", 2) == (V{"2025-01-02T00:00:00+00:00", "2025-01-03T00:00:00+00:00"}));
    BOOST_TEST(at("@midnight", 2) == at("@daily", 2));
    BOOST_TEST(at("@hourly", 2) == (V{"2025-01-01T01:00:00+00:00", "2025-01-01T02:00:00+00:00"}));
    for (const char *bad : {"@reboot", "@fortnightly", "@"}) {
        try {
            CronTrigger::from_crontab(bad);
            BOOST_ERROR("no error for " << bad);
        } catch (const Error &e) {
            BOOST_TEST(std::string(e.what()).find(std::string("crontab \"") + bad + "\": ") == 0u);
        }
    }
}

BOOST_AUTO_TEST_CASE(crontab_seconds_and_year_fields_are_chosen_not_guessed) {
    using V = std::vector<std::string>;
    const auto at = [](std::string_view line, CrontabFields f, std::size_t n) {
        return fires(CronTrigger::from_crontab(line, TimeZone(),
                                               CrontabOptions{.fields = f, .start_time = test::t0}),
                     n);
    };
    BOOST_TEST(at("30 */5 * * * *", CrontabFields::with_seconds, 2) ==
               (V{"2025-01-01T00:00:30+00:00", "2025-01-01T00:05:30+00:00"}));
    BOOST_TEST(at("0 12 1 1 * 2027", CrontabFields::with_year, 2) ==
               V{"2027-01-01T12:00:00+00:00"});
    BOOST_TEST(at("15 0 12 1 1 * 2027-2028", CrontabFields::with_seconds_and_year, 3) ==
               (V{"2027-01-01T12:00:15+00:00", "2028-01-01T12:00:15+00:00"}));
    // One 6-field line, two readings: 12:00:00 every 1 January, or 00:00 on 12 January when it
    // is a Monday (2026).
    BOOST_TEST(at("0 0 12 1 1 *", CrontabFields::with_seconds, 1) ==
               V{"2025-01-01T12:00:00+00:00"});
    BOOST_TEST(at("0 0 12 1 1 *", CrontabFields::with_year, 1) == V{"2026-01-12T00:00:00+00:00"});
    // croner's reading by count.
    BOOST_TEST(at("*/5 * * * *", CrontabFields::croner, 1) == V{"2025-01-01T00:00:00+00:00"});
    BOOST_TEST(at("30 */5 * * * *", CrontabFields::croner, 1) == V{"2025-01-01T00:00:30+00:00"});
    BOOST_TEST(at("15 0 12 1 1 * 2027", CrontabFields::croner, 1) ==
               V{"2027-01-01T12:00:15+00:00"});
    const auto error = [](std::string_view line, CrontabFields f) {
        try {
            CronTrigger::from_crontab(line, TimeZone(), f);
        } catch (const Error &e) {
            return std::string(e.what());
        }
        return std::string();
    };
    BOOST_TEST(error("*/5 * * * *", CrontabFields::with_seconds) ==
               "crontab \"*/5 * * * *\": expected 6 fields (second minute hour day month "
               "day_of_week), got 5");
    BOOST_TEST(error("0 0 0 * * * 2027", CrontabFields::standard) ==
               "crontab \"0 0 0 * * * 2027\": expected 5 fields (minute hour day month "
               "day_of_week), got 7");
    BOOST_TEST(error("* * * *", CrontabFields::croner).find("expected 5, 6 or 7 fields") !=
               std::string::npos);
    BOOST_TEST(error("0 0 1 1 * 1969", CrontabFields::with_year) ==
               "crontab \"0 0 1 1 * 1969\" at position 11: cron field 'year': 1969 is out of "
               "range 1970-9999 in \"1969\"");
    BOOST_TEST(error("61 * * * * *", CrontabFields::with_seconds) ==
               "crontab \"61 * * * * *\" at position 1: cron field 'second': 61 is out of "
               "range 0-59 in \"61\"");
    BOOST_TEST(error("0 0 L-31 * *", CrontabFields::standard).find("at position 5") !=
               std::string::npos);
    BOOST_TEST(error("0 0 * * 5#6", CrontabFields::standard).find("at position 9") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(vixie_day_or_weekday_is_an_explicit_option) {
    using V = std::vector<std::string>;
    const auto days = [](std::string_view line, CronDayMatch m, std::size_t n) {
        std::vector<std::string> out;
        for (const auto &f :
             fires(CronTrigger::from_crontab(
                       line, TimeZone(), CrontabOptions{.day_match = m, .start_time = test::t0}),
                   n))
            out.push_back(f.substr(0, 10));
        return out;
    };
    // asched (and APScheduler): both must match, a Friday the 13th.
    BOOST_TEST(days("0 0 13 * 5", CronDayMatch::both, 1) == V{"2025-06-13"});
    // Vixie: the 13th, or any Friday.
    BOOST_TEST(days("0 0 13 * 5", CronDayMatch::either, 4) ==
               (V{"2025-01-03", "2025-01-10", "2025-01-13", "2025-01-17"}));
    // Vixie's rule for a field that starts with `*`: both again (days 1, 11, 21, 31 on Fridays).
    BOOST_TEST(days("0 0 */10 * 5", CronDayMatch::either, 1) == V{"2025-01-31"});
    BOOST_TEST(days("0 0 13 * *", CronDayMatch::either, 1) == V{"2025-01-13"});
    // Either with the nth-weekday form: the 1st, or the last Friday.
    BOOST_TEST(days("0 0 1 * 5L", CronDayMatch::either, 3) ==
               (V{"2025-01-01", "2025-01-31", "2025-02-01"}));
    // The option lives in the trigger's own JSON (absent means both) and in describe().
    const auto vixie = CronTrigger::from_crontab("0 0 13 * 5", TimeZone(),
                                                 CrontabOptions{.day_match = CronDayMatch::either});
    BOOST_TEST(vixie.to_json().at("day_match") == "either");
    BOOST_TEST(!CronTrigger::from_crontab("0 0 13 * 5").to_json().contains("day_match"));
    const auto back = trigger_from_json(vixie.with_start(test::t0)->to_json());
    BOOST_TEST(fires(*back, 4) == fires(*vixie.with_start(test::t0), 4));
    BOOST_TEST(vixie.describe().find("day_match='either'") != std::string::npos);
    auto j = vixie.to_json();
    j["day_match"] = "sometimes";
    BOOST_CHECK_THROW(trigger_from_json(j), Error);
}

BOOST_AUTO_TEST_SUITE_END()
