// The scheduler's metrics: this node's counters and histograms per task, kept on the strand,
// and their Prometheus text exposition.
#pragma once

#include <asched/model.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace asched::detail {

/// A Prometheus histogram in seconds with fixed buckets (5 ms to 1 h).
struct Histogram {
    static constexpr std::array<double, 16> bounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                   2.5,   5,    10,    30,   60,  300,  900, 3600};
    std::array<std::uint64_t, bounds.size()> buckets{}; ///< not cumulative: one bucket each
    std::uint64_t count = 0;
    double sum = 0;

    void observe(double seconds) noexcept;
};

inline constexpr std::size_t outcome_count = 6; ///< the values of JobOutcome

struct TaskMetrics {
    std::array<std::uint64_t, outcome_count> outcomes{}; ///< by JobOutcome
    std::uint64_t retries = 0;         ///< attempts that ended and were scheduled again
    std::uint64_t coalesced = 0;       ///< fires merged away by CoalescePolicy
    std::uint64_t catchup_dropped = 0; ///< fires dropped by max_catchup
    Histogram lateness;                ///< start minus scheduled fire time
    Histogram duration;                ///< finish minus start
};

/// Everything metrics() reports, gathered on the strand and from the store.
struct MetricsSnapshot {
    std::map<std::string, TaskMetrics> tasks;
    std::map<std::string, std::size_t> running; ///< this node's running jobs per task
    /// Queued jobs that are due (earliest start passed) per task; nullopt: the store did not
    /// answer.
    std::optional<std::map<std::string, std::size_t>> backlog;
    std::optional<std::size_t> schedules, paused_schedules;
    bool store_healthy = true;
    bool broker_connected = true;
    std::uint64_t broker_reconnects = 0;
    std::uint64_t lease_renewals_failed = 0;
    duration clock_offset{0}; ///< the store's clock minus this node's
};

/// The Prometheus text exposition format (version 0.0.4) of `m`; labels are task ids (and the
/// outcome), escaped.
std::string render_metrics(const MetricsSnapshot &m);

} // namespace asched::detail
