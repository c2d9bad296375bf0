// MqttEventBroker: one libmosquitto client, its socket watched by Asio on one strand. Every
// libmosquitto call (and so every callback it makes) runs on that strand; libmosquitto never
// runs a thread of its own here.
#include "../network_broker.hpp"
#include "core/text.hpp"

#include <asched/error.hpp>
#include <asched/event_brokers/mqtt_event_broker.hpp>
#include <asched/model.hpp>

#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <atomic>
#include <deque>
#include <mosquitto.h>
#include <mutex>
#include <optional>

namespace asched {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

void init_library() {
    static std::once_flag once;
    std::call_once(once, [] { mosquitto_lib_init(); }); // never cleaned up: other users may remain
}

std::string mosquitto_error(int rc) {
    if (rc == MOSQ_ERR_ERRNO)
        return std::system_category().message(errno);
    return mosquitto_strerror(rc);
}

} // namespace

struct MqttEventBroker::State : detail::NetworkBrokerState {
    MqttEventBrokerOptions options;
    std::string topic;
    mosquitto *client = nullptr;
    std::weak_ptr<State> weak_self; // for the handlers the callbacks start

    std::optional<asio::posix::stream_descriptor> socket; // libmosquitto's fd, never closed here
    std::uint64_t generation = 0; // which socket the pending waits belong to
    bool reading = false, writing = false;
    std::optional<asio::steady_timer> tick; // loop_misc: keepalive pings, dead-broker check
    std::chrono::milliseconds delay{100};   // the next reconnection wait
    bool active = false;                    // CONNACK accepted, not lost since
    bool connack = false;                   // a CONNACK to act on (after the callback)
    bool lost = false;                      // on_disconnect ran: the socket is closed
    bool ever_up = false;
    bool outage_logged = false;
    int subscribe_mid = 0;
    std::size_t inflight = 0;        // QoS 1 publishes not yet acknowledged
    std::deque<std::string> pending; // published while not connected: sent at the next CONNACK
    static constexpr std::size_t max_pending = 1000;
    std::atomic<bool> is_subscribed{false};
    std::atomic<std::uint64_t> reconnect_count{0};

    ~State() {
        if (client)
            mosquitto_destroy(client);
    }

    // ---- libmosquitto's callbacks (on the strand, inside a libmosquitto call) ----

    static State &of(void *userdata) { return *static_cast<State *>(userdata); }

    static void on_connect(mosquitto *, void *userdata, int rc) {
        auto &s = of(userdata);
        // No libmosquitto call from inside a callback: it holds its callback mutex here, and
        // publishing or subscribing takes its other mutexes in the opposite order
        // (ThreadSanitizer reports the inversion). after_call() does what a CONNACK asks for.
        if (rc != 0) {
            s.log(LogLevel::warning,
                  fmt::format("mqtt broker: {}:{} refused the connection: {}", s.options.host,
                              s.options.port, mosquitto_connack_string(rc)));
            s.lost = true;
            return;
        }
        s.active = true;
        s.delay = 100ms;
        s.connack = true;
    }

    /// After a CONNACK, outside the callback: subscribe, then send what waited.
    void on_connack() {
        connack = false;
        const int sub = mosquitto_subscribe(client, &subscribe_mid, topic.c_str(), 1);
        if (sub != MOSQ_ERR_SUCCESS)
            log(LogLevel::warning,
                fmt::format("mqtt broker: subscribing to {}: {}", topic, mosquitto_error(sub)));
        while (!pending.empty() && active) {
            send(pending.front());
            pending.pop_front();
        }
    }

    static void on_subscribe(mosquitto *, void *userdata, int mid, int count, const int *granted) {
        auto &s = of(userdata);
        if (mid != s.subscribe_mid)
            return;
        if (count < 1 || granted[0] > 2) {
            s.log(LogLevel::error,
                  fmt::format("mqtt broker: the server refused the subscription to {}", s.topic));
            return;
        }
        if (s.ever_up)
            ++s.reconnect_count;
        if (s.outage_logged || s.ever_up)
            s.log(LogLevel::info, fmt::format("mqtt broker: subscribed again to {} at {}:{}",
                                              s.topic, s.options.host, s.options.port));
        s.ever_up = true;
        s.outage_logged = false;
        s.is_subscribed = true;
    }

