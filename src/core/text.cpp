#include "text.hpp"

#include <fmt/format.h>

namespace asched::detail {

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    const std::size_t n = s.size();
    const unsigned char c = p[i];
    const std::size_t len = c < 0x80           ? 1
                            : (c >> 5) == 0x6  ? 2
                            : (c >> 4) == 0xE  ? 3
                            : (c >> 3) == 0x1E ? 4
                                               : 0;
    if (len == 0 || i + len > n)
        return 0;
    for (std::size_t k = 1; k < len; ++k)
        if ((p[i + k] & 0xC0) != 0x80)
            return 0;
    if (len == 2 && c < 0xC2) // overlong
        return 0;
    if (len == 3) {
        const unsigned cp = ((c & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
        if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
    }
    if (len == 4) {
        const unsigned cp = ((c & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) |
                            ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
        if (cp < 0x10000 || cp > 0x10FFFF)
            return 0;
    }
    return len;
}

std::optional<std::size_t> first_invalid_utf8(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t len = utf8_sequence_length(s, i);
        if (len == 0)
            return i;
        i += len;
    }
    return std::nullopt;
}

std::string valid_utf8(std::string s) {
    if (!first_invalid_utf8(s))
        return s;
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t len = utf8_sequence_length(s, i);
        if (len) {
            out.append(s, i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

namespace {

// The shared body of printable_input and quote_input: `quotes` also escapes \ and '.
std::string escape_input(std::string_view value, std::size_t max_chars, bool quotes) {
    std::string out;
    std::size_t chars = 0, i = 0;
    for (; i < value.size() && chars < max_chars; ++chars) {
        const auto c = static_cast<unsigned char>(value[i]);
        const std::size_t len = utf8_sequence_length(value, i);
        if (len == 0 || (len == 1 && (c < 0x20 || c == 0x7F))) {
            out += fmt::format("\\x{:02X}", c); // NUL, a control byte, or invalid UTF-8
            i += 1;
            continue;
        }
        if (quotes && (c == '\\' || c == '\''))
            out += '\\';
        out.append(value.substr(i, len));
        i += len;
    }
    if (quotes)
        out = "'" + out + "'";
    if (i < value.size())
        out += fmt::format("... ({} bytes in all)", value.size());
    return out;
}

} // namespace

std::string printable_input(std::string_view value, std::size_t max_chars) {
    return escape_input(value, max_chars, false);
}

std::string quote_input(std::string_view value, std::size_t max_chars) {
    return escape_input(value, max_chars, true);
}

} // namespace asched::detail
