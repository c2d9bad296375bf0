// Non-blocking libpq: every wait is an async_wait on the connection's socket, raced against
// a deadline. A co_await's result is bound to a named local before it is tested: GCC 12
// miscompiles `if (!co_await x) co_return ...;` (the frame resumes at an invalid point).
#include "../core/text.hpp"
#include "pg.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace asched::pg {

namespace {

std::string trimmed(const char *s) {
    std::string out = s ? s : "";
    while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
        out.pop_back();
    return out;
}

} // namespace

std::int64_t Result::affected() const {
    const char *n = r_ ? PQcmdTuples(r_.get()) : "";
    std::int64_t v = 0;
    std::from_chars(n, n + std::strlen(n), v);
    return v;
}

std::int64_t Result::int64(int row, int col) const {
    const char *s = PQgetvalue(r_.get(), row, col);
    const auto len = std::size_t(PQgetlength(r_.get(), row, col));
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s, s + len, v);
    if (ec != std::errc() || end != s + len)
        throw Error(errc::deserialization,
                    fmt::format("postgres: column {} ('{}') is not an integer: '{}'", col,
                                PQfname(r_.get(), col), std::string_view(s, len)));
    return v;
}

Param text_array(const std::vector<std::string> &values) {
    std::string out = "{";
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i)
            out += ',';
        out += '"';
        for (char c : values[i]) {
            if (c == '"' || c == '\\')
                out += '\\';
            out += c;
        }
        out += '"';
    }
    out += '}';
    return out;
}

std::string describe(const std::string &conninfo) {
    char *error = nullptr;
    PQconninfoOption *options = PQconninfoParse(conninfo.c_str(), &error);
    if (!options) {
        std::string why = error ? trimmed(error) : "out of memory";
        PQfreemem(error);
        throw Error(errc::invalid_argument,
                    fmt::format("postgres: invalid connection string: {}", why));
    }
    std::string host = "localhost", port = "5432", db;
    for (auto *o = options; o->keyword; ++o) {
        if (!o->val)
            continue;
        const std::string_view k = o->keyword;
        if (k == "host" || (k == "hostaddr" && host == "localhost"))
            host = o->val;
        else if (k == "port")
            port = o->val;
        else if (k == "dbname")
            db = o->val;
    }
    PQconninfoFree(options);
    return fmt::format("{}:{}/{}", host, port, db);
}

void check_identifier(const std::string &name, std::string_view what) {
    bool ok = !name.empty() && name.size() <= 63 && !(name[0] >= '0' && name[0] <= '9');
    for (const char c : name)
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok)
        throw Error(errc::invalid_argument,
                    fmt::format("{}: {} ({} bytes) is not a plain identifier: it must match "
                                "[a-z_][a-z0-9_]{{0,62}} (lower-case letters, digits and "
                                "underscores, at most 63 bytes, not starting with a digit)",
                                what, detail::quote_input(name), name.size()));
}

std::string identifier(const std::string &name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"')
            out += '"';
        out += c;
    }
    return out + '"';
}

// ---- Connection -------------------------------------------------------------------------------

Connection::Connection(PGconn *conn, asio::any_io_executor ex, std::string where)
    : conn_(conn), socket_(std::move(ex)), where_(std::move(where)) {}

Connection::~Connection() {
    close();
}

void Connection::close() noexcept {
    if (socket_.is_open())
        socket_.release(); // libpq owns the descriptor
    if (conn_)
        PQfinish(conn_);
    conn_ = nullptr;
    broken_ = true;
}

bool Connection::in_transaction() const noexcept {
    return conn_ && PQtransactionStatus(conn_) != PQTRANS_IDLE;
}

void Connection::fail(std::string what) {
    std::string detail = conn_ ? trimmed(PQerrorMessage(conn_)) : "";
    close();
    throw QueryError(
        fmt::format("postgres {}: {}{}{}", where_, what, detail.empty() ? "" : ": ", detail), "",
        true);
}

asio::awaitable<std::unique_ptr<Connection>>
Connection::connect(asio::any_io_executor ex, std::string conninfo, duration timeout) {
    const std::string where = describe(conninfo);
    const auto deadline = steady::now() + timeout;
    PGconn *raw = PQconnectStart(conninfo.c_str());
    if (!raw)
        throw QueryError("postgres: out of memory", "", true);
    std::unique_ptr<Connection> c(new Connection(raw, ex, where));
    if (PQstatus(raw) == CONNECTION_BAD)
        c->fail("cannot connect");
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    for (;;) {
        // libpq may switch sockets while connecting (several addresses, SSL fallback): the
        // descriptor is registered afresh for every step.
        if (c->socket_.is_open())
            c->socket_.release();
        const int fd = PQsocket(raw);
        if (state == PGRES_POLLING_FAILED || fd < 0)
            c->fail("cannot connect");
        c->socket_.assign(fd);
        if (state == PGRES_POLLING_OK)
            break;
        const bool ready = co_await c->wait(state == PGRES_POLLING_READING
                                                ? asio::posix::descriptor_base::wait_read
                                                : asio::posix::descriptor_base::wait_write,
                                            deadline);
        if (!ready)
            c->fail(fmt::format("no connection within {}", format_duration(timeout)));
        state = PQconnectPoll(raw);
    }
    if (PQsetnonblocking(raw, 1) != 0)
        c->fail("cannot switch to non-blocking mode");
    co_return c;
}

