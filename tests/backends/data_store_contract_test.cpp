// The data-store contract: one suite, run against every store (MemoryDataStore,
// SqliteDataStore on a temporary file, PostgresDataStore on a private PostgreSQL server with a
// schema per test, MariaDbDataStore on a private MariaDB server with a database per test), on a
// manual clock. A new store joins `stores` below.
#include "servers.hpp"
#include "test_support.hpp"

#include <asched/data_stores/mariadb_data_store.hpp>
#include <asched/data_stores/postgres_data_store.hpp>

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>

#include <filesystem>

using namespace asched;
using namespace std::chrono_literals;

namespace {

const char *const store_kinds[] = {"memory", "sqlite", "postgres", "mariadb"};
const auto stores = boost::unit_test::data::make(store_kinds);

// One server for the whole run (initdb takes seconds); each test has a schema of its own.
test::PostgresServer &postgres() {
    return test::shared_postgres();
}

std::shared_ptr<DataStore> make_postgres_store() {
    static int n = 0;
    return std::make_shared<PostgresDataStore>(
        PostgresDataStoreOptions{.conninfo = postgres().conninfo(),
                                 .schema = "contract_" + std::to_string(++n),
                                 .database_clock = false});
}

std::shared_ptr<DataStore> make_mariadb_store() {
    static int n = 0;
    return std::make_shared<MariaDbDataStore>(
        MariaDbDataStoreOptions{.port = test::shared_mariadb().port(),
                                .user = "root",
                                .database = "contract_" + std::to_string(++n),
                                .database_clock = false});
}

struct StoreFixture : test::IoContextFixture {
    // The PostgreSQL store's sockets live on this io_context (ioc): it outlives the store, every
    // call runs on it, and a stopped store leaves nothing on it.
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(test::t0);
    std::shared_ptr<LocalEventBroker> broker = std::make_shared<LocalEventBroker>();
    test::TempDir dir;
    std::shared_ptr<DataStore> store;
    asio::io_context events_ioc;
    std::vector<Event> events;
    Subscription sub;

    template <class T> T sync(asio::awaitable<T> op) { return test::run(ioc, std::move(op)); }

    ~StoreFixture() {
        if (store) {
            try {
                sync(store->stop());
            } catch (const std::exception &e) {
                BOOST_TEST_MESSAGE("stopping the store failed: " << e.what());
            }
            store.reset();
        }
        expect_no_work_left();
    }

    void open(const std::string &kind) {
        if (kind == "memory")
            store = std::make_shared<MemoryDataStore>();
        else if (kind == "sqlite")
            store = std::make_shared<SqliteDataStore>(
                SqliteDataStoreOptions{.path = dir.path("store.db")});
        else if (kind == "mariadb")
            store = make_mariadb_store();
        else
            store = make_postgres_store();
        sync(store->start(StoreContext{broker, clock, Logger{LogLevel::off, {}}}));
        sub = broker->subscribe([this](const Event &e) { events.push_back(e); }, all_events,
                                events_ioc.get_executor());
        add_task("t", 1);
        event_names(); // each test sees only its own events
    }

    std::vector<std::string> event_names() {
        events_ioc.restart();
        events_ioc.poll();
        std::vector<std::string> out;
        for (auto &e : events)
            out.emplace_back(event_name(e));
        events.clear();
        return out;
    }

    void add_task(std::string id, std::optional<int> cap) {
        Task t;
        t.id = std::move(id);
        t.max_running_jobs = cap;
        sync(store->add_task(t));
    }

    Schedule schedule(std::string id, duration every = 10s) {
        Schedule s;
        s.id = std::move(id);
        s.task_id = "t";
        s.trigger = std::make_shared<IntervalTrigger>(
            IntervalTriggerOptions{.seconds = to_seconds(every), .start_time = clock->now()});
        s.next_fire_time = clock->now();
        return s;
    }

    Job job(std::string task = "t") {
        Job j;
        j.id = make_uuid();
        j.task_id = std::move(task);
        j.created_at = clock->now();
        return j;
    }

    JobResult result(const Job &j, JobOutcome outcome, duration keep = 1h) {
        JobResult r;
        r.job_id = j.id;
        r.task_id = j.task_id;
        r.outcome = outcome;
        r.started_at = clock->now();
        r.finished_at = clock->now();
        r.expires_at = clock->now() + keep;
        return r;
    }

    JobAcquisition acquire(std::size_t limit, std::vector<std::string> tasks = {"t"},
                           std::string who = "w1") {
        return sync(store->acquire_jobs(who, 30s, limit, tasks));
    }
};

} // namespace

BOOST_AUTO_TEST_SUITE(data_store_contract)

