// A small libpq client for asched: non-blocking connections whose socket the caller's
// io_context watches (no thread per query), every wait bounded by a deadline, and a pool.
#pragma once

#include "../core/connection_pool.hpp"

#include <asched/error.hpp>
#include <asched/time.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace asched::pg {

using steady = std::chrono::steady_clock;

/// A query parameter in text form; nullopt is SQL NULL.
using Param = std::optional<std::string>;
using Params = std::vector<Param>;

/// An error from the server or the connection. `sqlstate` is empty for connection failures;
/// `connection_lost` says whether the connection is still usable.
class QueryError : public Error {
  public:
    QueryError(std::string message, std::string sqlstate, bool connection_lost)
        : Error(errc::store_failure, std::move(message)), sqlstate_(std::move(sqlstate)),
          connection_lost_(connection_lost) {}
    const std::string &sqlstate() const noexcept { return sqlstate_; }
    bool connection_lost() const noexcept { return connection_lost_; }
    /// Deadlock or serialization failure: running the transaction again may succeed.
    bool retryable() const noexcept { return sqlstate_ == "40P01" || sqlstate_ == "40001"; }

  private:
    std::string sqlstate_;
    bool connection_lost_;
};

/// One statement's rows (text format).
class Result {
  public:
    Result() = default;
    explicit Result(PGresult *r) : r_(r, &PQclear) {}

    int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
    /// Rows changed by INSERT/UPDATE/DELETE.
    std::int64_t affected() const;
    bool is_null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
    std::string text(int row, int col) const {
        return std::string(PQgetvalue(r_.get(), row, col),
                           std::size_t(PQgetlength(r_.get(), row, col)));
    }
    std::optional<std::string> opt_text(int row, int col) const {
        return is_null(row, col) ? std::nullopt : std::optional(text(row, col));
    }
    std::int64_t int64(int row, int col) const;
    std::optional<std::int64_t> opt_int64(int row, int col) const {
        return is_null(row, col) ? std::nullopt : std::optional(int64(row, col));
    }
    time_point time(int row, int col) const { return time_point(duration(int64(row, col))); }
    std::optional<time_point> opt_time(int row, int col) const {
        return is_null(row, col) ? std::nullopt : std::optional(time(row, col));
    }
    bool boolean(int row, int col) const { return PQgetvalue(r_.get(), row, col)[0] == 't'; }

  private:
    std::shared_ptr<PGresult> r_;
};

/// A NOTIFY received on a connection that LISTENs.
struct Notification {
    std::string channel;
    std::string payload;
    int backend_pid = 0;
};

/// Parameters in text form.
inline Param param(std::string s) {
    return s;
}
inline Param param(std::int64_t v) {
    return std::to_string(v);
}
inline Param param(std::uint64_t v) {
    return std::to_string(v);
}
inline Param param(int v) {
    return std::to_string(v);
}
inline Param param(bool v) {
    return std::string(v ? "t" : "f");
}
inline Param param(time_point t) {
    return std::to_string(t.time_since_epoch().count());
}
inline Param param(duration d) {
    return std::to_string(d.count());
}
template <class T> Param param(const std::optional<T> &v) {
    return v ? param(*v) : std::nullopt;
}
/// A text[] literal.
Param text_array(const std::vector<std::string> &values);

/// One non-blocking libpq connection. Only one operation at a time; the caller's executor
/// resumes it. Any failure to talk to the server marks it broken: the pool then drops it.
class Connection {
  public:
    /// Connects within `timeout`; throws QueryError naming the server (never the password).
    /// The socket is watched by `ex`, which must keep running while the connection is used.
    static asio::awaitable<std::unique_ptr<Connection>>
    connect(asio::any_io_executor ex, std::string conninfo, duration timeout);
    ~Connection();
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    /// `sql` is NUL-terminated and outlives the call (a literal, a cached string).
    /// One statement with parameters ($1, $2, ...); throws QueryError. `timeout` bounds the
    /// whole round trip; past it the connection is closed (the server rolls back).
    asio::awaitable<Result> query(std::string_view sql, Params params, duration timeout);
    /// Several statements in one round trip (simple protocol, no parameters); the last result.
    asio::awaitable<Result> exec(std::string_view sql, duration timeout);
    /// Waits until the server sends something (a notification) or `deadline`; true when
    /// something arrived. Throws QueryError when the connection is lost.
    asio::awaitable<bool> wait_input(steady::time_point deadline);
    /// Notifications received so far.
    std::vector<Notification> take_notifications();

    bool broken() const noexcept { return broken_; }
    /// Whether a transaction is open (or failed and not yet rolled back).
    bool in_transaction() const noexcept;
    /// Closes the socket at once (no goodbye to the server).
    void close() noexcept;
    /// The server as "host:port/dbname", for messages.
    const std::string &where() const noexcept { return where_; }

  private:
    Connection(PGconn *conn, asio::any_io_executor ex, std::string where);
    // false: the deadline came first.
    asio::awaitable<bool> wait(asio::posix::descriptor_base::wait_type what,
                               steady::time_point deadline);
    asio::awaitable<Result> collect(std::string_view sql, steady::time_point deadline);
    void consume();
    [[noreturn]] void fail(std::string what);

    PGconn *conn_;
    asio::posix::stream_descriptor socket_;
    std::string where_;
    bool broken_ = false;
    std::vector<Notification> notifications_;
};

/// At most `size` connections to one server (detail::ConnectionPool). Connections are
/// watched by `ex`. `setup`: SQL each new connection runs first (within connect_timeout), e.g.
/// session settings; empty: none.
class Pool : public detail::ConnectionPool<Connection> {
  public:
    Pool(asio::any_io_executor ex, std::string conninfo, std::size_t size, duration connect_timeout,
         std::string setup = {});
};

/// "host:port/dbname" for a conninfo string or URI, without credentials.
std::string describe(const std::string &conninfo);
/// Double-quotes an SQL identifier.
std::string identifier(const std::string &name);
/// Throws errc::invalid_argument naming `what` unless `name` is a plain identifier:
/// [a-z_][a-z0-9_]{0,62}. Configured names (schema, channel) are used in SQL text and inside
/// string literals (nextval('...')), and PostgreSQL silently cuts names past 63 bytes, so
/// nothing else is accepted.
void check_identifier(const std::string &name, std::string_view what);

} // namespace asched::pg
