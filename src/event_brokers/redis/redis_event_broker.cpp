// RedisEventBroker: Asio sockets on one strand; hiredis formats commands and parses replies.
#include "../network_broker.hpp"

#include <asched/error.hpp>
#include <asched/event_brokers/redis_event_broker.hpp>
#include <asched/model.hpp>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <atomic>
#include <mutex>
#include <optional>

namespace asched {
namespace {

using nlohmann::json;
using Socket = asio::ip::tcp::socket;

struct ReaderDeleter {
    void operator()(redisReader *r) const { redisReaderFree(r); }
};
struct ReplyDeleter {
    void operator()(redisReply *r) const { freeReplyObject(r); }
};
using ReaderPtr = std::unique_ptr<redisReader, ReaderDeleter>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

std::string command(std::initializer_list<std::string_view> args) {
    std::vector<const char *> argv;
    std::vector<std::size_t> lens;
    for (auto a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    char *out = nullptr;
    const int n = redisFormatCommandArgv(&out, int(argv.size()), argv.data(), lens.data());
    if (n < 0)
        throw Error(errc::store_failure, "redis: cannot format a command");
    std::string s(out, std::size_t(n));
    redisFreeCommand(out);
    return s;
}

// The next complete reply on `socket`, reading more when the reader needs it.
asio::awaitable<ReplyPtr> read_reply(Socket &socket, redisReader *reader) {
    for (;;) {
        void *r = nullptr;
        if (redisReaderGetReply(reader, &r) != REDIS_OK)
            throw Error(errc::store_failure,
                        fmt::format("redis: protocol error: {}", reader->errstr));
        if (r) {
            ReplyPtr reply(static_cast<redisReply *>(r));
            if (reply->type == REDIS_REPLY_ERROR)
                throw Error(errc::store_failure,
                            fmt::format("redis: {}", std::string(reply->str, reply->len)));
            co_return reply;
        }
        std::array<char, 16384> buf;
        const std::size_t n =
            co_await socket.async_read_some(asio::buffer(buf), asio::use_awaitable);
        redisReaderFeed(reader, buf.data(), n);
    }
}

} // namespace

struct RedisEventBroker::State : detail::NetworkBrokerState {
    RedisEventBrokerOptions options;
    std::atomic<bool> is_subscribed{false};
    std::atomic<std::uint64_t> reconnect_count{0};
    std::optional<Socket> sub, pub;
    std::uint64_t connection = 0; // which subscribed connection is current (for its heartbeat)
    std::chrono::steady_clock::time_point last_input{};
    std::shared_ptr<asio::steady_timer> heartbeat_timer; // the current heartbeat's; cancelled
                                                         // when its connection ends
    ReaderPtr pub_reader;
    std::optional<asio::ip::tcp::resolver> resolver;

    // Connects `socket`; throws when stop() ran meanwhile, so no loop outlives it with a
    // fresh connection (close_all() cancels the resolver and closes the sockets).
    asio::awaitable<void> connect(Socket &socket) {
        auto endpoints = co_await resolver->async_resolve(
            options.host, std::to_string(options.port), asio::use_awaitable);
        if (stopping)
            throw Error(errc::not_running, "redis broker: stopped");
        co_await asio::async_connect(socket, endpoints, asio::use_awaitable);
        if (stopping)
            throw Error(errc::not_running, "redis broker: stopped");
        socket.set_option(asio::ip::tcp::no_delay(true));
    }