BOOST_DATA_TEST_CASE_F(StoreFixture, tasks_upsert_keeps_running_jobs, stores, kind) {
    open(kind);
    BOOST_TEST(event_names() == std::vector<std::string>{});
    add_task("t", 3);
    BOOST_TEST(event_names() == std::vector<std::string>{"TaskUpdated"});
    BOOST_TEST(sync(store->get_task("t")).max_running_jobs == 3);
    BOOST_CHECK_THROW(sync(store->get_task("nope")), Error);
    add_task("a", 1);
    auto tasks = sync(store->get_tasks());
    BOOST_TEST(tasks.size() == 2u);
    BOOST_TEST(tasks[0].id == "a");
    sync(store->remove_task("a"));
    BOOST_TEST(event_names() == (std::vector<std::string>{"TaskAdded", "TaskRemoved"}));
}

BOOST_DATA_TEST_CASE_F(StoreFixture, conflict_policies, stores, kind) {
    open(kind);
    BOOST_TEST(sync(store->add_schedule(schedule("s"), ConflictPolicy::do_nothing)));
    auto changed = schedule("s", 20s);
    BOOST_TEST(!sync(store->add_schedule(changed, ConflictPolicy::do_nothing)));
    BOOST_CHECK_THROW(sync(store->add_schedule(changed, ConflictPolicy::exception)), Error);
    try {
        sync(store->add_schedule(changed, ConflictPolicy::exception));
    } catch (const Error &e) {
        BOOST_TEST(e.code_value() == errc::conflicting_id);
    }
    BOOST_TEST(sync(store->add_schedule(changed, ConflictPolicy::replace)));
    auto stored = sync(store->get_schedules(std::nullopt));
    BOOST_TEST(stored.size() == 1u);
    BOOST_TEST(stored[0].trigger->to_json() == changed.trigger->to_json());
    BOOST_TEST(event_names() == (std::vector<std::string>{"ScheduleAdded", "ScheduleUpdated"}));
    Schedule orphan = schedule("o");
    orphan.task_id = "missing";
    BOOST_CHECK_THROW(sync(store->add_schedule(orphan, ConflictPolicy::do_nothing)), Error);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, due_schedules_are_leased_in_fire_time_order, stores, kind) {
    open(kind);
    auto late = schedule("late");
    late.next_fire_time = test::t0 + 5s;
    sync(store->add_schedule(late, ConflictPolicy::exception));
    auto early = schedule("early");
    sync(store->add_schedule(early, ConflictPolicy::exception));
    auto paused = schedule("paused");
    paused.paused = true;
    sync(store->add_schedule(paused, ConflictPolicy::exception));

    BOOST_TEST((sync(store->get_next_schedule_run_time()) == test::t0));
    auto got = sync(store->acquire_schedules("a", 30s, 10));
    BOOST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].id == "early");
    BOOST_TEST(sync(store->acquire_schedules("b", 30s, 10)).empty()); // leased
    clock->advance(10s);
    auto both = sync(store->acquire_schedules("b", 30s, 10));
    BOOST_TEST(both.size() == 1u); // "late"; "early" is still leased to a
    clock->advance(30s);
    auto retaken = sync(store->acquire_schedules("b", 30s, 10));
    BOOST_TEST(retaken.size() == 2u); // both leases expired
}

