// PostgresDataStore beyond the shared contract: several stores (nodes) on one database, the
// database's clock, the per-task cap across nodes, outages, a frozen server, the schema guard.
#include "fixture.hpp"
#include "servers.hpp"
#include "store_nodes.hpp"
#include "test_support.hpp"

#include <asched/data_stores/postgres_data_store.hpp>
#include <asched/event_brokers/postgres_event_broker.hpp>

#include <fmt/format.h>

#include <set>

using namespace asched;
using namespace std::chrono_literals;
using test::drain_jobs;
using test::drain_schedules;

namespace {

test::PostgresServer &server() {
    return test::shared_postgres();
}

struct PgFixture : test::StoreNodes<PostgresDataStore> {
    std::string schema;

    PgFixture() {
        static int n = 0;
        schema = "store_" + std::to_string(++n);
    }

    std::shared_ptr<PostgresDataStore> node(PostgresDataStoreOptions options = {}) {
        options.conninfo = server().conninfo();
        options.schema = schema;
        return start_node(std::move(options));
    }

    PostgresDataStoreOptions manual_clock() {
        PostgresDataStoreOptions o;
        o.database_clock = false;
        return o;
    }
};

// A scheduler on PostgreSQL, real clock: the server goes away for a while and comes back.
asio::awaitable<void> health_goes_degraded_and_back(asio::io_context *ioc, test::Recorder *recorder,
                                                    AsyncScheduler *s) {
    auto ran = std::make_shared<std::atomic<int>>(0);
    auto tick = [ran] { ++*ran; }; // named: GCC 12 double-destroys a capturing lambda temporary
    co_await s->add_task("tick", tick);
    IntervalTrigger every({.seconds = 0.1});
    co_await s->add_schedule("tick", every);
    co_await s->start_in_background();
    co_await test::eventually([&] { return ran->load() >= 2; }, "jobs before the outage");
    server().stop();
    co_await test::eventually([&] { return recorder->count<StoreHealthChanged>() >= 1; },
                              "degraded");
    BOOST_TEST(s->state() == RunState::started); // the scheduler keeps running
    server().start();
    co_await test::eventually([&] { return recorder->count<StoreHealthChanged>() >= 2; },
                              "ok again", 30s);
    auto changes = recorder->of<StoreHealthChanged>();
    BOOST_TEST(changes[0].degraded);
    BOOST_TEST(!changes[0].reason.empty());
    BOOST_TEST(!changes[1].degraded);
    const int after = ran->load();
    co_await test::eventually([&] { return ran->load() >= after + 2; }, "jobs after the outage",
                              30s);
    co_await s->stop();
    co_await s->wait_until_stopped();
    (void)ioc;
}

} // namespace

BOOST_AUTO_TEST_SUITE(postgres_store)

BOOST_AUTO_TEST_CASE(a_scheduler_survives_an_outage_and_reports_its_health) {
    auto options = test::SchedulerFixture::base_options();
    options.clock = std::make_shared<SystemClock>();
    options.poll_interval = 500ms;
    options.logger.level = LogLevel::off;
    options.data_store = std::make_shared<PostgresDataStore>(
        PostgresDataStoreOptions{.conninfo = server().conninfo(),
                                 .schema = "health",
                                 .connect_timeout = 1s,
                                 .query_timeout = 2s});
    test::SchedulerFixture f(std::move(options)); // the store must not outlive f's io_context
    f.run(health_goes_degraded_and_back(&f.ioc, f.recorder.get(), &f.s()), 90s);
}

