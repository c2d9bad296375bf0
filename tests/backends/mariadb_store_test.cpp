// MariaDbDataStore beyond the shared contract: several stores (nodes) on one database, the
// database's clock, the per-task cap across nodes, outages, a frozen server, a lock held by
// another session, migrations run by two nodes at once, hostile values, poison rows, URLs.
#include "fixture.hpp"
#include "servers.hpp"
#include "store_nodes.hpp"
#include "test_support.hpp"

#include <asched/data_stores/mariadb_data_store.hpp>

#include <fmt/format.h>

#include <set>

using namespace asched;
using namespace std::chrono_literals;
using test::drain_jobs;
using test::drain_schedules;

namespace {

test::MariaDbServer &server() {
    return test::shared_mariadb();
}

struct MariaFixture : test::StoreNodes<MariaDbDataStore> {
    std::string database;

    MariaFixture() {
        static int n = 0;
        database = "store_" + std::to_string(++n);
    }

    MariaDbDataStoreOptions options(bool database_clock = false) const {
        MariaDbDataStoreOptions o;
        o.port = server().port();
        o.user = "root";
        o.database = database;
        o.database_clock = database_clock;
        return o;
    }

    std::shared_ptr<MariaDbDataStore> node(MariaDbDataStoreOptions o) { return start_node(o); }
    std::shared_ptr<MariaDbDataStore> node() { return node(options()); }

    Schedule schedule(std::string id) {
        Schedule s;
        s.id = std::move(id);
        s.task_id = "t";
        s.trigger = std::make_shared<IntervalTrigger>(
            IntervalTriggerOptions{.seconds = 10, .start_time = test::t0});
        s.next_fire_time = test::t0;
        return s;
    }
};

asio::awaitable<void> start_store(std::shared_ptr<MariaDbDataStore> store,
                                  std::shared_ptr<ManualClock> clock) {
    // Named: GCC 12 double-frees a class temporary built inside a co_await expression.
    StoreContext context{nullptr, std::move(clock), Logger{LogLevel::off, {}}};
    auto starting = store->start(std::move(context));
    co_await std::move(starting);
}

asio::awaitable<bool> add_one(std::shared_ptr<MariaDbDataStore> store, Schedule s) {
    auto adding = store->add_schedule(std::move(s), ConflictPolicy::exception);
    const bool added = co_await std::move(adding);
    co_return added;
}

} // namespace

BOOST_AUTO_TEST_SUITE(mariadb_store)