BOOST_DATA_TEST_CASE_F(StoreFixture, release_creates_jobs_once_per_fire_and_checks_the_token,
                       stores, kind) {
    open(kind);
    sync(store->add_schedule(schedule("s"), ConflictPolicy::exception));
    auto got = sync(store->acquire_schedules("a", 30s, 1));
    BOOST_REQUIRE(got.size() == 1u);
    auto make = [&](time_point fire) {
        Job j = job();
        j.schedule_id = "s";
        j.scheduled_fire_time = fire;
        return j;
    };
    std::vector<ScheduleRelease> wrong{
        {"s", got[0].lease_token + 1, test::t0, test::t0 + 10s, {make(test::t0)}}};
    sync(store->release_schedules("a", wrong));
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).empty()); // refused: stale token
    std::vector<ScheduleRelease> right{
        {"s", got[0].lease_token, test::t0, test::t0 + 10s, {make(test::t0), make(test::t0)}}};
    sync(store->release_schedules("a", right));
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).size() == 1u); // unique (schedule, fire)
    auto s = sync(store->get_schedules(std::nullopt)).at(0);
    BOOST_TEST(!s.acquired_by);
    BOOST_TEST((s.next_fire_time == test::t0 + 10s));
    BOOST_TEST((s.last_fire_time == test::t0));
    // The same fire again (a retry after a crash) creates nothing.
    clock->advance(10s);
    auto again = sync(store->acquire_schedules("a", 30s, 1));
    std::vector<ScheduleRelease> dup{
        {"s", again.at(0).lease_token, test::t0, test::t0 + 20s, {make(test::t0)}}};
    sync(store->release_schedules("a", dup));
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).size() == 1u);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, replacing_a_leased_schedule_refuses_the_old_release, stores,
                       kind) {
    open(kind);
    sync(store->add_schedule(schedule("s"), ConflictPolicy::exception));
    auto got = sync(store->acquire_schedules("a", 30s, 1));
    auto paused = got.at(0);
    paused.paused = true;
    sync(store->add_schedule(paused, ConflictPolicy::replace));
    Job j = job();
    j.schedule_id = "s";
    j.scheduled_fire_time = test::t0;
    std::vector<ScheduleRelease> rel{{"s", got[0].lease_token, test::t0, test::t0 + 10s, {j}}};
    sync(store->release_schedules("a", rel));
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).empty());
    BOOST_TEST(sync(store->get_schedules(std::nullopt)).at(0).paused);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, jobs_respect_the_per_task_cap_and_registered_tasks, stores,
                       kind) {
    open(kind);
    add_task("other", std::nullopt);
    for (int i = 0; i < 3; ++i)
        sync(store->add_job(job()));
    for (int i = 0; i < 3; ++i)
        sync(store->add_job(job("other")));
    BOOST_TEST(acquire(10, {"nobody"}).jobs.empty());
    auto first = acquire(10, {"t", "other"});
    BOOST_TEST(first.jobs.size() == 4u); // 1 of "t" (cap 1) + 3 of "other"
    BOOST_TEST(acquire(10, {"t"}).jobs.empty());
    BOOST_TEST(sync(store->get_task("t")).running_jobs == 1);
    const Job &running = *std::find_if(first.jobs.begin(), first.jobs.end(),
                                       [](const Job &j) { return j.task_id == "t"; });
    BOOST_TEST(sync(store->release_job("w1", running, result(running, JobOutcome::success))));
    BOOST_TEST(sync(store->get_task("t")).running_jobs == 0);
    BOOST_TEST(acquire(10, {"t"}).jobs.size() == 1u);
    // Unknown task for a job.
    BOOST_CHECK_THROW(sync(store->add_job(job("ghost"))), Error);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, jobs_are_handed_out_oldest_first, stores, kind) {
    open(kind);
    add_task("u", std::nullopt);
    add_task("t", std::nullopt);
    std::vector<std::string> ids;
    for (int i = 0; i < 6; ++i) {
        Job j = job(i % 2 ? "t" : "u");
        ids.push_back(j.id);
        sync(store->add_job(j));
    }
    auto got = acquire(6, {"t", "u"});
    std::vector<std::string> order;
    for (auto &j : got.jobs)
        order.push_back(j.id);
    BOOST_TEST(order == ids);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, release_checks_holder_and_token, stores, kind) {
    open(kind);
    sync(store->add_job(job()));
    auto got = acquire(1).jobs.at(0);
    BOOST_TEST(!sync(store->release_job("intruder", got, result(got, JobOutcome::success))));
    Job stale = got;
    stale.lease_token += 1;
    BOOST_TEST(!sync(store->release_job("w1", stale, result(got, JobOutcome::success))));
    BOOST_TEST(sync(store->release_job("w1", got, result(got, JobOutcome::success))));
    auto r = sync(store->get_job_result(got.id));
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::success);
    BOOST_TEST(sync(store->get_job_result(got.id)).has_value()); // reading does not delete
}

BOOST_DATA_TEST_CASE_F(StoreFixture, batches_add_all_or_nothing_and_release_each, stores, kind) {
    open(kind);
    std::vector<Job> batch{job(), job(), job()};
    sync(store->add_jobs(batch));
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).size() == 3u);
    // One bad job (a repeated id, an unknown task) and none of the batch is added.
    std::vector<Job> repeated{job(), batch[0]};
    BOOST_CHECK_THROW(sync(store->add_jobs(repeated)), Error);
    std::vector<Job> orphan{job(), job("missing")};
    BOOST_CHECK_THROW(sync(store->add_jobs(orphan)), Error);
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).size() == 3u);
    Job keyed = job();
    keyed.schedule_id = "s";
    keyed.scheduled_fire_time = test::t0;
    Job same_fire = keyed;
    same_fire.id = make_uuid();
    std::vector<Job> twice{keyed, same_fire};
    BOOST_CHECK_THROW(sync(store->add_jobs(twice)), Error);
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).size() == 3u);
    event_names();

    add_task("t", 10);
    auto got = acquire(10).jobs;
    BOOST_REQUIRE(got.size() == 3u);
    Job stale = got[1];
    stale.lease_token += 1;
    std::vector<JobRelease> releases{{got[0], result(got[0], JobOutcome::success)},
                                     {stale, result(got[1], JobOutcome::success)},
                                     {got[2], result(got[2], JobOutcome::error)}};
    auto applied = sync(store->release_jobs("w1", releases));
    BOOST_TEST((applied == std::vector<bool>{true, false, true}));
    BOOST_TEST(sync(store->get_job_result(got[0].id))->outcome == JobOutcome::success);
    BOOST_TEST(sync(store->get_job_result(got[2].id))->outcome == JobOutcome::error);
    BOOST_TEST(!sync(store->get_job_result(got[1].id)).has_value());
    // The refused one still holds its slot; the two released ones freed theirs.
    BOOST_TEST(sync(store->get_task("t")).running_jobs == 1);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, results_expire, stores, kind) {
    open(kind);
    sync(store->add_job(job()));
    auto got = acquire(1).jobs.at(0);
    sync(store->release_job("w1", got, result(got, JobOutcome::success, 10s)));
    BOOST_TEST(sync(store->get_job_result(got.id)).has_value());
    clock->advance(10s);
    BOOST_TEST(!sync(store->get_job_result(got.id)).has_value());
    sync(store->cleanup());
    // A result whose expiry is not after its finish is never kept.
    sync(store->add_job(job()));
    auto second = acquire(1).jobs.at(0);
    sync(store->release_job("w1", second, result(second, JobOutcome::success, 0s)));
    BOOST_TEST(!sync(store->get_job_result(second.id)).has_value());
}

