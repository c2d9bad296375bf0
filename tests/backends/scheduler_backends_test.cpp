// The scheduler scenarios of tests/integration on the SQL stores: SQLite (the store's own
// thread and the scheduler's strand), PostgreSQL and MariaDB (private servers started by the
// test run).
#include "scheduler_scenarios.hpp"
#include "servers.hpp"

#include <asched/data_stores/mariadb_data_store.hpp>
#include <asched/data_stores/postgres_data_store.hpp>
#include <asched/data_stores/sqlite_data_store.hpp>

using namespace asched;
using namespace asched::test::scenarios;
using test::SchedulerFixture;

// The same scenarios on SqliteDataStore: the store's own thread and the scheduler's strand.
struct TempDirHolder {
    test::TempDir dir;
};
struct SqliteSchedulerFixture : TempDirHolder, SchedulerFixture {
    SqliteSchedulerFixture() : SchedulerFixture(sqlite_options(dir.path("asched.db"))) {
        twin_store = [path = dir.path("asched.db")]() -> std::shared_ptr<DataStore> {
            return std::make_shared<SqliteDataStore>(SqliteDataStoreOptions{.path = path});
        };
    }
    static AsyncSchedulerOptions sqlite_options(const std::string &path) {
        auto o = SchedulerFixture::base_options();
        o.data_store = std::make_shared<SqliteDataStore>(SqliteDataStoreOptions{.path = path});
        return o;
    }
};

// The same scenarios on PostgreSQL, on the injected manual clock (database_clock off).
struct PostgresSchedulerFixture : SchedulerFixture {
    PostgresSchedulerFixture() : SchedulerFixture(postgres_options(next_schema())) {
        twin_store = [schema = schema_name(count())] { return store_on(schema); };
    }
    static int &count() {
        static int n = 0;
        return n;
    }
    static std::string next_schema() { return schema_name(++count()); }
    static std::string schema_name(int n) { return "scheduler_" + std::to_string(n); }
    static std::shared_ptr<DataStore> store_on(const std::string &schema) {
        return std::make_shared<PostgresDataStore>(
            PostgresDataStoreOptions{.conninfo = test::shared_postgres().conninfo(),
                                     .schema = schema,
                                     .database_clock = false});
    }
    static AsyncSchedulerOptions postgres_options(const std::string &schema) {
        auto o = SchedulerFixture::base_options();
        o.data_store = store_on(schema);
        return o;
    }
};

// The same scenarios on MariaDB, on the injected manual clock (database_clock off).
struct MariaDbSchedulerFixture : SchedulerFixture {
    MariaDbSchedulerFixture() : SchedulerFixture(mariadb_options(next_database())) {
        twin_store = [database = database_name(count())] { return store_on(database); };
    }
    static int &count() {
        static int n = 0;
        return n;
    }
    static std::string next_database() { return database_name(++count()); }
    static std::string database_name(int n) { return "scheduler_" + std::to_string(n); }
    static std::shared_ptr<DataStore> store_on(const std::string &database) {
        return std::make_shared<MariaDbDataStore>(
            MariaDbDataStoreOptions{.port = test::shared_mariadb().port(),
                                    .user = "root",
                                    .database = database,
                                    .database_clock = false});
    }
    static AsyncSchedulerOptions mariadb_options(const std::string &database) {
        auto o = SchedulerFixture::base_options();
        o.data_store = store_on(database);
        return o;
    }
};

