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

void check_history_filter(const JobHistoryFilter &filter) {
    if (filter.limit < 1 || filter.limit > 10'000)
        throw Error(
            errc::invalid_argument,
            fmt::format("get_job_results: field 'limit': must be within 1 and 10000, got {}",
                        filter.limit));
}

} // namespace asched::detail