BOOST_FIXTURE_TEST_CASE(two_nodes_never_lease_the_same_job_or_schedule, PgFixture) {
    auto a = node(manual_clock());
    auto b = node(manual_clock());
    add_task(*a, "t");
    std::vector<Job> jobs;
    for (int i = 0; i < 600; ++i)
        jobs.push_back(job());
    run(a->add_jobs(jobs));
    for (int i = 0; i < 300; ++i) {
        Schedule s;
        s.id = fmt::format("s{:03}", i);
        s.task_id = "t";
        s.trigger = std::make_shared<DateTrigger>(test::t0);
        s.next_fire_time = test::t0;
        run(a->add_schedule(s, ConflictPolicy::exception));
    }
    // Both nodes run at once on the io_context: their transactions interleave in the server.
    auto ja = asio::co_spawn(ioc, drain_jobs(a, "a", 10), asio::use_future);
    auto jb = asio::co_spawn(ioc, drain_jobs(b, "b", 10), asio::use_future);
    auto sa = asio::co_spawn(ioc, drain_schedules(a, "a"), asio::use_future);
    auto sb = asio::co_spawn(ioc, drain_schedules(b, "b"), asio::use_future);
    ioc.restart();
    ioc.run_for(60s);
    auto got_a = ja.get(), got_b = jb.get();
    BOOST_TEST(!got_a.empty());
    BOOST_TEST(!got_b.empty());
    std::multiset<std::string> all(got_a.begin(), got_a.end());
    all.insert(got_b.begin(), got_b.end());
    BOOST_TEST(all.size() == 600u);
    BOOST_TEST(std::set<std::string>(all.begin(), all.end()).size() == 600u);
    auto sched_a = sa.get(), sched_b = sb.get();
    std::set<std::string> leased(sched_a.begin(), sched_a.end());
    leased.insert(sched_b.begin(), sched_b.end());
    BOOST_TEST(sched_a.size() + sched_b.size() == 300u);
    BOOST_TEST(leased.size() == 300u);
}

BOOST_FIXTURE_TEST_CASE(the_task_cap_holds_across_nodes, PgFixture) {
    auto a = node(manual_clock());
    auto b = node(manual_clock());
    add_task(*a, "t", 3);
    std::vector<Job> jobs;
    for (int i = 0; i < 10; ++i)
        jobs.push_back(job());
    run(a->add_jobs(jobs));
    std::vector<std::string> tasks{"t"};
    auto first = run(a->acquire_jobs("a", 30s, 10, tasks));
    BOOST_TEST(first.jobs.size() == 3u);
    BOOST_TEST(run(b->acquire_jobs("b", 30s, 10, tasks)).jobs.size() == 0u);
    BOOST_TEST(run(b->get_task("t")).running_jobs == 3);
    JobResult r;
    r.job_id = first.jobs[0].id;
    r.task_id = "t";
    run(a->release_job("a", first.jobs[0], r));
    BOOST_TEST(run(b->acquire_jobs("b", 30s, 10, tasks)).jobs.size() == 1u);
    BOOST_TEST(run(a->get_task("t")).running_jobs == 3);
}

BOOST_FIXTURE_TEST_CASE(due_and_expired_are_decided_by_the_database_clock, PgFixture) {
    // The injected clock says 2025-01-01; the database says today. The database wins.
    auto store = node();
    add_task(*store, "t");
    const auto real_now = std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
    Schedule due;
    due.id = "due";
    due.task_id = "t";
    due.trigger = std::make_shared<DateTrigger>(real_now - 1s);
    due.next_fire_time = real_now - 1s;
    Schedule later = due;
    later.id = "later";
    later.next_fire_time = real_now + 1h;
    run(store->add_schedule(due, ConflictPolicy::exception));
    run(store->add_schedule(later, ConflictPolicy::exception));
    BOOST_TEST(clock->now() < *due.next_fire_time);
    auto leased = run(store->acquire_schedules("w", 30s, 10));
    BOOST_REQUIRE(leased.size() == 1u);
    BOOST_TEST(leased[0].id == "due");
    // The lease runs from the database's now, not the injected clock's.
    BOOST_TEST(*leased[0].acquired_until > real_now + 20s);
    // The store measured how far the database's clock runs ahead of the injected one, for the
    // scheduler to plan fires on (R16); a store on the injected clock reports none.
    const auto expected = real_now - clock->now();
    BOOST_TEST(std::chrono::abs(store->clock_offset() - expected) < 5s);
    auto manual = node(manual_clock());
    run(manual->get_tasks());
    BOOST_TEST(manual->clock_offset() == duration::zero());
}