    static void on_message(mosquitto *, void *userdata, const mosquitto_message *msg) {
        auto &s = of(userdata);
        try {
            const auto message =
                json::parse(std::string_view(static_cast<const char *>(msg->payload),
                                             std::size_t(std::max(msg->payloadlen, 0))));
            if (message.at("o").get<std::string>() == s.origin)
                return; // published here: already delivered locally
            s.deliver(message.at("e").get<Event>());
        } catch (const std::exception &e) {
            s.log(LogLevel::warning,
                  fmt::format("mqtt broker: ignoring a message on {} it cannot read: {}",
                              msg->topic ? msg->topic : "?", e.what()));
        }
    }

    static void on_publish(mosquitto *, void *userdata, int) {
        auto &s = of(userdata);
        if (s.inflight > 0)
            --s.inflight;
        if (s.inflight == 0 && s.pending.empty() && s.drain_timer)
            s.drain_timer->cancel();
    }

    static void on_disconnect(mosquitto *, void *userdata, int rc) {
        auto &s = of(userdata);
        const bool was_up = s.is_subscribed;
        s.active = false;
        s.lost = true;
        s.is_subscribed = false;
        s.inflight = 0; // not acknowledged: lost with the connection (peers poll)
        if (s.drain_timer)
            s.drain_timer->cancel();
        if (!s.stopping && was_up && !s.outage_logged) {
            s.outage_logged = true;
            s.log(LogLevel::warning,
                  fmt::format("mqtt broker: lost the connection to {}:{} ({}); reconnecting",
                              s.options.host, s.options.port, mosquitto_error(rc)));
        }
    }

    /// Publishes `payload` with QoS 1 on the connected client.
    void send(const std::string &payload) {
        int mid = 0;
        const int rc = mosquitto_publish(client, &mid, topic.c_str(), int(payload.size()),
                                         payload.data(), 1, false);
        if (rc == MOSQ_ERR_SUCCESS)
            ++inflight;
        else
            log(LogLevel::warning,
                fmt::format("mqtt broker: an event was not sent to other nodes: {}",
                            mosquitto_error(rc)));
    }

    /// Sends `payload` now, or at the next CONNACK (at most max_pending wait; older ones are
    /// dropped with a warning: they cost the peers latency only, since they also poll).
    void publish(std::string payload) {
        if (active) {
            send(payload);
            after_call();
            return;
        }
        if (pending.size() == max_pending) {
            pending.pop_front();
            log(LogLevel::warning,
                "mqtt broker: not connected; dropped the oldest waiting event (1000 wait)");
        }
        pending.push_back(std::move(payload));
    }

    // ---- the socket ----

    /// After every libmosquitto call: follows its socket (gone after a loss; a new one after a
    /// connect), keeps a read wait pending and a write wait while it has output, and reconnects
    /// after a loss.
    void after_call() {
        const int fd = client ? mosquitto_socket(client) : -1;
        if (socket && fd < 0 && !stopping)
            lost = true; // closed without on_disconnect (it is called on most paths, not all)
        if (socket && (lost || fd < 0 || socket->native_handle() != fd))
            drop_socket();
        if (lost) {
            lost = false;
            if (!stopping)
                reconnect_later();
            return;
        }
        if (!socket && fd >= 0 && !stopping) {
            socket.emplace(*strand, fd);
            ++generation;
        }
        if (connack && !stopping)
            on_connack(); // queues SUBSCRIBE and what waited: the write wait below sends them
        if (!socket)
            return;
        if (!reading)
            watch(asio::posix::stream_descriptor::wait_read, &State::reading, &mosquitto_loop_read);
        if (!writing && mosquitto_want_write(client))
            watch(asio::posix::stream_descriptor::wait_write, &State::writing,
                  &mosquitto_loop_write); // errors of either loop call: on_disconnect
    }

