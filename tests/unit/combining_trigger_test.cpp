// AndTrigger and OrTrigger: instants compared, state carried by advance(), JSON round trip.
#include "test_support.hpp"

using namespace asched;
using namespace std::chrono_literals;
using test::fires;

namespace {

TriggerPtr every(std::chrono::seconds step, const char *start,
                 std::optional<const char *> end = std::nullopt) {
    const auto s = parse_zoned_time(start);
    IntervalTriggerOptions o{
        .seconds = double(step.count()), .start_time = s.instant, .timezone = s.zone};
    if (end)
        o.end_time = parse_time(*end);
    return std::make_shared<IntervalTrigger>(o);
}

TriggerPtr cron(CronTriggerOptions o) {
    return std::make_shared<CronTrigger>(std::move(o));
}

} // namespace

BOOST_AUTO_TEST_SUITE(combining_triggers)

BOOST_AUTO_TEST_CASE(or_merges_children_and_fires_a_shared_instant_once) {
    OrTrigger t({every(10s, "2025-01-01T00:00:00Z"), every(15s, "2025-01-01T00:00:00Z")});
    BOOST_TEST(fires(t, 5) ==
               (std::vector<std::string>{"2025-01-01T00:00:00+00:00", "2025-01-01T00:00:10+00:00",
                                         "2025-01-01T00:00:15+00:00", "2025-01-01T00:00:20+00:00",
                                         "2025-01-01T00:00:30+00:00"}));
}

BOOST_AUTO_TEST_CASE(or_reports_the_zone_of_the_child_that_fired) {
    // Berlin noon and Tokyo noon on the same day: each comes back in its own offset.
    OrTrigger t({std::make_shared<DateTrigger>("2025-06-01T12:00:00+02:00[Europe/Berlin]"),
                 std::make_shared<DateTrigger>("2025-06-01T12:00:00+09:00[Asia/Tokyo]")});
    BOOST_TEST(fires(t, 5) == (std::vector<std::string>{"2025-06-01T12:00:00+09:00",
                                                        "2025-06-01T12:00:00+02:00"}));
}

BOOST_AUTO_TEST_CASE(or_ends_when_every_child_has_ended) {
    OrTrigger t({every(10s, "2025-01-01T00:00:00Z", "2025-01-01T00:00:20Z"),
                 std::make_shared<DateTrigger>("2025-01-01T00:00:05Z")});
    BOOST_TEST(fires(t, 10).size() == 4u); // 0, 5, 10, 20
    BOOST_TEST(fires(OrTrigger({}), 3).empty());
}

BOOST_AUTO_TEST_CASE(and_fires_where_children_coincide_within_the_threshold) {
    // Weekdays at 09:00 and "every 2 days from a Monday": the common days, at 09:00.
    auto weekdays = cron(
        {.day_of_week = "mon-fri", .hour = "9", .start_time = parse_time("2025-01-06T00:00:00Z")});
    AndTrigger t({weekdays, every(48h, "2025-01-06T09:00:00Z")}, 0s);
    BOOST_TEST(fires(t, 4) == (std::vector<std::string>{
                                  "2025-01-06T09:00:00+00:00", "2025-01-08T09:00:00+00:00",
                                  "2025-01-10T09:00:00+00:00", "2025-01-14T09:00:00+00:00"}));
    // A threshold lets fire times 30 s apart count as one; the earlier one is returned.
    AndTrigger loose({weekdays, every(48h, "2025-01-06T09:00:30Z")}, 30s);
    BOOST_TEST(fires(loose, 1) == std::vector<std::string>{"2025-01-06T09:00:00+00:00"});
}

