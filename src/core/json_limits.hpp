// Bounds on what a caller may hand the scheduler, checked at the API before anything copies
// the value: nesting depth (a copy or dump of nlohmann::json recurses), size, valid UTF-8,
// and ids that every store keeps intact (no NUL, valid UTF-8, bounded length). Stored JSON
// text is depth-checked before it is parsed, so a row too deep is quarantined, not a crash.
#pragma once

#include <asched/async_scheduler.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace asched::detail {

/// The deepest stored JSON a store decodes; deeper rows are undecodable (quarantined).
/// PayloadLimits::max_json_depth may not exceed it.
inline constexpr std::size_t max_stored_json_depth = 512;

/// The nesting depth of `value` (a scalar 0, `[]` 1, `[[1]]` 2), found without recursion;
/// counting stops past `stop_after`.
std::size_t json_depth(const nlohmann::json &value, std::size_t stop_after);

/// The nesting depth of JSON text, from its brackets outside strings, without parsing.
std::size_t json_text_depth(std::string_view text, std::size_t stop_after);

/// Parses stored JSON text; errc::deserialization when it is nested deeper than
/// max_stored_json_depth or malformed.
nlohmann::json parse_stored_json(std::string_view text);

/// What, if anything, puts `value` outside `limits`; `detail` says it in words.
struct PayloadCheck {
    enum class Problem { none, too_deep, invalid_text, too_large } problem = Problem::none;
    std::string detail;
};
PayloadCheck inspect_payload(const nlohmann::json &value, const PayloadLimits &limits);

/// errc::invalid_argument naming `what` and `field` unless `value` is within `limits`: depth,
/// serialized size, strings of valid UTF-8.
void check_payload(const nlohmann::json &value, const PayloadLimits &limits, std::string_view what,
                   std::string_view field);

/// errc::invalid_argument naming `what` and `field` unless `id` is non-empty, valid UTF-8,
/// free of NUL bytes and at most limits.max_id_bytes long.
void check_id(std::string_view id, const PayloadLimits &limits, std::string_view what,
              std::string_view field);

/// errc::invalid_argument unless the limits themselves are usable.
void check_limits(const PayloadLimits &limits);

} // namespace asched::detail
