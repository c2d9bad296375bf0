// The job traffic both store benchmarks drive: jobs added in batches of 100, then acquired 100
// at a time, "run" (a job that returns at once) and released in one call, as a busy
// scheduler does.
#pragma once

#include <asched/asched.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace bench {

/// Adds n jobs of task "t" ("job-0" ...), in batches of 100.
inline asio::awaitable<void> add_jobs_in_batches(std::shared_ptr<asched::DataStore> store,
                                                 std::size_t n) {
    for (std::size_t i = 0; i < n;) {
        std::vector<asched::Job> batch;
        for (; batch.size() < 100 && i < n; ++i) {
            asched::Job job;
            job.id = "job-" + std::to_string(i);
            job.task_id = "t";
            job.result_expiration_time = std::chrono::minutes(1);
            batch.push_back(std::move(job));
        }
        co_await store->add_jobs(std::move(batch));
    }
}

/// Acquires, runs and releases jobs of task "t" as `who` until none is left; how many.
inline asio::awaitable<std::size_t> run_all_jobs(std::shared_ptr<asched::DataStore> store,
                                                 std::string who) {
    std::size_t done = 0;
    for (;;) {
        std::vector<std::string> tasks{"t"};
        auto batch =
            co_await store->acquire_jobs(who, std::chrono::seconds(30), 100, std::move(tasks));
        if (batch.jobs.empty())
            break;
        std::vector<asched::JobRelease> finished;
        for (auto &job : batch.jobs) {
            asched::JobResult result;
            result.job_id = job.id;
            result.task_id = job.task_id;
            result.finished_at = asched::time_point(std::chrono::duration_cast<asched::duration>(
                std::chrono::system_clock::now().time_since_epoch()));
            result.expires_at = result.finished_at + job.result_expiration_time;
            result.return_value = 1;
            finished.push_back({std::move(job), std::move(result)});
        }
        done += finished.size();
        co_await store->release_jobs(who, std::move(finished));
    }
    co_return done;
}

/// Runs `op` on an io_context of its own to its end; rethrows its failure.
template <class Op> void run(Op op) {
    asio::io_context ioc;
    asio::co_spawn(ioc, std::move(op), [](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
    });
    ioc.run();
}

/// Starts `store`, adds task "t" (no cap) and n jobs in batches of 100; `per_second`: the rate
/// of adding.
inline asio::awaitable<void> fill(std::shared_ptr<asched::DataStore> store, std::size_t n,
                                  double *per_second) {
    asched::StoreContext context; // named: GCC 12 mishandles temporaries inside co_await
    co_await store->start(std::move(context));
    asched::Task task;
    task.id = "t";
    task.max_running_jobs = std::nullopt; // no cap: batches of 100
    co_await store->add_task(std::move(task));
    const auto start = std::chrono::steady_clock::now();
    auto adding = add_jobs_in_batches(store, n);
    co_await std::move(adding);
    *per_second =
        double(n) / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    co_await store->stop();
}

/// Starts `store` and runs every job of task "t" as `who`.
inline asio::awaitable<void> drain(std::shared_ptr<asched::DataStore> store, std::string who) {
    asched::StoreContext context;
    co_await store->start(std::move(context));
    auto running = run_all_jobs(store, std::move(who));
    co_await std::move(running);
    co_await store->stop();
}

} // namespace bench
