// Stopping never loses a result the store could take: jobs finishing at the stop, an
// acquisition in flight when the stop comes, a store failing during the drain, and the
// handle destroyed while releases are in flight. On memory, SQLite and PostgreSQL.
#include "fixture.hpp"
#include "hooked_store.hpp"
#include "servers.hpp"

using namespace asched;
using namespace std::chrono_literals;
using test::eventually;
using test::Gate;
using test::SchedulerFixture;
using test::wait_at;

namespace {

enum class Backend { memory, sqlite, postgres };

std::shared_ptr<DataStore> make_store(Backend b, test::TempDir &dir) {
    static int n = 0;
    ++n;
    switch (b) {
    case Backend::memory:
        return std::make_shared<MemoryDataStore>();
    case Backend::sqlite:
        return std::make_shared<SqliteDataStore>(
            SqliteDataStoreOptions{.path = dir.path("drain-" + std::to_string(n) + ".db")});
    case Backend::postgres:
        return std::make_shared<PostgresDataStore>(
            PostgresDataStoreOptions{.conninfo = test::shared_postgres().conninfo(),
                                     .schema = "drain_" + std::to_string(n),
                                     .database_clock = false});
    }
    return nullptr;
}

struct Rig {
    Rig(Backend b, AsyncSchedulerOptions o = SchedulerFixture::base_options())
        : inner(make_store(b, dir)), hooks(std::make_shared<test::StoreHooks>()) {
        o.data_store = std::make_shared<test::HookedStore>(inner, hooks);
        fixture.emplace(std::move(o));
    }
    // The store's sockets live on the fixture's io_context: close it while that still exists.
    ~Rig() {
        try {
            fixture->run(SchedulerFixture::stop_and_wait(fixture->s()));
            fixture->run(fixture->s().close());
        } catch (...) {
        }
    }
    test::TempDir dir;
    std::shared_ptr<DataStore> inner;
    std::shared_ptr<test::StoreHooks> hooks;
    std::optional<SchedulerFixture> fixture;
    SchedulerFixture &f() { return *fixture; }
};

asio::awaitable<std::vector<std::string>> add_jobs(AsyncScheduler &s, const char *task, int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
        JobOptions keep{.args = {i}, .result_expiration_time = 1h};
        auto id = co_await s.add_job(task, keep);
        ids.push_back(id);
    }
    co_return ids;
}

// Every id has exactly one kept result, with `outcome`, and nothing is left queued or leased.
asio::awaitable<void> each_has_one_result(SchedulerFixture *f, std::vector<std::string> ids,
                                          JobOutcome outcome) {
    auto &s = f->s();
    for (const auto &id : ids) {
        auto r = co_await s.get_job_result(id, false);
        BOOST_TEST_REQUIRE(r.has_value());
        BOOST_TEST(r->outcome == outcome);
    }
    std::map<std::string, int> released;
    for (auto &e : f->recorder->of<JobReleased>())
        ++released[e.job_id];
    for (const auto &id : ids)
        BOOST_TEST(released[id] == 1, "job " << id << " released " << released[id] << " times");
    auto left = co_await s.get_jobs();
    BOOST_TEST(left.empty());
}

asio::awaitable<void> stop_while_jobs_finish(SchedulerFixture *f) {
    auto &s = f->s();
    auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor);
    auto fn = [gate](int v) { return wait_at(gate, v); };
    TaskOptions unlimited_jobs{.max_running_jobs = unlimited};
    co_await s.add_task("finish", fn, unlimited_jobs);
    auto ids = co_await add_jobs(s, "finish", 100);
    co_await s.start_in_background();
    co_await eventually([&] { return gate->inside == 100; }, "100 jobs running");
    co_await s.stop();
    gate->open(); // all 100 finish at once, while the scheduler drains
    co_await s.wait_until_stopped();
    co_await each_has_one_result(f, ids, JobOutcome::success);
}

asio::awaitable<void> stop_while_acquiring(SchedulerFixture *f,
                                           std::shared_ptr<test::StoreHooks> hooks,
                                           std::shared_ptr<std::atomic<int>> started_after_stop) {
    auto &s = f->s();
    auto *sp = &s;
    auto fn = [sp, started_after_stop](int v) -> asio::awaitable<int> {
        if (sp->state() == RunState::stopped)
            ++*started_after_stop;
        co_return v;
    };
    TaskOptions unlimited_jobs{.max_running_jobs = unlimited};
    co_await s.add_task("quick", fn, unlimited_jobs);
    auto ids = co_await add_jobs(s, "quick", 5);
    hooks->hold_acquire_call = 1;
    co_await s.start_in_background();
    co_await eventually([&] { return hooks->acquire_held.load(); }, "acquisition in flight");
    co_await s.stop();
    hooks->open_acquire = true;
    co_await s.wait_until_stopped();
    co_await each_has_one_result(f, ids, JobOutcome::success);
}

void run_stop_while_acquiring(Backend b, int rounds) {
    for (int i = 0; i < rounds; ++i) {
        BOOST_TEST_CONTEXT("round " << i) {
            Rig rig(b);
            auto after = std::make_shared<std::atomic<int>>(0);
            rig.f().run(stop_while_acquiring(&rig.f(), rig.hooks, after));
            BOOST_TEST(*after == 0);
        }
    }
}

