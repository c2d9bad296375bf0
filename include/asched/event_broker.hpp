// The EventBroker port: publishes events cluster-wide and delivers them to local subscribers.
#pragma once

#include <asched/events.hpp>
#include <asched/logger.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <vector>

namespace asched {

using EventCallback = std::function<void(const Event &)>;

namespace detail {
struct SubscriberRegistry;
}

/// An RAII subscription: destroying it (or unsubscribe()) stops delivery. Move-only. A
/// delivery already posted when it is destroyed may still run.
class Subscription {
  public:
    Subscription() = default;
    Subscription(std::weak_ptr<detail::SubscriberRegistry> registry, std::uint64_t key);
    Subscription(Subscription &&other) noexcept;
    Subscription &operator=(Subscription &&other) noexcept;
    Subscription(const Subscription &) = delete;
    Subscription &operator=(const Subscription &) = delete;
    ~Subscription();

    void unsubscribe() noexcept;
    bool active() const noexcept { return key_ != 0; }

  private:
    std::weak_ptr<detail::SubscriberRegistry> registry_;
    std::uint64_t key_ = 0;
};

/// Moves events between the scheduler, its data store and (through external brokers) other
/// processes. The base class does local delivery: each subscription gets its events in order,
/// each callback posted on a strand over the executor given to subscribe(). Callback
/// exceptions are logged and swallowed. Thread safety: every member is thread-safe.
class EventBroker {
  public:
    EventBroker();
    virtual ~EventBroker();

    /// Starts the broker's connections (none for the local broker).
    virtual asio::awaitable<void> start(asio::any_io_executor executor, Logger logger);
    virtual asio::awaitable<void> stop();
    /// Publishes `event` to every node (the local broker: to this process).
    virtual asio::awaitable<void> publish(Event event) = 0;
    /// Publishes `events` in order; the default calls publish() for each.
    virtual asio::awaitable<void> publish_batch(std::vector<Event> events);
    /// Whether the connection to other processes is up (metrics, health); the local broker
    /// has none to lose.
    virtual bool connected() const noexcept { return true; }
    /// How often that connection was lost and made again.
    virtual std::uint64_t reconnects() const noexcept { return 0; }

    /// Delivers `event` to this process's subscribers only; never blocks.
    void publish_local(const Event &event);
    /// Delivers `events`, in order, to this process's subscribers: one post per subscriber
    /// for the whole batch.
    void publish_local(std::vector<Event> events);
    /// Calls `callback` for every event selected by `mask`, on a strand over `executor`.
    /// With `one_shot` the subscription ends after its first event.
    Subscription subscribe(EventCallback callback, EventMask mask, asio::any_io_executor executor,
                           bool one_shot = false);

  protected:
    Logger logger_;

  private:
    std::shared_ptr<detail::SubscriberRegistry> registry_;
};

} // namespace asched
