// The admin server's request reader on http-parser 2.9. The parser is paused at the end of
// the header block and at the end of the message, so the header bytes are counted exactly and
// bytes of a pipelined next request are never consumed.
#include "http_request.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <http_parser.h>

namespace asched::admin {

std::string_view HttpRequest::header(std::string_view lower_case_name) const {
    const auto it = headers.find(std::string(lower_case_name));
    return it == headers.end() ? std::string_view() : std::string_view(it->second);
}

struct HttpRequestParser::Impl {
    http_parser parser{};
    http_parser_settings settings{};
    HttpRequestParser *self = nullptr;

    static HttpRequestParser &of(http_parser *p) { return *static_cast<Impl *>(p->data)->self; }
    static int on_url(http_parser *p, const char *at, std::size_t n) {
        auto &s = of(p);
        s.started_ = true;
        s.request_.target.append(at, n);
        return 0;
    }
    static int on_begin(http_parser *p) {
        of(p).started_ = true;
        return 0;
    }
    static int on_field(http_parser *p, const char *at, std::size_t n) {
        auto &s = of(p);
        if (s.in_value_) {
            s.flush_header();
            s.in_value_ = false;
        }
        s.field_.append(at, n);
        return 0;
    }
    static int on_value(http_parser *p, const char *at, std::size_t n) {
        auto &s = of(p);
        s.in_value_ = true;
        s.value_.append(at, n);
        return 0;
    }
    static int on_headers_complete(http_parser *p) {
        auto &s = of(p);
        if (s.in_value_ || !s.field_.empty())
            s.flush_header();
        s.headers_done_ = true;
        s.request_.method = http_method_str(static_cast<http_method>(p->method));
        s.request_.keep_alive = http_should_keep_alive(p) != 0;
        http_parser_pause(p, 1); // feed() counts the header bytes, then goes on
        return 0;
    }
    static int on_body(http_parser *p, const char *at, std::size_t n) {
        auto &s = of(p);
        if (s.request_.body.size() + n > s.limits_.max_body_bytes) {
            s.fail(413, "the request body is larger than " +
                            std::to_string(s.limits_.max_body_bytes) + " bytes");
            return 1;
        }
        s.request_.body.append(at, n);
        return 0;
    }
    static int on_complete(http_parser *p) {
        auto &s = of(p);
        s.complete_ = true;
        http_parser_pause(p, 1); // what follows is the next request's
        return 0;
    }
};

HttpRequestParser::HttpRequestParser(HttpLimits limits)
    : impl_(std::make_unique<Impl>()), limits_(limits) {
    http_parser_init(&impl_->parser, HTTP_REQUEST);
    impl_->parser.data = impl_.get();
    impl_->self = this;
    http_parser_settings_init(&impl_->settings);
    impl_->settings.on_message_begin = &Impl::on_begin;
    impl_->settings.on_url = &Impl::on_url;
    impl_->settings.on_header_field = &Impl::on_field;
    impl_->settings.on_header_value = &Impl::on_value;
    impl_->settings.on_headers_complete = &Impl::on_headers_complete;
    impl_->settings.on_body = &Impl::on_body;
    impl_->settings.on_message_complete = &Impl::on_complete;
}

HttpRequestParser::~HttpRequestParser() = default;

void HttpRequestParser::fail(int status, std::string reason) {
    if (!error_)
        error_ = HttpError{status, std::move(reason)};
}

void HttpRequestParser::flush_header() {
    std::string name = field_;
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return char(std::tolower(c)); });
    auto [it, fresh] = request_.headers.try_emplace(name, value_);
    if (!fresh)
        it->second += ", " + value_;
    field_.clear();
    value_.clear();
}

