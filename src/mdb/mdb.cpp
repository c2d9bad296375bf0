// Non-blocking MariaDB Connector/C: every call is a `_start` followed by `_cont` calls on
// socket readiness, raced against a deadline. A co_await's result is bound to a named local
// before it is tested (GCC 12 mishandles temporaries and tests around co_await).
#include "../core/text.hpp"
#include "mdb.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <errmsg.h>
#include <mutex>
#include <mysql.h>
#include <mysqld_error.h>
#include <sys/socket.h>

namespace asched::mdb {

namespace {

std::once_flag library_once;

// mysql_init() initialises the library on first use, but not thread-safely.
void library_init() {
    std::call_once(library_once, [] { mysql_library_init(0, nullptr, nullptr); });
}

// Client errors (2000-2999: the server went away, the connection was refused or lost) and the
// server's "connection killed" / "idle transaction timeout" leave no usable connection.
bool connection_lost(unsigned code) {
    return (code >= 2000 && code < 3000) || code == ER_CONNECTION_KILLED || code == 4031;
}

std::string_view head(std::string_view sql) {
    return sql.substr(0, 60);
}

} // namespace

std::int64_t Result::int64(int row, int col) const {
    const std::string s = text(row, col);
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size())
        throw Error(errc::deserialization,
                    fmt::format("mariadb: column {} ('{}') is not an integer: {}", col,
                                col < int(columns_.size()) ? columns_[col] : "",
                                detail::quote_input(s)));
    return v;
}

Connection::Connection(MYSQL *m, asio::any_io_executor ex, std::string where)
    : mysql_(m), socket_(std::move(ex)), where_(std::move(where)) {}

Connection::~Connection() {
    close();
}

void Connection::close() noexcept {
    broken_ = true;
    if (!mysql_)
        return;
    if (socket_.is_open())
        socket_.release(); // the library owns the descriptor; pending waits end aborted
    // Shut the socket first: the goodbye mysql_close() writes, and anything it would read,
    // fail at once instead of waiting on a server that may be frozen.
    if (const int fd = int(mysql_get_socket(mysql_)); fd >= 0)
        ::shutdown(fd, SHUT_RDWR);
    mysql_close(mysql_); // detaches the prepared statements
    for (auto &[sql, stmt] : statements_)
        mysql_stmt_close(stmt);
    statements_.clear();
    mysql_ = nullptr;
}

bool Connection::in_transaction() const noexcept {
    if (!mysql_ || broken_)
        return false;
    unsigned int status = 0;
    mariadb_get_infov(mysql_, MARIADB_CONNECTION_SERVER_STATUS, &status);
    return (status & SERVER_STATUS_IN_TRANS) != 0;
}

void Connection::fail(std::string what, unsigned code) {
    broken_ = true;
    throw QueryError(fmt::format("mariadb {}: {}", where_, what), code, true);
}

void Connection::fail_conn(std::string_view sql) {
    const unsigned code = mysql_errno(mysql_);
    const bool lost = connection_lost(code);
    if (lost)
        broken_ = true;
    throw QueryError(fmt::format("mariadb {}: {} (error {}; in: {})", where_, mysql_error(mysql_),
                                 code, head(sql)),
                     code, lost);
}

void Connection::fail_stmt(MYSQL_STMT *stmt, std::string_view sql) {
    const unsigned code = mysql_stmt_errno(stmt);
    const bool lost = connection_lost(code);
    if (lost)
        broken_ = true;
    throw QueryError(fmt::format("mariadb {}: {} (error {}; in: {})", where_,
                                 mysql_stmt_error(stmt), code, head(sql)),
                     code, lost);
}

