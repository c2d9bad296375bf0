// What the networked brokers (Redis, PostgreSQL) share: a strand for their connections, local
// delivery to the owning broker, the receive loop's lifetime, reconnection backoff.
#pragma once

#include <asched/event_broker.hpp>
#include <asched/events.hpp>
#include <asched/model.hpp>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace asched::detail {

/// What crosses the wire (PostgreSQL NOTIFY, MQTT): {"o": origin, "e": event} with the event's
/// free text left out (exception messages, decode errors), which can be any size and lives in
/// the store anyway.
inline std::string ids_only_payload(const std::string &origin, Event event) {
    if (auto *r = std::get_if<JobReleased>(&event)) {
        r->exception_type.reset();
        r->exception_message.reset();
    } else if (auto *q = std::get_if<RecordQuarantined>(&event)) {
        q->error.clear();
    } else if (auto *h = std::get_if<StoreHealthChanged>(&event)) {
        h->reason.clear();
    }
    return nlohmann::json{{"o", origin}, {"e", nlohmann::json(event)}}.dump();
}

struct NetworkBrokerState {
    std::string origin = make_uuid(); // this broker's own messages come back: skip them
    Logger logger;
    std::optional<asio::strand<asio::any_io_executor>> strand;
    bool stopping = false;
    std::optional<asio::steady_timer> backoff; // between reconnection attempts
    std::deque<std::string> outbox;            // formatted messages waiting for the write loop
    bool writer_running = false;
    bool loop_finished = false;
    std::optional<asio::steady_timer> loop_done; // cancelled when the receive loop ends
    asio::steady_timer *drain_timer = nullptr;   // stop()'s wait for the outbox; cancelled
                                                 // when the write loop ends

    std::mutex owner_mutex;
    EventBroker *owner = nullptr; // cleared by the broker's destructor

    void deliver(const Event &e) {
        std::lock_guard lock(owner_mutex);
        if (owner)
            owner->publish_local(e);
    }
    void disown() {
        std::lock_guard lock(owner_mutex);
        owner = nullptr;
    }

    void log(LogLevel level, std::string message) const { logger.log(level, std::move(message)); }

    /// Creates the strand and timers; false when the broker was started already (and not
    /// stopped since: a stopped broker starts again, on the new executor).
    bool prepare(asio::any_io_executor executor, Logger l) {
        if (strand)
            return false;
        stopping = false;
        loop_finished = false;
        logger = std::move(l);
        strand.emplace(asio::make_strand(executor));
        backoff.emplace(*strand);
        loop_done.emplace(*strand, asio::steady_timer::time_point::max());
        return true;
    }

    /// The receive loop's completion: `what` names it in the log when it failed.
    void loop_ended(std::exception_ptr e, const char *what) {
        if (e)
            log(LogLevel::error, std::string(what) + " ended with an internal error");
        loop_finished = true;
        loop_done->cancel();
    }
};

/// Completes when the receive loop and the write loop have ended (run on the strand).
inline asio::awaitable<void> wait_loop_done(std::shared_ptr<NetworkBrokerState> self) {
    while (!self->loop_finished || self->writer_running)
        co_await self->loop_done->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
}

/// stop()'s first step (on the strand): events published just before it are sent, not
/// dropped (a command-line tool publishes and stops at once); waits at most `limit`.
template <class Duration>
asio::awaitable<void> drain_outbox(std::shared_ptr<NetworkBrokerState> self, Duration limit) {
    asio::steady_timer timer(*self->strand, limit);
    self->drain_timer = &timer;
    while (self->writer_running) {
        auto [ec] = co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        if (!ec)
            break; // the limit: close_all() ends the write loop, which says what it dropped
    }
    self->drain_timer = nullptr;
}

/// After stop(): drops every object bound to the executor the broker ran on (`release`: the
/// broker's own connections; then the timers; the caller resets the strand off the strand).
/// A broker may so outlive the io_context it ran on, as a stopped store does, and start again.
template <class State>
asio::awaitable<void> release_io(std::shared_ptr<State> self, void (*release)(State &)) {
    release(*self);
    self->backoff.reset();
    self->loop_done.reset();
    co_return;
}

/// Queues `message` and starts `write_loop(self)` unless it runs already (on the strand). The
/// loop empties the outbox and clears writer_running when it ends; `what` names it in the log.
template <class State>
asio::awaitable<void> enqueue(std::shared_ptr<State> self, std::string message,
                              asio::awaitable<void> (*write_loop)(std::shared_ptr<State>),
                              const char *what) {
    self->outbox.push_back(std::move(message));
    if (!self->writer_running) {
        self->writer_running = true;
        asio::co_spawn(*self->strand, write_loop(self), [self, what](std::exception_ptr e) {
            self->writer_running = false;
            if (self->loop_done)
                self->loop_done->cancel(); // stop() may wait for it
            if (self->drain_timer)
                self->drain_timer->cancel();
            if (e)
                self->log(LogLevel::error, std::string(what) + " ended with an internal error");
        });
    }
    co_return;
}

} // namespace asched::detail
