// MqttEventBroker: events between scheduler processes over an MQTT broker (Mosquitto).
#pragma once

#include <asched/event_broker.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace asched {

struct MqttEventBrokerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 1883;
    /// Topics are `<topic_prefix>/events`; every node of one cluster uses the same prefix.
    std::string topic_prefix = "asched";
    /// Empty: anonymous. The password is never logged.
    std::string username, password;
    /// The MQTT keepalive, in whole seconds, at least 5: the client pings a quiet connection
    /// after this long and drops it (then reconnects) when no answer comes within about as
    /// long again, so a frozen or vanished broker is found.
    std::chrono::seconds keepalive{10};
    /// Reconnection waits double from 100 ms up to this.
    std::chrono::milliseconds max_reconnect_delay{5000};
    /// stop() waits at most this long for the broker to acknowledge what was published.
    std::chrono::milliseconds drain_timeout{5000};
};

/// Publishes every event with QoS 1 to `<topic_prefix>/events` and delivers what other nodes
/// publish there to local subscribers. One libmosquitto client whose socket is driven by the
/// executor start() gets (mosquitto_loop_read/_write/_misc on readiness and a 1 s tick; no
/// thread of libmosquitto's own). Payloads carry ids only (free text such as an exception
/// message stays in the store); the node skips its own messages. The connection is remade with
/// capped backoff and the subscription with it. A publish while the broker is unreachable is
/// delivered locally at once and sent at the next connection (at most 1000 wait; beyond, the
/// oldest are dropped with a warning): every node also polls its store, so a lost wake-up
/// delays work but loses none. The host name is resolved by libmosquitto when it
/// connects (use an address or a name the local resolver answers at once).
class MqttEventBroker final : public EventBroker {
  public:
    /// Throws Error(invalid_argument) naming the option for an empty host or prefix, a prefix
    /// with MQTT wildcards (`+`, `#`) or a keepalive under 5 s.
    explicit MqttEventBroker(MqttEventBrokerOptions options = {});
    ~MqttEventBroker() override;

    asio::awaitable<void> start(asio::any_io_executor executor, Logger logger) override;
    /// Waits (at most drain_timeout) until every event published was sent and acknowledged, then
    /// disconnects and lets go of every object bound to start()'s executor: a stopped broker
    /// may outlive its io_context, and start() again.
    asio::awaitable<void> stop() override;
    asio::awaitable<void> publish(Event event) override;

    /// Whether the client is connected and its subscription acknowledged.
    bool subscribed() const noexcept;
    /// How often the connection was lost and made again.
    std::uint64_t reconnects() const noexcept override;
    bool connected() const noexcept override { return subscribed(); }

    struct State;

  private:
    std::shared_ptr<State> state_;
};

} // namespace asched
