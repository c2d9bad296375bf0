// Several stores (nodes) of one network backend on one database, on a manual clock: the
// fixture of the PostgreSQL and MariaDB stores' own tests, and their draining helpers.
#pragma once

#include "test_support.hpp"

#include <asched/data_store.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asched::test {

template <class Store> struct StoreNodes {
    asio::io_context ioc;
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(t0);
    std::vector<std::shared_ptr<Store>> nodes; // stopped when the test ends

    ~StoreNodes() {
        for (auto &node : nodes)
            run(node->stop());
    }

    template <class T> T run(asio::awaitable<T> op) { return test::run(ioc, std::move(op)); }

    // A started store with `options`, on this fixture's clock.
    template <class Options> std::shared_ptr<Store> start_node(Options options) {
        auto store = std::make_shared<Store>(std::move(options));
        run(store->start(StoreContext{nullptr, clock, Logger{LogLevel::off, {}}}));
        nodes.push_back(store);
        return store;
    }

    void add_task(DataStore &store, std::string id, std::optional<int> cap = std::nullopt) {
        Task t;
        t.id = std::move(id);
        t.max_running_jobs = cap;
        run(store.add_task(t));
    }

    Job job(std::string task = "t") {
        Job j;
        j.id = make_uuid();
        j.task_id = std::move(task);
        j.created_at = clock->now();
        return j;
    }
};

// Acquires task "t"'s jobs in batches of `batch` and releases them until none are left; the
// ids acquired, in order.
inline asio::awaitable<std::vector<std::string>> drain_jobs(std::shared_ptr<DataStore> store,
                                                            std::string who, std::size_t batch) {
    using namespace std::chrono_literals;
    std::vector<std::string> got;
    std::vector<std::string> tasks{"t"};
    for (;;) {
        auto acq = co_await store->acquire_jobs(who, 30s, batch, tasks);
        if (acq.jobs.empty())
            co_return got;
        std::vector<JobRelease> done;
        for (auto &j : acq.jobs) {
            got.push_back(j.id);
            JobResult r;
            r.job_id = j.id;
            r.task_id = j.task_id;
            r.outcome = JobOutcome::success;
            done.push_back({j, r});
        }
        co_await store->release_jobs(who, std::move(done));
    }
}

// Leases due schedules, seven at a time, until none are left; the ids leased. Held, not
// released: a second lease of any of them would be a double fire.
inline asio::awaitable<std::vector<std::string>> drain_schedules(std::shared_ptr<DataStore> store,
                                                                 std::string who) {
    using namespace std::chrono_literals;
    std::vector<std::string> got;
    for (;;) {
        auto leased = co_await store->acquire_schedules(who, 30s, 7);
        if (leased.empty())
            co_return got;
        for (auto &s : leased)
            got.push_back(s.id);
    }
}

} // namespace asched::test