BOOST_DATA_TEST_CASE_F(StoreFixture, missed_deadlines_are_released_at_acquisition, stores, kind) {
    open(kind);
    Job j = job();
    j.start_deadline = test::t0 + 1s;
    j.result_expiration_time = 1h;
    sync(store->add_job(j));
    clock->advance(2s);
    BOOST_TEST(acquire(5).jobs.empty());
    auto r = sync(store->get_job_result(j.id));
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::missed_start_deadline);
    BOOST_TEST(!r->started_at);
    event_names();
}

BOOST_DATA_TEST_CASE_F(StoreFixture, jittered_jobs_wait_for_their_start, stores, kind) {
    open(kind);
    Job j = job();
    j.schedule_id = "s";
    j.scheduled_fire_time = test::t0;
    j.jitter = 3s;
    sync(store->add_job(j));
    auto none = acquire(5);
    BOOST_TEST(none.jobs.empty());
    BOOST_TEST((none.next_ready_time == test::t0 + 3s));
    clock->advance(3s);
    BOOST_TEST(acquire(5).jobs.size() == 1u);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, expired_job_leases_end_abandoned, stores, kind) {
    open(kind);
    Job j = job();
    j.result_expiration_time = 1h;
    sync(store->add_job(j));
    auto got = acquire(1).jobs.at(0);
    clock->advance(20s);
    sync(store->extend_acquired_job_leases("w1", {got.id}, 30s));
    clock->advance(20s);
    sync(store->cleanup());
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).size() == 1u); // renewed: still running
    clock->advance(11s);
    sync(store->cleanup());
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).empty());
    auto r = sync(store->get_job_result(got.id));
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::abandoned);
    BOOST_TEST(sync(store->get_task("t")).running_jobs == 0);
    BOOST_TEST(!sync(store->release_job("w1", got, result(got, JobOutcome::success))));
}

BOOST_DATA_TEST_CASE_F(StoreFixture, an_expired_lease_is_not_renewed, stores, kind) {
    open(kind);
    sync(store->add_job(job()));
    auto got = acquire(1).jobs.at(0); // a 30 s lease
    sync(store->add_schedule(schedule("s"), ConflictPolicy::exception));
    auto leased = sync(store->acquire_schedules("w1", 30s, 10));
    BOOST_REQUIRE(leased.size() == 1u);
    clock->advance(31s);
    sync(store->extend_acquired_job_leases("w1", {got.id}, 30s));
    sync(store->extend_acquired_schedule_leases("w1", {"s"}, 30s));
    // Too late: another worker gets the schedule, and the job ends abandoned.
    BOOST_TEST(sync(store->acquire_schedules("w2", 30s, 10)).size() == 1u);
    BOOST_TEST(acquire(1, {"t"}, "w2").jobs.empty());
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).empty());
    BOOST_TEST(!sync(store->release_job("w1", got, result(got, JobOutcome::success))));
}

BOOST_DATA_TEST_CASE_F(StoreFixture, a_jobs_timeout_is_kept, stores, kind) {
    open(kind);
    Job limited = job();
    limited.timeout = 2500ms;
    Job unlimited = job();
    sync(store->add_jobs({limited, unlimited}));
    auto listed = sync(store->get_jobs(std::nullopt));
    BOOST_REQUIRE(listed.size() == 2u);
    BOOST_TEST((listed[0].timeout == std::optional<duration>(2500ms)));
    BOOST_TEST(!listed[1].timeout);
    auto got = acquire(1).jobs.at(0);
    BOOST_TEST((got.timeout == std::optional<duration>(2500ms)));
}