BOOST_AUTO_TEST_CASE(and_gives_up_after_max_iterations_with_a_clear_error) {
    AndTrigger t({cron({.hour = "1", .start_time = parse_time("2025-01-01T00:00:00Z")}),
                  cron({.hour = "2", .start_time = parse_time("2025-01-01T00:00:00Z")})},
                 1s, 100);
    nlohmann::json state;
    try {
        t.advance(std::nullopt, state);
        BOOST_FAIL("expected Error(max_iterations)");
    } catch (const Error &e) {
        BOOST_TEST((e.code() == errc::max_iterations));
        BOOST_TEST(std::string(e.what()).find("100 iterations") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(and_ends_as_soon_as_one_child_ends) {
    AndTrigger t({every(10s, "2025-01-01T00:00:00Z"),
                  every(10s, "2025-01-01T00:00:00Z", "2025-01-01T00:00:20Z")});
    BOOST_TEST(fires(t, 10).size() == 3u);
}

BOOST_AUTO_TEST_CASE(nested_triggers_round_trip_through_json) {
    auto inner = std::make_shared<OrTrigger>(
        std::vector<TriggerPtr>{every(3600s, "2025-03-29T00:00:00+01:00[Europe/Berlin]"),
                                cron({.minute = "*/20",
                                      .start_time = parse_time("2025-03-29T00:00:00Z"),
                                      .timezone = TimeZone("Europe/Berlin")})});
    AndTrigger t({inner, cron({.minute = "0",
                               .start_time = parse_time("2025-03-29T00:00:00Z"),
                               .timezone = TimeZone("Europe/Berlin")})},
                 0s, 500);
    auto back = trigger_from_json(t.to_json());
    BOOST_TEST(back->to_json() == t.to_json());
    BOOST_TEST(fires(*back, 60) == fires(t, 60));
    BOOST_TEST(fires(t, 60).size() == 60u);
}

BOOST_AUTO_TEST_CASE(next_replays_to_the_same_fire_times_as_advance) {
    OrTrigger t({every(7s, "2025-01-01T00:00:00Z"), every(11s, "2025-01-01T00:00:00Z")});
    std::optional<time_point> prev, via_next;
    nlohmann::json state;
    for (int i = 0; i < 30; ++i) {
        prev = t.advance(prev, state);
        via_next = t.next(via_next);
        BOOST_TEST((prev == via_next));
    }
}

BOOST_AUTO_TEST_CASE(bad_input_is_rejected_by_field) {
    auto one = every(10s, "2025-01-01T00:00:00Z");
    auto message = [](auto make) {
        try {
            make();
        } catch (const Error &e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    BOOST_TEST(message([&] { AndTrigger({}); }).find("field 'triggers'") != std::string::npos);
    BOOST_TEST(message([&] {
                   AndTrigger({one, nullptr});
               }).find("entry 1 is null") != std::string::npos);
    BOOST_TEST(message([&] { AndTrigger({one}, -1s); }).find("field 'threshold'") !=
               std::string::npos);
    BOOST_TEST(message([&] { AndTrigger({one}, 1s, 0); }).find("field 'max_iterations'") !=
               std::string::npos);
    const auto bad_child =
        nlohmann::json::parse(R"({"type":"or","triggers":[{"type":"cron","hour":"25"}]})");
    BOOST_TEST(message([&] { trigger_from_json(bad_child); }).find("entry 0") != std::string::npos);
    // A corrupt stored state is reported, not misread.
    OrTrigger t({one});
    nlohmann::json state = {{"pending", {1, 2}}, {"states", {nullptr}}};
    BOOST_TEST(message([&] { t.advance(std::nullopt, state); }).find("does not fit") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(with_start_fixes_the_childrens_start) {
    OrTrigger t({cron({.minute = "*/5"}), every(60s, "2025-01-01T00:00:00Z")});
    auto bound = t.with_start(parse_time("2025-01-01T00:02:00Z"));
    BOOST_REQUIRE(bound);
    BOOST_TEST(fires(*bound, 2) == (std::vector<std::string>{"2025-01-01T00:00:00+00:00",
                                                             "2025-01-01T00:01:00+00:00"}));
}

BOOST_AUTO_TEST_SUITE_END()