namespace {

int hex(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// Splits the target into the decoded path and query; false for a malformed one.
bool split_target(HttpRequest &r) {
    http_parser_url url;
    http_parser_url_init(&url);
    if (http_parser_parse_url(r.target.data(), r.target.size(), 0, &url) != 0)
        return false;
    auto field = [&](int f) -> std::string_view {
        if (!(url.field_set & (1 << f)))
            return {};
        return std::string_view(r.target).substr(url.field_data[f].off, url.field_data[f].len);
    };
    const std::string_view raw_path = field(UF_PATH);
    auto path = percent_decode(raw_path, false);
    if (!path)
        return false;
    r.path = path->empty() ? "/" : *path;
    for (std::string_view rest = raw_path; !rest.empty();) {
        const auto slash = rest.find('/');
        const auto segment = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
        if (segment.empty())
            continue;
        auto decoded = percent_decode(segment, false);
        if (!decoded)
            return false;
        r.segments.push_back(std::move(*decoded));
    }
    std::string_view query = field(UF_QUERY);
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty())
            continue;
        const auto eq = pair.find('=');
        auto key = percent_decode(pair.substr(0, eq), true);
        auto value = percent_decode(
            eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
        if (!key || !value)
            return false;
        r.query[*key] = *value;
    }
    return true;
}

} // namespace

std::size_t HttpRequestParser::feed(std::string_view data) {
    std::size_t used = 0;
    while (used < data.size() && !complete_ && !error_) {
        auto *p = &impl_->parser;
        std::string_view piece = data.substr(used);
        if (!headers_done_) {
            // At most one byte past the limit: enough to know it was passed.
            const std::size_t room = limits_.max_header_bytes + 1 - header_bytes_;
            piece = piece.substr(0, room);
        }
        const bool before_headers = !headers_done_;
        const std::size_t n = http_parser_execute(p, &impl_->settings, piece.data(), piece.size());
        used += n;
        if (before_headers)
            header_bytes_ += n;
        const auto err = HTTP_PARSER_ERRNO(p);
        if (err == HPE_PAUSED) {
            http_parser_pause(p, 0);
            if (before_headers && headers_done_) {
                if (header_bytes_ > limits_.max_header_bytes) {
                    fail(431, "the request's header block is larger than " +
                                  std::to_string(limits_.max_header_bytes) + " bytes");
                    break;
                }
                if (p->upgrade) {
                    fail(501, "protocol upgrades are not supported");
                    break;
                }
                if (p->content_length != ULLONG_MAX && p->content_length > limits_.max_body_bytes) {
                    fail(413, "the request body (Content-Length " +
                                  std::to_string(p->content_length) + ") is larger than " +
                                  std::to_string(limits_.max_body_bytes) + " bytes");
                    break;
                }
                if (!split_target(request_)) {
                    fail(400, "malformed request target");
                    break;
                }
            }
            continue;
        }
        if (err != HPE_OK) {
            if (!error_)
                fail(400, std::string("malformed request: ") +
                              http_errno_description(static_cast<http_errno>(err)));
            break;
        }
        if (!headers_done_ && header_bytes_ > limits_.max_header_bytes) {
            fail(431, "the request's header block is larger than " +
                          std::to_string(limits_.max_header_bytes) + " bytes");
            break;
        }
        if (n < piece.size()) { // the parser stopped without saying why
            fail(400, "malformed request");
            break;
        }
    }
    return used;
}

void HttpRequestParser::end_of_input() {
    if (complete_ || error_)
        return;
    http_parser_execute(&impl_->parser, &impl_->settings, nullptr, 0);
    if (!complete_ && !error_ && started_)
        fail(400, "the connection ended in the middle of a request");
}

std::optional<std::string> percent_decode(std::string_view text, bool form) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '%') {
            if (i + 2 >= text.size())
                return std::nullopt;
            const int hi = hex(text[i + 1]), lo = hex(text[i + 2]);
            if (hi < 0 || lo < 0)
                return std::nullopt;
            out += char(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && form) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out;
}

std::string_view status_text(int status) noexcept {
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    }
    return "Unknown";
}

} // namespace asched::admin