BOOST_DATA_TEST_CASE_F(StoreFixture, cancelling_queued_and_running_jobs, stores, kind) {
    open(kind);
    add_task("u", std::nullopt);
    Job running = job("u"), queued = job("u");
    queued.result_expiration_time = 1h;
    running.result_expiration_time = 1h;
    sync(store->add_job(running));
    auto got = acquire(1, {"u"}).jobs.at(0);
    BOOST_TEST(got.id == running.id);
    sync(store->add_job(queued));
    event_names();

    // Queued: removed at once, its result says cancelled; no slot was held.
    BOOST_TEST((sync(store->cancel_job(queued.id, "w2")) == JobCancellation::removed));
    auto r = sync(store->get_job_result(queued.id));
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::cancelled);
    BOOST_TEST(!r->started_at);
    BOOST_TEST((event_names() == std::vector<std::string>{"JobReleased"}));
    BOOST_TEST(sync(store->get_jobs(std::vector<std::string>{queued.id})).empty());

    // Running: flagged; the holder learns it from its next lease renewal, and only the holder.
    BOOST_TEST((sync(store->cancel_job(running.id, "w2")) == JobCancellation::requested));
    events_ioc.restart();
    events_ioc.poll();
    const auto requested = events;
    BOOST_TEST((event_names() == std::vector<std::string>{"JobCancelRequested"}));
    BOOST_REQUIRE(requested.size() == 1u);
    BOOST_TEST(std::get<JobCancelRequested>(requested[0]).scheduler_id == "w1");
    BOOST_TEST(sync(store->extend_acquired_job_leases("w2", {running.id}, 30s)).empty());
    auto flagged = sync(store->extend_acquired_job_leases("w1", {running.id}, 30s));
    BOOST_TEST((flagged == std::vector<std::string>{running.id}));
    BOOST_TEST(sync(store->get_jobs(std::vector<std::string>{running.id})).size() == 1u);
    BOOST_TEST(sync(store->release_job("w1", got, result(got, JobOutcome::cancelled))));
    BOOST_TEST(sync(store->get_job_result(running.id))->outcome == JobOutcome::cancelled);

    // Neither queued nor running any more, and never known: job_lookup.
    for (const auto &id : {running.id, std::string("no-such-job")}) {
        try {
            sync(store->cancel_job(id, "w1"));
            BOOST_FAIL("no error for " + id);
        } catch (const Error &e) {
            BOOST_TEST((e.code_value() == errc::job_lookup));
            BOOST_TEST(std::string(e.what()).find(id) != std::string::npos);
        }
    }
}

RetryPolicy three_tries() {
    RetryPolicy r;
    r.max_attempts = 3;
    r.initial_delay = 10s;
    r.multiplier = 2;
    r.jitter = 0;
    return r;
}

BOOST_DATA_TEST_CASE_F(StoreFixture, retries_requeue_the_same_row_until_attempts_run_out, stores,
                       kind) {
    open(kind);
    Job j = job();
    j.retry = three_tries();
    j.result_expiration_time = 1h;
    sync(store->add_job(j));
    const auto start = clock->now();
    // Attempt 1 fails: the row becomes attempt 2, due 10 s later; the slot is free.
    auto a1 = acquire(1).jobs.at(0);
    BOOST_TEST(a1.attempt == 1u);
    BOOST_TEST(sync(store->release_job("w1", a1, result(a1, JobOutcome::error))));
    BOOST_TEST(sync(store->get_task("t")).running_jobs == 0);
    BOOST_TEST(!sync(store->get_job_result(j.id)));
    auto queued = sync(store->get_jobs(std::nullopt));
    BOOST_REQUIRE(queued.size() == 1u);
    BOOST_TEST(queued[0].id == j.id);
    BOOST_TEST(queued[0].attempt == 2u);
    BOOST_TEST((queued[0].retry == std::optional<RetryPolicy>(three_tries())));
    auto early = acquire(1);
    BOOST_TEST(early.jobs.empty());
    BOOST_TEST((early.next_ready_time == start + 10s));
    clock->advance(10s);
    // Attempt 2 times out: attempt 3 is due 20 s later.
    auto a2 = acquire(1).jobs.at(0);
    BOOST_TEST(a2.attempt == 2u);
    BOOST_TEST(sync(store->release_job("w1", a2, result(a2, JobOutcome::timed_out))));
    clock->advance(19s);
    BOOST_TEST(acquire(1).jobs.empty());
    clock->advance(1s);
    // Attempt 3 fails too: no attempts left, the result is stored and the row gone.
    auto a3 = acquire(1).jobs.at(0);
    BOOST_TEST(a3.attempt == 3u);
    auto final_result = result(a3, JobOutcome::error);
    final_result.attempt = a3.attempt;
    BOOST_TEST(sync(store->release_job("w1", a3, final_result)));
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).empty());
    auto r = sync(store->get_job_result(j.id));
    BOOST_REQUIRE(r);
    BOOST_TEST(r->outcome == JobOutcome::error);
    BOOST_TEST(r->attempt == 3u);
    // Every attempt is in the history, newest first; the retried ones say when.
    auto page = sync(store->get_job_history(JobHistoryFilter{}));
    BOOST_REQUIRE(page.records.size() == 3u);
    BOOST_TEST(page.records[0].attempt == 3u);
    BOOST_TEST(!page.records[0].retry_at);
    BOOST_TEST(page.records[1].attempt == 2u);
    BOOST_TEST(page.records[1].outcome == JobOutcome::timed_out);
    BOOST_TEST((page.records[1].retry_at == start + 30s));
    BOOST_TEST(page.records[2].attempt == 1u);
    BOOST_TEST((page.records[2].retry_at == start + 10s));
    BOOST_TEST(page.records[2].worker == "w1");
    // A success is never retried; nor is an outcome the policy leaves out.
    Job k = job();
    k.retry = three_tries();
    k.retry->on_error = false;
    sync(store->add_job(k));
    auto b1 = acquire(1).jobs.at(0);
    BOOST_TEST(sync(store->release_job("w1", b1, result(b1, JobOutcome::error))));
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).empty());
}

