// Local delivery shared by every broker: ordered, per-subscription strands.
#include <asched/event_brokers/local_event_broker.hpp>

#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <fmt/format.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

namespace asched {
namespace detail {

struct SubscriberEntry {
    SubscriberEntry(EventCallback cb, EventMask m, asio::any_io_executor ex, bool once)
        : callback(std::move(cb)), mask(m), strand(asio::make_strand(std::move(ex))),
          one_shot(once) {}
    EventCallback callback;
    EventMask mask;
    asio::strand<asio::any_io_executor> strand;
    bool one_shot;
    std::atomic<bool> active{true};
};

struct SubscriberRegistry {
    std::mutex mutex;
    std::uint64_t next_key = 1;
    std::map<std::uint64_t, std::shared_ptr<SubscriberEntry>> entries;
    Logger logger;

    void remove(std::uint64_t key) {
        std::lock_guard lock(mutex);
        if (auto it = entries.find(key); it != entries.end()) {
            it->second->active = false;
            entries.erase(it);
        }
    }
};

} // namespace detail

Subscription::Subscription(std::weak_ptr<detail::SubscriberRegistry> registry, std::uint64_t key)
    : registry_(std::move(registry)), key_(key) {}

Subscription::Subscription(Subscription &&other) noexcept
    : registry_(std::move(other.registry_)), key_(std::exchange(other.key_, 0)) {}

Subscription &Subscription::operator=(Subscription &&other) noexcept {
    if (this != &other) {
        unsubscribe();
        registry_ = std::move(other.registry_);
        key_ = std::exchange(other.key_, 0);
    }
    return *this;
}

Subscription::~Subscription() {
    unsubscribe();
}

void Subscription::unsubscribe() noexcept {
    if (key_ == 0)
        return;
    if (auto registry = registry_.lock())
        registry->remove(key_);
    key_ = 0;
}

EventBroker::EventBroker() : registry_(std::make_shared<detail::SubscriberRegistry>()) {}
EventBroker::~EventBroker() = default;

asio::awaitable<void> EventBroker::start(asio::any_io_executor, Logger logger) {
    logger_ = logger;
    std::lock_guard lock(registry_->mutex);
    registry_->logger = std::move(logger);
    co_return;
}

asio::awaitable<void> EventBroker::stop() {
    co_return;
}

void EventBroker::publish_local(const Event &event) {
    std::vector<std::shared_ptr<detail::SubscriberEntry>> targets;
    Logger logger;
    {
        std::lock_guard lock(registry_->mutex);
        logger = registry_->logger;
        for (auto it = registry_->entries.begin(); it != registry_->entries.end();) {
            if (matches(it->second->mask, event)) {
                targets.push_back(it->second);
                if (it->second->one_shot) {
                    it = registry_->entries.erase(it);
                    continue;
                }
            }
            ++it;
        }
    }
    if (targets.empty())
        return;
    auto shared_event = std::make_shared<const Event>(event);
    for (auto &entry : targets) {
        asio::post(entry->strand, [entry, shared_event, logger] {
            // A subscription ended after this delivery was posted must not be called.
            if (!entry->active)
                return;
            try {
                entry->callback(*shared_event);
            } catch (const std::exception &e) {
                logger.log(LogLevel::error, fmt::format("error delivering {} event: {}",
                                                        event_name(*shared_event), e.what()));
            } catch (...) {
                logger.log(LogLevel::error,
                           fmt::format("error delivering {} event", event_name(*shared_event)));
            }
        });
    }
}

void EventBroker::publish_local(std::vector<Event> events) {
    if (events.empty())
        return;
    if (events.size() == 1) {
        publish_local(events.front());
        return;
    }
    auto shared = std::make_shared<const std::vector<Event>>(std::move(events));
    struct Target {
        std::shared_ptr<detail::SubscriberEntry> entry;
        std::vector<std::uint32_t> picks; // indexes into the batch
    };
    std::vector<Target> targets;
    Logger logger;
    {
        std::lock_guard lock(registry_->mutex);
        logger = registry_->logger;
        for (auto it = registry_->entries.begin(); it != registry_->entries.end();) {
            Target t{it->second, {}};
            for (std::uint32_t i = 0; i < shared->size(); ++i) {
                if (matches(t.entry->mask, (*shared)[i])) {
                    t.picks.push_back(i);
                    if (t.entry->one_shot)
                        break;
                }
            }
            const bool erase = !t.picks.empty() && t.entry->one_shot;
            if (!t.picks.empty())
                targets.push_back(std::move(t));
            it = erase ? registry_->entries.erase(it) : std::next(it);
        }
    }
    for (auto &t : targets) {
        auto entry = t.entry;
        asio::post(entry->strand, [entry, shared, picks = std::move(t.picks), logger] {
            for (auto i : picks) {
                if (!entry->active)
                    return;
                const Event &e = (*shared)[i];
                try {
                    entry->callback(e);
                } catch (const std::exception &ex) {
                    logger.log(LogLevel::error, fmt::format("error delivering {} event: {}",
                                                            event_name(e), ex.what()));
                } catch (...) {
                    logger.log(LogLevel::error,
                               fmt::format("error delivering {} event", event_name(e)));
                }
            }
        });
    }
}

asio::awaitable<void> EventBroker::publish_batch(std::vector<Event> events) {
    for (auto &e : events) {
        auto one = publish(std::move(e));
        co_await std::move(one);
    }
}

Subscription EventBroker::subscribe(EventCallback callback, EventMask mask,
                                    asio::any_io_executor executor, bool one_shot) {
    auto entry = std::make_shared<detail::SubscriberEntry>(std::move(callback), mask,
                                                           std::move(executor), one_shot);
    std::lock_guard lock(registry_->mutex);
    const auto key = registry_->next_key++;
    registry_->entries.emplace(key, std::move(entry));
    return Subscription(registry_, key);
}

asio::awaitable<void> LocalEventBroker::publish(Event event) {
    publish_local(event);
    co_return;
}

asio::awaitable<void> LocalEventBroker::publish_batch(std::vector<Event> events) {
    publish_local(std::move(events));
    co_return;
}

} // namespace asched