    void handle(const redisReply &reply) {
        if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 3 ||
            reply.element[0]->type != REDIS_REPLY_STRING)
            return;
        const std::string_view kind(reply.element[0]->str, reply.element[0]->len);
        if (kind == "subscribe") {
            is_subscribed = true;
            log(LogLevel::info, fmt::format("redis broker: subscribed to '{}' on {}:{}",
                                            options.channel, options.host, options.port));
            return;
        }
        if (kind != "message" || reply.element[2]->type != REDIS_REPLY_STRING)
            return;
        try {
            const auto message =
                json::parse(std::string_view(reply.element[2]->str, reply.element[2]->len));
            if (message.at("origin").get<std::string>() == origin)
                return; // published here: already delivered locally
            deliver(message.at("event").get<Event>());
        } catch (const std::exception &e) {
            log(LogLevel::warning,
                fmt::format("redis broker: ignoring a message that is not an asched event: {}",
                            e.what()));
        }
    }
};

namespace {

using State = RedisEventBroker::State;

// Watches subscribed connection `connection`: after a quiet heartbeat_interval it sends PING
// (allowed while subscribed; the reply is ["pong", ""]), and when nothing at all arrives
// within heartbeat_timeout after that it closes the socket, which ends the read with an error
// and makes subscribe_loop reconnect. Ends when that connection is no longer current.
asio::awaitable<void> heartbeat(std::shared_ptr<State> self, std::uint64_t connection,
                                std::shared_ptr<asio::steady_timer> timer) {
    using steady = std::chrono::steady_clock;
    std::optional<steady::time_point> pinged_at;
    const auto ping = command({"PING"});
    while (!self->stopping && self->connection == connection) {
        const auto now = steady::now();
        if (pinged_at && self->last_input > *pinged_at)
            pinged_at.reset(); // something arrived: alive
        steady::time_point wake;
        if (!pinged_at) {
            wake = self->last_input + self->options.heartbeat_interval;
            if (now >= wake) {
                pinged_at = now;
                auto [ec, n] =
                    co_await asio::async_write(*self->sub, asio::buffer(ping),
                                               asio::experimental::as_tuple(asio::use_awaitable));
                (void)n;
                if (ec)
                    break; // the read fails too, and reconnects
                continue;
            }
        } else {
            wake = *pinged_at + self->options.heartbeat_timeout;
            if (now >= wake) {
                self->log(LogLevel::warning,
                          fmt::format("redis broker: no reply to PING from {}:{} within {} ms; "
                                      "replacing the subscribed connection",
                                      self->options.host, self->options.port,
                                      self->options.heartbeat_timeout.count()));
                asio::error_code ignored;
                self->sub->close(ignored);
                break;
            }
        }
        timer->expires_at(wake);
        co_await timer->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
}

void end_heartbeat(State &self) {
    ++self.connection;
    if (self.heartbeat_timer)
        self.heartbeat_timer->cancel();
    self.heartbeat_timer.reset();
}

asio::awaitable<void> subscribe_loop(std::shared_ptr<State> self) {
    auto delay = std::chrono::milliseconds(100);
    bool lost_before = false;
    while (!self->stopping) {
        try {
            self->sub.emplace(*self->strand);
            ++self->connection;
            co_await self->connect(*self->sub);
            if (lost_before)
                ++self->reconnect_count;
            self->last_input = std::chrono::steady_clock::now();
            self->heartbeat_timer = std::make_shared<asio::steady_timer>(*self->strand);
            asio::co_spawn(*self->strand, heartbeat(self, self->connection, self->heartbeat_timer),
                           [self](std::exception_ptr e) {
                               if (e)
                                   self->log(LogLevel::warning,
                                             "redis broker: the heartbeat ended with an error");
                           });
            const auto subscribe = command({"SUBSCRIBE", self->options.channel});
            co_await asio::async_write(*self->sub, asio::buffer(subscribe), asio::use_awaitable);
            ReaderPtr reader(redisReaderCreate());
            while (!self->stopping) {
                auto reply = co_await read_reply(*self->sub, reader.get());
                self->last_input = std::chrono::steady_clock::now();
                if (self->is_subscribed)
                    delay = std::chrono::milliseconds(100);
                self->handle(*reply);
            }
        } catch (const std::exception &e) {
            if (!self->stopping)
                self->log(
                    LogLevel::warning,
                    fmt::format(
                        "redis broker: subscription to {}:{} lost ({}); reconnecting in {} ms",
                        self->options.host, self->options.port, e.what(), delay.count()));
        }
        self->is_subscribed = false;
        lost_before = true;
        end_heartbeat(*self);
        if (self->sub) {
            asio::error_code ignored;
            self->sub->close(ignored);
        }
        if (self->stopping)
            break;
        self->backoff->expires_after(delay);
        co_await self->backoff->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        delay = std::min(delay * 2, self->options.max_reconnect_delay);
    }
}

// Sends everything in the outbox as one write and reads one reply per command; one reconnect
// attempt per batch, then the batch is dropped with a warning (local delivery has happened).
asio::awaitable<void> write_loop(std::shared_ptr<State> self) {
    while (!self->outbox.empty() && !self->stopping) {
        std::string batch;
        std::size_t count = 0;
        for (; !self->outbox.empty(); ++count) {
            batch += self->outbox.front();
            self->outbox.pop_front();
        }
        for (int attempt = 0;; ++attempt) {
            try {
                if (!self->pub || !self->pub->is_open()) {
                    self->pub.emplace(*self->strand);
                    co_await self->connect(*self->pub);
                    self->pub_reader.reset(redisReaderCreate());
                }
                co_await asio::async_write(*self->pub, asio::buffer(batch), asio::use_awaitable);
                for (std::size_t i = 0; i < count; ++i)
                    co_await read_reply(*self->pub, self->pub_reader.get());
                break;
            } catch (const std::exception &e) {
                if (self->pub) {
                    asio::error_code ignored;
                    self->pub->close(ignored);
                }
                if (attempt > 0 || self->stopping) {
                    self->log(
                        LogLevel::warning,
                        fmt::format("redis broker: {} event(s) not published to other nodes: {}",
                                    count, e.what()));
                    break;
                }
            }
        }
    }
    self->writer_running = false;
}

asio::awaitable<void> close_all(std::shared_ptr<State> self) {
    self->stopping = true;
    end_heartbeat(*self);
    asio::error_code ignored;
    if (self->sub)
        self->sub->close(ignored);
    if (self->pub)
        self->pub->close(ignored);
    if (self->backoff)
        self->backoff->cancel();
    if (self->resolver)
        self->resolver->cancel();
    co_return;
}

} // namespace

RedisEventBroker::RedisEventBroker(RedisEventBrokerOptions options)
    : state_(std::make_shared<State>()) {
    state_->options = std::move(options);
    state_->owner = this;
}

RedisEventBroker::~RedisEventBroker() {
    state_->disown();
    if (state_->strand)
        asio::co_spawn(*state_->strand, close_all(state_), asio::detached);
}

asio::awaitable<void> RedisEventBroker::start(asio::any_io_executor executor, Logger logger) {
    co_await EventBroker::start(executor, logger);
    if (!state_->prepare(executor, logger))
        co_return; // started already
    state_->resolver.emplace(*state_->strand);
    auto self = state_;
    asio::co_spawn(*state_->strand, subscribe_loop(self), [self](std::exception_ptr e) {
        self->loop_ended(e, "redis broker: the subscription loop");
    });
}

asio::awaitable<void> RedisEventBroker::stop() {
    if (!state_->strand)
        co_return;
    co_await asio::co_spawn(*state_->strand,
                            detail::drain_outbox(state_, state_->options.heartbeat_timeout),
                            asio::use_awaitable);
    co_await asio::co_spawn(*state_->strand, close_all(state_), asio::use_awaitable);
    co_await asio::co_spawn(*state_->strand, detail::wait_loop_done(state_), asio::use_awaitable);
    auto release = +[](State &s) {
        s.sub.reset();
        s.pub.reset();
        s.pub_reader.reset();
        s.resolver.reset();
        s.heartbeat_timer.reset();
    };
    co_await asio::co_spawn(*state_->strand, detail::release_io(state_, release),
                            asio::use_awaitable);
    state_->strand.reset();
    co_await EventBroker::stop();
}

asio::awaitable<void> RedisEventBroker::publish(Event event) {
    publish_local(event);
    if (!state_->strand)
        co_return;
    const json message{{"origin", state_->origin}, {"event", json(event)}};
    auto cmd = command({"PUBLISH", state_->options.channel, message.dump()});
    auto queued = detail::enqueue<State>(state_, std::move(cmd), &write_loop,
                                         "redis broker: the publishing loop");
    co_await asio::co_spawn(*state_->strand, std::move(queued), asio::use_awaitable);
}

bool RedisEventBroker::subscribed() const noexcept {
    return state_->is_subscribed;
}

std::uint64_t RedisEventBroker::reconnects() const noexcept {
    return state_->reconnect_count;
}

} // namespace asched
