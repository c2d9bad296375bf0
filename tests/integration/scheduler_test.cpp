// The scheduler's policies end to end on a manual clock and the memory store: fires, results,
// errors, limits. The scenarios live in scheduler_scenarios.hpp; tests/backends runs them on
// SQLite and PostgreSQL.
#include "scheduler_scenarios.hpp"

using namespace asched;
using namespace asched::test::scenarios;
using test::SchedulerFixture;

BOOST_AUTO_TEST_SUITE(scheduler)

BOOST_FIXTURE_TEST_CASE(metrics, SchedulerFixture) {
    run(metrics_count_what_happened(this));
}
BOOST_FIXTURE_TEST_CASE(interval_fires, SchedulerFixture) {
    run(interval_fires_on_the_manual_clock(this));
}
BOOST_FIXTURE_TEST_CASE(combining_trigger_state, SchedulerFixture) {
    run(combining_trigger_state_is_kept_by_the_store(this));
}
BOOST_FIXTURE_TEST_CASE(one_off_jobs_and_results, SchedulerFixture) {
    run(one_off_job_and_its_result(this));
}
BOOST_FIXTURE_TEST_CASE(failing_tasks, SchedulerFixture) {
    run(failing_tasks_become_results(this));
}
BOOST_FIXTURE_TEST_CASE(blocking_tasks, SchedulerFixture) {
    run(blocking_tasks_do_not_block_the_executor(this));
}
BOOST_FIXTURE_TEST_CASE(per_task_cap, SchedulerFixture) {
    run(max_running_jobs_under_contention(this));
}
BOOST_AUTO_TEST_CASE(global_cap) {
    SchedulerFixture f(with_concurrency(3));
    f.run(global_max_concurrent_jobs(&f));
}
BOOST_FIXTURE_TEST_CASE(coalesce_latest, SchedulerFixture) {
    run(coalescing_100_missed_fires(this, CoalescePolicy::latest, 1));
}
BOOST_FIXTURE_TEST_CASE(coalesce_earliest, SchedulerFixture) {
    run(coalescing_100_missed_fires(this, CoalescePolicy::earliest, 1));
}
BOOST_FIXTURE_TEST_CASE(coalesce_all, SchedulerFixture) {
    run(coalescing_100_missed_fires(this, CoalescePolicy::all, 100));
}
BOOST_FIXTURE_TEST_CASE(r13_long_downtime_latest, SchedulerFixture) {
    run(r13_long_downtime(this, CoalescePolicy::latest, std::nullopt, 1));
}
BOOST_FIXTURE_TEST_CASE(r13_long_downtime_earliest, SchedulerFixture) {
    run(r13_long_downtime(this, CoalescePolicy::earliest, std::nullopt, 1));
}
BOOST_FIXTURE_TEST_CASE(r13_long_downtime_all_capped, SchedulerFixture) {
    run(r13_long_downtime(this, CoalescePolicy::all, 15, 15));
}
BOOST_FIXTURE_TEST_CASE(timeouts, SchedulerFixture) {
    run(jobs_time_out(this));
}
BOOST_FIXTURE_TEST_CASE(cancel_job, SchedulerFixture) {
    run(jobs_are_cancelled(this));
}
BOOST_FIXTURE_TEST_CASE(run_schedule_now, SchedulerFixture) {
    run(a_schedule_runs_now(this));
}
BOOST_FIXTURE_TEST_CASE(run_job_wait_bound, SchedulerFixture) {
    run(run_job_gives_up_waiting(this));
}
BOOST_FIXTURE_TEST_CASE(job_context_and_scheduler_handle, SchedulerFixture) {
    run(tasks_see_their_context_and_the_scheduler(this));
}
BOOST_FIXTURE_TEST_CASE(retries_and_history, SchedulerFixture) {
    run(failed_attempts_are_retried(this));
}
BOOST_FIXTURE_TEST_CASE(worker_registry, SchedulerFixture) {
    run(workers_are_registered(this));
}
BOOST_AUTO_TEST_CASE(r17_wall_clock_steps_back_and_forward) {
    auto clock = std::make_shared<test::SteppingClock>(test::t0);
    auto options = SchedulerFixture::base_options();
    options.clock = clock;
    SchedulerFixture f(options);
    f.run(r17_wall_clock_steps(&f, clock.get()));
}
BOOST_FIXTURE_TEST_CASE(pause_and_resume, SchedulerFixture) {
    run(paused_schedules(this));
}
BOOST_FIXTURE_TEST_CASE(unknown_tasks, SchedulerFixture) {
    run(unknown_task_ids(this));
}
BOOST_FIXTURE_TEST_CASE(conflict_policies, SchedulerFixture) {
    run(conflicting_schedule_ids(this));
}
BOOST_FIXTURE_TEST_CASE(misfires, SchedulerFixture) {
    run(misfire_grace_time(this));
}
BOOST_FIXTURE_TEST_CASE(hostile_input, SchedulerFixture) {
    run(hostile_input_is_refused_at_the_api(this), heavy_payload_bound);
}
BOOST_FIXTURE_TEST_CASE(never_firing_schedules, SchedulerFixture) {
    run(schedules_that_never_fire_are_refused(this));
}
BOOST_FIXTURE_TEST_CASE(jitter, SchedulerFixture) {
    run(jitter_delays_the_start(this));
}
BOOST_FIXTURE_TEST_CASE(events, SchedulerFixture) {
    run(events_are_published(this));
}
BOOST_FIXTURE_TEST_CASE(cleanup, SchedulerFixture) {
    run(cleanup_removes_finished_schedules(this));
}
BOOST_AUTO_TEST_CASE(lease_renewal) {
    SchedulerFixture f(with_lease(10s));
    f.run(leases_are_renewed_while_jobs_run(&f));
}

