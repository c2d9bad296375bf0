// libFuzzer target: the admin server's request reader (http-parser under asched's header and
// body bounds). Any bytes, cut into pieces as a socket would deliver them, must end in a
// complete request within the bounds, an error with a status, or a wish for more bytes;
// never a crash, and never a request that passes a bound.
#include "http_request.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

void check(bool ok) {
    if (!ok)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size < 2)
        return 0;
    // The first byte picks the piece size (1 to 64 bytes, or all at once), the second the
    // bounds, so that small inputs reach them.
    const std::size_t piece = data[0] % 65 == 0 ? size : data[0] % 65;
    const asched::admin::HttpLimits limits{256u + (data[1] & 0x0f) * 64u, (data[1] >> 4) * 16u};
    std::string_view input(reinterpret_cast<const char *>(data) + 2, size - 2);
    for (int request = 0; request < 4 && !input.empty(); ++request) {
        asched::admin::HttpRequestParser parser(limits);
        std::size_t offered = 0;
        while (offered < input.size() && !parser.complete() && !parser.error()) {
            const auto chunk = input.substr(offered, piece);
            const auto used = parser.feed(chunk);
            check(used <= chunk.size());
            offered += used;
            if (used < chunk.size())
                break; // the rest belongs to the next request, or the parser stopped on an error
        }
        if (!parser.complete() && !parser.error())
            parser.end_of_input();
        if (parser.complete()) {
            const auto &r = parser.request();
            check(!parser.error());
            check(r.body.size() <= limits.max_body_bytes);
            check(parser.header_bytes() <= limits.max_header_bytes);
            check(!r.method.empty());
            check(!r.path.empty());
        } else if (parser.error()) {
            check(parser.error()->status >= 400 && parser.error()->status < 600);
            check(!parser.error()->reason.empty());
            break;
        } else {
            check(!parser.started() || offered == input.size());
            break;
        }
        input.remove_prefix(offered);
    }
    return 0;
}
