// A TCP proxy on loopback for failure tests: clients connect to port(), the proxy connects
// each to the target port and copies bytes both ways, or misbehaves as the test says:
//   pass       copy bytes (the default);
//   blackhole  accept and hold every connection, read and forward nothing: the peers see a
//              connection that is open and silent, as across a dead route or a frozen host;
//              pass() again resumes the copying of what was held;
//   delay(ms)  copy each chunk after `ms`;
//   close      close every connection, and each new one as it arrives;
//   flaky      copy bytes, but refuse a share of new connections (closed as they arrive) and
//              reset a connection after a share of the chunks its client sends (half of them
//              before the chunk goes through, half after: an answer lost after a COMMIT went
//              through). Random with a seed, counted (refused(), resets()).
// The proxy runs on a thread of its own; the mode may be changed from any thread.
#pragma once

#include "test_support.hpp"

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

namespace asched::test {

class ChaosProxy {
  public:
    enum class Mode { pass, blackhole, delay, close, flaky };

    explicit ChaosProxy(std::uint16_t target_port)
        : target_(asio::ip::address_v4::loopback(), target_port),
          acceptor_(ioc_, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
        asio::co_spawn(ioc_, accept_loop(), asio::detached); // ends when the proxy is destroyed
        thread_ = std::thread([this] { ioc_.run(); });
    }
    // Stopping the io_context and destroying it destroys every link's coroutine, and with
    // it the link's sockets.
    ~ChaosProxy() {
        ioc_.stop();
        thread_.join();
    }
    ChaosProxy(const ChaosProxy &) = delete;
    ChaosProxy &operator=(const ChaosProxy &) = delete;

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    /// How many client connections the proxy has accepted so far.
    std::size_t accepted() const { return accepted_; }

    void pass() { mode_ = Mode::pass; }
    void blackhole() { mode_ = Mode::blackhole; }
    void delay(std::chrono::milliseconds ms) {
        delay_ms_ = ms.count();
        mode_ = Mode::delay;
    }
    void close() {
        mode_ = Mode::close;
        asio::post(ioc_, [this] { close_links(); });
    }
    /// `refuse_percent` of new connections closed at once; each chunk a client sends ends its
    /// connection with probability `reset_percent` / 100.
    void flaky(double refuse_percent, double reset_percent, std::uint32_t seed) {
        asio::post(ioc_, [this, refuse_percent, reset_percent, seed] {
            refuse_ = refuse_percent / 100;
            reset_ = reset_percent / 100;
            random_.seed(seed);
            mode_ = Mode::flaky;
        });
    }
    /// What flaky mode did so far: connections refused, connections reset.
    std::size_t refused() const { return refused_; }
    std::size_t resets() const { return resets_; }

  private:
    struct Link {
        asio::ip::tcp::socket client, server;
        explicit Link(asio::io_context &ioc) : client(ioc), server(ioc) {}
        void close() {
            std::error_code ec;
            client.close(ec);
            server.close(ec);
        }
    };

    void close_links() {
        for (auto &weak : links_)
            if (auto link = weak.lock())
                link->close();
        links_.clear();
    }

    // Waits while the proxy is blackholed (polling the mode: a test helper, 5 ms is cheap).
    asio::awaitable<void> hold_while_blackholed() {
        asio::steady_timer timer(ioc_);
        while (mode_ == Mode::blackhole) {
            timer.expires_after(std::chrono::milliseconds(5));
            co_await timer.async_wait(asio::use_awaitable);
        }
    }

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto link = std::make_shared<Link>(ioc_);
            auto [ec] = co_await acceptor_.async_accept(
                link->client, asio::experimental::as_tuple(asio::use_awaitable));
            if (ec == asio::error::operation_aborted || !acceptor_.is_open())
                co_return;
            if (ec)
                continue;
            ++accepted_;
            if (mode_ == Mode::close || (mode_ == Mode::flaky && roll() < refuse_)) {
                if (mode_ == Mode::flaky)
                    ++refused_;
                link->close();
                continue;
            }
            links_.push_back(link);
            asio::co_spawn(ioc_, open_link(link), asio::detached); // a link's end is its own
        }
    }

    asio::awaitable<void> open_link(std::shared_ptr<Link> link) {
        co_await hold_while_blackholed();
        auto [ec] = co_await link->server.async_connect(
            target_, asio::experimental::as_tuple(asio::use_awaitable));
        if (ec) {
            link->close();
            co_return;
        }
        asio::co_spawn(ioc_, pump(link, &Link::client, &Link::server), asio::detached);
        asio::co_spawn(ioc_, pump(link, &Link::server, &Link::client), asio::detached);
    }

    // Copies from one side of `link` to the other until either side closes.
    asio::awaitable<void> pump(std::shared_ptr<Link> link, asio::ip::tcp::socket Link::*from,
                               asio::ip::tcp::socket Link::*to) {
        std::array<char, 16 * 1024> buf;
        asio::steady_timer timer(ioc_);
        for (;;) {
            co_await hold_while_blackholed();
            auto [rec, n] = co_await ((*link).*from)
                                .async_read_some(asio::buffer(buf),
                                                 asio::experimental::as_tuple(asio::use_awaitable));
            if (rec)
                break;
            co_await hold_while_blackholed(); // what was read in flight is held too
            if (mode_ == Mode::delay) {
                timer.expires_after(std::chrono::milliseconds(delay_ms_.load()));
                co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
            }
            // Flaky: a client's chunk may be the connection's last, lost or delivered.
            int reset = 0; // 1: before the chunk goes through, 2: after
            if (mode_ == Mode::flaky && from == &Link::client && roll() < reset_)
                reset = roll() < 0.5 ? 1 : 2;
            if (reset == 1) {
                ++resets_;
                break;
            }
            auto [wec, written] =
                co_await asio::async_write(((*link).*to), asio::buffer(buf.data(), n),
                                           asio::experimental::as_tuple(asio::use_awaitable));
            if (wec)
                break;
            if (reset == 2) {
                ++resets_;
                break;
            }
        }
        link->close();
    }

    double roll() { return std::uniform_real_distribution<double>(0, 1)(random_); }

    asio::io_context ioc_;
    asio::ip::tcp::endpoint target_;
    asio::ip::tcp::acceptor acceptor_;
    std::list<std::weak_ptr<Link>> links_; // on the proxy's thread only
    std::atomic<Mode> mode_{Mode::pass};
    std::atomic<long> delay_ms_{0};
    std::atomic<std::size_t> accepted_{0};
    double refuse_ = 0, reset_ = 0; // flaky mode's shares, on the proxy's thread only
    std::mt19937 random_;
    std::atomic<std::size_t> refused_{0}, resets_{0};
    std::thread thread_;
};

} // namespace asched::test