asio::awaitable<void> Connection::drive(int status, std::function<int(int)> cont,
                                        steady::time_point deadline, std::string_view what) {
    using namespace asio::experimental::awaitable_operators;
    using asio::experimental::as_tuple;
    while (status != 0) {
        if (!mysql_)
            fail("connection closed");
        const int fd = int(mysql_get_socket(mysql_));
        if (fd < 0)
            fail("no socket");
        // The library may open a new socket while connecting: registered afresh when it does.
        if (!socket_.is_open() || socket_.native_handle() != fd) {
            if (socket_.is_open())
                socket_.release();
            socket_.assign(fd);
        }
        auto until = deadline;
        bool library_timeout = false;
        if (status & MYSQL_WAIT_TIMEOUT) {
            const auto t =
                steady::now() + std::chrono::milliseconds(mysql_get_timeout_value_ms(mysql_));
            if (t < until) {
                until = t;
                library_timeout = true;
            }
        }
        asio::steady_timer timer(socket_.get_executor(), until);
        int ready = 0;
        const bool want_write = (status & MYSQL_WAIT_WRITE) != 0;
        const bool want_read = (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT)) != 0;
        bool timed_out = true;
        if (want_read || want_write) {
            // Named operands: GCC 12 mishandles class temporaries inside co_await expressions.
            auto wait = socket_.async_wait(want_write ? asio::posix::descriptor_base::wait_write
                                                      : asio::posix::descriptor_base::wait_read,
                                           as_tuple(asio::use_awaitable));
            auto expired = timer.async_wait(as_tuple(asio::use_awaitable));
            auto either = std::move(wait) || std::move(expired);
            auto outcome = co_await std::move(either);
            if (!mysql_)
                fail("connection closed");
            if (outcome.index() == 0) {
                if (auto [ec] = std::get<0>(outcome); ec)
                    fail(ec.message());
                ready = want_write ? MYSQL_WAIT_WRITE : MYSQL_WAIT_READ;
                timed_out = false;
            }
        } else {
            auto expired = timer.async_wait(as_tuple(asio::use_awaitable));
            co_await std::move(expired);
        }
        if (timed_out) {
            if (!library_timeout)
                fail(fmt::format("no answer within the timeout ({})", head(what)));
            ready = MYSQL_WAIT_TIMEOUT;
        }
        status = cont(ready);
    }
}

asio::awaitable<std::unique_ptr<Connection>> Connection::connect(asio::any_io_executor ex,
                                                                 Endpoint endpoint,
                                                                 std::vector<std::string> setup,
                                                                 duration timeout) {
    library_init();
    const auto deadline = steady::now() + timeout;
    MYSQL *m = mysql_init(nullptr);
    if (!m)
        throw QueryError("mariadb: out of memory", CR_OUT_OF_MEMORY, true);
    const std::string where = endpoint.unix_socket.empty()
                                  ? fmt::format("{}:{}", endpoint.host, endpoint.port)
                                  : endpoint.unix_socket;
    std::unique_ptr<Connection> c(new Connection(m, ex, where));
    mysql_options(m, MYSQL_OPT_NONBLOCK, nullptr);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    const unsigned seconds = unsigned(std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::seconds>(timeout).count()));
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &seconds);
    auto opt = [](const std::string &s) { return s.empty() ? nullptr : s.c_str(); };
    MYSQL *ret = nullptr;
    const int status = mysql_real_connect_start(&ret, m, opt(endpoint.host), opt(endpoint.user),
                                                opt(endpoint.password), nullptr, endpoint.port,
                                                opt(endpoint.unix_socket), 0);
    auto connecting = c->drive(
        status, [&ret, m](int ready) { return mysql_real_connect_cont(&ret, m, ready); }, deadline,
        "connect");
    co_await std::move(connecting);
    if (!ret)
        c->fail(fmt::format("cannot connect: {}", mysql_error(m)), mysql_errno(m));
    for (auto &statement : setup) {
        auto set = c->exec(std::move(statement), timeout);
        const auto done = co_await std::move(set);
        (void)done;
    }
    co_return c;
}

