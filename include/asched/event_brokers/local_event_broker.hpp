// LocalEventBroker: events stay inside this process.
#pragma once

#include <asched/event_broker.hpp>

namespace asched {

/// The default broker: publish() is publish_local(). Nothing is serialised.
class LocalEventBroker final : public EventBroker {
  public:
    asio::awaitable<void> publish(Event event) override;
    asio::awaitable<void> publish_batch(std::vector<Event> events) override;
};

} // namespace asched
