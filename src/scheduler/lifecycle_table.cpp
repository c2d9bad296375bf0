// The lifecycle transition table (pure: no Asio, no clock).
#include "lifecycle.hpp"

#include <array>

namespace asched::detail {
namespace {

using P = Phase;
using E = LifeEvent;
using A = LifeAction;

constexpr std::array<Transition, 16> table{{
    {P::stopped, E::start, P::starting, A::open},
    {P::starting, E::ready, P::started, A::spawn_loops},
    // A stop while starting waits for the open to finish, then drains nothing.
    {P::starting, E::stop, P::draining, A::stop_acquiring},
    {P::starting, E::crash, P::crashed, A::cancel_jobs},
    {P::started, E::stop, P::draining, A::stop_acquiring},
    {P::started, E::crash, P::crashed, A::cancel_jobs},
    {P::draining, E::grace_over, P::cancelling, A::cancel_jobs},
    {P::draining, E::idle, P::releasing, A::release_leases},
    {P::draining, E::crash, P::crashed, A::cancel_jobs},
    {P::cancelling, E::idle, P::releasing, A::release_leases},
    {P::cancelling, E::crash, P::crashed, A::cancel_jobs},
    {P::crashed, E::idle, P::releasing, A::release_leases},
    {P::crashed, E::grace_over, P::crashed, A::cancel_jobs},
    {P::releasing, E::released, P::stopped, A::finish},
    // Even a failure while giving leases back ends in stopped: nothing is left running.
    {P::releasing, E::crash, P::stopped, A::finish},
    {P::cancelling, E::grace_over, P::cancelling, A::cancel_jobs},
}};

} // namespace

std::span<const Transition> lifecycle_table() noexcept {
    return table;
}

std::optional<Transition> next_transition(Phase phase, LifeEvent event) noexcept {
    for (const auto &t : table)
        if (t.from == phase && t.event == event)
            return t;
    return std::nullopt;
}

RunState run_state_of(Phase p) noexcept {
    switch (p) {
    case P::stopped:
        return RunState::stopped;
    case P::starting:
        return RunState::starting;
    case P::started:
        return RunState::started;
    case P::draining:
    case P::cancelling:
    case P::crashed:
    case P::releasing:
        return RunState::stopping;
    }
    return RunState::stopped;
}

std::string_view to_string(Phase p) noexcept {
    switch (p) {
    case P::stopped:
        return "stopped";
    case P::starting:
        return "starting";
    case P::started:
        return "started";
    case P::draining:
        return "draining";
    case P::cancelling:
        return "cancelling";
    case P::crashed:
        return "crashed";
    case P::releasing:
        return "releasing";
    }
    return "?";
}

std::string_view to_string(LifeEvent e) noexcept {
    switch (e) {
    case E::start:
        return "start";
    case E::ready:
        return "ready";
    case E::stop:
        return "stop";
    case E::grace_over:
        return "grace_over";
    case E::idle:
        return "idle";
    case E::released:
        return "released";
    case E::crash:
        return "crash";
    }
    return "?";
}

} // namespace asched::detail
