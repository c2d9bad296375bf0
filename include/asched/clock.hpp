// The Clock port: the one source of "now", injectable so tests run on a manual clock.
#pragma once

#include <asched/time.hpp>

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>

namespace asched {

/// Where asched reads the current time. Thread safety: now() may be called from any thread.
class Clock {
  public:
    virtual ~Clock() = default;
    virtual time_point now() const = 0;
    /// True when time moves only when told to (ManualClock): the scheduler then waits for
    /// change notifications instead of real timers.
    virtual bool is_manual() const noexcept { return false; }
    /// Registers `fn`, called from the thread that moves the clock after every change.
    /// Returns a key for remove_listener. Real clocks never call it.
    virtual std::size_t add_listener(std::function<void()> fn) {
        (void)fn;
        return 0;
    }
    virtual void remove_listener(std::size_t key) { (void)key; }
};

/// The system's real-time clock, truncated to microseconds.
class SystemClock final : public Clock {
  public:
    time_point now() const override;
};

/// A clock that moves only when told to: deterministic tests of every timing policy.
/// Thread safety: all members may be called from any thread.
class ManualClock final : public Clock {
  public:
    explicit ManualClock(time_point start);
    time_point now() const override;
    bool is_manual() const noexcept override { return true; }
    std::size_t add_listener(std::function<void()> fn) override;
    void remove_listener(std::size_t key) override;

    /// Moves the clock forward by `d` and notifies listeners.
    void advance(duration d);
    /// Sets the clock to `t` (never backwards: throws Error(invalid_argument)).
    void set(time_point t);

  private:
    void notify();
    mutable std::mutex mutex_;
    time_point now_;
    std::size_t next_key_ = 1;
    std::map<std::size_t, std::function<void()>> listeners_;
};

} // namespace asched
