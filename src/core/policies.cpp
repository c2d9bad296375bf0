// Pure scheduling decisions: catch-up, coalescing, jitter and misfire deadlines.
#include <asched/policies.hpp>
#include <asched/trigger.hpp>

#include <algorithm>
#include <cmath>
#include <deque>

namespace asched {

std::string_view to_string(DropReason r) noexcept {
    return r == DropReason::coalesced ? "coalesced" : "max_catchup";
}

FirePlan plan_fires(const Schedule &schedule, time_point now,
                    const std::function<double()> &uniform01,
                    const std::function<std::string()> &make_id) {
    FirePlan plan;
    std::deque<time_point> fires;
    std::optional<time_point> t = schedule.next_fire_time;
    plan.trigger_state = schedule.trigger_state;
    DroppedFires &dropped = plan.dropped;
    auto drop = [&dropped](time_point fire, DropReason reason) {
        if (dropped.count++ == 0)
            dropped.first = fire;
        dropped.last = fire;
        dropped.reason = reason;
    };
    const std::size_t cap = schedule.max_catchup.value_or(0);
    std::size_t steps = 0;
    while (t && *t <= now && steps < max_catch_up_steps) {
        switch (schedule.coalesce) {
        case CoalescePolicy::all:
            fires.push_back(*t);
            if (cap > 0 && fires.size() > cap) {
                drop(fires.front(), DropReason::max_catchup);
                fires.pop_front();
            }
            break;
        case CoalescePolicy::latest:
            if (!fires.empty())
                drop(fires.front(), DropReason::coalesced);
            fires.assign(1, *t);
            break;
        case CoalescePolicy::earliest:
            if (fires.empty())
                fires.push_back(*t);
            else
                drop(*t, DropReason::coalesced);
            break;
        }
        plan.last_fire_time = t;
        t = schedule.trigger->advance(*t, plan.trigger_state);
        ++steps;
    }
    plan.next_fire_time = t;

    // Jitter never pushes a job's start past the fire time that follows it.
    std::optional<duration> jitter_cap = schedule.max_jitter;
    for (std::size_t i = 0; i < fires.size(); ++i) {
        const time_point fire = fires[i];
        duration jitter{0};
        if (jitter_cap && *jitter_cap > duration(0)) {
            const std::optional<time_point> following =
                i + 1 < fires.size() ? std::optional(fires[i + 1]) : plan.next_fire_time;
            if (following)
                jitter_cap = std::min(*jitter_cap, *following - fire - duration(1));
            if (*jitter_cap > duration(0)) {
                const double u = std::clamp(uniform01(), 0.0, 1.0);
                jitter = duration(static_cast<std::int64_t>(
                    std::floor(u * static_cast<double>(jitter_cap->count()))));
            }
        }
        Job job;
        job.id = make_id();
        job.task_id = schedule.task_id;
        job.args = schedule.args;
        job.schedule_id = schedule.id;
        job.scheduled_fire_time = fire;
        job.jitter = jitter;
        if (schedule.misfire_grace_time)
            job.start_deadline = fire + jitter + *schedule.misfire_grace_time;
        job.timeout = schedule.timeout;
        job.retry = schedule.retry;
        job.result_expiration_time = schedule.job_result_expiration_time;
        job.metadata = schedule.metadata;
        job.created_at = now;
        plan.jobs.push_back(std::move(job));
    }
    return plan;
}

void skip_fires_before(Schedule &schedule, time_point resume_from) {
    std::size_t steps = 0;
    while (schedule.next_fire_time && *schedule.next_fire_time < resume_from &&
           steps++ < max_catch_up_steps)
        schedule.next_fire_time =
            schedule.trigger->advance(schedule.next_fire_time, schedule.trigger_state);
}

duration backoff_delay(unsigned attempt, duration cap) noexcept {
    const auto base = std::chrono::milliseconds(500);
    const unsigned shift = std::min(attempt, 16U);
    return std::min<duration>(cap, base * (1LL << shift));
}

} // namespace asched
