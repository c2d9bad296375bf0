// Pure scheduling decisions over an injected `now`: catch-up, coalescing, jitter, misfire.
#pragma once

#include <asched/model.hpp>

#include <functional>
#include <optional>
#include <vector>

namespace asched {

/// Why due fires produced no job.
enum class DropReason { coalesced, max_catchup };
std::string_view to_string(DropReason r) noexcept;

/// The fires of one plan that produced no job: `count` of them, from `first` to `last`.
struct DroppedFires {
    std::size_t count = 0;
    time_point first{};
    time_point last{};
    DropReason reason = DropReason::coalesced;
};

/// What one due schedule produces at `now`.
struct FirePlan {
    std::vector<Job> jobs;
    DroppedFires dropped;                     ///< count 0: every due fire became a job
    std::optional<time_point> last_fire_time; ///< the newest fire time processed (un-jittered)
    std::optional<time_point> next_fire_time; ///< the first fire time after now, or nullopt
    nlohmann::json trigger_state;             ///< the trigger's state with next_fire_time
};

/// The upper bound on trigger steps in one plan_fires() call; a schedule further behind
/// continues from where it stopped on the next round (no fire is skipped, none repeated).
inline constexpr std::size_t max_catch_up_steps = 1'000'000;

/// Collects every fire time of `schedule` from its next_fire_time up to `now`, applies its
/// coalesce policy (latest: one job for the newest, earliest: one for the oldest, all: one
/// each, but at most max_catchup of the newest), records the fires left out in `dropped`, gives
/// each job a jitter in [0, max_jitter] drawn from `uniform01` (clamped so it starts before the
/// following fire) and a start deadline of fire + jitter + misfire_grace_time. `make_id` names the
/// jobs. Exceptions: whatever the trigger throws.
FirePlan plan_fires(const Schedule &schedule, time_point now,
                    const std::function<double()> &uniform01,
                    const std::function<std::string()> &make_id);

/// For unpause_schedule(resume_from): moves `schedule`'s next_fire_time (and trigger_state)
/// to its first fire time at or after `resume_from`.
void skip_fires_before(Schedule &schedule, time_point resume_from);

/// A misfire: the job would start after its deadline.
inline bool missed_deadline(const Job &job, time_point now) noexcept {
    return job.start_deadline && now > *job.start_deadline;
}

/// Capped exponential backoff for retrying infrastructure failures: 0.5 s, 1 s, ... up to cap.
duration backoff_delay(unsigned attempt, duration cap = std::chrono::seconds(20)) noexcept;

} // namespace asched
