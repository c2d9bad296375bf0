// The single-item forms of the DataStore port, on top of the batch forms every store implements.
#include "../core/text.hpp"
#include "store_util.hpp"

#include <asched/data_store.hpp>
#include <asched/error.hpp>

#include <fmt/format.h>

namespace asched {

asio::awaitable<void> DataStore::add_job(Job job) {
    std::vector<Job> one;
    one.push_back(std::move(job));
    co_await add_jobs(std::move(one));
}

asio::awaitable<bool> DataStore::release_job(std::string scheduler_id, Job job, JobResult result) {
    std::vector<JobRelease> one;
    one.push_back({std::move(job), std::move(result)});
    auto applied = co_await release_jobs(std::move(scheduler_id), std::move(one));
    co_return applied.front();
}

asio::awaitable<StoreCheck> DataStore::check() {
    co_return StoreCheck{};
}

} // namespace asched

namespace asched::detail {

std::pair<std::int64_t, std::int64_t> parse_history_cursor(const std::string &cursor) {
    const auto dot = cursor.find('.');
    std::size_t used_a = 0, used_b = 0;
    try {
        if (dot != std::string::npos && dot > 0 && dot + 1 < cursor.size()) {
            const auto a = std::stoll(cursor.substr(0, dot), &used_a);
            const auto b = std::stoll(cursor.substr(dot + 1), &used_b);
            if (used_a == dot && used_b == cursor.size() - dot - 1)
                return {a, b};
        }
    } catch (const std::exception &) {
    }
    throw Error(errc::invalid_argument,
                fmt::format("get_job_results: field 'cursor': {} is not a cursor this store gave",
                            quote_input(cursor)));
}

WorkerInfo worker_row_at(const std::optional<WorkerInfo> &current, WorkerInfo worker,
                         time_point now, duration lease) {
    worker.started_at = current && current->boot_id == worker.boot_id ? current->started_at : now;
    worker.last_seen = now;
    worker.expires_at = now + lease;
    return worker;
}

Error identity_in_use(const WorkerInfo &holder, time_point now) {
    return Error(errc::identity_in_use,
                 fmt::format("identity {} is in use by a live scheduler (host {}, pid {}, boot id "
                             "{}, started {}, last seen {} ago, live until {}): give this "
                             "scheduler another identity, or stop that one (a crashed one's row "
                             "stays live until then)",
                             quote_input(holder.identity), quote_input(holder.host), holder.pid,
                             holder.boot_id, format_time(holder.started_at),
                             format_duration(now - holder.last_seen),
                             format_time(holder.expires_at)));
}

void check_history_filter(const JobHistoryFilter &filter) {
    if (filter.limit < 1 || filter.limit > 10'000)
        throw Error(
            errc::invalid_argument,
            fmt::format("get_job_results: field 'limit': must be within 1 and 10000, got {}",
                        filter.limit));
}

} // namespace asched::detail
