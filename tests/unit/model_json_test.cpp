// The versioned JSON form of every model value and event round-trips exactly.
#include "core/json_limits.hpp"
#include "test_support.hpp"

using namespace asched;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

template <class T> T round_trip(const T &v) {
    json j = v;
    // Through text, as a store would keep it.
    return json::parse(j.dump()).get<T>();
}

Schedule sample_schedule() {
    Schedule s;
    s.id = "nightly";
    s.task_id = "report";
    s.trigger = std::make_shared<IntervalTrigger>(
        IntervalTriggerOptions{.hours = 1.5,
                               .start_time = test::t0,
                               .end_time = test::t0 + 48h,
                               .timezone = TimeZone("Europe/Berlin")});
    s.args = json::array({1, "two", json{{"three", 3}}});
    s.paused = true;
    s.coalesce = CoalescePolicy::all;
    s.max_catchup = 10;
    s.misfire_grace_time = 30s;
    s.max_jitter = 1500ms;
    s.job_result_expiration_time = 10min;
    s.metadata = {{"team", "ops"}};
    s.next_fire_time = test::t0 + 90min;
    s.last_fire_time = test::t0;
    s.acquired_by = "node-1";
    s.acquired_until = test::t0 + 30s;
    s.lease_token = 42;
    return s;
}

} // namespace

BOOST_AUTO_TEST_SUITE(model_json)

BOOST_AUTO_TEST_CASE(task_and_defaults) {
    Task t{"add", "threadpool", std::nullopt, 5s, {{"k", 1}}, 3};
    BOOST_TEST((round_trip(t) == t));
    Task capped{"x", "async", 4, std::nullopt, json::object(), 0};
    BOOST_TEST((round_trip(capped) == capped));
    TaskDefaults d{2, 1min, {{"a", true}}};
    BOOST_TEST((round_trip(d) == d));
}

BOOST_AUTO_TEST_CASE(schedule_with_each_trigger) {
    Schedule s = sample_schedule();
    BOOST_TEST((round_trip(s) == s));
    s.trigger = std::make_shared<DateTrigger>("2025-06-01T12:00:00.250000+02:00[Europe/Berlin]");
    s.acquired_by.reset();
    s.acquired_until.reset();
    s.max_jitter.reset();
    s.max_catchup.reset();
    BOOST_TEST((round_trip(s) == s));
}

BOOST_AUTO_TEST_CASE(job_and_result) {
    Job j;
    j.id = make_uuid();
    j.task_id = "add";
    j.args = {2, 3};
    j.schedule_id = "s";
    j.scheduled_fire_time = test::t0;
    j.jitter = 250ms;
    j.start_deadline = test::t0 + 10s;
    j.result_expiration_time = 1h;
    j.metadata = {{"m", 1}};
    j.created_at = test::t0 + 1us;
    j.acquired_by = "w";
    j.acquired_until = test::t0 + 30s;
    j.lease_token = 7;
    BOOST_TEST((round_trip(j) == j));

    JobResult r{j.id,     "add",         "s",           JobOutcome::error,
                test::t0, test::t0 + 2s, test::t0 + 1h, "std::runtime_error",
                "boom",   json()};
    BOOST_TEST((round_trip(r) == r));
    r.outcome = JobOutcome::success;
    r.exception_type.reset();
    r.exception_message.reset();
    r.return_value = {{"sum", 5}};
    BOOST_TEST((round_trip(r) == r));
}

BOOST_AUTO_TEST_CASE(every_event_type) {
    std::vector<Event> events{
        SchedulerStarted{test::t0},
        SchedulerStopped{test::t0, "crash"},
        TaskAdded{test::t0, "t"},
        TaskUpdated{test::t0, "t"},
        TaskRemoved{test::t0, "t"},
        ScheduleAdded{test::t0, "s", "t", test::t0 + 1s},
        ScheduleUpdated{test::t0, "s", "t", std::nullopt},
        ScheduleRemoved{test::t0, "s", "t", true},
        JobAdded{test::t0, "j", "t", "s"},
        JobRemoved{test::t0, "j", "t"},
        JobAcquired{test::t0, "j", "node", "t", std::nullopt, test::t0},
        JobReleased{test::t0, "j", "node", "t", "s", test::t0, test::t0 + 1s, JobOutcome::abandoned,
                    std::nullopt, "lease expired"},
        RecordQuarantined{test::t0, "schedule", "s", "unknown trigger type \"lunar\""},
        StoreHealthChanged{test::t0, "node-1", true, "connection refused"},
        FiresDropped{test::t0 + 3h, "s", "t", 179, test::t0, test::t0 + 178min, "coalesced"},
        JobCancelRequested{test::t0, "j", "t", "node-2"},
        JobReleased{test::t0, "j", "node", "t", std::nullopt, std::nullopt, test::t0,
                    JobOutcome::timed_out, "asched::JobTimedOut", "timed out", 2, test::t0 + 5s},
    };
    BOOST_TEST(events.size() == std::variant_size_v<Event> + 1); // JobReleased twice
    for (const auto &e : events) {
        json j = e;
        BOOST_TEST(j["type"] == event_name(e));
        Event back = json::parse(j.dump()).get<Event>();
        BOOST_TEST(back.index() == e.index());
        BOOST_TEST(json(back) == j);
    }
}