BOOST_AUTO_TEST_SUITE(scheduler_on_postgres)
BOOST_FIXTURE_TEST_CASE(interval_fires, PostgresSchedulerFixture) {
    run(interval_fires_on_the_manual_clock(this));
}
BOOST_FIXTURE_TEST_CASE(combining_trigger_state, PostgresSchedulerFixture) {
    run(combining_trigger_state_is_kept_by_the_store(this));
}
BOOST_FIXTURE_TEST_CASE(one_off_jobs_and_results, PostgresSchedulerFixture) {
    run(one_off_job_and_its_result(this));
}
BOOST_FIXTURE_TEST_CASE(failing_tasks, PostgresSchedulerFixture) {
    run(failing_tasks_become_results(this));
}
BOOST_FIXTURE_TEST_CASE(per_task_cap, PostgresSchedulerFixture) {
    run(max_running_jobs_under_contention(this));
}
BOOST_FIXTURE_TEST_CASE(pause_and_resume, PostgresSchedulerFixture) {
    run(paused_schedules(this));
}
BOOST_FIXTURE_TEST_CASE(misfires, PostgresSchedulerFixture) {
    run(misfire_grace_time(this));
}
BOOST_FIXTURE_TEST_CASE(metrics, PostgresSchedulerFixture) {
    run(metrics_count_what_happened(this));
}
BOOST_FIXTURE_TEST_CASE(r13_long_downtime_all_capped, PostgresSchedulerFixture) {
    run(r13_long_downtime(this, CoalescePolicy::all, 15, 15));
}
BOOST_FIXTURE_TEST_CASE(timeouts, PostgresSchedulerFixture) {
    run(jobs_time_out(this));
}
BOOST_FIXTURE_TEST_CASE(cancel_job, PostgresSchedulerFixture) {
    run(jobs_are_cancelled(this));
}
BOOST_FIXTURE_TEST_CASE(run_schedule_now, PostgresSchedulerFixture) {
    run(a_schedule_runs_now(this));
}
BOOST_FIXTURE_TEST_CASE(retries_and_history, PostgresSchedulerFixture) {
    run(failed_attempts_are_retried(this));
}
BOOST_FIXTURE_TEST_CASE(hostile_input, PostgresSchedulerFixture) {
    run(hostile_input_is_refused_at_the_api(this), heavy_payload_bound);
}
BOOST_FIXTURE_TEST_CASE(worker_registry, PostgresSchedulerFixture) {
    run(workers_are_registered(this));
}
BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(scheduler_on_mariadb)
BOOST_FIXTURE_TEST_CASE(interval_fires, MariaDbSchedulerFixture) {
    run(interval_fires_on_the_manual_clock(this));
}
BOOST_FIXTURE_TEST_CASE(combining_trigger_state, MariaDbSchedulerFixture) {
    run(combining_trigger_state_is_kept_by_the_store(this));
}
BOOST_FIXTURE_TEST_CASE(one_off_jobs_and_results, MariaDbSchedulerFixture) {
    run(one_off_job_and_its_result(this));
}
BOOST_FIXTURE_TEST_CASE(failing_tasks, MariaDbSchedulerFixture) {
    run(failing_tasks_become_results(this));
}
BOOST_FIXTURE_TEST_CASE(per_task_cap, MariaDbSchedulerFixture) {
    run(max_running_jobs_under_contention(this));
}
BOOST_FIXTURE_TEST_CASE(pause_and_resume, MariaDbSchedulerFixture) {
    run(paused_schedules(this));
}
BOOST_FIXTURE_TEST_CASE(misfires, MariaDbSchedulerFixture) {
    run(misfire_grace_time(this));
}
BOOST_FIXTURE_TEST_CASE(metrics, MariaDbSchedulerFixture) {
    run(metrics_count_what_happened(this));
}
BOOST_FIXTURE_TEST_CASE(r13_long_downtime_all_capped, MariaDbSchedulerFixture) {
    run(r13_long_downtime(this, CoalescePolicy::all, 15, 15));
}
BOOST_FIXTURE_TEST_CASE(timeouts, MariaDbSchedulerFixture) {
    run(jobs_time_out(this));
}
BOOST_FIXTURE_TEST_CASE(cancel_job, MariaDbSchedulerFixture) {
    run(jobs_are_cancelled(this));
}
BOOST_FIXTURE_TEST_CASE(run_schedule_now, MariaDbSchedulerFixture) {
    run(a_schedule_runs_now(this));
}
BOOST_FIXTURE_TEST_CASE(retries_and_history, MariaDbSchedulerFixture) {
    run(failed_attempts_are_retried(this));
}
BOOST_FIXTURE_TEST_CASE(hostile_input, MariaDbSchedulerFixture) {
    run(hostile_input_is_refused_at_the_api(this), heavy_payload_bound);
}
BOOST_FIXTURE_TEST_CASE(worker_registry, MariaDbSchedulerFixture) {
    run(workers_are_registered(this));
}
BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(scheduler_on_sqlite)
BOOST_FIXTURE_TEST_CASE(interval_fires, SqliteSchedulerFixture) {
    run(interval_fires_on_the_manual_clock(this));
}
BOOST_FIXTURE_TEST_CASE(combining_trigger_state, SqliteSchedulerFixture) {
    run(combining_trigger_state_is_kept_by_the_store(this));
}
BOOST_FIXTURE_TEST_CASE(one_off_jobs_and_results, SqliteSchedulerFixture) {
    run(one_off_job_and_its_result(this));
}
BOOST_FIXTURE_TEST_CASE(failing_tasks, SqliteSchedulerFixture) {
    run(failing_tasks_become_results(this));
}
BOOST_FIXTURE_TEST_CASE(per_task_cap, SqliteSchedulerFixture) {
    run(max_running_jobs_under_contention(this));
}
BOOST_FIXTURE_TEST_CASE(pause_and_resume, SqliteSchedulerFixture) {
    run(paused_schedules(this));
}
BOOST_FIXTURE_TEST_CASE(misfires, SqliteSchedulerFixture) {
    run(misfire_grace_time(this));
}
BOOST_FIXTURE_TEST_CASE(metrics, SqliteSchedulerFixture) {
    run(metrics_count_what_happened(this));
}
BOOST_FIXTURE_TEST_CASE(r13_long_downtime_all_capped, SqliteSchedulerFixture) {
    run(r13_long_downtime(this, CoalescePolicy::all, 15, 15));
}
BOOST_FIXTURE_TEST_CASE(timeouts, SqliteSchedulerFixture) {
    run(jobs_time_out(this));
}
BOOST_FIXTURE_TEST_CASE(cancel_job, SqliteSchedulerFixture) {
    run(jobs_are_cancelled(this));
}
BOOST_FIXTURE_TEST_CASE(run_schedule_now, SqliteSchedulerFixture) {
    run(a_schedule_runs_now(this));
}
BOOST_FIXTURE_TEST_CASE(retries_and_history, SqliteSchedulerFixture) {
    run(failed_attempts_are_retried(this));
}
BOOST_FIXTURE_TEST_CASE(hostile_input, SqliteSchedulerFixture) {
    run(hostile_input_is_refused_at_the_api(this), heavy_payload_bound);
}
BOOST_FIXTURE_TEST_CASE(worker_registry, SqliteSchedulerFixture) {
    run(workers_are_registered(this));
}
BOOST_AUTO_TEST_SUITE_END()