    /// Waits until the socket is ready for `what` (`pending` is set meanwhile), then runs
    /// libmosquitto's `loop` for it and follows up with after_call().
    void watch(asio::posix::stream_descriptor::wait_type what, bool State::*pending,
               int (*loop)(mosquitto *, int)) {
        this->*pending = true;
        auto self = weak_self.lock();
        socket->async_wait(
            what, asio::bind_executor(*strand, [self, pending, loop, g = generation](auto ec) {
                if (g != self->generation)
                    return;
                (*self).*pending = false;
                if (ec) {
                    self->wait_failed(ec);
                    return;
                }
                loop(self->client, 1);
                self->after_call();
            }));
    }

    /// A wait on the current socket failed (not cancelled): the connection is taken for lost.
    void wait_failed(std::error_code ec) {
        if (ec == asio::error::operation_aborted || stopping)
            return;
        log(LogLevel::warning, fmt::format("mqtt broker: the socket failed: {}", ec.message()));
        lost = true;
        after_call();
    }

    /// Stops watching the fd (libmosquitto owns and closes it); cancels the pending waits.
    void drop_socket() {
        if (!socket)
            return;
        socket->release();
        socket.reset();
        ++generation;
        reading = writing = false;
    }

    void connect_now() {
        if (stopping)
            return;
        lost = false;
        connack = false;
        drop_socket(); // connect_async closes the old socket, whose number may come back
        const int rc = mosquitto_connect_async(client, options.host.c_str(), options.port,
                                               int(options.keepalive.count()));
        if (rc != MOSQ_ERR_SUCCESS) {
            if (!outage_logged) {
                outage_logged = true;
                log(LogLevel::warning,
                    fmt::format("mqtt broker: cannot connect to {}:{}: {}; retrying", options.host,
                                options.port, mosquitto_error(rc)));
            }
            reconnect_later();
            return;
        }
        after_call();
    }

    void reconnect_later() {
        backoff->expires_after(delay);
        delay = std::min(delay * 2, options.max_reconnect_delay);
        auto self = weak_self.lock();
        backoff->async_wait(asio::bind_executor(*strand, [self](auto ec) {
            if (!ec && !self->stopping)
                self->connect_now();
        }));
    }

    void tick_later() {
        tick->expires_after(1s);
        auto self = weak_self.lock();
        tick->async_wait(asio::bind_executor(*strand, [self](auto ec) {
            if (ec || self->stopping)
                return;
            if (self->socket) {
                mosquitto_loop_misc(self->client); // a ping, or a dead connection dropped
                self->after_call();
            }
            self->tick_later();
        }));
    }
};

namespace {

asio::awaitable<void> begin(std::shared_ptr<MqttEventBroker::State> self) {
    self->tick.emplace(*self->strand);
    self->tick_later();
    self->connect_now();
    co_return;
}

asio::awaitable<void> send(std::shared_ptr<MqttEventBroker::State> self, std::string payload) {
    if (!self->stopping)
        self->publish(std::move(payload));
    co_return;
}

// stop(): waits until every publish is acknowledged (at most drain_timeout), then disconnects
// and lets go of the socket and the timers.
asio::awaitable<void> finish(std::shared_ptr<MqttEventBroker::State> self) {
    asio::steady_timer timer(*self->strand, self->options.drain_timeout);
    self->drain_timer = &timer;
    // Acknowledged, or waiting for a connection that may still come (a client that publishes
    // right after start() and stops: the `asched` tool).
    while ((self->inflight > 0 && self->active) || !self->pending.empty()) {
        auto [ec] = co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        if (!ec)
            break;
    }
    self->drain_timer = nullptr;
    if (self->inflight > 0 || !self->pending.empty())
        self->log(LogLevel::warning,
                  fmt::format("mqtt broker: stopped with {} event(s) not acknowledged and {} "
                              "not sent (no connection within {} ms)",
                              self->inflight, self->pending.size(),
                              self->options.drain_timeout.count()));
    self->pending.clear();
    self->stopping = true;
    if (self->active) {
        mosquitto_disconnect(self->client);
        mosquitto_loop_write(self->client, 1); // the DISCONNECT, if the socket takes it now
    }
    self->active = false;
    self->is_subscribed = false;
    self->inflight = 0;
    self->drop_socket();
    self->tick.reset();
    self->backoff.reset();
    self->loop_done.reset();
}

} // namespace

