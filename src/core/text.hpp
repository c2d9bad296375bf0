// Text helpers for input checks and error messages: UTF-8 validity, and quoting a caller's
// value safely (NUL and control bytes escaped, long values cut).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace asched::detail {

/// The length of the valid UTF-8 sequence starting at `s[i]`, or 0 when none starts there
/// (a stray continuation byte, a truncated or overlong sequence, a surrogate, > U+10FFFF).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept;

/// The position of the first byte that starts no valid UTF-8 sequence, if any.
std::optional<std::size_t> first_invalid_utf8(std::string_view s) noexcept;

/// `bytes` with every invalid UTF-8 sequence replaced by U+FFFD, so it can be a JSON string.
std::string valid_utf8(std::string bytes);

/// `value` for an error message, without quotes: at most `max_chars` characters of it, NUL,
/// control and invalid bytes as \xNN, and when it was cut, "..." and how long it was.
std::string printable_input(std::string_view value, std::size_t max_chars = 200);

/// `value` in single quotes for an error message: at most `max_chars` characters of it, NUL,
/// control and invalid bytes as \xNN, and when it was cut, how long it was.
std::string quote_input(std::string_view value, std::size_t max_chars = 200);

} // namespace asched::detail