BOOST_FIXTURE_TEST_CASE(two_nodes_never_lease_the_same_job_or_schedule, MariaFixture) {
    auto a = node();
    auto b = node();
    add_task(*a, "t");
    std::vector<Job> jobs;
    for (int i = 0; i < 600; ++i)
        jobs.push_back(job());
    run(a->add_jobs(jobs));
    for (int i = 0; i < 300; ++i) {
        Schedule s = schedule(fmt::format("s{:03}", i));
        s.trigger = std::make_shared<DateTrigger>(test::t0);
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
    // Every job ended once: 600 history records, the counter back at zero.
    test::MariaSql side(server().port());
    BOOST_TEST(side.exec("SELECT COUNT(*) FROM " + database + ".job_history") == "600");
    BOOST_TEST(run(a->get_task("t")).running_jobs == 0);
}

// Two nodes add one new schedule id at the same moment with ConflictPolicy::exception: one
// adds it, the other is told it exists (neither silently overwrites the other).
BOOST_FIXTURE_TEST_CASE(two_nodes_adding_one_new_id_at_once_conflict_cleanly, MariaFixture) {
    auto a = node();
    auto b = node();
    add_task(*a, "t");
    int added = 0, conflicts = 0;
    for (int round = 0; round < 20; ++round) {
        const Schedule s = schedule(fmt::format("race-{}", round));
        auto fa = asio::co_spawn(ioc, add_one(a, s), asio::use_future);
        auto fb = asio::co_spawn(ioc, add_one(b, s), asio::use_future);
        ioc.restart();
        ioc.run_for(30s);
        for (auto *f : {&fa, &fb}) {
            try {
                f->get();
                ++added;
            } catch (const Error &e) {
                BOOST_TEST(e.code_value() == errc::conflicting_id, e.what());
                ++conflicts;
            }
        }
    }
    BOOST_TEST(added == 20);
    BOOST_TEST(conflicts == 20);
    BOOST_TEST(run(a->get_schedules(std::nullopt)).size() == 20u);
}

BOOST_FIXTURE_TEST_CASE(the_task_cap_holds_across_nodes, MariaFixture) {
    auto a = node();
    auto b = node();
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

BOOST_FIXTURE_TEST_CASE(due_and_expired_are_decided_by_the_database_clock, MariaFixture) {
    // The injected clock says 2025-01-01; the database says today. The database wins.
    auto store = node(options(true));
    add_task(*store, "t");
    const auto real_now = std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
    Schedule due = schedule("due");
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
    BOOST_TEST(*leased[0].acquired_until > real_now + 20s);
    const auto expected = real_now - clock->now();
    BOOST_TEST(std::chrono::abs(store->clock_offset() - expected) < 5s);
    auto manual = node();
    run(manual->get_tasks());
    BOOST_TEST(manual->clock_offset() == duration::zero());
}

BOOST_FIXTURE_TEST_CASE(an_outage_fails_calls_then_the_store_reconnects, MariaFixture) {
    auto store = node();
    add_task(*store, "t");
    server().stop();
    try {
        run(store->get_tasks());
        BOOST_FAIL("a call with the server down succeeded");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::store_failure);
        BOOST_TEST(std::string(e.what()).find("127.0.0.1") != std::string::npos, e.what());
    }
    server().start();
    auto tasks = run(store->get_tasks());
    BOOST_REQUIRE(tasks.size() == 1u);
    BOOST_TEST(tasks[0].id == "t");
}

BOOST_FIXTURE_TEST_CASE(a_blocked_query_times_out_and_the_store_recovers, MariaFixture) {
    add_task(*node(), "t");
    auto o = options();
    o.query_timeout = 300ms;
    auto store = node(o);
    test::MariaSql side(server().port());
    side.exec("LOCK TABLES " + database + ".tasks WRITE");
    const auto began = std::chrono::steady_clock::now();
    BOOST_CHECK_THROW(run(store->get_tasks()), Error);
    const auto waited = std::chrono::steady_clock::now() - began;
    BOOST_TEST(waited < 5s); // the timeout, not the lock
    side.exec("UNLOCK TABLES");
    BOOST_TEST(run(store->get_tasks()).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_frozen_server_fails_calls_within_the_timeout, MariaFixture) {
    auto o = options();
    o.query_timeout = 500ms;
    auto store = node(o);
    add_task(*store, "t");
    server().freeze();
    const auto began = std::chrono::steady_clock::now();
    try {
        run(store->get_tasks());
        server().thaw();
        BOOST_FAIL("a call to a frozen server succeeded");
    } catch (const Error &e) {
        server().thaw();
        BOOST_TEST(std::string(e.what()).find("no answer within") != std::string::npos, e.what());
    }
    const auto waited = std::chrono::steady_clock::now() - began;
    BOOST_TEST(waited < 5s);
    BOOST_TEST(run(store->get_tasks()).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_server_that_never_answers_fails_the_start, MariaFixture) {
    asio::ip::tcp::acceptor silent(ioc,
                                   asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    silent.listen();
    auto o = options();
    o.port = silent.local_endpoint().port();
    o.connect_timeout = 300ms;
    auto store = std::make_shared<MariaDbDataStore>(o);
    const auto began = std::chrono::steady_clock::now();
    try {
        run(start_store(store, clock));
        BOOST_FAIL("start() succeeded against a silent server");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::store_failure);
        BOOST_TEST(std::string(e.what()).find("no answer within") != std::string::npos, e.what());
    }
    const auto waited = std::chrono::steady_clock::now() - began;
    BOOST_TEST(waited < 5s);
    run(store->stop());
}

// R24 on MariaDB: nodes that start together on an empty database take turns under GET_LOCK;
// the tables are made once and every node works.
BOOST_FIXTURE_TEST_CASE(four_nodes_migrate_one_empty_database_at_once, MariaFixture) {
    std::vector<std::shared_ptr<MariaDbDataStore>> stores;
    std::vector<std::future<void>> started;
    for (int i = 0; i < 4; ++i) {
        stores.push_back(std::make_shared<MariaDbDataStore>(options()));
        started.push_back(asio::co_spawn(ioc, start_store(stores.back(), clock), asio::use_future));
    }
    ioc.restart();
    ioc.run_for(60s);
    for (auto &f : started)
        BOOST_CHECK_NO_THROW(f.get());
    nodes.insert(nodes.end(), stores.begin(), stores.end());
    test::MariaSql side(server().port());
    BOOST_TEST(side.exec("SELECT GROUP_CONCAT(version) FROM " + database + ".schema_version") ==
               std::to_string(MariaDbDataStore::schema_version));
    add_task(*stores[0], "t");
    BOOST_TEST(run(stores[3]->get_tasks()).size() == 1u);
    auto check = run(stores[2]->check());
    BOOST_TEST(check.backend == "mariadb");
    BOOST_TEST(check.problems.empty());
    BOOST_TEST(check.schema_version == MariaDbDataStore::schema_version);
}

BOOST_FIXTURE_TEST_CASE(a_foreign_or_newer_database_is_refused, MariaFixture) {
    test::MariaSql side(server().port());
    side.exec("CREATE DATABASE " + database);
    side.exec("CREATE TABLE " + database + ".tasks (x INT)");
    auto store = std::make_shared<MariaDbDataStore>(options());
    try {
        run(start_store(store, clock));
        BOOST_FAIL("a foreign database was accepted");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("not asched's") != std::string::npos, e.what());
    }
    run(store->stop());
    BOOST_TEST(side.exec("SELECT COUNT(*) FROM " + database + ".tasks") == "0"); // untouched

    database += "_newer";
    auto none = options();
    none.migrate = false;
    auto unmigrated = std::make_shared<MariaDbDataStore>(none);
    BOOST_CHECK_THROW(run(start_store(unmigrated, clock)), Error);
    run(unmigrated->stop());
    auto current = node();
    run(current->stop());
    side.exec("UPDATE " + database + ".schema_version SET version = 99");
    auto old_build = std::make_shared<MariaDbDataStore>(options());
    try {
        run(start_store(old_build, clock));
        BOOST_FAIL("a newer schema was accepted");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("version 99") != std::string::npos, e.what());
    }
    run(old_build->stop());
}

// A migration step cut short (a node killed in the middle: some tables made, the version not
// yet written) runs again in full at the next start.
BOOST_FIXTURE_TEST_CASE(a_migration_cut_short_runs_again, MariaFixture) {
    run(node()->stop());
    nodes.clear();
    test::MariaSql side(server().port());
    side.exec("DROP TABLE " + database + ".workers");
    side.exec("DROP TABLE " + database + ".job_history");
    side.exec("UPDATE " + database + ".schema_version SET version = 0");
    auto again = node();
    BOOST_TEST(side.exec("SELECT version FROM " + database + ".schema_version") == "1");
    BOOST_TEST(side.exec("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '" +
                         database + "' AND TABLE_NAME IN ('workers', 'job_history')") == "2");
    add_task(*again, "t");
    BOOST_TEST(run(again->get_tasks()).size() == 1u);
}

// R21 on MariaDB: values are bound, never pasted; ids are bytes compared exactly (no case
// folding, no trailing-space padding); long ids are refused naming the field.
BOOST_FIXTURE_TEST_CASE(r21_hostile_ids_and_values_round_trip, MariaFixture) {
    auto store = node();
    const std::vector<std::string> ids{"'; DROP TABLE jobs;--",
                                       "%_",
                                       "back\\slash",
                                       "$1",
                                       "Straße",
                                       "straße",
                                       "A",
                                       "a",
                                       "a ",
                                       "?",
                                       "`tick`"};
    for (const auto &id : ids)
        add_task(*store, id);
    add_task(*store, "t");
    auto tasks = run(store->get_tasks());
    std::set<std::string> got;
    for (auto &t : tasks)
        got.insert(t.id);
    BOOST_TEST(got.size() == ids.size() + 1);
    for (const auto &id : ids)
        BOOST_TEST(got.contains(id), id);
    Job j = job();
    j.metadata = nlohmann::json{{"note", std::string(1 << 20, 'x') + "'\"\\"}};
    j.args = nlohmann::json::array({"'; DELETE FROM tasks; --", 1, nullptr});
    run(store->add_job(j));
    auto back = run(store->get_jobs(std::vector<std::string>{j.id}));
    BOOST_REQUIRE(back.size() == 1u);
    BOOST_TEST(back[0].metadata == j.metadata);
    BOOST_TEST(back[0].args == j.args);
    BOOST_TEST(run(store->get_tasks()).size() == ids.size() + 1);
    try {
        add_task(*store, std::string(1025, 'x'));
        BOOST_FAIL("an id over 1024 bytes was accepted");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::invalid_argument);
        BOOST_TEST(std::string(e.what()).find("task.id") != std::string::npos, e.what());
    }
}