BOOST_DATA_TEST_CASE_F(StoreFixture, an_abandoned_attempt_is_retried_by_the_store, stores, kind) {
    open(kind);
    Job j = job();
    j.retry = three_tries();
    sync(store->add_job(j));
    auto got = acquire(1).jobs.at(0); // a 30 s lease, never renewed: its node died
    clock->advance(31s);
    sync(store->cleanup());
    auto queued = sync(store->get_jobs(std::nullopt));
    BOOST_REQUIRE(queued.size() == 1u);
    BOOST_TEST(queued[0].attempt == 2u);
    BOOST_TEST(!queued[0].acquired_by);
    BOOST_TEST(sync(store->get_task("t")).running_jobs == 0);
    auto page = sync(store->get_job_history(JobHistoryFilter{}));
    BOOST_REQUIRE(page.records.size() == 1u);
    BOOST_TEST(page.records[0].outcome == JobOutcome::abandoned);
    BOOST_TEST((page.records[0].retry_at == test::t0 + 41s));
    // The dead node's late release is refused; another node runs attempt 2 once.
    BOOST_TEST(!sync(store->release_job("w1", got, result(got, JobOutcome::success))));
    clock->advance(10s);
    auto second = acquire(1, {"t"}, "w2").jobs;
    BOOST_REQUIRE(second.size() == 1u);
    BOOST_TEST(second[0].attempt == 2u);
    BOOST_TEST(sync(store->release_job("w2", second[0], result(second[0], JobOutcome::success))));
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).empty());
}

BOOST_DATA_TEST_CASE_F(StoreFixture, history_filters_pages_and_pruning, stores, kind) {
    open(kind);
    add_task("u", std::nullopt);
    add_task("t2", std::nullopt);
    // 7 jobs of "u" (every other one failing), 3 of "t2", one second apart.
    std::vector<std::string> u_ids;
    for (int i = 0; i < 10; ++i) {
        Job j = job(i < 7 ? "u" : "t2");
        if (i < 7)
            u_ids.push_back(j.id);
        sync(store->add_job(j));
        auto got = acquire(1, {j.task_id}).jobs.at(0);
        sync(store->release_job("w1", got,
                                result(got, i % 2 ? JobOutcome::error : JobOutcome::success)));
        clock->advance(1s);
    }
    JobHistoryFilter u;
    u.task_id = "u";
    u.limit = 3;
    std::vector<std::string> seen;
    std::optional<std::string> cursor;
    int pages = 0;
    do {
        u.cursor = cursor;
        auto page = sync(store->get_job_history(u));
        ++pages;
        for (auto &r : page.records) {
            BOOST_TEST(r.task_id == "u");
            seen.push_back(r.job_id);
        }
        cursor = page.next_cursor;
    } while (cursor && pages < 10);
    BOOST_TEST(pages == 3);
    std::reverse(seen.begin(), seen.end());
    BOOST_TEST(seen == u_ids); // newest first, each once, across pages

    JobHistoryFilter failed;
    failed.outcome = JobOutcome::error;
    BOOST_TEST(sync(store->get_job_history(failed)).records.size() == 5u);
    JobHistoryFilter window;
    window.since = test::t0 + 2s;
    window.until = test::t0 + 5s; // finished at 2, 3 and 4 s
    BOOST_TEST(sync(store->get_job_history(window)).records.size() == 3u);
    JobHistoryFilter bad;
    bad.cursor = "not-a-cursor";
    BOOST_CHECK_THROW(sync(store->get_job_history(bad)), Error);
    bad.cursor.reset();
    bad.limit = 0;
    BOOST_CHECK_THROW(sync(store->get_job_history(bad)), Error);

    BOOST_TEST(sync(store->prune_history(test::t0 + 4s)) == 4u);
    BOOST_TEST(sync(store->get_job_history(JobHistoryFilter{})).records.size() == 6u);
}

