// command_task: a task that runs a program, without a shell.
#pragma once

#include <asched/task_function.hpp>
#include <asched/time.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asched {

/// What command_task runs.
struct CommandOptions {
    std::vector<std::string> argv;          ///< argv[0] is looked up in PATH unless it has a '/'
    std::map<std::string, std::string> env; ///< set over the inherited environment
    std::optional<std::string> cwd;         ///< default: the scheduler's working directory
    std::size_t output_limit = 64 * 1024;   ///< bytes kept of stdout and of stderr, each
    std::optional<duration> timeout;        ///< the child is killed after this long
    /// After SIGTERM (cancel, timeout), how long the child has before SIGKILL.
    duration kill_grace = std::chrono::seconds(5);
};

/// A coroutine task (run by the "async" executor, never blocking it) that starts
/// `options.argv` with stdin from /dev/null and collects stdout and stderr. The job's result
/// is {"exit_status": 0, "stdout": "...", "stderr": "...", "stdout_truncated": false,
/// "stderr_truncated": false}: output past output_limit is dropped and marked truncated, and
/// bytes that are not UTF-8 become U+FFFD. A non-zero exit, a signal or the timeout ends the
/// job with outcome error, whose message names the status and ends with stderr's last KiB.
/// Cancelling the job sends SIGTERM, then SIGKILL after kill_grace. The job's arguments are
/// appended to argv (strings as they are, other JSON values as their JSON text).
///
/// Throws Error(invalid_argument) for an empty argv. Register it with
/// `scheduler.add_task_function("backup", command_task({.argv = {"tar", "czf", ...}}), {})`.
std::shared_ptr<const TaskFunction> command_task(CommandOptions options);

} // namespace asched