asio::awaitable<void> store_fails_during_drain(SchedulerFixture *f,
                                               std::shared_ptr<test::StoreHooks> hooks) {
    auto &s = f->s();
    auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor);
    auto fn = [gate](int v) { return wait_at(gate, v); };
    TaskOptions unlimited_jobs{.max_running_jobs = unlimited};
    co_await s.add_task("finish", fn, unlimited_jobs);
    auto ids = co_await add_jobs(s, "finish", 20);
    co_await s.start_in_background();
    co_await eventually([&] { return gate->inside == 20; }, "20 jobs running");
    hooks->failing_releases = 2;
    co_await s.stop();
    gate->open();
    co_await s.wait_until_stopped();
    BOOST_TEST(hooks->release_failures == 2);
    co_await each_has_one_result(f, ids, JobOutcome::success);
}

asio::awaitable<void> store_unreachable_during_drain(SchedulerFixture *f,
                                                     std::shared_ptr<test::StoreHooks> hooks) {
    auto &s = f->s();
    auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor);
    auto fn = [gate](int v) { return wait_at(gate, v); };
    co_await s.add_task("finish", fn);
    auto ids = co_await add_jobs(s, "finish", 1);
    co_await s.start_in_background();
    co_await eventually([&] { return gate->inside == 1; }, "running");
    hooks->releases_fail_forever = true;
    co_await s.stop();
    gate->open();
    const auto began = std::chrono::steady_clock::now();
    co_await s.wait_until_stopped();
    // Given up after the lease (1 s of real time): the lease has expired by then.
    BOOST_TEST((std::chrono::steady_clock::now() - began >= 1s));
    BOOST_TEST(hooks->release_failures >= 1);
    auto left = co_await s.get_jobs();
    BOOST_TEST_REQUIRE(left.size() == 1u); // still leased, for cleanup to find
    hooks->releases_fail_forever = false;
    f->clock->advance(2s);
    co_await s.cleanup();
    auto r = co_await s.get_job_result(ids[0], false);
    BOOST_TEST(r->outcome == JobOutcome::abandoned);
}

} // namespace

BOOST_AUTO_TEST_SUITE(drain)

BOOST_AUTO_TEST_CASE(stop_while_100_jobs_finish_memory) {
    Rig rig(Backend::memory);
    rig.f().run(stop_while_jobs_finish(&rig.f()));
}
BOOST_AUTO_TEST_CASE(stop_while_100_jobs_finish_sqlite) {
    Rig rig(Backend::sqlite);
    rig.f().run(stop_while_jobs_finish(&rig.f()));
}
BOOST_AUTO_TEST_CASE(stop_while_100_jobs_finish_postgres) {
    Rig rig(Backend::postgres);
    rig.f().run(stop_while_jobs_finish(&rig.f()));
}
BOOST_AUTO_TEST_CASE(stop_while_acquiring_memory_x50) {
    run_stop_while_acquiring(Backend::memory, 50);
}
BOOST_AUTO_TEST_CASE(stop_while_acquiring_sqlite_x50) {
    run_stop_while_acquiring(Backend::sqlite, 50);
}
BOOST_AUTO_TEST_CASE(stop_while_acquiring_postgres_x50) {
    run_stop_while_acquiring(Backend::postgres, 50);
}

BOOST_AUTO_TEST_CASE(store_fails_during_the_drain) {
    auto o = SchedulerFixture::base_options();
    o.logger.level = LogLevel::off; // the failures are on purpose
    Rig rig(Backend::sqlite, o);
    rig.f().run(store_fails_during_drain(&rig.f(), rig.hooks));
}

BOOST_AUTO_TEST_CASE(store_unreachable_during_the_drain) {
    auto o = SchedulerFixture::base_options();
    o.lease_duration = 1s;
    o.logger.level = LogLevel::off;
    Rig rig(Backend::memory, o);
    rig.f().run(store_unreachable_during_drain(&rig.f(), rig.hooks));
}

BOOST_AUTO_TEST_CASE(destructor_while_releases_are_in_flight) {
    test::TempDir dir;
    asio::io_context ioc;
    auto inner = make_store(Backend::sqlite, dir);
    auto hooks = std::make_shared<test::StoreHooks>();
    std::vector<std::string> ids;
    {
        auto o = SchedulerFixture::base_options();
        o.clock = std::make_shared<SystemClock>();
        o.data_store = std::make_shared<test::HookedStore>(inner, hooks);
        AsyncScheduler s(ioc, o);
        TaskOptions unlimited_jobs{.max_running_jobs = unlimited};
        test::run(ioc,
                  s.add_task(
                      "quick", [](int v) -> asio::awaitable<int> { co_return v; }, unlimited_jobs));
        hooks->hold_releases = true;
        ids = test::run(ioc, add_jobs(s, "quick", 30));
        test::run(ioc, s.start_in_background());
        test::run(ioc,
                  eventually([hooks] { return hooks->releases_held >= 1; }, "a release in flight"));
        // The handle goes away with the release held inside the store.
    }
    hooks->hold_releases = false;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!ioc.stopped() && std::chrono::steady_clock::now() < deadline)
        ioc.run_for(10ms);
    BOOST_TEST(ioc.stopped());
    BOOST_TEST(hooks->released_jobs == 30);
    for (const auto &id : ids) {
        auto r = test::sync(inner->get_job_result(id));
        BOOST_TEST_REQUIRE(r.has_value());
        BOOST_TEST(r->outcome == JobOutcome::success);
    }
    BOOST_TEST(test::sync(inner->get_jobs(std::nullopt)).empty());
}

BOOST_AUTO_TEST_SUITE_END()
