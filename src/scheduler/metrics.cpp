// Prometheus text exposition of the scheduler's metrics.
#include "metrics.hpp"

#include <fmt/format.h>

namespace asched::detail {

void Histogram::observe(double seconds) noexcept {
    if (seconds < 0)
        seconds = 0; // a start before its fire time (clock skew between nodes) counts as on time
    for (std::size_t i = 0; i < bounds.size(); ++i)
        if (seconds <= bounds[i]) {
            ++buckets[i];
            break;
        }
    ++count;
    sum += seconds;
}

namespace {

// A label value: backslash, double quote and newline escaped, as the format asks.
std::string label(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (const char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

void header(std::string &out, const char *name, const char *type, const char *help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void histogram(std::string &out, const char *name, const char *help,
               const std::map<std::string, TaskMetrics> &tasks, Histogram TaskMetrics::*which) {
    header(out, name, "histogram", help);
    for (const auto &[task, m] : tasks) {
        const Histogram &h = m.*which;
        const std::string t = label(task);
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < Histogram::bounds.size(); ++i) {
            cumulative += h.buckets[i];
            out += fmt::format("{}_bucket{{task=\"{}\",le=\"{}\"}} {}\n", name, t,
                               Histogram::bounds[i], cumulative);
        }
        out += fmt::format("{}_bucket{{task=\"{}\",le=\"+Inf\"}} {}\n", name, t, h.count);
        out += fmt::format("{}_sum{{task=\"{}\"}} {}\n", name, t, h.sum);
        out += fmt::format("{}_count{{task=\"{}\"}} {}\n", name, t, h.count);
    }
}

void per_task(std::string &out, const char *name, const char *type, const char *help,
              const std::map<std::string, std::size_t> &values) {
    header(out, name, type, help);
    for (const auto &[task, v] : values)
        out += fmt::format("{}{{task=\"{}\"}} {}\n", name, label(task), v);
}

template <class F>
std::map<std::string, std::size_t> each_task(const std::map<std::string, TaskMetrics> &tasks, F f) {
    std::map<std::string, std::size_t> out;
    for (const auto &[task, m] : tasks)
        out[task] = std::size_t(f(m));
    return out;
}

} // namespace

std::string render_metrics(const MetricsSnapshot &m) {
    std::string out;
    header(out, "asched_jobs_total", "counter",
           "Jobs (attempts) this node finished, by task and outcome.");
    for (const auto &[task, t] : m.tasks)
        for (std::size_t o = 0; o < outcome_count; ++o)
            out += fmt::format("asched_jobs_total{{task=\"{}\",outcome=\"{}\"}} {}\n", label(task),
                               to_string(JobOutcome(o)), t.outcomes[o]);
    per_task(out, "asched_job_retries_total", "counter",
             "Attempts this node finished that are retried.",
             each_task(m.tasks, [](const TaskMetrics &t) { return t.retries; }));
    per_task(out, "asched_misfires_total", "counter",
             "Jobs that missed their start deadline (outcome missed_start_deadline).",
             each_task(m.tasks, [](const TaskMetrics &t) {
                 return t.outcomes[std::size_t(JobOutcome::missed_start_deadline)];
             }));
    per_task(out, "asched_coalesced_fires_total", "counter",
             "Fires this node merged into one job by the coalesce policy.",
             each_task(m.tasks, [](const TaskMetrics &t) { return t.coalesced; }));
    per_task(out, "asched_catchup_dropped_fires_total", "counter",
             "Fires this node dropped because of max_catchup.",
             each_task(m.tasks, [](const TaskMetrics &t) { return t.catchup_dropped; }));
    histogram(out, "asched_job_lateness_seconds",
              "How late jobs started: start time minus scheduled fire time.", m.tasks,
              &TaskMetrics::lateness);
    histogram(out, "asched_job_duration_seconds", "How long jobs ran: finish minus start.", m.tasks,
              &TaskMetrics::duration);
    per_task(out, "asched_running_jobs", "gauge", "Jobs running on this node now.", m.running);
    if (m.backlog)
        per_task(out, "asched_backlog_jobs", "gauge",
                 "Queued jobs that are due and not yet started, in the whole store.", *m.backlog);
    if (m.schedules) {
        header(out, "asched_schedules", "gauge", "Schedules in the store.");
        out += fmt::format("asched_schedules {}\n", *m.schedules);
        header(out, "asched_paused_schedules", "gauge", "Paused schedules in the store.");
        out += fmt::format("asched_paused_schedules {}\n", m.paused_schedules.value_or(0));
    }
    header(out, "asched_store_healthy", "gauge",
           "1 while the data store answers, 0 while it fails (degraded).");
    out += fmt::format("asched_store_healthy {}\n", m.store_healthy ? 1 : 0);
    header(out, "asched_broker_connected", "gauge",
           "1 while the event broker's connection is up (always 1 for the local broker).");
    out += fmt::format("asched_broker_connected {}\n", m.broker_connected ? 1 : 0);
    header(out, "asched_broker_reconnects_total", "counter",
           "How often the event broker lost its connection and made it again.");
    out += fmt::format("asched_broker_reconnects_total {}\n", m.broker_reconnects);
    header(out, "asched_lease_renewals_failed_total", "counter",
           "Renewals of this node's job leases that failed.");
    out += fmt::format("asched_lease_renewals_failed_total {}\n", m.lease_renewals_failed);
    header(out, "asched_clock_offset_seconds", "gauge",
           "How far the store's clock runs ahead of this node's (0 unless the store keeps its "
           "own clock).");
    out += fmt::format("asched_clock_offset_seconds {}\n",
                       std::chrono::duration<double>(m.clock_offset).count());
    return out;
}

} // namespace asched::detail
