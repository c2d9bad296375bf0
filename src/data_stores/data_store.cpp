// The single-item forms of the DataStore port, on top of the batch forms every store implements.
#include <asched/data_store.hpp>

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
