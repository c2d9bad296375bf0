#include "json_limits.hpp"
#include "text.hpp"

#include <asched/error.hpp>

#include <fmt/format.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace asched::detail {

std::size_t json_depth(const nlohmann::json &value, std::size_t stop_after) {
    std::size_t deepest = 0;
    std::vector<std::pair<const nlohmann::json *, std::size_t>> todo{{&value, 0}};
    while (!todo.empty()) {
        auto [v, depth] = todo.back();
        todo.pop_back();
        if (!v->is_structured())
            continue;
        ++depth;
        if (depth > deepest) {
            deepest = depth;
            if (deepest > stop_after)
                return deepest;
        }
        if (v->is_array()) {
            for (const auto &e : *v)
                todo.emplace_back(&e, depth);
        } else {
            for (const auto &e : v->items())
                todo.emplace_back(&e.value(), depth);
        }
    }
    return deepest;
}

std::size_t json_text_depth(std::string_view text, std::size_t stop_after) {
    std::size_t depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest) {
                deepest = depth;
                if (deepest > stop_after)
                    return deepest;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

nlohmann::json parse_stored_json(std::string_view text) {
    if (json_text_depth(text, max_stored_json_depth) > max_stored_json_depth)
        throw Error(errc::deserialization,
                    fmt::format("JSON nested deeper than {} levels ({} bytes)",
                                max_stored_json_depth, text.size()));
    return nlohmann::json::parse(text);
}

namespace {

// The length of a string in dump()'s output: its quotes and the escapes nlohmann writes with
// ensure_ascii off (UTF-8 is kept as is).
std::size_t dumped_string_size(std::string_view s) noexcept {
    std::size_t n = 2;
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            n += 2;
        else if (c < 0x20)
            n += 6; // \u00XX
        else
            n += 1;
    }
    return n;
}

struct DumpSize {
    std::size_t bytes = 0;
    std::optional<std::string> invalid; // why dump() would throw
};

// What value.dump().size() would be, without building that text: every call that takes
// arguments, metadata or a result checks its size, and a copy of a large payload only to
// measure it cost more than the store's own serialisation. Iterative: the depth was checked
// first, but a stack of pointers costs nothing.
DumpSize dump_size(const nlohmann::json &value) {
    DumpSize out;
    const auto text = [&](const std::string &s, const char *what) {
        if (const auto bad = first_invalid_utf8(s)) {
            out.invalid =
                fmt::format("invalid UTF-8 byte 0x{:02X} at index {} of {} {}",
                            static_cast<unsigned char>(s[*bad]), *bad, what, quote_input(s, 40));
            return false;
        }
        out.bytes += dumped_string_size(s);
        return true;
    };
    std::vector<const nlohmann::json *> todo{&value};
    while (!todo.empty()) {
        const nlohmann::json &v = *todo.back();
        todo.pop_back();
        switch (v.type()) {
        case nlohmann::json::value_t::object:
            out.bytes += 2 + (v.empty() ? 0 : v.size() - 1) + v.size(); // braces, commas, colons
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (!text(it.key(), "the key"))
                    return out;
                todo.push_back(&it.value());
            }
            break;
        case nlohmann::json::value_t::array:
            out.bytes += 2 + (v.empty() ? 0 : v.size() - 1);
            for (const auto &e : v)
                todo.push_back(&e);
            break;
        case nlohmann::json::value_t::string:
            if (!text(v.get_ref<const std::string &>(), "the string"))
                return out;
            break;
        default: // null, booleans, numbers (as nlohmann prints them), binary: short
            out.bytes += v.dump().size();
        }
    }
    return out;
}

} // namespace

PayloadCheck inspect_payload(const nlohmann::json &value, const PayloadLimits &limits) {
    using Problem = PayloadCheck::Problem;
    if (json_depth(value, limits.max_json_depth) > limits.max_json_depth)
        return {Problem::too_deep,
                fmt::format("nested deeper than max_json_depth ({})", limits.max_json_depth)};
    const DumpSize measured = dump_size(value);
    if (measured.invalid)
        return {Problem::invalid_text, fmt::format("not valid JSON text: {}", *measured.invalid)};
    const std::size_t size = measured.bytes;
    if (size > limits.max_payload_bytes)
        return {Problem::too_large, fmt::format("{} bytes, over max_payload_bytes ({})", size,
                                                limits.max_payload_bytes)};
    return {};
}

void check_payload(const nlohmann::json &value, const PayloadLimits &limits, std::string_view what,
                   std::string_view field) {
    const auto check = inspect_payload(value, limits);
    if (check.problem != PayloadCheck::Problem::none)
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field '{}': {}", what, field, check.detail));
}

void check_id(std::string_view id, const PayloadLimits &limits, std::string_view what,
              std::string_view field) {
    if (id.empty())
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field '{}': must not be empty", what, field));
    if (const auto nul = id.find('\0'); nul != std::string_view::npos)
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field '{}': contains a NUL byte at position {}: {}", what,
                                field, nul, quote_input(id)));
    if (const auto bad = first_invalid_utf8(id))
        throw Error(
            errc::invalid_argument,
            fmt::format("{}: field '{}': not valid UTF-8 (byte 0x{:02X} at position {}): {}", what,
                        field, static_cast<unsigned char>(id[*bad]), *bad, quote_input(id)));
    if (id.size() > limits.max_id_bytes)
        throw Error(errc::invalid_argument,
                    fmt::format("{}: field '{}': {} bytes, over max_id_bytes ({}): {}", what, field,
                                id.size(), limits.max_id_bytes, quote_input(id)));
}

void check_limits(const PayloadLimits &limits) {
    if (limits.max_json_depth < 1 || limits.max_json_depth > max_stored_json_depth)
        throw Error(errc::invalid_argument,
                    fmt::format("scheduler options: field 'limits.max_json_depth': must be 1 to "
                                "{}, got {}",
                                max_stored_json_depth, limits.max_json_depth));
    if (limits.max_payload_bytes < 2)
        throw Error(errc::invalid_argument,
                    fmt::format("scheduler options: field 'limits.max_payload_bytes': must be at "
                                "least 2, got {}",
                                limits.max_payload_bytes));
    if (limits.max_id_bytes < 1)
        throw Error(errc::invalid_argument,
                    "scheduler options: field 'limits.max_id_bytes': must be positive, got 0");
}

} // namespace asched::detail