MqttEventBroker::MqttEventBroker(MqttEventBrokerOptions options)
    : state_(std::make_shared<State>()) {
    if (options.host.empty())
        throw Error(errc::invalid_argument, "mqtt broker: option 'host' is empty");
    if (options.topic_prefix.empty() ||
        options.topic_prefix.find_first_of(std::string("+#\0", 3)) != std::string::npos)
        throw Error(errc::invalid_argument,
                    fmt::format("mqtt broker: option 'topic_prefix' must be a non-empty topic "
                                "without '+', '#' or NUL, got {}",
                                detail::quote_input(options.topic_prefix)));
    if (options.keepalive < std::chrono::seconds(5) || options.keepalive.count() > 65535)
        throw Error(
            errc::invalid_argument,
            fmt::format("mqtt broker: option 'keepalive' must be 5 to 65535 seconds, got {}",
                        options.keepalive.count()));
    if (options.max_reconnect_delay <= std::chrono::milliseconds::zero())
        throw Error(errc::invalid_argument,
                    "mqtt broker: option 'max_reconnect_delay' must be positive");
    init_library();
    state_->topic = options.topic_prefix + "/events";
    state_->options = std::move(options);
    state_->owner = this;
    state_->weak_self = state_;
    // A client id of this node's own: two nodes with one id would throw each other out.
    state_->client = mosquitto_new(("asched-" + state_->origin).c_str(), true, state_.get());
    if (!state_->client)
        throw Error(errc::invalid_argument, fmt::format("mqtt broker: mosquitto_new failed: {}",
                                                        std::system_category().message(errno)));
    if (!state_->options.username.empty())
        mosquitto_username_pw_set(
            state_->client, state_->options.username.c_str(),
            state_->options.password.empty() ? nullptr : state_->options.password.c_str());
    mosquitto_connect_callback_set(state_->client, &State::on_connect);
    mosquitto_disconnect_callback_set(state_->client, &State::on_disconnect);
    mosquitto_subscribe_callback_set(state_->client, &State::on_subscribe);
    mosquitto_message_callback_set(state_->client, &State::on_message);
    mosquitto_publish_callback_set(state_->client, &State::on_publish);
}

MqttEventBroker::~MqttEventBroker() {
    state_->disown();
    if (state_->strand) // destroyed while running: finish on the strand (the io_context lives)
        asio::co_spawn(*state_->strand, finish(state_), asio::detached);
}

asio::awaitable<void> MqttEventBroker::start(asio::any_io_executor executor, Logger logger) {
    co_await EventBroker::start(executor, logger);
    if (!state_->prepare(executor, logger))
        co_return; // started already
    state_->delay = 100ms;
    co_await asio::co_spawn(*state_->strand, begin(state_), asio::use_awaitable);
}

asio::awaitable<void> MqttEventBroker::stop() {
    if (!state_->strand)
        co_return;
    co_await asio::co_spawn(*state_->strand, finish(state_), asio::use_awaitable);
    state_->strand.reset();
    co_await EventBroker::stop();
}

asio::awaitable<void> MqttEventBroker::publish(Event event) {
    publish_local(event);
    if (!state_->strand)
        co_return;
    auto payload = detail::ids_only_payload(state_->origin, event);
    co_await asio::co_spawn(*state_->strand, send(state_, std::move(payload)), asio::use_awaitable);
}

bool MqttEventBroker::subscribed() const noexcept {
    return state_->is_subscribed;
}

std::uint64_t MqttEventBroker::reconnects() const noexcept {
    return state_->reconnect_count;
}

} // namespace asched
