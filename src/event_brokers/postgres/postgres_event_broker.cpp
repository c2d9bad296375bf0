// PostgresEventBroker: one LISTENing connection with a heartbeat, one NOTIFYing connection,
// both non-blocking libpq on one strand.
#include "../../pq/pg.hpp"
#include "../network_broker.hpp"

#include <asched/event_brokers/postgres_event_broker.hpp>
#include <asched/model.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>

namespace asched {
namespace {

using nlohmann::json;

// NOTIFY refuses payloads of 8000 bytes or more.
constexpr std::size_t max_payload = 7999;

} // namespace

struct PostgresEventBroker::State : detail::NetworkBrokerState {
    PostgresEventBrokerOptions options;
    std::string where;
    std::atomic<bool> is_listening{false};
    std::atomic<std::uint64_t> reconnect_count{0};
    std::unique_ptr<pg::Connection> listener, notifier;
    // The probe a new listener sends itself through the notifier: its number and text, the
    // last one the notifier got to the server, and the last one the listener saw.
    std::uint64_t probe_sent = 0, probe_written = 0, probe_seen = 0;
    std::string probe_text;
    std::atomic<bool> poll_only{false};

    void handle(const pg::Notification &n) {
        try {
            const auto message = json::parse(n.payload);
            if (message.contains("p")) { // a listener's probe: this node's, or another's
                if (message.at("o").get<std::string>() == origin)
                    probe_seen = std::max(probe_seen, message.at("p").get<std::uint64_t>());
                return;
            }
            if (message.at("o").get<std::string>() == origin)
                return; // published here: already delivered locally
            deliver(message.at("e").get<Event>());
        } catch (const std::exception &e) {
            log(LogLevel::warning,
                fmt::format("postgres broker: ignoring a notification that is not an asched "
                            "event: {}",
                            e.what()));
        }
    }