asio::awaitable<bool> Connection::wait(asio::posix::descriptor_base::wait_type what,
                                       steady::time_point deadline) {
    using namespace asio::experimental::awaitable_operators;
    using asio::experimental::as_tuple;
    asio::steady_timer timer(socket_.get_executor(), deadline);
    // Named operands: GCC 12 mishandles class temporaries inside co_await expressions.
    auto ready = socket_.async_wait(what, as_tuple(asio::use_awaitable));
    auto expired = timer.async_wait(as_tuple(asio::use_awaitable));
    auto either = std::move(ready) || std::move(expired);
    auto outcome = co_await std::move(either);
    if (!conn_)
        fail("connection closed");
    if (outcome.index() == 1)
        co_return false;
    if (auto [ec] = std::get<0>(outcome); ec)
        fail(ec.message());
    co_return true;
}

void Connection::consume() {
    if (!PQconsumeInput(conn_))
        fail("connection lost");
    while (PGnotify *n = PQnotifies(conn_)) {
        notifications_.push_back({n->relname, n->extra ? n->extra : "", n->be_pid});
        PQfreemem(n);
    }
}

asio::awaitable<Result> Connection::collect(std::string_view sql, steady::time_point deadline) {
    auto timed_out = [&] {
        fail(fmt::format("no answer within the query timeout ({})", sql.substr(0, 60)));
    };
    for (;;) {
        const int f = PQflush(conn_);
        if (f == 0)
            break;
        if (f < 0)
            fail("cannot send");
        const bool writable = co_await wait(asio::posix::descriptor_base::wait_write, deadline);
        if (!writable)
            timed_out();
    }
    Result last;
    std::optional<QueryError> error;
    for (bool done = false; !done;) {
        while (!PQisBusy(conn_)) {
            PGresult *r = PQgetResult(conn_);
            if (!r) {
                done = true;
                break;
            }
            Result res(r);
            switch (PQresultStatus(r)) {
            case PGRES_COMMAND_OK:
            case PGRES_TUPLES_OK:
            case PGRES_EMPTY_QUERY:
                last = res;
                break;
            default:
                if (!error) {
                    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                    error.emplace(
                        fmt::format("postgres {}: {}", where_, trimmed(PQresultErrorMessage(r))),
                        state ? state : "", PQstatus(conn_) == CONNECTION_BAD);
                }
            }
        }
        if (done)
            break;
        const bool readable = co_await wait(asio::posix::descriptor_base::wait_read, deadline);
        if (!readable)
            timed_out();
        consume();
    }
    if (error) {
        if (error->connection_lost())
            close();
        throw *error;
    }
    co_return last;
}

asio::awaitable<Result> Connection::query(std::string_view sql, Params params, duration timeout) {
    if (broken_)
        throw QueryError(fmt::format("postgres {}: connection closed", where_), "", true);
    std::vector<const char *> values;
    values.reserve(params.size());
    for (const auto &p : params)
        values.push_back(p ? p->c_str() : nullptr);
    if (!PQsendQueryParams(conn_, sql.data(), int(values.size()), nullptr, values.data(), nullptr,
                           nullptr, 0))
        fail("cannot send a query");
    co_return co_await collect(sql, steady::now() + timeout);
}

asio::awaitable<Result> Connection::exec(std::string_view sql, duration timeout) {
    if (broken_)
        throw QueryError(fmt::format("postgres {}: connection closed", where_), "", true);
    if (!PQsendQuery(conn_, sql.data()))
        fail("cannot send a query");
    co_return co_await collect(sql, steady::now() + timeout);
}

asio::awaitable<bool> Connection::wait_input(steady::time_point deadline) {
    if (broken_)
        throw QueryError(fmt::format("postgres {}: connection closed", where_), "", true);
    consume();
    if (!notifications_.empty())
        co_return true;
    const bool ready = co_await wait(asio::posix::descriptor_base::wait_read, deadline);
    if (ready)
        consume();
    co_return ready;
}

std::vector<Notification> Connection::take_notifications() {
    return std::exchange(notifications_, {});
}

// ---- Pool -------------------------------------------------------------------------------------

namespace {

// One connection for the pool, with its session setup run.
asio::awaitable<std::unique_ptr<Connection>> open(asio::any_io_executor ex, std::string conninfo,
                                                  duration timeout, std::string setup) {
    auto conn = co_await Connection::connect(ex, conninfo, timeout);
    if (!setup.empty()) {
        auto set = conn->exec(setup, timeout);
        const auto done = co_await std::move(set);
        (void)done;
    }
    co_return conn;
}

} // namespace

Pool::Pool(asio::any_io_executor ex, std::string conninfo, std::size_t size,
           duration connect_timeout, std::string setup)
    : detail::ConnectionPool<Connection>(
          "postgres " + describe(conninfo), // a malformed string fails here, not on first use
          size,
          [ex = std::move(ex), conninfo, connect_timeout,
           setup = std::move(setup)]() -> asio::awaitable<std::unique_ptr<Connection>> {
              return open(ex, conninfo, connect_timeout, setup);
          }) {}

} // namespace asched::pg
