// MariaDbDataStore: one MariaDB database shared by many scheduler processes.
#pragma once

#include <asched/data_stores/transacted_store.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace asched {

struct MariaDbDataStoreOptions {
    /// The server: a host name or address and a TCP port, or `unix_socket` (a path) instead.
    std::string host = "127.0.0.1";
    unsigned port = 3306;
    std::string unix_socket;
    /// Empty: the login name, as the mariadb client does.
    std::string user;
    /// Never appears in a message.
    std::string password;
    /// The database (schema) that holds asched's tables; created on start() when missing.
    /// A plain identifier: [a-z_][a-z0-9_]{0,63}.
    std::string database = "asched";
    /// At most this many connections; calls beyond it wait for a free one.
    std::size_t pool_size = 4;
    /// Bounds a connection attempt.
    duration connect_timeout = std::chrono::seconds(10);
    /// Bounds every round trip, a row lock wait and the wait for a free connection: past it
    /// the call fails with Error(store_failure) and the connection is closed (the server rolls
    /// back), so a frozen server never hangs a scheduler.
    duration query_timeout = std::chrono::seconds(10);
    /// Due schedules and expired leases are decided with the database's clock (default), so
    /// nodes with skewed clocks agree. false: with the StoreContext clock (tests that inject
    /// a clock).
    bool database_clock = true;
    /// start() creates or migrates the tables; false: it refuses a database that is missing
    /// them or older than this build's (`asched store check` looks without changing).
    bool migrate = true;

    /// Options from a URL: `mariadb://[user[:password]@]host[:port][/database]` (also
    /// `mysql://`); percent-escapes are decoded in the user and password. Throws
    /// Error(invalid_argument) naming what is wrong.
    static MariaDbDataStoreOptions from_url(std::string_view url);
};

namespace detail {
struct MariaDbStoreImpl; // the store's state, defined with its calls
} // namespace detail

/// Keeps tasks, schedules, jobs and results in MariaDB (10.6 or later) for a cluster of
/// schedulers; the counterpart of PostgresDataStore, with the same guarantees.
///
/// - MariaDB Connector/C in non-blocking mode: each connection's socket is watched by the
///   executor that called start() (the scheduler's), which must keep running while the store
///   is used; no thread per query. Prepared statements, values always bound. A small pool;
///   query timeouts; a node that goes silent inside a transaction loses it after twice the
///   query timeout (`idle_transaction_timeout`), so its row locks are freed.
/// - InnoDB tables in their own database, READ COMMITTED. Schedules and jobs are leased with
///   `FOR UPDATE SKIP LOCKED`; fencing tokens come from a sequence.
/// - A fire's jobs and the schedule's advance commit together; the unique key (schedule id,
///   scheduled fire time) makes a second job for one fire impossible.
/// - The per-task running-jobs cap holds across all nodes (the task row is locked while jobs
///   of a capped task are acquired).
/// - A version table; start() migrates forward under `GET_LOCK` (nodes may start together),
///   with steps that can run again after a crash part way, and refuses a newer version.
/// - A row that cannot be decoded is moved to the quarantine table with a RecordQuarantined
///   event. Ids are kept up to 1024 bytes.
/// - When the server goes away, calls fail with Error(store_failure) at once or within
///   query_timeout; the next call connects again. The scheduler retries with backoff.
class MariaDbDataStore final : public detail::TransactedStore<detail::MariaDbStoreImpl> {
  public:
    /// The schema version this build writes.
    static constexpr int schema_version = 1;
    /// The longest id (task, schedule, job, worker) the tables keep, in bytes.
    static constexpr std::size_t max_id_bytes = 1024;

    explicit MariaDbDataStore(MariaDbDataStoreOptions options);
    ~MariaDbDataStore() override;

    asio::awaitable<void> start(StoreContext context) override;
    asio::awaitable<void> stop() override;
};

} // namespace asched
