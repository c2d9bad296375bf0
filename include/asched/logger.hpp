// The logging hook: a level plus a function; no global logger.
#pragma once

#include <functional>
#include <string_view>

namespace asched {

enum class LogLevel { debug, info, warning, error, off };

/// Messages at `level` or above go to `sink`. Without a sink, warnings and errors go to
/// stderr. The sink may be called from any thread the scheduler runs on.
struct Logger {
    LogLevel level = LogLevel::info;
    std::function<void(LogLevel, std::string_view)> sink;

    bool enabled(LogLevel l) const noexcept { return l >= level && level != LogLevel::off; }
    void log(LogLevel l, std::string_view message) const;
};

std::string_view to_string(LogLevel l) noexcept;

} // namespace asched
