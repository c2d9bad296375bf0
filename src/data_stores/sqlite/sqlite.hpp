// A thin RAII layer over the SQLite C API for SqliteDataStore: a connection with a cache of
// prepared statements, statements with typed binds and columns, and transactions. Every
// failure throws Error(store_failure) naming the statement and SQLite's message.
#pragma once

#include <asched/error.hpp>
#include <asched/time.hpp>

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace asched::sqlite {

[[noreturn]] void fail(sqlite3 *db, std::string_view what);

class Statement {
  public:
    Statement(sqlite3 *db, sqlite3_stmt *stmt) : db_(db), stmt_(stmt) {}

    Statement &bind(int i, std::int64_t v);
    Statement &bind(int i, std::string_view v);
    Statement &bind(int i, std::nullopt_t);
    Statement &bind(int i, time_point t) {
        return bind(i, std::int64_t(t.time_since_epoch().count()));
    }
    Statement &bind(int i, const std::optional<time_point> &t) {
        return t ? bind(i, *t) : bind(i, std::nullopt);
    }
    Statement &bind(int i, const std::optional<std::int64_t> &v) {
        return v ? bind(i, *v) : bind(i, std::nullopt);
    }
    Statement &bind(int i, const std::optional<std::string> &s) {
        return s ? bind(i, std::string_view(*s)) : bind(i, std::nullopt);
    }
    Statement &bind(int i, const std::string &s) { return bind(i, std::string_view(s)); }
    Statement &bind(int i, const char *s) { return bind(i, std::string_view(s)); }

    /// Advances to the next row; false when done. Resets the statement when done.
    bool step();
    /// Runs a statement that returns no rows; returns sqlite3_changes().
    int exec();

    bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
    std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
    bool boolean(int col) const { return int64(col) != 0; }
    std::string text(int col) const;
    std::optional<std::string> opt_text(int col) const {
        return is_null(col) ? std::nullopt : std::optional(text(col));
    }
    time_point time(int col) const { return time_point(duration(int64(col))); }
    std::optional<time_point> opt_time(int col) const {
        return is_null(col) ? std::nullopt : std::optional(time(col));
    }

    void reset();

  private:
    sqlite3 *db_;
    sqlite3_stmt *stmt_;
};

/// One connection and its prepared statements. Not thread-safe: the store uses it from one
/// thread only.
class Connection {
  public:
    Connection(const std::string &path, std::chrono::milliseconds busy_timeout);
    ~Connection();
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    /// The cached statement for `sql`, reset and with its bindings cleared.
    Statement prepare(const char *sql);
    /// Runs one or more statements without results.
    void exec(const char *sql);
    sqlite3 *handle() const noexcept { return db_; }
    const std::string &path() const noexcept { return path_; }

  private:
    sqlite3 *db_ = nullptr;
    std::string path_;
    std::unordered_map<const char *, sqlite3_stmt *> cache_;
};

/// BEGIN IMMEDIATE (or DEFERRED for reads) ... COMMIT; rolls back unless committed.
class Transaction {
  public:
    enum class Kind { immediate, deferred };
    Transaction(Connection &db, Kind kind);
    ~Transaction();
    void commit();

  private:
    Connection &db_;
    bool open_ = true;
};

} // namespace asched::sqlite
