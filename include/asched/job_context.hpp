// JobContext: what a running job may know about itself.
#pragma once

#include <asched/time.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <stop_token>
#include <string>

namespace asched {

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

    bool cancelled() const noexcept { return stop_token.stop_requested(); }
};

} // namespace asched