// The offset is a gauge in metrics(), so an operator sees a node whose clock is off.
BOOST_FIXTURE_TEST_CASE(the_database_clock_offset_is_a_metric, PgFixture) {
    AsyncSchedulerOptions o;
    o.data_store = std::make_shared<PostgresDataStore>(
        PostgresDataStoreOptions{.conninfo = server().conninfo(), .schema = schema});
    o.clock = clock;
    o.logger = Logger{LogLevel::off, {}};
    AsyncScheduler s(ioc.get_executor(), o);
    const auto real_now = std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
    const auto text = run(s.metrics());
    const std::string name = "\nasched_clock_offset_seconds ";
    const auto at = text.find(name);
    BOOST_REQUIRE_MESSAGE(at != std::string::npos, text);
    const double seconds = std::stod(text.substr(at + name.size()));
    const double expected = std::chrono::duration<double>(real_now - clock->now()).count();
    BOOST_TEST(std::abs(seconds - expected) < 5.0, seconds << " vs " << expected);
    run(s.close());
}

BOOST_FIXTURE_TEST_CASE(an_outage_fails_calls_then_the_store_reconnects, PgFixture) {
    auto store = node(manual_clock());
    add_task(*store, "t");
    server().stop();
    try {
        run(store->get_tasks());
        BOOST_FAIL("a call with the server down succeeded");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::store_failure);
        BOOST_TEST(std::string(e.what()).find("127.0.0.1") != std::string::npos);
    }
    server().start();
    auto tasks = run(store->get_tasks());
    BOOST_REQUIRE(tasks.size() == 1u);
    BOOST_TEST(tasks[0].id == "t");
}

BOOST_FIXTURE_TEST_CASE(a_blocked_query_times_out_and_the_store_recovers, PgFixture) {
    // The schema is made by a node with the default timeout: creating it can take longer
    // than 300 ms on a loaded machine, and the test is about the blocked query.
    add_task(*node(manual_clock()), "t");
    auto options = manual_clock();
    options.query_timeout = 300ms;
    auto store = node(options);
    test::Psql side(server().conninfo());
    side.exec("BEGIN");
    side.exec("LOCK TABLE " + schema + ".tasks IN ACCESS EXCLUSIVE MODE");
    const auto began = std::chrono::steady_clock::now();
    BOOST_CHECK_THROW(run(store->get_tasks()), Error);
    const auto waited = std::chrono::steady_clock::now() - began;
    BOOST_TEST(waited < 5s); // bounded by the timeout, not by the lock holder
    side.exec("ROLLBACK");
    BOOST_TEST(run(store->get_tasks()).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_server_that_never_answers_fails_the_start, PgFixture) {
    // Accepts TCP connections and says nothing: a frozen server.
    asio::ip::tcp::acceptor silent(ioc,
                                   asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    silent.listen();
    PostgresDataStoreOptions options;
    options.conninfo = fmt::format("host=127.0.0.1 port={} user=asched dbname=postgres",
                                   silent.local_endpoint().port());
    options.connect_timeout = 300ms;
    auto store = std::make_shared<PostgresDataStore>(options);
    try {
        run(store->start(StoreContext{nullptr, clock, Logger{LogLevel::off, {}}}));
        BOOST_FAIL("start() succeeded against a silent server");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::store_failure);
        BOOST_TEST(std::string(e.what()).find("no connection within") != std::string::npos);
    }
    run(store->stop());
}

BOOST_FIXTURE_TEST_CASE(a_version_1_schema_is_migrated_and_keeps_its_jobs, PgFixture) {
    auto first = node(manual_clock());
    add_task(*first, "t");
    Job j = job();
    j.id = "old-job";
    run(first->add_job(j));
    run(first->stop());
    test::Psql side(server().conninfo());
    const std::string S = schema;
    side.exec("ALTER TABLE " + S + ".jobs DROP COLUMN timeout, DROP COLUMN cancel_requested, " +
              "DROP COLUMN attempt, DROP COLUMN retry; DROP TABLE " + S + ".job_history; " +
              "DROP TABLE " + S + ".workers; " + "UPDATE " + S + ".schema_version SET version = 1");
    auto again = node(manual_clock());
    BOOST_TEST(side.exec("SELECT version FROM " + S + ".schema_version") == "4");
    auto jobs = run(again->get_jobs(std::nullopt));
    BOOST_REQUIRE(jobs.size() == 1u);
    BOOST_TEST(!jobs[0].timeout);
    BOOST_TEST((run(again->cancel_job("old-job", "w")) == JobCancellation::removed));
}

BOOST_FIXTURE_TEST_CASE(a_foreign_or_newer_schema_is_refused, PgFixture) {
    test::Psql side(server().conninfo());
    side.exec("CREATE SCHEMA " + schema + "; CREATE TABLE " + schema + ".tasks (x int)");
    PostgresDataStoreOptions options;
    options.conninfo = server().conninfo();
    options.schema = schema;
    auto store = std::make_shared<PostgresDataStore>(options);
    try {
        run(store->start(StoreContext{nullptr, clock, Logger{LogLevel::off, {}}}));
        BOOST_FAIL("a foreign schema was accepted");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("not asched's") != std::string::npos);
    }
    run(store->stop());
    BOOST_TEST(side.exec("SELECT count(*) FROM " + schema + ".tasks") == "0"); // untouched

    schema += "_newer";
    auto current = node();
    run(current->stop());
    side.exec("UPDATE " + schema + ".schema_version SET version = 99");
    options.schema = schema;
    auto old_build = std::make_shared<PostgresDataStore>(options);
    try {
        run(old_build->start(StoreContext{nullptr, clock, Logger{LogLevel::off, {}}}));
        BOOST_FAIL("a newer schema was accepted");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("version 99") != std::string::npos);
    }
    run(old_build->stop());
}