// R23 on MariaDB: poison rows are quarantined once and never re-acquired; a row of a newer
// format version is skipped and left alone.
BOOST_FIXTURE_TEST_CASE(r23_poison_rows_are_quarantined_once_and_newer_rows_left_alone,
                        MariaFixture) {
    auto store = node();
    add_task(*store, "t");
    for (const char *id : {"good", "garbage", "deep", "future"})
        run(store->add_schedule(schedule(id), ConflictPolicy::exception));
    for (const char *id : {"j-ok", "j-args", "j-deep"}) {
        Job j = job();
        j.id = id;
        run(store->add_job(j));
    }
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    test::MariaSql side(server().port());
    const std::string S = database;
    side.exec("UPDATE " + S +
              ".schedules SET data = '{\"trigger\": {\"type\": \"lunar\"' WHERE id = 'garbage'");
    side.exec("UPDATE " + S + ".schedules SET data = REPLACE(data, '\"args\":[]', '\"args\":[" +
              deep + "]') WHERE id = 'deep'");
    side.exec("UPDATE " + S +
              ".schedules SET data = JSON_SET(JSON_SET(data, '$.version', 2), "
              "'$.trigger.type', 'lunar') WHERE id = 'future'");
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
    BOOST_TEST(side.exec("SELECT GROUP_CONCAT(CONCAT(kind, ':', id) ORDER BY kind, id) FROM " + S +
                         ".quarantine") == "job:j-args,job:j-deep,schedule:deep,schedule:garbage");
    BOOST_TEST(side.exec("SELECT data FROM " + S + ".schedules WHERE id = 'future'") == future);
    BOOST_TEST(side.exec("SELECT acquired_by IS NULL FROM " + S +
                         ".schedules WHERE id = 'future'") == "1");
    auto listed = run(store->get_schedules(std::nullopt));
    BOOST_REQUIRE(listed.size() == 1u);
    BOOST_TEST(listed[0].id == "good");
    run(store->cleanup());
    (void)run(store->acquire_schedules("w", 30s, 10));
    BOOST_TEST(side.exec("SELECT COUNT(*) FROM " + S + ".quarantine") == "4");
}