static WorkerInfo worker_row(std::string identity, std::string boot,
                             std::vector<std::string> tasks) {
    WorkerInfo w;
    w.identity = std::move(identity);
    w.boot_id = std::move(boot);
    w.host = "host-a";
    w.pid = 4242;
    w.process_scope = "scope";
    w.role = SchedulerRole::worker;
    w.task_ids = std::move(tasks);
    return w;
}

BOOST_DATA_TEST_CASE_F(StoreFixture, check_reports_the_schema_and_a_sound_store, stores, kind) {
    open(kind);
    sync(store->add_job(job()));
    sync(store->add_job(job()));
    BOOST_REQUIRE(acquire(1).jobs.size() == 1u); // one running: the counter says 1
    const StoreCheck c = sync(store->check());
    BOOST_TEST(c.backend == std::string(kind));
    BOOST_TEST(c.problems.empty(), c.problems.size() << " problem(s)");
    BOOST_TEST(c.quarantined == 0u);
    const std::string k = kind;
    BOOST_TEST(c.schema_version == (k == "memory"    ? 0
                                    : k == "mariadb" ? MariaDbDataStore::schema_version
                                                     : 4));
    BOOST_TEST(c.found_version == 0); // a new store: the schema was created
    BOOST_TEST(!c.location.empty());
}

BOOST_DATA_TEST_CASE_F(StoreFixture, worker_registry_rows, stores, kind) {
    open(kind);
    BOOST_TEST(sync(store->get_workers()).empty());
    const auto start = clock->now();
    sync(store->register_worker(worker_row("n1", "boot-1", {"t"}), 30s, std::nullopt));
    sync(store->register_worker(worker_row("n0", "boot-0", {}), 30s, std::nullopt));
    auto rows = sync(store->get_workers());
    BOOST_REQUIRE(rows.size() == 2u);
    BOOST_TEST(rows[0].identity == "n0"); // sorted by identity
    const auto &n1 = rows[1];
    BOOST_TEST(n1.boot_id == "boot-1");
    BOOST_TEST(n1.host == "host-a");
    BOOST_TEST(n1.pid == 4242);
    BOOST_TEST(n1.process_scope == "scope");
    BOOST_TEST(to_string(n1.role) == "worker");
    BOOST_TEST(n1.task_ids == std::vector<std::string>{"t"});
    BOOST_TEST(n1.started_at == start);
    BOOST_TEST(n1.last_seen == start);
    BOOST_TEST(n1.expires_at == start + 30s);
    BOOST_TEST(n1.live_at(clock->now()));

    // A second process with the identity is refused while the row is live, and changes nothing.
    try {
        sync(store->register_worker(worker_row("n1", "boot-2", {}), 30s, std::nullopt));
        BOOST_FAIL("a live identity was registered twice");
    } catch (const Error &e) {
        BOOST_TEST(int(e.code_value()) == int(errc::identity_in_use));
        const std::string what = e.what();
        BOOST_TEST(what.find("'n1'") != std::string::npos, what);
        BOOST_TEST(what.find("pid 4242") != std::string::npos, what);
        BOOST_TEST(what.find("host-a") != std::string::npos, what);
    }
    BOOST_TEST(sync(store->get_workers())[1].boot_id == "boot-1");
    // ...and cannot renew it either.
    BOOST_TEST(!sync(store->renew_worker(worker_row("n1", "boot-2", {}), 30s)));

    // The holder renews: last_seen moves, started_at stays, the task list is replaced.
    clock->advance(10s);
    BOOST_TEST(sync(store->renew_worker(worker_row("n1", "boot-1", {"t", "u"}), 30s)));
    rows = sync(store->get_workers());
    BOOST_TEST(rows[1].started_at == start);
    BOOST_TEST(rows[1].last_seen == start + 10s);
    BOOST_TEST(rows[1].expires_at == start + 40s);
    BOOST_TEST((rows[1].task_ids == std::vector<std::string>{"t", "u"}));

    // The caller found the holder's process gone: it names the boot id it replaces.
    sync(store->register_worker(worker_row("n1", "boot-3", {"t"}), 30s, std::string("boot-1")));
    rows = sync(store->get_workers());
    BOOST_TEST(rows[1].boot_id == "boot-3");
    BOOST_TEST(rows[1].started_at == start + 10s); // a new run
    // A stale replacement (naming a boot id that is no longer the row's) is refused.
    BOOST_CHECK_THROW(
        sync(store->register_worker(worker_row("n1", "boot-4", {}), 30s, std::string("boot-1"))),
        Error);

    // Unregistering needs the row's own boot id.
    sync(store->unregister_worker("n1", "boot-1"));
    BOOST_TEST(sync(store->get_workers()).size() == 2u);
    sync(store->unregister_worker("n1", "boot-3"));
    BOOST_TEST(sync(store->get_workers()).size() == 1u);

    // A dead row (expired) is taken without naming it; renewing re-creates a missing row.
    clock->advance(31s);
    BOOST_TEST(!sync(store->get_workers())[0].live_at(clock->now()));
    sync(store->register_worker(worker_row("n0", "boot-5", {}), 30s, std::nullopt));
    BOOST_TEST(sync(store->get_workers())[0].boot_id == "boot-5");
    BOOST_TEST(sync(store->renew_worker(worker_row("n9", "boot-9", {}), 30s)));
    BOOST_TEST(sync(store->get_workers()).size() == 2u);

    // cleanup() deletes rows dead for over an hour, not before.
    clock->advance(30s + 59min);
    sync(store->renew_worker(worker_row("n9", "boot-9", {}), 30s));
    sync(store->cleanup());
    BOOST_TEST(sync(store->get_workers()).size() == 2u);
    clock->advance(2min);
    sync(store->renew_worker(worker_row("n9", "boot-9", {}), 30s));
    sync(store->cleanup());
    rows = sync(store->get_workers());
    BOOST_REQUIRE(rows.size() == 1u);
    BOOST_TEST(rows[0].identity == "n9");
}

