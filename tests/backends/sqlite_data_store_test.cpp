// What SqliteDataStore adds to the contract: persistence, schema checks, quarantine, and
// several connections on one file never leasing a row twice.
#include "test_support.hpp"

#include <sqlite3.h>

#include <fstream>
#include <set>
#include <thread>

using namespace asched;
using namespace std::chrono_literals;
using test::sync;

namespace {

// Raw SQL on the file, as another program (or a corrupting disk) would do it.
void raw_sql(const std::string &path, const std::string &sql) {
    sqlite3 *db = nullptr;
    BOOST_REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    char *err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    const std::string message = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    BOOST_REQUIRE_MESSAGE(rc == SQLITE_OK, sql + ": " + message);
}

std::string file_bytes(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

struct SqliteFixture {
    test::TempDir dir;
    std::string path = dir.path("asched.db");
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(test::t0);
    std::shared_ptr<LocalEventBroker> broker = std::make_shared<LocalEventBroker>();
    asio::io_context events_ioc;
    std::vector<Event> events;
    Subscription sub = broker->subscribe([this](const Event &e) { events.push_back(e); },
                                         all_events, events_ioc.get_executor());

    std::shared_ptr<SqliteDataStore> open() {
        auto store = std::make_shared<SqliteDataStore>(SqliteDataStoreOptions{.path = path});
        sync(store->start(StoreContext{broker, clock, Logger{LogLevel::off, {}}}));
        return store;
    }

    std::string start_error() {
        try {
            open();
        } catch (const Error &e) {
            BOOST_TEST((e.code_value() == errc::store_failure));
            return e.what();
        }
        return "no error";
    }

    static Schedule schedule(std::string id, TriggerPtr trigger) {
        Schedule s;
        s.id = std::move(id);
        s.task_id = "t";
        s.trigger = std::move(trigger);
        s.next_fire_time = s.trigger->advance(std::nullopt, s.trigger_state);
        return s;
    }

    static TriggerPtr every(std::chrono::seconds step) {
        return std::make_shared<IntervalTrigger>(
            IntervalTriggerOptions{.seconds = double(step.count()), .start_time = test::t0});
    }

    std::vector<RecordQuarantined> quarantined() {
        events_ioc.restart();
        events_ioc.poll();
        std::vector<RecordQuarantined> out;
        for (auto &e : events)
            if (auto *q = std::get_if<RecordQuarantined>(&e))
                out.push_back(*q);
        return out;
    }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(sqlite_data_store, SqliteFixture)

BOOST_AUTO_TEST_CASE(everything_survives_a_restart) {
    std::string job_id;
    Schedule stored;
    {
        auto store = open();
        Task t;
        t.id = "t";
        t.max_running_jobs = 2;
        sync(store->add_task(t));
        // An or-trigger: its state (which child is pending) must survive too.
        auto either = std::make_shared<OrTrigger>(std::vector<TriggerPtr>{every(10s), every(15s)});
        stored = schedule("s", either);
        sync(store->add_schedule(stored, ConflictPolicy::exception));
        auto leased = sync(store->acquire_schedules("w", 30s, 10));
        BOOST_REQUIRE(leased.size() == 1u);
        ScheduleRelease r{"s", leased[0].lease_token, test::t0, stored.next_fire_time,
                          {},  stored.trigger_state};
        r.next_fire_time = stored.trigger->advance(stored.next_fire_time, r.trigger_state);
        Job j;
        j.id = "j1";
        j.task_id = "t";
        j.schedule_id = "s";
        j.scheduled_fire_time = test::t0;
        j.result_expiration_time = 1h;
        r.jobs.push_back(j);
        std::vector<ScheduleRelease> rs{r};
        sync(store->release_schedules("w", rs));
        stored.next_fire_time = r.next_fire_time;
        stored.trigger_state = r.trigger_state;
        auto got = sync(store->acquire_jobs("w", 30s, 10, {"t"}));
        BOOST_REQUIRE(got.jobs.size() == 1u);
        JobResult res;
        res.job_id = "j1";
        res.task_id = "t";
        res.schedule_id = "s";
        res.finished_at = test::t0;
        res.expires_at = test::t0 + 1h;
        res.return_value = 42;
        BOOST_TEST(sync(store->release_job("w", got.jobs[0], res)));
        Job queued;
        queued.id = "j2";
        queued.task_id = "t";
        sync(store->add_job(queued));
        sync(store->stop());
    }
    auto again = open();
    BOOST_TEST(sync(again->get_task("t")).max_running_jobs == 2);
    auto schedules = sync(again->get_schedules(std::nullopt));
    BOOST_REQUIRE(schedules.size() == 1u);
    BOOST_TEST((schedules[0].next_fire_time == test::t0 + 10s));
    BOOST_TEST(schedules[0].trigger_state == stored.trigger_state);
    BOOST_TEST(schedules[0].trigger->to_json() == stored.trigger->to_json());
    auto result = sync(again->get_job_result("j1"));
    BOOST_REQUIRE(result);
    BOOST_TEST(result->return_value == 42);
    auto jobs = sync(again->get_jobs(std::nullopt));
    BOOST_REQUIRE(jobs.size() == 1u);
    BOOST_TEST(jobs[0].id == "j2");
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_an_asched_database_is_refused_and_left_alone) {
    {
        std::ofstream out(path);
        out << "just some text, not SQLite at all\n";
    }
    const auto before = file_bytes(path);
    BOOST_TEST(start_error().find("is not an asched database") != std::string::npos);
    BOOST_TEST(file_bytes(path) == before);

    std::filesystem::remove(path);
    raw_sql(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)");
    const auto msg = start_error();
    BOOST_TEST(msg.find("is not an asched database") != std::string::npos);
    BOOST_TEST(msg.find(path) != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_version_1_file_is_migrated_and_keeps_its_jobs) {
    {
        auto store = open();
        Task t;
        t.id = "t";
        sync(store->add_task(t));
        Job j;
        j.id = "old-job";
        j.task_id = "t";
        sync(store->add_job(j));
        sync(store->stop());
    }
    // What version 1 wrote: no columns or tables of migrations 2 to 4.
    raw_sql(path, "ALTER TABLE jobs DROP COLUMN timeout; ALTER TABLE jobs DROP COLUMN "
                  "cancel_requested; ALTER TABLE jobs DROP COLUMN attempt; ALTER TABLE jobs "
                  "DROP COLUMN retry; DROP TABLE job_history; DROP TABLE workers; UPDATE "
                  "asched_meta SET value = 1 WHERE key = 'schema_version'");
    auto store = open();
    auto jobs = sync(store->get_jobs(std::nullopt));
    BOOST_REQUIRE(jobs.size() == 1u);
    BOOST_TEST(jobs[0].id == "old-job");
    BOOST_TEST(!jobs[0].timeout);
    BOOST_TEST((sync(store->cancel_job("old-job", "w")) == JobCancellation::removed));
    BOOST_TEST(sync(store->get_workers()).empty());
}

// A store that may not migrate (the asched tool's read commands) opens and reads while another
// process holds the write lock: WAL readers need none. Its busy timeout is a minute, so
// waiting on the writer would fail the bounded run below.
BOOST_AUTO_TEST_CASE(a_reader_that_may_not_migrate_never_waits_on_a_writer) {
    {
        auto store = open();
        Task t;
        t.id = "t";
        sync(store->add_task(t));
        sync(store->stop());
    }
    sqlite3 *writer = nullptr;
    BOOST_REQUIRE(sqlite3_open(path.c_str(), &writer) == SQLITE_OK);
    BOOST_REQUIRE(sqlite3_exec(writer, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    auto reader = std::make_shared<SqliteDataStore>(
        SqliteDataStoreOptions{.path = path, .busy_timeout = 60s, .migrate = false});
    asio::io_context ioc;
    const auto began = std::chrono::steady_clock::now();
    test::run(ioc, reader->start(StoreContext{broker, clock, Logger{LogLevel::off, {}}}), 20s);
    const auto tasks = test::run(ioc, reader->get_tasks(), 20s);
    BOOST_TEST(tasks.size() == 1u);
    BOOST_TEST((std::chrono::steady_clock::now() - began < 20s));
    test::run(ioc, reader->stop(), 20s);
    sqlite3_exec(writer, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(writer);
}

// The file, its WAL and its SHM deleted under a running store: every write is refused, naming
// the path, instead of going into the unlinked inode (lost at exit).
BOOST_AUTO_TEST_CASE(a_deleted_file_is_noticed_and_never_written) {
    auto store = open();
    Task t;
    t.id = "t";
    sync(store->add_task(t));
    for (const char *suffix : {"", "-wal", "-shm"})
        std::filesystem::remove(path + suffix);
    Task u;
    u.id = "u";
    try {
        sync(store->add_task(u));
        BOOST_FAIL("a write into a deleted file was accepted");
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::store_failure);
        BOOST_TEST(std::string(e.what()).find("'" + path + "' was deleted or replaced") !=
                       std::string::npos,
                   e.what());
    }
    BOOST_TEST(!std::filesystem::exists(path));
    sync(store->stop());
}

BOOST_AUTO_TEST_CASE(a_newer_schema_is_refused) {
    open();
    raw_sql(path, "UPDATE asched_meta SET value = 99 WHERE key = 'schema_version'");
    const auto msg = start_error();
    BOOST_TEST(msg.find("schema version 99") != std::string::npos);
    BOOST_TEST(msg.find("newer") != std::string::npos);
}

// A file with enough rows to span many pages, closed (its WAL checkpointed into the file).
static void fill(SqliteFixture &f, int jobs) {
    auto store = f.open();
    Task t;
    t.id = "t";
    sync(store->add_task(t));
    for (int i = 0; i < jobs; ++i) {
        Job j;
        j.id = "job-" + std::to_string(1000 + i);
        j.task_id = "t";
        j.args = nlohmann::json::array({std::string(200, char('a' + i % 26))});
        sync(store->add_job(j));
    }
    sync(store->stop());
}

BOOST_AUTO_TEST_CASE(a_file_damaged_in_the_middle_is_refused_at_start_and_left_alone) {
    fill(*this, 1000);
    auto bytes = file_bytes(path);
    BOOST_REQUIRE(bytes.size() > 40 * 4096);
    // Scribble over a page in the middle (not its first bytes alone: a whole page).
    for (std::size_t i = 20 * 4096; i < 21 * 4096; ++i)
        bytes[i] = char(0xA5 ^ (i & 0xff));
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << bytes;
    }
    const auto msg = start_error();
    BOOST_TEST(msg.find("is damaged") != std::string::npos, msg);
    BOOST_TEST(msg.find(path) != std::string::npos, msg);
    BOOST_TEST(msg.find(".recover") != std::string::npos, msg);
    BOOST_TEST(file_bytes(path) == bytes); // nothing written to it

    // With the check off, start() goes on (the damage shows where it is read).
    auto unchecked = std::make_shared<SqliteDataStore>(
        SqliteDataStoreOptions{.path = path, .quick_check_max_bytes = 0});
    sync(unchecked->start(StoreContext{broker, clock, Logger{LogLevel::off, {}}}));
    sync(unchecked->stop());
}

BOOST_AUTO_TEST_CASE(a_file_cut_short_by_one_page_is_called_damaged) {
    fill(*this, 1000);
    const auto size = std::filesystem::file_size(path);
    std::filesystem::resize_file(path, size - 4096);
    const auto msg = start_error();
    BOOST_TEST(msg.find("is damaged") != std::string::npos, msg);
    BOOST_TEST(msg.find("not an asched database") == std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(rows_of_a_newer_format_version_are_skipped_not_quarantined) {
    auto store = open();
    Task t;
    t.id = "t";
    t.max_running_jobs = std::nullopt;
    sync(store->add_task(t));
    for (const char *id : {"good", "future"})
        sync(store->add_schedule(schedule(id, every(10s)), ConflictPolicy::exception));
    raw_sql(path, "UPDATE schedules SET data = json_set(data, '$.version', 2, '$.trigger.type', "
                  "'lunar') WHERE id = 'future'");
    const auto future_before = [&] {
        sqlite3 *db = nullptr;
        sqlite3_open(path.c_str(), &db);
        sqlite3_stmt *st = nullptr;
        sqlite3_prepare_v2(db,
                           "SELECT data, acquired_by IS NULL FROM schedules WHERE id = 'future'",
                           -1, &st, nullptr);
        std::string out;
        if (sqlite3_step(st) == SQLITE_ROW)
            out = std::string(reinterpret_cast<const char *>(sqlite3_column_text(st, 0))) +
                  (sqlite3_column_int(st, 1) ? " free" : " leased");
        sqlite3_finalize(st);
        sqlite3_close(db);
        return out;
    };
    const auto before = future_before();
    BOOST_TEST(before.find(" free") != std::string::npos);
    for (int round = 0; round < 3; ++round) {
        auto leased = sync(store->acquire_schedules("w", 30s, 10));
        for (auto &l : leased)
            BOOST_TEST(l.id == "good");
        if (!leased.empty()) {
            ScheduleRelease r{"good", leased[0].lease_token, test::t0, test::t0 + 10s, {}, {}};
            std::vector<ScheduleRelease> rs{r};
            sync(store->release_schedules("w", rs));
        }
        // The skipped row is not what the loop wakes for (no busy loop on a row it skips).
        BOOST_TEST((sync(store->get_next_schedule_run_time()) == test::t0 + 10s));
    }
    BOOST_TEST(quarantined().empty());
    BOOST_TEST(future_before() == before); // untouched, and free for a newer node
    auto listed = sync(store->get_schedules(std::nullopt));
    BOOST_REQUIRE(listed.size() == 1u);
    BOOST_TEST(listed[0].id == "good");
    // A cleanup forgets what was skipped; the row is looked at again and still left alone.
    sync(store->cleanup());
    (void)sync(store->acquire_schedules("w", 30s, 10));
    BOOST_TEST(quarantined().empty());
    BOOST_TEST(future_before() == before);
}

BOOST_AUTO_TEST_CASE(undecodable_rows_are_quarantined_and_the_rest_still_work) {
    auto store = open();
    Task t;
    t.id = "t";
    t.max_running_jobs = std::nullopt;
    sync(store->add_task(t));
    for (const char *id : {"good", "corrupt", "unknown-trigger"})
        sync(store->add_schedule(schedule(id, every(10s)), ConflictPolicy::exception));
    raw_sql(path, "UPDATE schedules SET data = '{not json' WHERE id = 'corrupt'");
    raw_sql(path, "UPDATE schedules SET data = json_set(data, '$.trigger.type', 'lunar') "
                  "WHERE id = 'unknown-trigger'");
    auto leased = sync(store->acquire_schedules("w", 30s, 10));
    BOOST_REQUIRE(leased.size() == 1u);
    BOOST_TEST(leased[0].id == "good");
    auto q = quarantined();
    BOOST_REQUIRE(q.size() == 2u);
    std::set<std::string> ids{q[0].record_id, q[1].record_id};
    BOOST_TEST((ids == std::set<std::string>{"corrupt", "unknown-trigger"}));
    for (auto &e : q)
        BOOST_TEST(e.kind == "schedule");
    auto lunar = q[0].record_id == "unknown-trigger" ? q[0] : q[1];
    BOOST_TEST(lunar.error.find("lunar") != std::string::npos);
    BOOST_TEST(sync(store->get_schedules(std::nullopt)).size() == 1u);

    // A corrupt job is quarantined at acquisition; the healthy one is handed out.
    for (const char *id : {"j-bad", "j-ok"}) {
        Job j;
        j.id = id;
        j.task_id = "t";
        sync(store->add_job(j));
    }
    raw_sql(path, "UPDATE jobs SET args = '{\"not\": \"an array\"}' WHERE id = 'j-bad'");
    auto got = sync(store->acquire_jobs("w", 30s, 10, {"t"}));
    BOOST_REQUIRE(got.jobs.size() == 1u);
    BOOST_TEST(got.jobs[0].id == "j-ok");
    BOOST_TEST(quarantined().size() == 3u);
    // The quarantine keeps the original text for a human to look at.
    sqlite3 *db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_stmt *st = nullptr;
    sqlite3_prepare_v2(db, "SELECT data FROM quarantine WHERE id = 'corrupt'", -1, &st, nullptr);
    BOOST_REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    BOOST_TEST(std::string(reinterpret_cast<const char *>(sqlite3_column_text(st, 0))) ==
               "{not json");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

BOOST_AUTO_TEST_CASE(rows_nested_too_deep_are_quarantined_not_a_crash) {
    // 100,000 levels: a recursive decode would overflow the stack on every restart.
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    {
        auto store = open();
        Task t;
        t.id = "t";
        t.max_running_jobs = std::nullopt;
        sync(store->add_task(t));
        for (const char *id : {"deep", "good"})
            sync(store->add_schedule(schedule(id, every(10s)), ConflictPolicy::exception));
        for (const char *id : {"j-deep", "j-ok"}) {
            Job j;
            j.id = id;
            j.task_id = "t";
            sync(store->add_job(j));
        }
        sync(store->stop());
    }
    raw_sql(path, "UPDATE schedules SET data = replace(data, '\"args\":[]', '\"args\":[" + deep +
                      "]') WHERE id = 'deep'");
    raw_sql(path, "UPDATE jobs SET args = '[" + deep + "]' WHERE id = 'j-deep'");
    for (int restart = 0; restart < 3; ++restart) {
        auto store = open();
        auto leased = sync(store->acquire_schedules("w", 30s, 10));
        BOOST_REQUIRE(leased.size() == 1u);
        BOOST_TEST(leased[0].id == "good");
        auto got = sync(store->acquire_jobs("w", 30s, 10, {"t"}));
        BOOST_REQUIRE(got.jobs.size() <= 1u);
        if (!got.jobs.empty())
            BOOST_TEST(got.jobs[0].id == "j-ok");
        const auto q = quarantined(); // every event since the test began
        // Quarantined once, on the first start; later starts no longer see the rows.
        BOOST_TEST(q.size() == 2u);
        for (const auto &e : q)
            BOOST_TEST(e.error.find("nested deeper than 512 levels") != std::string::npos, e.error);
        sync(store->stop());
        clock->advance(1min); // every lease of this round has expired by the next
    }
}

BOOST_AUTO_TEST_CASE(two_connections_never_lease_the_same_job) {
    auto a = open();
    auto b = open();
    Task t;
    t.id = "t";
    t.max_running_jobs = std::nullopt;
    sync(a->add_task(t));
    constexpr int n = 400;
    for (int i = 0; i < n; ++i) {
        Job j;
        j.id = "job-" + std::to_string(i);
        j.task_id = "t";
        sync(a->add_job(j));
    }
    std::vector<std::string> got_a, got_b;
    auto drain = [](std::shared_ptr<SqliteDataStore> store, std::string who,
                    std::vector<std::string> &out) {
        for (;;) {
            auto acq = sync(store->acquire_jobs(who, 60s, 7, {"t"}));
            if (acq.jobs.empty())
                return;
            for (auto &j : acq.jobs)
                out.push_back(j.id);
        }
    };
    std::thread ta(drain, a, "a", std::ref(got_a));
    std::thread tb(drain, b, "b", std::ref(got_b));
    ta.join();
    tb.join();
    std::set<std::string> all(got_a.begin(), got_a.end());
    all.insert(got_b.begin(), got_b.end());
    BOOST_TEST(got_a.size() + got_b.size() == std::size_t(n));
    BOOST_TEST(all.size() == std::size_t(n));
}

BOOST_AUTO_TEST_SUITE_END()
