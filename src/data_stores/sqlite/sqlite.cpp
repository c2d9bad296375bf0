// RAII helpers over the SQLite C API.
#include "sqlite.hpp"

#include <fmt/format.h>

#include <cstring>

namespace asched::sqlite {

namespace {

// SQLite's message and extended code, and for an I/O failure which operation failed and,
// when SQLite kept it, what the system said: SQLite reports a full disk on some paths, a write
// past the file size limit and a failing device all as a bare "disk I/O error".
std::string describe(sqlite3 *db, const char *message) {
    const int code = sqlite3_extended_errcode(db);
    std::string out = fmt::format("{} (code {})", message, code);
    switch (code) {
    case SQLITE_IOERR_WRITE:
        out += ": a write to the database or its WAL failed (a full disk or file system, or "
               "the process's file size limit)";
        break;
    case SQLITE_IOERR_FSYNC:
        out += ": fsync failed (the device or file system)";
        break;
    case SQLITE_IOERR_READ:
    case SQLITE_IOERR_SHORT_READ:
        out += ": a read failed (the device, or the file was cut short)";
        break;
    case SQLITE_IOERR_TRUNCATE:
        out += ": truncating a file failed";
        break;
    default:
        break;
    }
    const int primary = code & 0xFF;
    const int os = sqlite3_system_errno(db);
    if (os != 0 && (primary == SQLITE_IOERR || primary == SQLITE_FULL ||
                    primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY))
        out += fmt::format(" [{} (errno {})]", std::strerror(os), os);
    return out;
}

} // namespace

void fail(sqlite3 *db, std::string_view what) {
    if (!db)
        throw Error(errc::store_failure, fmt::format("sqlite: {}: cannot open", what));
    throw Error(errc::store_failure,
                fmt::format("sqlite: {}: {}", what, describe(db, sqlite3_errmsg(db))));
}

Statement &Statement::bind(int i, std::int64_t v) {
    if (sqlite3_bind_int64(stmt_, i, v) != SQLITE_OK)
        fail(db_, sqlite3_sql(stmt_));
    return *this;
}

Statement &Statement::bind(int i, std::string_view v) {
    if (sqlite3_bind_text(stmt_, i, v.data(), int(v.size()), SQLITE_TRANSIENT) != SQLITE_OK)
        fail(db_, sqlite3_sql(stmt_));
    return *this;
}

Statement &Statement::bind(int i, std::nullopt_t) {
    if (sqlite3_bind_null(stmt_, i) != SQLITE_OK)
        fail(db_, sqlite3_sql(stmt_));
    return *this;
}

bool Statement::step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW)
        return true;
    if (rc == SQLITE_DONE) {
        sqlite3_reset(stmt_);
        return false;
    }
    const std::string sql = sqlite3_sql(stmt_);
    sqlite3_reset(stmt_);
    fail(db_, sql);
}

int Statement::exec() {
    while (step()) {
    }
    return sqlite3_changes(db_);
}

std::string Statement::text(int col) const {
    const auto *p = reinterpret_cast<const char *>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, std::size_t(sqlite3_column_bytes(stmt_, col))) : std::string();
}

void Statement::reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

Connection::Connection(const std::string &path, std::chrono::milliseconds busy_timeout)
    : path_(path) {
    const int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        const std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        throw Error(errc::store_failure,
                    fmt::format("sqlite: cannot open '{}': {}", path, message));
    }
    sqlite3_busy_timeout(db_, int(busy_timeout.count()));
    sqlite3_extended_result_codes(db_, 1);
}

Connection::~Connection() {
    for (auto &[sql, stmt] : cache_)
        sqlite3_finalize(stmt);
    sqlite3_close(db_);
}

Statement Connection::prepare(const char *sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
        sqlite3_stmt *stmt = nullptr;
        if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
            SQLITE_OK)
            fail(db_, sql);
        it = cache_.emplace(sql, stmt).first;
    }
    Statement s(db_, it->second);
    s.reset();
    return s;
}

void Connection::exec(const char *sql) {
    char *message = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
        const std::string text = describe(db_, message ? message : "unknown error");
        sqlite3_free(message);
        throw Error(errc::store_failure, fmt::format("sqlite: {}: {}", sql, text));
    }
}

Transaction::Transaction(Connection &db, Kind kind) : db_(db) {
    db_.exec(kind == Kind::immediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
    if (kind != Kind::immediate)
        return;
    // A file unlinked (or replaced) under an open connection still takes writes, into an
    // inode nobody else sees, lost at exit; peers on a new file at the path would run every
    // schedule again. Checked under the write lock, before anything is written.
    int moved = 0;
    if (sqlite3_file_control(db_.handle(), "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
        moved) {
        sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
        open_ = false;
        throw Error(errc::store_failure,
                    fmt::format("sqlite: '{}' was deleted or replaced while this process had it "
                                "open: nothing more is written to it (restart to open the file "
                                "now at that path)",
                                db_.path()));
    }
}

Transaction::~Transaction() {
    if (open_)
        sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
    db_.exec("COMMIT");
    open_ = false;
}

} // namespace asched::sqlite