BOOST_AUTO_TEST_CASE(newer_versions_and_bad_fields_are_refused_by_name) {
    json j = sample_schedule();
    j["version"] = json_format_version + 1;
    try {
        (void)j.get<Schedule>();
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::deserialization);
        BOOST_TEST(std::string(e.what()).find("version") != std::string::npos);
    }
    json k = sample_schedule();
    k["coalesce"] = "sometimes";
    try {
        (void)k.get<Schedule>();
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("'coalesce'") != std::string::npos, e.what());
        BOOST_TEST(std::string(e.what()).find("sometimes") != std::string::npos, e.what());
    }
    json t = sample_schedule();
    t["trigger"]["type"] = "lunar";
    BOOST_CHECK_THROW((void)t.get<Schedule>(), Error);
    json missing = sample_schedule();
    missing.erase("task_id");
    try {
        (void)missing.get<Schedule>();
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()) == "schedule: field 'task_id': missing");
    }
}

BOOST_AUTO_TEST_CASE(enums_by_member_name) {
    for (auto v : {SchedulerRole::scheduler, SchedulerRole::worker, SchedulerRole::both})
        BOOST_TEST((enum_from_string<SchedulerRole>(to_string(v)) == v));
    for (auto v : {RunState::starting, RunState::started, RunState::stopping, RunState::stopped})
        BOOST_TEST((enum_from_string<RunState>(to_string(v)) == v));
    for (auto v : {JobOutcome::success, JobOutcome::error, JobOutcome::missed_start_deadline,
                   JobOutcome::cancelled, JobOutcome::abandoned})
        BOOST_TEST((enum_from_string<JobOutcome>(to_string(v)) == v));
    for (auto v : {ConflictPolicy::replace, ConflictPolicy::do_nothing, ConflictPolicy::exception})
        BOOST_TEST((enum_from_string<ConflictPolicy>(to_string(v)) == v));
    BOOST_TEST(to_string(CoalescePolicy::all) == "all");
    try {
        enum_from_string<SchedulerRole>("boss");
        BOOST_FAIL("no error");
    } catch (const Error &e) {
        BOOST_TEST(
            std::string(e.what()) ==
            "SchedulerRole: unknown value \"boss\" (expected one of scheduler, worker, both)");
    }
}

BOOST_AUTO_TEST_CASE(uuids_are_version_4_and_distinct) {
    auto a = make_uuid(), b = make_uuid();
    BOOST_TEST(a.size() == 36u);
    BOOST_TEST(a[14] == '4');
    BOOST_TEST(a != b);
}

// The payload limit is measured without building the text: the size must be dump()'s to the
// byte, for every kind of value and every escape nlohmann writes.
BOOST_AUTO_TEST_CASE(payload_size_is_the_dumped_size) {
    using detail::inspect_payload;
    using Problem = detail::PayloadCheck::Problem;
    const std::vector<json> values{
        json(),
        true,
        -42,
        std::uint64_t(18446744073709551615u),
        3.25,
        1e300,
        0.1,
        std::nan(""),
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "\b\f\n\r\t",
        std::string("nul \0 bell \x07 us \x1F", 17) + " del \x7F",
        "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC",
        json::array(),
        json::object(),
        json::array({1, "two", json::array({3.5, nullptr}), json{{"k", false}}}),
        json{{"", 1}, {"a\"b", json::array()}, {"caf\xC3\xA9", {{"x\ny", "z"}}}},
        json::binary({1, 2, 3}),
    };
    for (const auto &v : values) {
        const std::size_t exact = v.dump().size();
        PayloadLimits at{.max_payload_bytes = exact};
        BOOST_TEST((inspect_payload(v, at).problem == Problem::none), v.dump());
        PayloadLimits under{.max_payload_bytes = exact - 1};
        const auto over = inspect_payload(v, under);
        BOOST_TEST((over.problem == Problem::too_large), v.dump());
        BOOST_TEST(over.detail.find(std::to_string(exact) + " bytes") != std::string::npos,
                   over.detail);
    }
    // What dump() would throw on is refused by name, in a value or in a key.
    const auto bad = inspect_payload(json::array({"ok", "caf\xC3("}), PayloadLimits{});
    BOOST_TEST((bad.problem == Problem::invalid_text));
    BOOST_TEST(bad.detail == "not valid JSON text: invalid UTF-8 byte 0xC3 at index 3 of the "
                             "string 'caf\\xC3('",
               bad.detail);
    const auto bad_key = inspect_payload(json{{"\xFF", 1}}, PayloadLimits{});
    BOOST_TEST((bad_key.problem == Problem::invalid_text));
    BOOST_TEST(bad_key.detail.find("of the key") != std::string::npos, bad_key.detail);
}

BOOST_AUTO_TEST_SUITE_END()