// R23 on PostgreSQL: poison rows (garbage trigger, unparsable args, JSON nested 100,000 deep) are
// quarantined once and never re-acquired; a row of a newer format version is skipped and left
// alone (defect 8: an older node must not remove what a newer one wrote).
BOOST_FIXTURE_TEST_CASE(r23_poison_rows_are_quarantined_once_and_newer_rows_left_alone, PgFixture) {
    auto store = node(manual_clock());
    add_task(*store, "t");
    for (const char *id : {"good", "garbage", "deep", "future"}) {
        Schedule sch;
        sch.id = id;
        sch.task_id = "t";
        sch.trigger = std::make_shared<IntervalTrigger>(
            IntervalTriggerOptions{.seconds = 10, .start_time = test::t0});
        sch.next_fire_time = test::t0;
        run(store->add_schedule(sch, ConflictPolicy::exception));
    }
    for (const char *id : {"j-ok", "j-args", "j-deep"}) {
        Job j = job();
        j.id = id;
        run(store->add_job(j));
    }
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    test::Psql side(server().conninfo());
    const std::string S = schema;
    side.exec("UPDATE " + S +
              ".schedules SET data = '{\"trigger\": {\"type\": \"lunar\"' "
              "WHERE id = 'garbage'");
    side.exec("UPDATE " + S + ".schedules SET data = replace(data, '\"args\":[]', '\"args\":[" +
              deep + "]') WHERE id = 'deep'");
    side.exec("UPDATE " + S +
              ".schedules SET data = jsonb_set(jsonb_set(data::jsonb, "
              "'{version}', '2'), '{trigger,type}', '\"lunar\"')::text WHERE id = 'future'");
    side.exec("UPDATE " + S + ".jobs SET args = '[1, 2' WHERE id = 'j-args'");
    side.exec("UPDATE " + S + ".jobs SET args = '[" + deep + "]' WHERE id = 'j-deep'");
    const std::string future =
        side.exec("SELECT data FROM " + S + ".schedules WHERE id = 'future'");

    for (int round = 0; round < 3; ++round) {
        auto leased = run(store->acquire_schedules("w", 30s, 10));
        BOOST_REQUIRE(leased.size() <= 1u);
        if (!leased.empty()) {
            BOOST_TEST(leased[0].id == "good");
            std::vector<ScheduleRelease> rs{
                {"good", leased[0].lease_token, test::t0, test::t0 + 10s, {}, {}}};
            run(store->release_schedules("w", rs));
        }
        BOOST_TEST((run(store->get_next_schedule_run_time()) == test::t0 + 10s));
        std::vector<std::string> tasks{"t"};
        auto got = run(store->acquire_jobs("w", 30s, 10, tasks));
        for (auto &j : got.jobs)
            BOOST_TEST(j.id == "j-ok");
    }
    BOOST_TEST(side.exec("SELECT string_agg(kind || ':' || id, ',' ORDER BY kind, id) FROM " + S +
                         ".quarantine") == "job:j-args,job:j-deep,schedule:deep,schedule:garbage");
    BOOST_TEST(side.exec("SELECT count(*) FROM " + S +
                         ".quarantine WHERE error LIKE "
                         "'%nested deeper than 512 levels%'") == "2");
    // The newer row: untouched, not leased, still there for a node that reads it.
    BOOST_TEST(side.exec("SELECT data FROM " + S + ".schedules WHERE id = 'future'") == future);
    BOOST_TEST(side.exec("SELECT acquired_by IS NULL FROM " + S +
                         ".schedules WHERE id = 'future'") == "t");
    auto listed = run(store->get_schedules(std::nullopt));
    BOOST_REQUIRE(listed.size() == 1u);
    BOOST_TEST(listed[0].id == "good");
    run(store->cleanup());
    (void)run(store->acquire_schedules("w", 30s, 10));
    BOOST_TEST(side.exec("SELECT count(*) FROM " + S + ".quarantine") == "4");
}

