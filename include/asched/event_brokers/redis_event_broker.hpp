// RedisEventBroker: events between scheduler processes over Redis pub/sub.
#pragma once

#include <asched/event_broker.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace asched {

struct RedisEventBrokerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    /// The pub/sub channel; every node of one cluster uses the same.
    std::string channel = "asched.events";
    /// Reconnection waits double from 100 ms up to this.
    std::chrono::milliseconds max_reconnect_delay{5000};
    /// The subscribed connection sends PING when it has been quiet this long...
    std::chrono::milliseconds heartbeat_interval{5000};
    /// ...and is closed and replaced when nothing answers within this (a frozen or vanished
    /// server whose TCP connection looks open: half-open after a network cut, SIGSTOP).
    std::chrono::milliseconds heartbeat_timeout{5000};
};

/// Publishes every event to a Redis channel and delivers what other nodes publish there to
/// local subscribers. Two connections: one SUBSCRIBEd (read loop), one for PUBLISH. Both
/// reconnect with capped backoff and the subscription is renewed after a reconnect; the
/// subscribed one sends PING after a quiet heartbeat_interval and reconnects when no reply
/// comes within heartbeat_timeout, so a half-open connection is found; a publish
/// while Redis is unreachable is delivered locally and logged, not queued: every node also
/// polls its store, so a lost wake-up delays work but loses none. The sockets are Asio's;
/// hiredis only formats commands and parses replies.
class RedisEventBroker final : public EventBroker {
  public:
    explicit RedisEventBroker(RedisEventBrokerOptions options = {});
    ~RedisEventBroker() override;

    asio::awaitable<void> start(asio::any_io_executor executor, Logger logger) override;
    /// Sends the events still waiting (at most heartbeat_timeout), then closes its connections
    /// and lets go of every object bound to start()'s executor: a stopped broker may outlive
    /// its io_context, and start() again.
    asio::awaitable<void> stop() override;
    asio::awaitable<void> publish(Event event) override;

    /// Whether the subscribing connection is up and subscribed (for health reports and tests).
    bool subscribed() const noexcept;
    /// How often the subscription was lost and made again (for tests and health reports).
    std::uint64_t reconnects() const noexcept override;
    bool connected() const noexcept override { return subscribed(); }

    struct State;

  private:
    std::shared_ptr<State> state_;
};

} // namespace asched