BOOST_DATA_TEST_CASE_F(StoreFixture, registering_frees_the_identitys_schedule_leases, stores,
                       kind) {
    open(kind);
    sync(store->add_schedule(schedule("a"), ConflictPolicy::exception));
    sync(store->add_schedule(schedule("b"), ConflictPolicy::exception));
    // "n1" leases "a" for an hour and dies; "n2" holds "b".
    BOOST_TEST(sync(store->acquire_schedules("n1", 1h, 1)).size() == 1u);
    BOOST_TEST(sync(store->acquire_schedules("n2", 1h, 1)).size() == 1u);
    BOOST_TEST(sync(store->acquire_schedules("n3", 1h, 10)).empty());
    // Its restart registers: "a" is due again at once, "b" stays n2's.
    sync(store->register_worker(worker_row("n1", "boot-1", {"t"}), 30s, std::nullopt));
    auto again = sync(store->acquire_schedules("n1", 30s, 10));
    BOOST_REQUIRE(again.size() == 1u);
    BOOST_TEST(again[0].id == "a");
    BOOST_TEST(*sync(store->get_next_schedule_run_time()) == clock->now() + 30s);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, reaping_abandons_only_the_callers_jobs, stores, kind) {
    open(kind);
    add_task("t", std::nullopt);
    for (int i = 0; i < 2; ++i) {
        Job j = job();
        j.result_expiration_time = 1h;
        sync(store->add_job(j));
    }
    auto mine = acquire(1, {"t"}, "me").jobs.at(0);
    auto theirs = acquire(1, {"t"}, "them").jobs.at(0);
    sync(store->reap_abandoned_jobs("me"));
    BOOST_TEST(sync(store->get_job_result(mine.id))->outcome == JobOutcome::abandoned);
    BOOST_TEST(sync(store->get_jobs(std::nullopt)).at(0).id == theirs.id);
}

BOOST_DATA_TEST_CASE_F(StoreFixture, cleanup_removes_finished_schedules_without_jobs, stores,
                       kind) {
    open(kind);
    Schedule once = schedule("once");
    once.trigger = std::make_shared<DateTrigger>(test::t0);
    sync(store->add_schedule(once, ConflictPolicy::exception));
    auto got = sync(store->acquire_schedules("a", 30s, 1));
    Job j = job();
    j.schedule_id = "once";
    j.scheduled_fire_time = test::t0;
    std::vector<ScheduleRelease> rel{{"once", got.at(0).lease_token, test::t0, std::nullopt, {j}}};
    sync(store->release_schedules("a", rel));
    sync(store->cleanup());
    BOOST_TEST(sync(store->get_schedules(std::nullopt)).size() == 1u); // its job still exists
    auto running = acquire(1).jobs.at(0);
    sync(store->release_job("w1", running, result(running, JobOutcome::success)));
    event_names();
    sync(store->cleanup());
    BOOST_TEST(sync(store->get_schedules(std::nullopt)).empty());
    auto names = event_names();
    BOOST_TEST(names == std::vector<std::string>{"ScheduleRemoved"});
}

BOOST_DATA_TEST_CASE_F(StoreFixture, events_of_a_job_lifecycle, stores, kind) {
    open(kind);
    event_names();
    sync(store->add_job(job()));
    auto got = acquire(1).jobs.at(0);
    sync(store->release_job("w1", got, result(got, JobOutcome::success)));
    BOOST_TEST(event_names() ==
               (std::vector<std::string>{"JobAdded", "JobAcquired", "JobReleased"}));
}

BOOST_AUTO_TEST_SUITE_END()
