// The logging hook: a level plus a function; no global logger.
#pragma once

#include <functional>
#include <string_view>

namespace asched {

enum class LogLevel { debug, info, warning, error, off };

/// What a message is about, beside its text, for structured logs (spdlog, JSON lines). An
/// empty field does not apply: a store's message has no scheduler, a schedule's no job.
struct LogFields {
    std::string_view scheduler; ///< the scheduler's identity
    std::string_view task;
    std::string_view schedule;
    std::string_view job;
    unsigned attempt = 0; ///< the job's attempt (from 1); 0: not about one attempt
};

/// Messages at `level` or above go to `structured_sink` when it is set, else to `sink`.
/// Without either, warnings and errors go to stderr. Sinks may be called from any thread the
/// scheduler runs on; the views they receive are valid during the call only.
struct Logger {
    LogLevel level = LogLevel::info;
    std::function<void(LogLevel, std::string_view)> sink;
    std::function<void(LogLevel, std::string_view message, const LogFields &fields)>
        structured_sink;

    bool enabled(LogLevel l) const noexcept { return l >= level && level != LogLevel::off; }
    void log(LogLevel l, std::string_view message, const LogFields &fields = {}) const;
};

std::string_view to_string(LogLevel l) noexcept;

} // namespace asched
