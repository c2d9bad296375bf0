// A small pool of database connections shared by the SQL clients (libpq, MariaDB Connector/C):
// at most `size` connections, opened when first needed; acquire() waits (bounded) for a free
// one; a broken connection coming back drops the idle ones too (after a server restart they
// are all dead, and finding out one query at a time would fail that many calls).
#pragma once

#include <asched/error.hpp>
#include <asched/time.hpp>

#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace asched::detail {

/// `Conn` has `bool broken() const` and `bool in_transaction() const`: a connection that is
/// either when it comes back is closed instead of reused.
template <class Conn>
class ConnectionPool : public std::enable_shared_from_this<ConnectionPool<Conn>> {
  public:
    /// Opens one connection (bounded by its own connect timeout), ready for use.
    using Connect = std::function<asio::awaitable<std::unique_ptr<Conn>>()>;

    /// `label` names the server in messages ("postgres host:5432/db").
    ConnectionPool(std::string label, std::size_t size, Connect connect)
        : label_(std::move(label)), size_(std::max<std::size_t>(size, 1)),
          connect_(std::move(connect)) {}

    class Lease {
      public:
        Lease(std::shared_ptr<ConnectionPool> pool, std::unique_ptr<Conn> conn)
            : pool_(std::move(pool)), conn_(std::move(conn)) {}
        Lease(Lease &&) = default;
        Lease &operator=(Lease &&) = default;
        ~Lease() {
            if (pool_ && conn_)
                pool_->give_back(std::move(conn_));
        }
        Conn &operator*() const { return *conn_; }
        Conn *operator->() const { return conn_.get(); }

      private:
        std::shared_ptr<ConnectionPool> pool_;
        std::unique_ptr<Conn> conn_;
    };

    /// A free connection, a new one while fewer than `size` are open, or the next one given
    /// back within `timeout`; throws Error(store_failure) past it or once closed.
    asio::awaitable<Lease> acquire(duration timeout) {
        auto self = this->shared_from_this();
        auto ex = co_await asio::this_coro::executor;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            std::shared_ptr<asio::steady_timer> waiter;
            bool open_one = false;
            {
                std::lock_guard lock(mutex_);
                if (closed_)
                    throw Error(errc::store_failure,
                                fmt::format("{}: the store is stopped", label_));
                if (!idle_.empty()) {
                    auto conn = std::move(idle_.back());
                    idle_.pop_back();
                    co_return Lease(self, std::move(conn));
                }
                if (open_ < size_) {
                    ++open_;
                    open_one = true;
                } else if (std::chrono::steady_clock::now() >= deadline) {
                    throw Error(errc::store_failure,
                                fmt::format("{}: all {} connections stayed busy for {}", label_,
                                            size_, format_duration(timeout)));
                } else {
                    waiter = std::make_shared<asio::steady_timer>(ex, deadline);
                    waiters_.push_back(waiter);
                }
            }
            if (open_one) {
                std::exception_ptr failure;
                try {
                    auto opening = connect_();
                    auto conn = co_await std::move(opening);
                    co_return Lease(self, std::move(conn));
                } catch (...) {
                    failure = std::current_exception();
                }
                std::shared_ptr<asio::steady_timer> next;
                {
                    std::lock_guard lock(mutex_);
                    --open_;
                    next = next_waiter();
                }
                wake(next);
                std::rethrow_exception(failure);
            }
            co_await waiter->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
            std::lock_guard lock(mutex_);
            std::erase(waiters_, waiter);
        }
    }

    /// Closes the idle connections; the leased ones close when they come back.
    void close() {
        std::vector<std::unique_ptr<Conn>> dropped;
        std::deque<std::shared_ptr<asio::steady_timer>> waiters;
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
            open_ -= idle_.size();
            dropped = std::move(idle_);
            idle_.clear();
            waiters.swap(waiters_);
        }
        for (auto &w : waiters)
            wake(w);
    }

  private:
    void give_back(std::unique_ptr<Conn> conn) {
        std::shared_ptr<asio::steady_timer> next;
        std::vector<std::unique_ptr<Conn>> dropped; // closed outside the lock
        {
            std::lock_guard lock(mutex_);
            if (closed_ || conn->broken() || conn->in_transaction()) {
                --open_;
                dropped.push_back(std::move(conn));
                if (dropped.back()->broken()) {
                    open_ -= idle_.size();
                    for (auto &c : idle_)
                        dropped.push_back(std::move(c));
                    idle_.clear();
                }
            } else {
                idle_.push_back(std::move(conn));
            }
            next = next_waiter();
        }
        wake(next);
    }

    std::shared_ptr<asio::steady_timer> next_waiter() {
        if (waiters_.empty())
            return nullptr;
        auto next = waiters_.front();
        waiters_.pop_front();
        return next;
    }

    // Wakes a waiter of acquire(): its timer, set to fire now, on the timer's own executor.
    static void wake(const std::shared_ptr<asio::steady_timer> &timer) {
        if (timer)
            asio::post(timer->get_executor(), [timer] {
                timer->expires_at(std::chrono::steady_clock::time_point::min());
            });
    }

    std::string label_;
    std::size_t size_;
    Connect connect_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<Conn>> idle_;
    std::size_t open_ = 0; // idle, leased or connecting
    std::deque<std::shared_ptr<asio::steady_timer>> waiters_;
    bool closed_ = false;
};

} // namespace asched::detail
