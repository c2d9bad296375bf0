// The AsyncScheduler's shared state; every member below is touched only on `strand`.
#pragma once

#include <asched/async_scheduler.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/thread_pool.hpp>
#include <fmt/format.h>

#include <atomic>
#include <map>
#include <random>
#include <stop_token>
#include <unordered_map>

namespace asched::detail {

/// A level-triggered wake-up for one waiting loop: notify() before wait() is not lost.
class Wakeup {
public:
    explicit Wakeup(const asio::any_io_executor& executor) : timer_(executor) {}
    void notify() {
        pending_ = true;
        timer_.cancel();
    }
    /// Returns after notify() or `timeout` of real time, whichever comes first.
    asio::awaitable<void> wait(std::chrono::steady_clock::duration timeout);

private:
    asio::steady_timer timer_;
    bool pending_ = false;
};

struct RunningJob {
    Job job;
    std::shared_ptr<JobContext> context;
    std::stop_source stop;
    asio::cancellation_signal signal;
    bool cancel_requested = false;
};

struct ResultWaiter {
    explicit ResultWaiter(const asio::any_io_executor& executor) : wake(executor) {}
    Wakeup wake;
    bool released = false;
};

struct SchedulerState : std::enable_shared_from_this<SchedulerState> {
    SchedulerState(asio::any_io_executor executor, AsyncSchedulerOptions options);
    ~SchedulerState();

    template <class... A> void log(LogLevel level, fmt::format_string<A...> f, A&&... args) const {
        if (logger.enabled(level))
            logger.log(level, fmt::format(f, std::forward<A>(args)...));
    }
    /// Wake every loop (stop, a clock jump).
    void wake_all();
    /// Records how the last store call went: the first failure after success turns the health
    /// to degraded, the first success after failures back to ok; each change is logged and
    /// published as StoreHealthChanged. Called on the strand.
    void store_failed(const std::exception& e);
    void store_ok();

    asio::any_io_executor executor;
    asio::strand<asio::any_io_executor> strand;
    AsyncSchedulerOptions options;
    std::string identity;
    std::shared_ptr<DataStore> store;
    std::shared_ptr<EventBroker> broker;
    std::shared_ptr<Clock> clock;
    Logger logger;
    asio::thread_pool pool;

    std::atomic<RunState> run_state{RunState::stopped};
    bool services_open = false;
    bool stop_requested = false;
    bool lease_loop_done = false;
    std::size_t loops = 0;
    std::optional<std::string> crash;
    bool store_degraded = false;

    std::unordered_map<std::string, std::shared_ptr<const TaskFunction>> functions;
    std::unordered_map<std::string, std::shared_ptr<RunningJob>> running;

    Wakeup schedule_wake;
    Wakeup job_wake;
    Wakeup lease_wake;
    Wakeup cleanup_wake;
    Wakeup main_wake;
    std::multimap<std::string, std::shared_ptr<ResultWaiter>> result_waiters;
    std::vector<std::shared_ptr<Wakeup>> state_waiters; // woken on every run-state change

    Subscription internal_subscription;
    std::size_t clock_listener = 0;
    std::mt19937_64 rng;
};

} // namespace asched::detail
