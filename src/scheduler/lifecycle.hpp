// The scheduler's run state as a pure transition table: which phase follows which event, and
// the one action the driver (lifecycle.cpp) performs on the way.
#pragma once

#include <asched/model.hpp>

#include <optional>
#include <span>
#include <string_view>

namespace asched::detail {

/// Where a scheduler is in its life. Stopping passes through draining (no new acquisitions,
/// running jobs may finish), cancelling (the grace period is over: what is left is cancelled)
/// and releasing (every job's release has committed; the store and broker may close after
/// it). A crash (an internal error) cancels at once and then releases like a stop.
enum class Phase { stopped, starting, started, draining, cancelling, crashed, releasing };

enum class LifeEvent {
    start,      ///< start_in_background / run_until_stopped
    ready,      ///< the store is open and this identity's old leases are reaped
    stop,       ///< stop(), the handle's destructor, the end of scoped()
    grace_over, ///< stop_grace_period passed with jobs still running
    idle,       ///< no loop left, no job running, no release in flight
    released,   ///< the last leases are given back
    crash,      ///< the driver or a loop failed in a way it cannot retry
};

/// What the driver does when a transition fires.
enum class LifeAction {
    open,           ///< open the store and broker, reap this identity's abandoned jobs
    spawn_loops,    ///< start the schedule, job, lease and cleanup loops
    stop_acquiring, ///< wake the loops so they end; running jobs go on
    cancel_jobs,    ///< cancel every running job through its signal and stop token
    release_leases, ///< end the lease loop; nothing is leased any more
    finish,         ///< publish SchedulerStopped: close() may now close the store and broker
};

struct Transition {
    Phase from;
    LifeEvent event;
    Phase to;
    LifeAction action;
};

/// Every transition that exists; an event not listed for a phase changes nothing.
std::span<const Transition> lifecycle_table() noexcept;
/// The transition `event` fires in `phase`, if any.
std::optional<Transition> next_transition(Phase phase, LifeEvent event) noexcept;
/// The public RunState of a phase.
RunState run_state_of(Phase phase) noexcept;
/// Whether the loops may acquire schedules and jobs.
inline bool acquiring(Phase p) noexcept {
    return p == Phase::started;
}
/// Whether jobs may be running (and their leases must be renewed).
inline bool jobs_may_run(Phase p) noexcept {
    return p == Phase::started || p == Phase::draining || p == Phase::cancelling ||
           p == Phase::crashed;
}
std::string_view to_string(Phase p) noexcept;
std::string_view to_string(LifeEvent e) noexcept;

} // namespace asched::detail
