// JobContext: what a running job may know about itself.
#pragma once

#include <asched/time.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <stop_token>
#include <string>

namespace asched {

class AsyncScheduler;

/// Passed to a task that takes a `JobContext&` as its first parameter. Lives until the task
/// returns. Cancellation: stop_token() is triggered when the job is cancelled (stop after the
/// grace period); coroutine tasks are also cancelled through Asio's cancellation slot.
struct JobContext {
    std::string job_id;
    std::string task_id;
    std::optional<std::string> schedule_id;
    std::optional<time_point> scheduled_fire_time;
    nlohmann::json metadata;
    std::stop_token stop_token;
    unsigned attempt = 1;                     ///< counts from 1
    std::optional<time_point> start_deadline; ///< a later start would have been a misfire
    duration jitter{0};                       ///< how much its start was delayed
    /// The scheduler running the job, to add jobs or schedules from a task (APScheduler's
    /// current_scheduler); a non-owning handle valid until the task returns. Its calls are
    /// awaitables: a thread-pool task waits on them with asio::use_future. Null in a process
    /// executor's child.
    AsyncScheduler *scheduler = nullptr;

    bool cancelled() const noexcept { return stop_token.stop_requested(); }
};

} // namespace asched
