// PostgresDataStore: one PostgreSQL database shared by many scheduler processes.
#pragma once

#include <asched/data_stores/transacted_store.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace asched {

struct PostgresDataStoreOptions {
    /// A libpq connection string or URI ("host=db user=asched dbname=jobs",
    /// "postgresql://asched@db/jobs"). Messages name only host, port and database.
    std::string conninfo;
    /// The PostgreSQL schema that holds asched's tables; created on start() when missing.
    std::string schema = "asched";
    /// At most this many connections; calls beyond it wait for a free one.
    std::size_t pool_size = 4;
    /// Bounds a connection attempt.
    duration connect_timeout = std::chrono::seconds(10);
    /// Bounds every round trip and the wait for a free connection: past it the call fails
    /// with Error(store_failure) and the connection is closed (the server rolls back), so a
    /// frozen server never hangs a scheduler.
    duration query_timeout = std::chrono::seconds(10);
    /// Due schedules and expired leases are decided with the database's now() (default), so
    /// nodes with skewed clocks agree. false: with the StoreContext clock (tests that inject
    /// a clock).
    bool database_clock = true;
    /// start() creates or migrates the schema; false: it refuses a schema that is missing or
    /// older than this build's (`asched store check` looks without changing).
    bool migrate = true;
};

namespace detail {
struct PostgresStoreImpl; // the store's state, defined with its calls
} // namespace detail

/// Keeps tasks, schedules, jobs and results in PostgreSQL for a cluster of schedulers.
///
/// - libpq in non-blocking mode: each connection's socket is watched by the executor that
///   called start() (the scheduler's), which must keep running while the store is used; no
///   thread per query. A small pool; query timeouts. Calls may come from any executor.
/// - Schedules and jobs are leased with `FOR UPDATE SKIP LOCKED`, so nodes never wait on one
///   another's rows and never take the same row. Fencing tokens come from a sequence.
/// - A fire's jobs and the schedule's advance commit together; the unique key (schedule id,
///   scheduled fire time) makes a second job for one fire impossible.
/// - The per-task running-jobs cap holds across all nodes (the task row is locked while jobs
///   of a capped task are acquired).
/// - Tables live in their own schema with a version table; start() migrates forward under an
///   advisory lock (nodes may start together) and refuses a newer schema.
/// - A row that cannot be decoded is moved to the quarantine table with a RecordQuarantined
///   event, like SqliteDataStore.
/// - When the server goes away, calls fail with Error(store_failure) at once or within
///   query_timeout; the next call connects again. The scheduler retries with backoff.
class PostgresDataStore final : public detail::TransactedStore<detail::PostgresStoreImpl> {
  public:
    /// The schema version this build writes.
    static constexpr int schema_version = 4;

    explicit PostgresDataStore(PostgresDataStoreOptions options);
    ~PostgresDataStore() override;

    asio::awaitable<void> start(StoreContext context) override;
    asio::awaitable<void> stop() override;
};

} // namespace asched
