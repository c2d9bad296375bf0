// One HTTP/1.1 request read off a connection, parsed by Debian's http-parser (never by hand),
// with the admin server's bounds: the header block and the body each have a byte limit, and a
// request that passes one is refused with the status that says so (431, 413).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace asched::admin {

struct HttpRequest {
    std::string method; ///< "GET", "POST", ...
    std::string target; ///< as sent: path and query
    std::string path;   ///< percent-decoded, without the query
    /// The path's segments, each decoded on its own (an id may hold an encoded '/').
    std::vector<std::string> segments;
    std::map<std::string, std::string> query;   ///< decoded; a repeated key keeps the last value
    std::map<std::string, std::string> headers; ///< names in lower case; repeats joined by ", "
    std::string body;
    bool keep_alive = false;

    /// The header's value, or empty.
    std::string_view header(std::string_view lower_case_name) const;
};

struct HttpLimits {
    std::size_t max_header_bytes = 8 * 1024;
    std::size_t max_body_bytes = 64 * 1024;
};

/// Why a request could not be read: the status to answer with and a reason for people.
struct HttpError {
    int status = 400;
    std::string reason;
};

/// Feeds bytes as they arrive; after each feed, `complete()` or `error()` may be set. One
/// parser reads one request; pipelined bytes after it are left in `rest()`.
class HttpRequestParser {
  public:
    explicit HttpRequestParser(HttpLimits limits = {});
    ~HttpRequestParser();
    HttpRequestParser(const HttpRequestParser &) = delete;
    HttpRequestParser &operator=(const HttpRequestParser &) = delete;

    /// Consumes what it can of `data`; returns the bytes it used (the rest belongs to a
    /// following request).
    std::size_t feed(std::string_view data);
    /// The connection ended: a request cut short becomes an error.
    void end_of_input();

    bool complete() const noexcept { return complete_; }
    const std::optional<HttpError> &error() const noexcept { return error_; }
    HttpRequest &request() noexcept { return request_; }
    /// Bytes read so far of the header block (request line and headers).
    std::size_t header_bytes() const noexcept { return header_bytes_; }
    /// Whether any byte of a request arrived (an idle keep-alive connection has none).
    bool started() const noexcept { return started_; }

  private:
    struct Impl;
    friend struct Impl;
    std::unique_ptr<Impl> impl_;
    HttpLimits limits_;
    HttpRequest request_;
    std::optional<HttpError> error_;
    std::string field_, value_;
    bool in_value_ = false;
    bool headers_done_ = false;
    bool complete_ = false;
    bool started_ = false;
    std::size_t header_bytes_ = 0;

    void fail(int status, std::string reason);
    void flush_header();
};

/// Percent-decodes `text` (and '+' as space when `form` is set). Returns nullopt for a bad
/// escape.
std::optional<std::string> percent_decode(std::string_view text, bool form);

/// The standard reason phrase of a status code ("Not Found").
std::string_view status_text(int status) noexcept;

} // namespace asched::admin