asio::awaitable<Result> Connection::query(std::string sql, Params params, duration timeout) {
    if (broken_ || !mysql_)
        throw QueryError(fmt::format("mariadb {}: connection closed", where_), CR_SERVER_GONE_ERROR,
                         true);
    const auto deadline = steady::now() + timeout;
    MYSQL_STMT *stmt = nullptr;
    if (auto it = statements_.find(sql); it != statements_.end()) {
        stmt = it->second;
    } else {
        stmt = mysql_stmt_init(mysql_);
        if (!stmt)
            fail("out of memory", CR_OUT_OF_MEMORY);
        const my_bool yes = 1;
        mysql_stmt_attr_set(stmt, STMT_ATTR_UPDATE_MAX_LENGTH, &yes);
        statements_.emplace(sql, stmt); // close() frees it whatever happens next
        int ret = 0;
        const int status = mysql_stmt_prepare_start(&ret, stmt, sql.data(), sql.size());
        auto preparing = drive(
            status, [&ret, stmt](int ready) { return mysql_stmt_prepare_cont(&ret, stmt, ready); },
            deadline, sql);
        co_await std::move(preparing);
        if (ret != 0) {
            statements_.erase(sql);
            try {
                fail_stmt(stmt, sql);
            } catch (...) {
                mysql_stmt_close(stmt);
                throw;
            }
        }
    }
    const unsigned long count = mysql_stmt_param_count(stmt);
    if (count != params.size())
        throw Error(errc::store_failure,
                    fmt::format("mariadb: statement takes {} parameters, {} given: {}", count,
                                params.size(), head(sql)));
    std::vector<MYSQL_BIND> binds(count);
    std::vector<unsigned long> lengths(count);
    for (std::size_t i = 0; i < count; ++i) {
        auto &b = binds[i];
        std::memset(&b, 0, sizeof b);
        auto &p = params[i];
        switch (p.kind) {
        case Param::Kind::null:
            b.buffer_type = MYSQL_TYPE_NULL;
            break;
        case Param::Kind::text:
            b.buffer_type = MYSQL_TYPE_STRING;
            b.buffer = p.text.data();
            b.buffer_length = lengths[i] = p.text.size();
            b.length = &lengths[i];
            break;
        case Param::Kind::integer:
            b.buffer_type = MYSQL_TYPE_LONGLONG;
            b.buffer = &p.integer;
            break;
        }
    }
    if (count > 0 && mysql_stmt_bind_param(stmt, binds.data()))
        fail_stmt(stmt, sql);
    int ret = 0;
    const int status = mysql_stmt_execute_start(&ret, stmt);
    auto executing = drive(
        status, [&ret, stmt](int ready) { return mysql_stmt_execute_cont(&ret, stmt, ready); },
        deadline, sql);
    co_await std::move(executing);
    if (ret != 0)
        fail_stmt(stmt, sql);
    Result out;
    out.affected_ = std::int64_t(mysql_stmt_affected_rows(stmt));
    std::unique_ptr<MYSQL_RES, void (*)(MYSQL_RES *)> meta(mysql_stmt_result_metadata(stmt),
                                                           &mysql_free_result);
    if (!meta)
        co_return out;
    const int stored = mysql_stmt_store_result_start(&ret, stmt);
    auto storing = drive(
        stored, [&ret, stmt](int ready) { return mysql_stmt_store_result_cont(&ret, stmt, ready); },
        deadline, sql);
    co_await std::move(storing);
    if (ret != 0)
        fail_stmt(stmt, sql);
    // Every value as text: buffers as long as the longest value (numbers need no more than 64).
    const unsigned columns = mysql_num_fields(meta.get());
    const MYSQL_FIELD *fields = mysql_fetch_fields(meta.get());
    std::vector<MYSQL_BIND> cells(columns);
    std::vector<std::string> buffers(columns);
    std::vector<unsigned long> sizes(columns);
    std::vector<my_bool> nulls(columns), errors(columns);
    for (unsigned c = 0; c < columns; ++c) {
        out.columns_.emplace_back(fields[c].name);
        buffers[c].resize(std::max<unsigned long>(fields[c].max_length, 64) + 1);
        auto &b = cells[c];
        std::memset(&b, 0, sizeof b);
        b.buffer_type = MYSQL_TYPE_STRING;
        b.buffer = buffers[c].data();
        b.buffer_length = buffers[c].size();
        b.length = &sizes[c];
        b.is_null = &nulls[c];
        b.error = &errors[c];
    }
    if (mysql_stmt_bind_result(stmt, cells.data()))
        fail_stmt(stmt, sql);
    for (;;) {
        const int f = mysql_stmt_fetch(stmt); // the rows are in memory: no I/O
        if (f == MYSQL_NO_DATA)
            break;
        if (f == 1)
            fail_stmt(stmt, sql);
        auto &row = out.rows_.emplace_back();
        for (unsigned c = 0; c < columns; ++c) {
            if (nulls[c]) {
                row.emplace_back(std::nullopt);
            } else if (sizes[c] >= buffers[c].size()) { // longer than its buffer: fetched whole
                std::string whole(sizes[c], '\0');
                unsigned long size = 0;
                MYSQL_BIND one;
                std::memset(&one, 0, sizeof one);
                one.buffer_type = MYSQL_TYPE_STRING;
                one.buffer = whole.data();
                one.buffer_length = whole.size();
                one.length = &size;
                if (mysql_stmt_fetch_column(stmt, &one, c, 0))
                    fail_stmt(stmt, sql);
                row.emplace_back(std::move(whole));
            } else {
                row.emplace_back(std::string(buffers[c].data(), sizes[c]));
            }
        }
    }
    mysql_stmt_free_result(stmt);
    co_return out;
}

