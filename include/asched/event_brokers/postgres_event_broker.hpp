// PostgresEventBroker: events between scheduler processes over PostgreSQL LISTEN/NOTIFY.
#pragma once

#include <asched/event_broker.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace asched {

struct PostgresEventBrokerOptions {
    /// A libpq connection string or URI (messages name only host, port and database).
    std::string conninfo;
    /// The NOTIFY channel; every node of one cluster uses the same.
    std::string channel = "asched_events";
    duration connect_timeout = std::chrono::seconds(10);
    /// The listening connection runs `SELECT 1` when it has been quiet this long ...
    duration heartbeat_interval = std::chrono::seconds(5);
    /// ... and is declared dead (and replaced) when the answer takes longer than this, so a
    /// half-open TCP connection is noticed in seconds rather than when the kernel gives up.
    duration heartbeat_timeout = std::chrono::seconds(5);
    /// Reconnection waits double from 100 ms up to this.
    std::chrono::milliseconds max_reconnect_delay{5000};
    /// Each new listener sends itself a probe through the sending connection; when it has not
    /// arrived within this, notifications do not pass (PgBouncer in transaction mode): the
    /// broker logs a warning and runs poll-only (poll_only()).
    duration listen_probe_timeout = std::chrono::seconds(5);
};

/// Publishes every event with NOTIFY and delivers what other nodes publish on the channel to
/// local subscribers. Payloads carry ids only: an event's exception text is left out (it is
/// in the store's result), and an event still over PostgreSQL's 8000-byte limit (a huge id)
/// is delivered locally and not sent, with a warning. Two connections of its own (not the
/// store's pool): one LISTENs, with a heartbeat; one sends NOTIFYs in batches. Both reconnect
/// with capped backoff and LISTEN again. A lost notification costs latency only: every node
/// also polls its store. NOTIFY does not pass PgBouncer in transaction mode: each new listener
/// checks that a notification it sends itself comes back, and when it does not, the broker
/// says so and runs poll-only. Point it at the server itself.
class PostgresEventBroker final : public EventBroker {
  public:
    explicit PostgresEventBroker(PostgresEventBrokerOptions options);
    ~PostgresEventBroker() override;

    asio::awaitable<void> start(asio::any_io_executor executor, Logger logger) override;
    /// Sends the events still waiting (at most heartbeat_timeout), then closes its connections
    /// and lets go of every object bound to start()'s executor: a stopped broker may outlive
    /// its io_context, and start() again.
    asio::awaitable<void> stop() override;
    asio::awaitable<void> publish(Event event) override;

    /// Whether the listening connection is up and LISTENing (for health reports and tests).
    bool listening() const noexcept;
    /// How many times the listening connection was replaced (lost, or failed its heartbeat).
    std::uint64_t reconnects() const noexcept override;
    bool connected() const noexcept override { return listening(); }
    /// True once the probe found that notifications do not reach the listener (a pooler in
    /// transaction mode): the broker no longer listens or sends; delivery is local only.
    bool poll_only() const noexcept;

    struct State;

  private:
    std::shared_ptr<State> state_;
};

} // namespace asched
