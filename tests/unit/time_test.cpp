// Time zones, ISO 8601 text and duration conversions.
#include "test_support.hpp"

using namespace asched;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(time_tests)

BOOST_AUTO_TEST_CASE(formats_utc_with_fraction_only_when_present) {
    BOOST_TEST(format_time(test::t0) == "2025-01-01T00:00:00Z");
    BOOST_TEST(format_time(test::t0 + 1500ms) == "2025-01-01T00:00:01.500000Z");
}

BOOST_AUTO_TEST_CASE(iana_zone_offsets_follow_dst) {
    TimeZone berlin("Europe/Berlin");
    BOOST_TEST(!berlin.is_fixed());
    BOOST_TEST(berlin.format(test::at("2025-03-30T00:59:59Z")) == "2025-03-30T01:59:59+01:00");
    BOOST_TEST(berlin.format(test::at("2025-03-30T01:00:00Z")) == "2025-03-30T03:00:00+02:00");
    BOOST_TEST(berlin.format(test::at("2025-10-26T00:30:00Z")) == "2025-10-26T02:30:00+02:00");
    BOOST_TEST(berlin.format(test::at("2025-10-26T01:30:00Z")) == "2025-10-26T02:30:00+01:00");
}

BOOST_AUTO_TEST_CASE(fixed_offsets) {
    TimeZone k("+05:45");
    BOOST_TEST(k.is_fixed());
    BOOST_TEST(k.name() == "+05:45");
    BOOST_TEST(k.format(test::t0) == "2025-01-01T05:45:00+05:45");
    BOOST_TEST(TimeZone::fixed(-3h).name() == "-03:00");
    BOOST_TEST(TimeZone("UTC") == TimeZone::utc());
}

BOOST_AUTO_TEST_CASE(unknown_zone_is_a_clear_error) {
    try {
        TimeZone z("Mars/Olympus");
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::invalid_argument);
        BOOST_TEST(std::string(e.what()).find("Mars/Olympus") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(parses_zoned_fixed_and_utc_text) {
    auto z = parse_zoned_time("2025-10-26T02:30:00+01:00[Europe/Berlin]");
    BOOST_TEST(format_time(z.instant) == "2025-10-26T01:30:00Z");
    BOOST_TEST(z.zone.name() == "Europe/Berlin");
    auto f = parse_zoned_time("2020-05-16T14:17:30.254212+02:00");
    BOOST_TEST(format_time(f.instant) == "2020-05-16T12:17:30.254212Z");
    BOOST_TEST(f.zone.name() == "+02:00");
    BOOST_TEST(parse_zoned_time("2025-01-01T00:00:00Z").zone.name() == "UTC");
}

BOOST_AUTO_TEST_CASE(bad_time_text_names_the_position) {
    try {
        parse_time("2025-01-01 00:00:00Z");
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("position 11") != std::string::npos, e.what());
    }
    BOOST_CHECK_THROW(parse_time("2025-02-30T00:00:00Z"), Error);
    BOOST_CHECK_THROW(parse_time("2025-01-01T00:00:00"), Error); // no offset
    BOOST_CHECK_THROW(parse_time("2025-10-26T02:30:00+03:00[Europe/Berlin]"),
                      Error); // wrong offset
}

BOOST_AUTO_TEST_CASE(seconds_round_half_to_even) {
    BOOST_TEST(from_seconds(1.5).count() == 1'500'000);
    BOOST_TEST(from_seconds(0.0000005).count() == 0); // 0.5 us -> 0
    BOOST_TEST(from_seconds(0.0000015).count() == 2); // 1.5 us -> 2
    BOOST_TEST(to_seconds(duration(2'500'000)) == 2.5);
    BOOST_CHECK_THROW(from_seconds(std::numeric_limits<double>::infinity()), Error);
    BOOST_TEST(format_duration(90min) == "1h30m");
    BOOST_TEST(format_duration(250ms) == "250ms");
}

BOOST_AUTO_TEST_SUITE_END()
