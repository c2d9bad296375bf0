// The system clock and the manual clock tests drive.
#include <asched/clock.hpp>
#include <asched/error.hpp>

#include <vector>

namespace asched {

time_point SystemClock::now() const {
    return std::chrono::floor<duration>(std::chrono::system_clock::now());
}

ManualClock::ManualClock(time_point start) : now_(start) {}

time_point ManualClock::now() const {
    std::lock_guard lock(mutex_);
    return now_;
}

std::size_t ManualClock::add_listener(std::function<void()> fn) {
    std::lock_guard lock(mutex_);
    const auto key = next_key_++;
    listeners_.emplace(key, std::move(fn));
    return key;
}

void ManualClock::remove_listener(std::size_t key) {
    std::lock_guard lock(mutex_);
    listeners_.erase(key);
}

void ManualClock::advance(duration d) {
    if (d < duration(0))
        throw Error(errc::invalid_argument, "manual clock: cannot move backwards");
    {
        std::lock_guard lock(mutex_);
        now_ += d;
    }
    notify();
}

void ManualClock::set(time_point t) {
    {
        std::lock_guard lock(mutex_);
        if (t < now_)
            throw Error(errc::invalid_argument, "manual clock: cannot move backwards");
        now_ = t;
    }
    notify();
}

void ManualClock::notify() {
    // Listeners run outside the lock: they may read now() or remove themselves.
    std::vector<std::function<void()>> copy;
    {
        std::lock_guard lock(mutex_);
        for (auto &[key, fn] : listeners_)
            copy.push_back(fn);
    }
    for (auto &fn : copy)
        fn();
}

} // namespace asched