    void handle_all() {
        if (listener)
            for (const auto &n : listener->take_notifications())
                handle(n);
    }
};

namespace {

using State = PostgresEventBroker::State;

asio::awaitable<std::unique_ptr<pg::Connection>> open(std::shared_ptr<State> self) {
    asio::any_io_executor ex = *self->strand;
    auto conn =
        co_await pg::Connection::connect(ex, self->options.conninfo, self->options.connect_timeout);
    if (self->stopping)
        throw Error(errc::not_running, "postgres broker: stopped");
    co_return conn;
}

asio::awaitable<void> write_loop(std::shared_ptr<State> self);

// The probe a new listener waits for never came: notifications sent on the server do not
// reach the LISTENing connection. A pooler in transaction mode (PgBouncer's pool_mode =
// transaction) does that: LISTEN binds to whichever server connection ran it, and that one is
// handed to other clients. The broker stops listening and sending; the nodes poll.
void go_poll_only(State &self) {
    self.poll_only = true;
    self.is_listening = false;
    self.log(LogLevel::warning,
             fmt::format("postgres broker: a NOTIFY sent on '{}' at {} did not come back to the "
                         "LISTENing connection within {}: something between asched and "
                         "PostgreSQL does not pass notifications (PgBouncer in transaction mode "
                         "does not). The broker runs poll-only: nodes see each other's changes "
                         "at their next poll. Point the broker at the server itself",
                         self.options.channel, self.where,
                         format_duration(self.options.listen_probe_timeout)));
}

asio::awaitable<void> listen_loop(std::shared_ptr<State> self) {
    auto delay = std::chrono::milliseconds(100);
    const std::string listen = "LISTEN " + pg::identifier(self->options.channel);
    bool first = true;
    while (!self->stopping) {
        bool connected = false; // a connection that never came up was not "lost"
        try {
            auto listener = co_await open(self);
            self->listener = std::move(listener);
            connected = true;
            co_await self->listener->exec(listen, self->options.heartbeat_timeout);
            self->is_listening = true;
            if (!first)
                ++self->reconnect_count;
            first = false;
            delay = std::chrono::milliseconds(100);
            self->log(LogLevel::info, fmt::format("postgres broker: listening on '{}' at {}",
                                                  self->options.channel, self->where));
            // Does a notification sent by another connection reach this one?
            const auto probe = ++self->probe_sent;
            self->probe_text = json{{"o", self->origin}, {"p", probe}}.dump();
            auto sent = detail::enqueue<State>(self, self->probe_text, &write_loop,
                                               "postgres broker: the publishing loop");
            co_await std::move(sent);
            auto probe_deadline = pg::steady::now() + self->options.listen_probe_timeout;
            while (!self->stopping) {
                const bool probing = self->probe_seen < probe;
                if (probing && pg::steady::now() >= probe_deadline) {
                    if (self->probe_written >= probe) { // sent, and not back yet
                        // A listener that is itself dead or frozen fails this, and is replaced
                        // as usual; a live one has read every notification by its answer.
                        co_await self->listener->exec("SELECT 1", self->options.heartbeat_timeout);
                        self->handle_all();
                        if (self->probe_seen < probe) {
                            go_poll_only(*self);
                            self->listener.reset();
                            co_return;
                        }
                        continue;
                    }
                    // The notifier could not send it (the server was away): again.
                    auto again = detail::enqueue<State>(self, self->probe_text, &write_loop,
                                                        "postgres broker: the publishing loop");
                    co_await std::move(again);
                    probe_deadline = pg::steady::now() + self->options.listen_probe_timeout;
                }
                auto quiet_until = pg::steady::now() + self->options.heartbeat_interval;
                if (probing)
                    quiet_until = std::min(quiet_until, probe_deadline);
                const bool arrived = co_await self->listener->wait_input(quiet_until);
                if (arrived) {
                    self->handle_all();
                    continue;
                }
                if (probing)
                    continue; // the probe's deadline, not a quiet interval
                // Quiet for a whole interval: is anyone still there?
                co_await self->listener->exec("SELECT 1", self->options.heartbeat_timeout);
                self->handle_all();
            }
        } catch (const std::exception &e) {
            if (!self->stopping)
                self->log(LogLevel::warning,
                          fmt::format("postgres broker: {} {} ({}); {} in {} ms",
                                      connected ? "listening at" : "cannot connect to", self->where,
                                      connected ? std::string("lost: ") + e.what() : e.what(),
                                      connected ? "reconnecting" : "trying again", delay.count()));
        }
        self->is_listening = false;
        self->listener.reset();
        if (self->stopping)
            break;
        self->backoff->expires_after(delay);
        co_await self->backoff->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        delay = std::min(delay * 2, self->options.max_reconnect_delay);
    }
}

// Sends everything in the outbox with one statement; one reconnect attempt per batch, then
// the batch is dropped with a warning (local delivery has happened, peers poll).
asio::awaitable<void> write_loop(std::shared_ptr<State> self) {
    while (!self->outbox.empty() && !self->stopping) {
        std::vector<std::string> batch(self->outbox.begin(), self->outbox.end());
        self->outbox.clear();
        for (int attempt = 0;; ++attempt) {
            try {
                if (!self->notifier || self->notifier->broken()) {
                    auto notifier = co_await open(self);
                    self->notifier = std::move(notifier);
                }
                pg::Params params{pg::param(self->options.channel), pg::text_array(batch)};
                co_await self->notifier->query(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", std::move(params),
                    self->options.heartbeat_timeout);
                if (std::find(batch.begin(), batch.end(), self->probe_text) != batch.end())
                    self->probe_written = self->probe_sent;
                break;
            } catch (const std::exception &e) {
                self->notifier.reset();
                if (attempt > 0 || self->stopping) {
                    self->log(
                        LogLevel::warning,
                        fmt::format("postgres broker: {} event(s) not sent to other nodes: {}",
                                    batch.size(), e.what()));
                    break;
                }
            }
        }
    }
    self->writer_running = false;
}

asio::awaitable<void> close_all(std::shared_ptr<State> self) {
    self->stopping = true;
    // Closing cancels a pending wait; the loops see `stopping` and end.
    if (self->listener)
        self->listener->close();
    if (self->notifier)
        self->notifier->close();
    if (self->backoff)
        self->backoff->cancel();
    co_return;
}

} // namespace

PostgresEventBroker::PostgresEventBroker(PostgresEventBrokerOptions options)
    : state_(std::make_shared<State>()) {
    pg::check_identifier(options.channel, "postgres broker: option 'channel'");
    state_->where = pg::describe(options.conninfo);
    state_->options = std::move(options);
    state_->owner = this;
}

PostgresEventBroker::~PostgresEventBroker() {
    state_->disown();
    if (state_->strand)
        asio::co_spawn(*state_->strand, close_all(state_), asio::detached);
}

asio::awaitable<void> PostgresEventBroker::start(asio::any_io_executor executor, Logger logger) {
    co_await EventBroker::start(executor, logger);
    if (!state_->prepare(executor, logger))
        co_return; // started already
    auto self = state_;
    asio::co_spawn(*state_->strand, listen_loop(self), [self](std::exception_ptr e) {
        self->loop_ended(e, "postgres broker: the listen loop");
    });
}

asio::awaitable<void> PostgresEventBroker::stop() {
    if (!state_->strand)
        co_return;
    co_await asio::co_spawn(*state_->strand,
                            detail::drain_outbox(state_, state_->options.heartbeat_timeout),
                            asio::use_awaitable);
    co_await asio::co_spawn(*state_->strand, close_all(state_), asio::use_awaitable);
    co_await asio::co_spawn(*state_->strand, detail::wait_loop_done(state_), asio::use_awaitable);
    auto release = +[](State &s) {
        s.listener.reset();
        s.notifier.reset();
    };
    co_await asio::co_spawn(*state_->strand, detail::release_io(state_, release),
                            asio::use_awaitable);
    state_->strand.reset();
    co_await EventBroker::stop();
}

asio::awaitable<void> PostgresEventBroker::publish(Event event) {
    publish_local(event);
    if (!state_->strand)
        co_return;
    if (state_->poll_only)
        co_return; // nothing would reach the other nodes: they poll
    auto message = detail::ids_only_payload(state_->origin, event);
    if (message.size() > max_payload) {
        state_->log(
            LogLevel::warning,
            fmt::format(
                "postgres broker: a {} event of {} bytes exceeds NOTIFY's limit; delivered locally "
                "only (other nodes see the change at their next poll)",
                event_name(event), message.size()));
        co_return;
    }
    auto queued = detail::enqueue<State>(state_, std::move(message), &write_loop,
                                         "postgres broker: the publishing loop");
    co_await asio::co_spawn(*state_->strand, std::move(queued), asio::use_awaitable);
}

bool PostgresEventBroker::listening() const noexcept {
    return state_->is_listening;
}

bool PostgresEventBroker::poll_only() const noexcept {
    return state_->poll_only;
}

std::uint64_t PostgresEventBroker::reconnects() const noexcept {
    return state_->reconnect_count;
}

} // namespace asched