asio::awaitable<Result> Connection::exec(std::string sql, duration timeout) {
    if (broken_ || !mysql_)
        throw QueryError(fmt::format("mariadb {}: connection closed", where_), CR_SERVER_GONE_ERROR,
                         true);
    const auto deadline = steady::now() + timeout;
    MYSQL *m = mysql_;
    int err = 0;
    const int status = mysql_real_query_start(&err, m, sql.data(), sql.size());
    auto sending = drive(
        status, [&err, m](int ready) { return mysql_real_query_cont(&err, m, ready); }, deadline,
        sql);
    co_await std::move(sending);
    if (err != 0)
        fail_conn(sql);
    MYSQL_RES *raw = nullptr;
    const int stored = mysql_store_result_start(&raw, m);
    auto storing = drive(
        stored, [&raw, m](int ready) { return mysql_store_result_cont(&raw, m, ready); }, deadline,
        sql);
    co_await std::move(storing);
    Result out;
    if (!raw) {
        if (mysql_field_count(m) != 0)
            fail_conn(sql);
        out.affected_ = std::int64_t(mysql_affected_rows(m));
        co_return out;
    }
    std::unique_ptr<MYSQL_RES, void (*)(MYSQL_RES *)> res(raw, &mysql_free_result);
    const unsigned columns = mysql_num_fields(raw);
    const MYSQL_FIELD *fields = mysql_fetch_fields(raw);
    for (unsigned c = 0; c < columns; ++c)
        out.columns_.emplace_back(fields[c].name);
    while (MYSQL_ROW r = mysql_fetch_row(raw)) { // stored: no I/O
        const unsigned long *lengths = mysql_fetch_lengths(raw);
        auto &row = out.rows_.emplace_back();
        for (unsigned c = 0; c < columns; ++c)
            row.emplace_back(r[c] ? std::optional<std::string>(std::string(r[c], lengths[c]))
                                  : std::nullopt);
    }
    co_return out;
}

Pool::Pool(asio::any_io_executor ex, Endpoint endpoint, std::string label, std::size_t size,
           duration connect_timeout, std::vector<std::string> setup)
    : detail::ConnectionPool<Connection>(std::move(label), size,
                                         [ex = std::move(ex), endpoint = std::move(endpoint),
                                          setup = std::move(setup), connect_timeout]() {
                                             return Connection::connect(ex, endpoint, setup,
                                                                        connect_timeout);
                                         }) {}

void check_identifier(const std::string &name, std::string_view what) {
    bool ok = !name.empty() && name.size() <= 64 && !(name[0] >= '0' && name[0] <= '9');
    for (const char c : name)
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok)
        throw Error(errc::invalid_argument,
                    fmt::format("{}: {} ({} bytes) is not a plain identifier: it must match "
                                "[a-z_][a-z0-9_]{{0,63}} (lower-case letters, digits and "
                                "underscores, at most 64 bytes, not starting with a digit)",
                                what, detail::quote_input(name), name.size()));
}

std::string identifier(const std::string &name) {
    std::string out = "`";
    for (char c : name) {
        if (c == '`')
            out += '`';
        out += c;
    }
    return out + '`';
}

} // namespace asched::mdb