BOOST_AUTO_TEST_CASE(a_malformed_connection_string_is_named) {
    try {
        PostgresDataStore store(PostgresDataStoreOptions{.conninfo = "host=x port"});
        BOOST_FAIL("accepted");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::invalid_argument);
        BOOST_TEST(std::string(e.what()).find("invalid connection string") != std::string::npos);
    }
}

BOOST_AUTO_TEST_SUITE_END()

// R21: configured names are used in SQL text and in string literals, and PostgreSQL cuts
// them at 63 bytes: anything but a plain identifier is refused when the object is made.
BOOST_AUTO_TEST_CASE(schema_and_channel_names_must_be_plain_identifiers) {
    const std::string too_long(64, 'a');
    const std::vector<std::string> names{
        "it's", "a\"; DROP SCHEMA public; --", "Upper", "9lives", "", "dash-ed", too_long};
    for (const std::string &bad : names) {
        try {
            PostgresDataStore store(
                PostgresDataStoreOptions{.conninfo = "host=127.0.0.1", .schema = bad});
            BOOST_ERROR("schema accepted: " + bad);
        } catch (const Error &e) {
            BOOST_TEST(e.code_value() == errc::invalid_argument);
            BOOST_TEST(std::string(e.what()).find("option 'schema'") != std::string::npos,
                       e.what());
            BOOST_TEST(std::string(e.what()).find("[a-z_][a-z0-9_]{0,62}") != std::string::npos);
        }
        try {
            PostgresEventBroker broker(
                PostgresEventBrokerOptions{.conninfo = "host=127.0.0.1", .channel = bad});
            BOOST_ERROR("channel accepted: " + bad);
        } catch (const Error &e) {
            BOOST_TEST(e.code_value() == errc::invalid_argument);
            BOOST_TEST(std::string(e.what()).find("option 'channel'") != std::string::npos,
                       e.what());
        }
    }
    const std::string longest(63, 'z');
    PostgresDataStore store(
        PostgresDataStoreOptions{.conninfo = "host=127.0.0.1", .schema = longest});
    PostgresEventBroker broker(
        PostgresEventBrokerOptions{.conninfo = "host=127.0.0.1", .channel = "_asched_2"});
}