BOOST_AUTO_TEST_CASE(database_names_must_be_plain_identifiers) {
    const std::string too_long(65, 'a');
    for (const std::string &bad :
         {std::string("it's"), std::string("a`; DROP DATABASE mysql; --"), std::string("Upper"),
          std::string("9lives"), std::string(""), std::string("dash-ed"), too_long}) {
        try {
            MariaDbDataStore store(MariaDbDataStoreOptions{.database = bad});
            BOOST_ERROR("database accepted: " + bad);
        } catch (const Error &e) {
            BOOST_TEST(e.code_value() == errc::invalid_argument);
            BOOST_TEST(std::string(e.what()).find("option 'database'") != std::string::npos,
                       e.what());
        }
    }
    MariaDbDataStore longest(MariaDbDataStoreOptions{.database = std::string(64, 'z')});
}

BOOST_AUTO_TEST_CASE(urls_are_parsed_and_bad_ones_named) {
    auto o = MariaDbDataStoreOptions::from_url("mariadb://sched%40ops:p%3Ass@db.example:3307/jobs");
    BOOST_TEST(o.user == "sched@ops");
    BOOST_TEST(o.password == "p:ss");
    BOOST_TEST(o.host == "db.example");
    BOOST_TEST(o.port == 3307u);
    BOOST_TEST(o.database == "jobs");
    auto d = MariaDbDataStoreOptions::from_url("mysql://127.0.0.1");
    BOOST_TEST(d.port == 3306u);
    BOOST_TEST(d.database == "asched");
    for (const char *bad :
         {"postgres://x", "mariadb://h:99999/db", "mariadb://u%zz@h/db", "mariadb://h/db?ssl=1"}) {
        try {
            (void)MariaDbDataStoreOptions::from_url(bad);
            BOOST_ERROR(std::string("accepted: ") + bad);
        } catch (const Error &e) {
            BOOST_TEST(e.code_value() == errc::invalid_argument);
            BOOST_TEST(std::string(e.what()).find("password") == std::string::npos);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
