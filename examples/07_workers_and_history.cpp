// 07: two schedulers on one store: the worker registry (get_workers, one process per
// identity, the warning for a task no worker runs), a retried job and its history.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <cstdio>
#include <stdexcept>

using namespace std::chrono_literals;

void expect(bool ok, const char *what) {
    if (!ok)
        throw std::runtime_error(std::string("unexpected: ") + what);
}

// Fails its first attempt; the retry policy runs it again.
asio::awaitable<std::string> flaky(asched::JobContext &job) {
    if (job.attempt == 1)
        throw std::runtime_error("the report server was not ready");
    co_return "report of attempt " + std::to_string(job.attempt);
}

// Schedulers sharing an in-process store share its broker too, so that each hears the others'
// events (a job added, a job released) at once rather than at its next poll.
struct Shared {
    std::shared_ptr<asched::DataStore> store = std::make_shared<asched::MemoryDataStore>();
    std::shared_ptr<asched::EventBroker> broker = std::make_shared<asched::LocalEventBroker>();
};

asched::AsyncSchedulerOptions node(const Shared &shared, const char *identity,
                                   asched::SchedulerRole role) {
    asched::AsyncSchedulerOptions o;
    o.data_store = shared.store;
    o.event_broker = shared.broker;
    o.identity = identity;
    o.role = role;
    o.logger.level = asched::LogLevel::warning;
    o.logger.sink = [identity](asched::LogLevel, std::string_view message) {
        std::printf("  [%s log] %.*s\n", identity, int(message.size()), message.data());
    };
    return o;
}

asio::awaitable<void> body(asched::AsyncScheduler &worker, asched::AsyncScheduler &planner,
                           Shared shared) {
    asched::RetryPolicy twice;
    twice.max_attempts = 2;
    twice.initial_delay = 100ms;
    asched::TaskOptions retried;
    retried.retry = twice;
    co_await worker.add_task("report", &flaky, retried);
    co_await worker.start_in_background();
    co_await planner.start_in_background();

    const auto workers = co_await planner.get_workers();
    std::printf("get_workers():\n");
    for (const auto &w : workers)
        std::printf("  %s (%s, pid %lld): tasks [%s]\n", w.identity.c_str(),
                    std::string(asched::to_string(w.role)).c_str(), (long long)w.pid,
                    w.task_ids.empty() ? "" : w.task_ids.front().c_str());
    expect(workers.size() == 2, "two registered schedulers");

    // A second scheduler with a live identity refuses to start.
    const auto ex = co_await asio::this_coro::executor;
    asched::AsyncScheduler twin(ex, node(shared, "worker-a", asched::SchedulerRole::worker));
    bool refused = false;
    try {
        co_await twin.start_in_background();
    } catch (const asched::Error &e) {
        refused = e.code_value() == asched::errc::identity_in_use;
        std::printf("a second 'worker-a' refused: %s\n", e.what());
    }
    expect(refused, "the twin is refused");

    // The planner adds, the worker runs: attempt 1 fails, attempt 2 succeeds.
    const auto report = co_await planner.run_job("report");
    std::printf("run_job(\"report\") = %s\n", report.dump().c_str());
    asched::JobHistoryFilter filter;
    filter.task_id = "report";
    const auto history = co_await planner.get_job_results(filter);
    for (const auto &r : history.records) // newest first
        std::printf("  history: attempt %u %s%s%s\n", r.attempt,
                    std::string(asched::to_string(r.outcome)).c_str(),
                    r.exception_message ? ": " : "", r.exception_message.value_or("").c_str());
    expect(history.records.size() == 2, "two attempts in the history");

    // A task only the planner knows (it runs no jobs): adding a job of it is warned about.
    co_await planner.add_task("archive", [] { return 0; });
    const auto orphan = co_await planner.add_job("archive");
    std::printf("job %s of 'archive' waits for a worker that runs it\n", orphan.c_str());

    co_await planner.stop();
    co_await planner.wait_until_stopped();
    co_await worker.stop();
    co_await worker.wait_until_stopped();
    const auto left = co_await planner.get_workers();
    expect(left.empty(), "stopped schedulers leave no row");
    std::printf("after both stopped, get_workers() lists %zu\n", left.size());
}

int main() try {
    asio::io_context ioc;
    const Shared shared;
    asched::AsyncScheduler worker(ioc, node(shared, "worker-a", asched::SchedulerRole::worker));
    asched::AsyncScheduler planner(ioc, node(shared, "planner", asched::SchedulerRole::scheduler));
    auto done = asio::co_spawn(ioc, body(worker, planner, shared), asio::use_future);
    ioc.run();
    done.get(); // rethrows what body() threw
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "07_workers_and_history: %s\n", e.what());
    return 1;
}