namespace {
struct LogLine {
    LogLevel level;
    std::string message, scheduler, task, schedule, job;
    unsigned attempt;
};
asio::awaitable<void> a_failing_scheduled_job(SchedulerFixture *f) {
    auto &s = f->s();
    co_await s.add_task("boom", []() -> int { throw std::runtime_error("disk full"); });
    IntervalTrigger every_minute({.minutes = 1, .start_time = test::t0 + 1min});
    ScheduleOptions so;
    so.id = "every-minute";
    co_await s.add_schedule("boom", every_minute, so);
    co_await s.start_in_background();
    f->clock->advance(1min);
    auto released = co_await next_event<JobReleased>(s);
    BOOST_TEST(released.outcome == JobOutcome::error);
}
} // namespace

// The structured sink receives who a message is about beside its text.
BOOST_AUTO_TEST_CASE(structured_log_fields) {
    auto lines = std::make_shared<std::vector<LogLine>>();
    auto mutex = std::make_shared<std::mutex>();
    auto o = SchedulerFixture::base_options();
    o.logger.level = LogLevel::debug;
    o.logger.structured_sink = [lines, mutex](LogLevel l, std::string_view m, const LogFields &f) {
        std::lock_guard lock(*mutex);
        lines->push_back({l, std::string(m), std::string(f.scheduler), std::string(f.task),
                          std::string(f.schedule), std::string(f.job), f.attempt});
    };
    bool plain_sink_called = false;
    o.logger.sink = [&](LogLevel, std::string_view) { plain_sink_called = true; };
    SchedulerFixture f(o);
    f.run(a_failing_scheduled_job(&f));
    std::lock_guard lock(*mutex);
    BOOST_TEST(!plain_sink_called);
    const auto failed = std::find_if(lines->begin(), lines->end(), [](const LogLine &l) {
        return l.message.find("failed: std::runtime_error: disk full") != std::string::npos;
    });
    BOOST_REQUIRE(failed != lines->end());
    BOOST_TEST((failed->level == LogLevel::warning));
    BOOST_TEST(failed->scheduler == "test-node");
    BOOST_TEST(failed->task == "boom");
    BOOST_TEST(failed->schedule == "every-minute");
    BOOST_TEST(!failed->job.empty());
    BOOST_TEST(failed->attempt == 1u);
    const auto added = std::find_if(lines->begin(), lines->end(), [](const LogLine &l) {
        return l.message.rfind("added schedule", 0) == 0;
    });
    BOOST_REQUIRE(added != lines->end());
    BOOST_TEST(added->schedule == "every-minute");
    BOOST_TEST(added->job.empty());
    const auto started = std::find_if(lines->begin(), lines->end(), [](const LogLine &l) {
        return l.message.find("' started") != std::string::npos && !l.job.empty();
    });
    BOOST_REQUIRE(started != lines->end());
    BOOST_TEST(started->job == failed->job);
}

BOOST_AUTO_TEST_SUITE_END()
