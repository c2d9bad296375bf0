// A small MariaDB Connector/C client for asched: non-blocking connections (the `_start` /
// `_cont` API) whose socket the caller's io_context watches (no thread per query), prepared
// statements with bound parameters cached per connection, every wait bounded by a deadline,
// and a pool.
#pragma once

#include "../core/connection_pool.hpp"

#include <asched/error.hpp>
#include <asched/time.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct st_mysql;
struct st_mysql_stmt;

namespace asched::mdb {

using steady = std::chrono::steady_clock;

/// An error from the server or the connection. `code` is the server's or client's error number
/// (1213: deadlock); `connection_lost` says whether the connection is still usable.
class QueryError : public Error {
  public:
    QueryError(std::string message, unsigned code, bool connection_lost)
        : Error(errc::store_failure, std::move(message)), code_(code),
          connection_lost_(connection_lost) {}
    unsigned code() const noexcept { return code_; }
    bool connection_lost() const noexcept { return connection_lost_; }
    /// A deadlock, a lock wait timeout or a duplicate key met by a concurrent insert: running
    /// the transaction again may succeed.
    bool retryable() const noexcept { return code_ == 1213 || code_ == 1205 || code_ == 1062; }

  private:
    unsigned code_;
    bool connection_lost_;
};

/// A bound parameter: NULL, text (bytes) or a 64-bit integer.
struct Param {
    enum class Kind { null, text, integer } kind = Kind::null;
    std::string text;
    std::int64_t integer = 0;
};
using Params = std::vector<Param>;

inline Param param(std::string s) {
    return Param{Param::Kind::text, std::move(s), 0};
}
inline Param param(std::int64_t v) {
    return Param{Param::Kind::integer, {}, v};
}
inline Param param(std::uint64_t v) {
    return param(std::int64_t(v));
}
inline Param param(int v) {
    return param(std::int64_t(v));
}
inline Param param(bool v) {
    return param(std::int64_t(v ? 1 : 0));
}
inline Param param(time_point t) {
    return param(std::int64_t(t.time_since_epoch().count()));
}
inline Param param(duration d) {
    return param(std::int64_t(d.count()));
}
template <class T> Param param(const std::optional<T> &v) {
    return v ? param(*v) : Param{};
}

/// One statement's rows, every value as text (NULL kept apart).
class Result {
  public:
    int rows() const { return int(rows_.size()); }
    /// Rows changed by INSERT/UPDATE/DELETE.
    std::int64_t affected() const { return affected_; }
    bool is_null(int row, int col) const { return !rows_.at(row).at(col); }
    std::string text(int row, int col) const { return rows_.at(row).at(col).value_or(""); }
    std::optional<std::string> opt_text(int row, int col) const { return rows_.at(row).at(col); }
    std::int64_t int64(int row, int col) const;
    std::optional<std::int64_t> opt_int64(int row, int col) const {
        return is_null(row, col) ? std::nullopt : std::optional(int64(row, col));
    }
    time_point time(int row, int col) const { return time_point(duration(int64(row, col))); }
    std::optional<time_point> opt_time(int row, int col) const {
        return is_null(row, col) ? std::nullopt : std::optional(time(row, col));
    }
    bool boolean(int row, int col) const {
        const auto &v = rows_.at(row).at(col);
        return v && !v->empty() && *v != "0";
    }

  private:
    friend class Connection;
    std::vector<std::string> columns_;
    std::vector<std::vector<std::optional<std::string>>> rows_;
    std::int64_t affected_ = 0;
};

/// Where and as whom to connect.
struct Endpoint {
    std::string host = "127.0.0.1";
    unsigned port = 3306;
    std::string user;     // empty: the login name
    std::string password; // never in a message
    std::string unix_socket;
};

/// One non-blocking connection. Only one operation at a time; the caller's executor resumes
/// it. Any failure to talk to the server marks it broken: the pool then drops it.
class Connection {
  public:
    /// Connects within `timeout` (utf8mb4) and runs `setup` (statements, in order); throws
    /// QueryError naming the server. The socket is watched by `ex`.
    static asio::awaitable<std::unique_ptr<Connection>> connect(asio::any_io_executor ex,
                                                                Endpoint endpoint,
                                                                std::vector<std::string> setup,
                                                                duration timeout);
    ~Connection();
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    /// One statement with `?` parameters, prepared once per connection and then reused
    /// (values are always bound, never pasted into the text). `timeout` bounds the whole round
    /// trip; past it the connection is closed (the server rolls back).
    asio::awaitable<Result> query(std::string sql, Params params, duration timeout);
    /// One statement without parameters (text protocol): transaction control, DDL.
    asio::awaitable<Result> exec(std::string sql, duration timeout);

    bool broken() const noexcept { return broken_; }
    /// Whether a transaction is open.
    bool in_transaction() const noexcept;
    /// Closes the socket at once (no goodbye to the server).
    void close() noexcept;
    /// The server as "host:port", for messages.
    const std::string &where() const noexcept { return where_; }

  private:
    Connection(st_mysql *m, asio::any_io_executor ex, std::string where);
    // Drives a non-blocking call: `status` is what its _start returned; `cont(ready)` is its
    // _cont. Waits on the socket (and the library's own timeout) until the call completes.
    asio::awaitable<void> drive(int status, std::function<int(int)> cont,
                                steady::time_point deadline, std::string_view what);
    [[noreturn]] void fail(std::string what, unsigned code = 2013);
    [[noreturn]] void fail_stmt(st_mysql_stmt *stmt, std::string_view sql);
    [[noreturn]] void fail_conn(std::string_view sql);

    st_mysql *mysql_;
    asio::posix::stream_descriptor socket_;
    std::string where_;
    bool broken_ = false;
    std::map<std::string, st_mysql_stmt *> statements_;
};

/// At most `size` connections to one server (detail::ConnectionPool).
class Pool : public detail::ConnectionPool<Connection> {
  public:
    Pool(asio::any_io_executor ex, Endpoint endpoint, std::string label, std::size_t size,
         duration connect_timeout, std::vector<std::string> setup);
};

/// Backquotes an SQL identifier.
std::string identifier(const std::string &name);
/// Throws errc::invalid_argument naming `what` unless `name` matches [a-z_][a-z0-9_]{0,63}.
void check_identifier(const std::string &name, std::string_view what);

} // namespace asched::mdb
