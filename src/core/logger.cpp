// The logging hook's default sink.
#include <asched/logger.hpp>

#include <cstdio>

namespace asched {

std::string_view to_string(LogLevel l) noexcept {
    switch (l) {
    case LogLevel::debug:
        return "debug";
    case LogLevel::info:
        return "info";
    case LogLevel::warning:
        return "warning";
    case LogLevel::error:
        return "error";
    case LogLevel::off:
        return "off";
    }
    return "?";
}

void Logger::log(LogLevel l, std::string_view message, const LogFields &fields) const {
    if (!enabled(l))
        return;
    if (structured_sink) {
        structured_sink(l, message, fields);
    } else if (sink) {
        sink(l, message);
    } else if (l >= LogLevel::warning) {
        std::fprintf(stderr, "asched %.*s: %.*s\n", int(to_string(l).size()), to_string(l).data(),
                     int(message.size()), message.data());
    }
}

} // namespace asched
