// A scheduler on a manual clock, with every event recorded.
#pragma once

#include "test_support.hpp"

#include <asio/experimental/as_tuple.hpp>

#include <atomic>
#include <mutex>

namespace asched::test {

struct Recorder {
    std::mutex mutex;
    std::vector<Event> events;

    void operator()(const Event &e) {
        std::lock_guard lock(mutex);
        events.push_back(e);
    }
    template <class T> std::vector<T> of() {
        std::lock_guard lock(mutex);
        std::vector<T> out;
        for (auto &e : events)
            if (auto *p = std::get_if<T>(&e))
                out.push_back(*p);
        return out;
    }
    template <class T> std::size_t count() { return of<T>().size(); }
};

// A gate coroutine tasks wait on; the test opens it.
struct Gate {
    explicit Gate(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
    asio::steady_timer timer;
    std::atomic<int> inside{0};
    std::atomic<int> peak{0};
    // Later arrivals must pass too: the expiry moves to the past (this also wakes waiters).
    void open() { timer.expires_at(asio::steady_timer::time_point::min()); }
};

inline asio::awaitable<int> wait_at(std::shared_ptr<Gate> gate, int value) {
    const int now_inside = ++gate->inside;
    int seen = gate->peak.load();
    while (now_inside > seen && !gate->peak.compare_exchange_weak(seen, now_inside)) {
    }
    co_await gate->timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    --gate->inside;
    co_return value;
}

/// A manual clock that also steps backwards: a wall clock set back (or forward) by an operator
/// or NTP under a running scheduler (ManualClock never goes back).
class SteppingClock final : public Clock {
  public:
    explicit SteppingClock(time_point start) : now_(start) {}
    time_point now() const override {
        std::lock_guard lock(mutex_);
        return now_;
    }
    bool is_manual() const noexcept override { return true; }
    std::size_t add_listener(std::function<void()> fn) override {
        std::lock_guard lock(mutex_);
        listeners_.emplace(++key_, std::move(fn));
        return key_;
    }
    void remove_listener(std::size_t key) override {
        std::lock_guard lock(mutex_);
        listeners_.erase(key);
    }
    void step(duration d) {
        std::vector<std::function<void()>> call;
        {
            std::lock_guard lock(mutex_);
            now_ += d;
            for (auto &[k, fn] : listeners_)
                call.push_back(fn);
        }
        for (auto &fn : call)
            fn();
    }

  private:
    mutable std::mutex mutex_;
    time_point now_;
    std::size_t key_ = 0;
    std::map<std::size_t, std::function<void()>> listeners_;
};

struct SchedulerFixture : IoContextFixture {
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(t0);
    std::shared_ptr<Recorder> recorder = std::make_shared<Recorder>();
    std::optional<AsyncScheduler> scheduler;
    Subscription subscription;
    /// A second handle on the fixture's store, for a second scheduler: the same object for the
    /// in-memory store, a new store on the same file or schema for the SQL stores.
    std::function<std::shared_ptr<DataStore>()> twin_store = [this] {
        return scheduler->data_store();
    };

    explicit SchedulerFixture(AsyncSchedulerOptions options = base_options()) {
        if (!options.clock)
            options.clock = clock;
        scheduler.emplace(ioc.get_executor(), std::move(options));
        subscription = scheduler->subscribe([r = recorder](const Event &e) { (*r)(e); });
    }

    static AsyncSchedulerOptions base_options() {
        AsyncSchedulerOptions o;
        o.identity = "test-node";
        o.stop_grace_period = std::chrono::seconds(5);
        o.thread_pool_size = 4;
        o.logger.level = LogLevel::error;
        return o;
    }

    AsyncScheduler &s() { return *scheduler; }

    template <class T>
    T run(asio::awaitable<T> op, std::chrono::seconds limit = std::chrono::seconds(30)) {
        return test::run(ioc, std::move(op), limit);
    }

    /// Released jobs whose outcome is recorded, by outcome.
    std::size_t released(JobOutcome outcome) {
        std::size_t n = 0;
        for (auto &r : recorder->of<JobReleased>())
            n += r.outcome == outcome;
        return n;
    }

    ~SchedulerFixture() {
        if (scheduler && scheduler->state() != RunState::stopped) {
            try {
                auto &sc = *scheduler;
                run(stop_and_wait(sc));
            } catch (...) {
            }
        }
        expect_no_work_left();
    }

    static asio::awaitable<void> stop_and_wait(AsyncScheduler &sc) {
        co_await sc.stop();
        co_await sc.wait_until_stopped();
    }
};

} // namespace asched::test
