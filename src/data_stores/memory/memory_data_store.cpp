// MemoryDataStore: ordered indexes so due schedules and startable jobs are found in O(log n).
#include "../../core/json_util.hpp"
#include "../store_util.hpp"

#include <asched/data_stores/memory_data_store.hpp>
#include <asched/policies.hpp>

#include <algorithm>
#include <map>
#include <mutex>
#include <queue>
#include <set>
#include <unordered_map>

namespace asched {

using QueueKey = std::tuple<time_point, std::uint64_t, std::string>;
using TimeKey = std::pair<time_point, std::string>;

struct MemoryDataStore::State {
    std::mutex mutex;
    StoreContext context;
    std::uint64_t seq = 0;
    std::uint64_t token = 0;

    std::map<std::string, Task> tasks;
    std::unordered_map<std::string, Schedule> schedules;
    std::set<TimeKey> due;             // unpaused, unleased schedules with a next fire time
    std::set<TimeKey> schedule_leases; // (acquired_until, id)

    struct JobEntry {
        Job job;
        std::uint64_t seq;
        bool cancel_requested = false;
    };
    std::unordered_map<std::string, JobEntry> jobs;
    std::map<std::uint64_t, std::string> job_order;             // creation order
    std::unordered_map<std::string, std::set<QueueKey>> queued; // per task: unleased jobs
    std::set<TimeKey> job_leases;                               // (acquired_until, id)
    std::set<std::pair<std::string, time_point>> fire_keys;     // (schedule, fire time)
    std::unordered_map<std::string, std::size_t> jobs_per_schedule;

    std::unordered_map<std::string, JobResult> results;
    std::set<TimeKey> result_expiry;

    // The job history, newest last, with an index per task and per schedule.
    using HistoryKey = std::pair<time_point, std::int64_t>;
    std::map<HistoryKey, JobHistoryRecord> history;
    std::unordered_map<std::string, std::set<HistoryKey>> history_by_task, history_by_schedule;
    std::int64_t history_seq = 0;

    void record_history(JobHistoryRecord record) {
        const HistoryKey key{record.finished_at, ++history_seq};
        history_by_task[record.task_id].insert(key);
        if (record.schedule_id)
            history_by_schedule[*record.schedule_id].insert(key);
        history.emplace(key, std::move(record));
    }

    std::map<std::string, WorkerInfo> workers; // the worker registry, by identity

    std::optional<WorkerInfo> worker(const std::string &identity) const {
        auto it = workers.find(identity);
        return it == workers.end() ? std::nullopt : std::optional(it->second);
    }

    std::vector<Event> events; // published after the lock is released

    time_point now() const { return context.clock->now(); }

    void index_schedule(const Schedule &s) {
        if (s.acquired_until) {
            schedule_leases.emplace(*s.acquired_until, s.id);
        } else if (!s.paused && s.next_fire_time) {
            due.emplace(*s.next_fire_time, s.id);
        }
    }

    void unindex_schedule(const Schedule &s) {
        if (s.next_fire_time)
            due.erase({*s.next_fire_time, s.id});
        if (s.acquired_until)
            schedule_leases.erase({*s.acquired_until, s.id});
    }

    const Task &require_task(const std::string &id) const {
        auto it = tasks.find(id);
        if (it == tasks.end())
            throw Error(errc::task_lookup, fmt::format("task '{}' not found", id));
        return it->second;
    }

    // Returns false for a second job of one (schedule, fire time): the unique key. `at` is the
    // operation's time, read once per store call rather than once per job.
    bool insert_job(Job job, time_point at) {
        require_task(job.task_id);
        if (job.schedule_id && job.scheduled_fire_time &&
            !fire_keys.emplace(*job.schedule_id, *job.scheduled_fire_time).second)
            return false;
        if (jobs.contains(job.id))
            throw Error(errc::conflicting_id, fmt::format("job '{}' already exists", job.id));
        const auto s = ++seq;
        if (job.schedule_id)
            ++jobs_per_schedule[*job.schedule_id];
        queued[job.task_id].emplace(job.earliest_start(), s, job.id);
        job_order.emplace(s, job.id);
        events.push_back(JobAdded{at, job.id, job.task_id, job.schedule_id});
        const auto id = job.id;
        jobs.emplace(id, JobEntry{std::move(job), s});
        return true;
    }

    void erase_job(std::unordered_map<std::string, JobEntry>::iterator it) {
        const Job &job = it->second.job;
        if (job.acquired_until)
            job_leases.erase({*job.acquired_until, job.id});
        else if (auto q = queued.find(job.task_id); q != queued.end())
            q->second.erase({job.earliest_start(), it->second.seq, job.id});
        job_order.erase(it->second.seq);
        if (job.schedule_id) {
            if (job.scheduled_fire_time)
                fire_keys.erase({*job.schedule_id, *job.scheduled_fire_time});
            if (auto c = jobs_per_schedule.find(*job.schedule_id);
                c != jobs_per_schedule.end() && --c->second == 0)
                jobs_per_schedule.erase(c);
        }
        jobs.erase(it);
    }

    void finish_job(std::unordered_map<std::string, JobEntry>::iterator it, JobResult result,
                    const std::string &scheduler_id) {
        const Job &job = it->second.job;
        if (job.acquired_by)
            if (auto t = tasks.find(job.task_id); t != tasks.end() && t->second.running_jobs > 0)
                --t->second.running_jobs;
        const auto retry_at = detail::retry_time(job, result);
        record_history(detail::history_record(job, result, scheduler_id, retry_at));
        events.push_back(detail::released_event(job, result, scheduler_id, retry_at));
        if (retry_at) {
            requeue(it, *retry_at);
            return;
        }
        if (result.expires_at > result.finished_at) {
            if (auto old = results.find(result.job_id); old != results.end())
                result_expiry.erase({old->second.expires_at, old->first});
            result_expiry.emplace(result.expires_at, result.job_id);
            results.insert_or_assign(result.job_id, std::move(result));
        }
        erase_job(it);
    }

    // The job's next attempt: the same row, unleased, due at `at`.
    void requeue(std::unordered_map<std::string, JobEntry>::iterator it, time_point at) {
        Job &job = it->second.job;
        if (job.acquired_until)
            job_leases.erase({*job.acquired_until, job.id});
        job.acquired_by.reset();
        job.acquired_until.reset();
        job.start_deadline.reset(); // a misfire is about the first start
        ++job.attempt;
        job.retry_at = at;
        it->second.cancel_requested = false;
        queued[job.task_id].emplace(job.earliest_start(), it->second.seq, job.id);
    }

    void abandon_expired_job_leases(time_point at) {
        while (!job_leases.empty() && job_leases.begin()->first <= at) {
            auto it = jobs.find(job_leases.begin()->second);
            const std::string holder = it->second.job.acquired_by.value_or("");
            finish_job(
                it,
                detail::store_result(it->second.job, JobOutcome::abandoned, at,
                                     fmt::format("the lease of worker '{}' expired", holder)),
                holder);
        }
    }

    std::vector<Event> take_events() { return std::exchange(events, {}); }
};

MemoryDataStore::MemoryDataStore() : state_(std::make_unique<State>()) {
    state_->context.clock = std::make_shared<SystemClock>();
}

MemoryDataStore::~MemoryDataStore() = default;

asio::awaitable<void> MemoryDataStore::start(StoreContext context) {
    std::lock_guard lock(state_->mutex);
    if (!context.clock)
        context.clock = std::make_shared<SystemClock>();
    state_->context = std::move(context);
    co_return;
}

asio::awaitable<void> MemoryDataStore::stop() {
    co_return;
}

asio::awaitable<void> MemoryDataStore::add_task(Task task) {
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        if (auto it = s.tasks.find(task.id); it != s.tasks.end()) {
            task.running_jobs = it->second.running_jobs;
            it->second = std::move(task);
            s.events.push_back(TaskUpdated{s.now(), it->first});
        } else {
            const auto id = task.id;
            task.running_jobs = 0;
            s.tasks.emplace(id, std::move(task));
            s.events.push_back(TaskAdded{s.now(), id});
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
}

asio::awaitable<void> MemoryDataStore::remove_task(std::string task_id) {
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        s.require_task(task_id);
        s.tasks.erase(task_id);
        s.events.push_back(TaskRemoved{s.now(), task_id});
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
}

asio::awaitable<Task> MemoryDataStore::get_task(std::string task_id) {
    std::lock_guard lock(state_->mutex);
    co_return state_->require_task(task_id);
}

asio::awaitable<std::vector<Task>> MemoryDataStore::get_tasks() {
    std::lock_guard lock(state_->mutex);
    std::vector<Task> out;
    for (auto &[id, t] : state_->tasks)
        out.push_back(t);
    co_return out;
}

asio::awaitable<std::vector<Schedule>>
MemoryDataStore::get_schedules(std::optional<std::vector<std::string>> ids) {
    std::lock_guard lock(state_->mutex);
    std::vector<Schedule> out;
    if (ids) {
        for (auto &id : *ids)
            if (auto it = state_->schedules.find(id); it != state_->schedules.end())
                out.push_back(it->second);
    } else {
        for (auto &[id, s] : state_->schedules)
            out.push_back(s);
    }
    std::sort(out.begin(), out.end(), [](auto &a, auto &b) { return a.id < b.id; });
    out.erase(std::unique(out.begin(), out.end(), [](auto &a, auto &b) { return a.id == b.id; }),
              out.end());
    co_return out;
}

asio::awaitable<bool> MemoryDataStore::add_schedule(Schedule schedule, ConflictPolicy policy) {
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        s.require_task(schedule.task_id);
        schedule.acquired_by.reset();
        schedule.acquired_until.reset();
        // A new token refuses the release of whoever holds the old definition's lease.
        schedule.lease_token = ++s.token;
        auto it = s.schedules.find(schedule.id);
        if (it != s.schedules.end()) {
            if (policy == ConflictPolicy::do_nothing)
                co_return false;
            if (policy == ConflictPolicy::exception)
                throw Error(errc::conflicting_id,
                            fmt::format("schedule '{}' already exists", schedule.id));
            s.unindex_schedule(it->second);
            it->second = std::move(schedule);
            s.index_schedule(it->second);
            s.events.push_back(ScheduleUpdated{s.now(), it->second.id, it->second.task_id,
                                               it->second.next_fire_time});
        } else {
            const auto id = schedule.id;
            auto [ins, _] = s.schedules.emplace(id, std::move(schedule));
            s.index_schedule(ins->second);
            s.events.push_back(
                ScheduleAdded{s.now(), id, ins->second.task_id, ins->second.next_fire_time});
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
    co_return true;
}

asio::awaitable<void> MemoryDataStore::remove_schedules(std::vector<std::string> ids) {
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        const auto now = s.now();
        for (auto &id : ids) {
            auto it = s.schedules.find(id);
            if (it == s.schedules.end())
                continue;
            s.unindex_schedule(it->second);
            s.events.push_back(ScheduleRemoved{now, id, it->second.task_id, false});
            s.schedules.erase(it);
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
}

asio::awaitable<std::vector<Schedule>>
MemoryDataStore::acquire_schedules(std::string scheduler_id, duration lease, std::size_t limit) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    const auto now = s.now();
    // Expired leases make their schedules available again.
    while (!s.schedule_leases.empty() && s.schedule_leases.begin()->first <= now) {
        auto &sched = s.schedules.at(s.schedule_leases.begin()->second);
        s.schedule_leases.erase(s.schedule_leases.begin());
        sched.acquired_by.reset();
        sched.acquired_until.reset();
        s.index_schedule(sched);
    }
    std::vector<Schedule> out;
    while (out.size() < limit && !s.due.empty() && s.due.begin()->first <= now) {
        auto &sched = s.schedules.at(s.due.begin()->second);
        s.due.erase(s.due.begin());
        sched.acquired_by = scheduler_id;
        sched.acquired_until = now + lease;
        sched.lease_token = ++s.token;
        s.index_schedule(sched);
        out.push_back(sched);
    }
    co_return out;
}

asio::awaitable<void> MemoryDataStore::release_schedules(std::string scheduler_id,
                                                         std::vector<ScheduleRelease> releases) {
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        const auto now = s.now();
        for (auto &r : releases) {
            auto it = s.schedules.find(r.schedule_id);
            if (it == s.schedules.end())
                continue; // removed while it was processed: its fires go with it
            Schedule &sched = it->second;
            if (sched.acquired_by != scheduler_id || sched.lease_token != r.lease_token) {
                s.context.logger.log(
                    LogLevel::info,
                    fmt::format("schedule '{}': release by '{}' refused (lease lost or schedule "
                                "changed meanwhile)",
                                r.schedule_id, scheduler_id));
                continue;
            }
            for (auto &job : r.jobs) {
                try {
                    s.insert_job(std::move(job), now);
                } catch (const Error &e) {
                    s.context.logger.log(
                        LogLevel::error,
                        fmt::format("schedule '{}': job not created: {}", r.schedule_id, e.what()));
                }
            }
            s.unindex_schedule(sched);
            sched.acquired_by.reset();
            sched.acquired_until.reset();
            if (r.last_fire_time)
                sched.last_fire_time = r.last_fire_time;
            sched.next_fire_time = r.next_fire_time;
            sched.trigger_state = r.trigger_state;
            s.index_schedule(sched);
            s.events.push_back(ScheduleUpdated{now, sched.id, sched.task_id, sched.next_fire_time});
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
}

asio::awaitable<std::optional<time_point>> MemoryDataStore::get_next_schedule_run_time() {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    std::optional<time_point> t;
    if (!s.due.empty())
        t = s.due.begin()->first;
    if (!s.schedule_leases.empty() && (!t || s.schedule_leases.begin()->first < *t))
        t = s.schedule_leases.begin()->first;
    co_return t;
}

asio::awaitable<void> MemoryDataStore::add_jobs(std::vector<Job> jobs) {
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        // Check every job first: all are added or none.
        std::set<std::string> ids;
        std::set<std::pair<std::string, time_point>> keys;
        for (const auto &job : jobs) {
            s.require_task(job.task_id);
            if (s.jobs.contains(job.id) || !ids.insert(job.id).second)
                throw Error(errc::conflicting_id, fmt::format("job '{}' already exists", job.id));
            if (job.schedule_id && job.scheduled_fire_time) {
                const std::pair key{*job.schedule_id, *job.scheduled_fire_time};
                if (s.fire_keys.contains(key) || !keys.insert(key).second)
                    throw Error(errc::conflicting_id,
                                fmt::format("job '{}': schedule '{}' has a job for {} already",
                                            job.id, key.first, format_time(key.second)));
            }
        }
        const auto now = s.now();
        for (auto &job : jobs) {
            job.acquired_by.reset();
            job.acquired_until.reset();
            s.insert_job(std::move(job), now);
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
}

asio::awaitable<std::vector<Job>>
MemoryDataStore::get_jobs(std::optional<std::vector<std::string>> ids) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    std::vector<Job> out;
    if (ids) {
        std::vector<std::pair<std::uint64_t, const Job *>> found;
        for (auto &id : *ids)
            if (auto it = s.jobs.find(id); it != s.jobs.end())
                found.emplace_back(it->second.seq, &it->second.job);
        std::sort(found.begin(), found.end());
        found.erase(std::unique(found.begin(), found.end()), found.end());
        for (auto &[seq, job] : found)
            out.push_back(*job);
    } else {
        for (auto &[seq, id] : s.job_order)
            out.push_back(s.jobs.at(id).job);
    }
    co_return out;
}

asio::awaitable<JobAcquisition> MemoryDataStore::acquire_jobs(std::string scheduler_id,
                                                              duration lease, std::size_t limit,
                                                              std::vector<std::string> task_ids) {
    JobAcquisition out;
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        const auto now = s.now();
        s.abandon_expired_job_leases(now);

        // Merge the heads of each eligible task's queue, oldest first: O(T + k log n).
        using Head = std::pair<QueueKey, std::string>; // (queue key, task id)
        std::priority_queue<Head, std::vector<Head>, std::greater<>> heads;
        std::unordered_map<std::string, std::size_t> slots;
        auto push_head = [&](const std::string &task_id) {
            auto q = s.queued.find(task_id);
            if (q == s.queued.end() || q->second.empty())
                return;
            const QueueKey &head = *q->second.begin();
            if (std::get<0>(head) > now) {
                if (!out.next_ready_time || std::get<0>(head) < *out.next_ready_time)
                    out.next_ready_time = std::get<0>(head);
                return;
            }
            heads.emplace(head, task_id);
        };
        std::sort(task_ids.begin(), task_ids.end());
        task_ids.erase(std::unique(task_ids.begin(), task_ids.end()), task_ids.end());
        for (auto &id : task_ids) {
            auto t = s.tasks.find(id);
            if (t == s.tasks.end())
                continue;
            const Task &task = t->second;
            const std::size_t free =
                task.max_running_jobs ? static_cast<std::size_t>(
                                            std::max(0, *task.max_running_jobs - task.running_jobs))
                                      : std::numeric_limits<std::size_t>::max();
            if (free == 0)
                continue;
            slots[id] = free;
            push_head(id);
        }
        while (out.jobs.size() < limit && !heads.empty()) {
            auto [key, task_id] = heads.top();
            heads.pop();
            auto it = s.jobs.find(std::get<2>(key));
            s.queued[task_id].erase(key);
            Job &job = it->second.job;
            if (missed_deadline(job, now)) {
                s.finish_job(it,
                             detail::store_result(job, JobOutcome::missed_start_deadline, now,
                                                  fmt::format("start deadline {} passed",
                                                              format_time(*job.start_deadline))),
                             scheduler_id);
                push_head(task_id);
                continue;
            }
            job.acquired_by = scheduler_id;
            job.acquired_until = now + lease;
            job.lease_token = ++s.token;
            s.job_leases.emplace(*job.acquired_until, job.id);
            ++s.tasks.at(task_id).running_jobs;
            s.events.push_back(JobAcquired{now, job.id, scheduler_id, job.task_id, job.schedule_id,
                                           job.scheduled_fire_time});
            out.jobs.push_back(job);
            if (--slots[task_id] > 0)
                push_head(task_id);
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
    co_return out;
}

asio::awaitable<std::vector<bool>> MemoryDataStore::release_jobs(std::string scheduler_id,
                                                                 std::vector<JobRelease> releases) {
    std::vector<Event> events;
    std::vector<bool> applied;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        for (auto &[job, result] : releases) {
            auto it = s.jobs.find(job.id);
            if (it == s.jobs.end() || it->second.job.acquired_by != scheduler_id ||
                it->second.job.lease_token != job.lease_token) {
                s.context.logger.log(LogLevel::warning,
                                     fmt::format("job '{}': release by '{}' refused (its lease "
                                                 "expired or passed to another worker)",
                                                 job.id, scheduler_id));
                applied.push_back(false);
                continue;
            }
            s.finish_job(it, std::move(result), scheduler_id);
            applied.push_back(true);
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
    co_return applied;
}

asio::awaitable<std::optional<JobResult>> MemoryDataStore::get_job_result(std::string job_id) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    auto it = s.results.find(job_id);
    if (it == s.results.end() || it->second.expires_at <= s.now())
        co_return std::nullopt;
    co_return it->second;
}

asio::awaitable<JobStatus> MemoryDataStore::get_job_status(std::string job_id) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    JobStatus out;
    if (auto it = s.results.find(job_id); it != s.results.end() && it->second.expires_at > s.now())
        out.result = it->second;
    else
        out.pending = s.jobs.count(job_id) > 0;
    co_return out;
}

asio::awaitable<void> MemoryDataStore::extend_acquired_schedule_leases(std::string scheduler_id,
                                                                       std::vector<std::string> ids,
                                                                       duration lease) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    const auto now = s.now();
    const auto until = now + lease;
    for (auto &id : ids) {
        auto it = s.schedules.find(id);
        // An expired lease is not renewed: another scheduler may take the schedule over.
        if (it == s.schedules.end() || it->second.acquired_by != scheduler_id ||
            *it->second.acquired_until <= now)
            continue;
        s.unindex_schedule(it->second);
        it->second.acquired_until = until;
        s.index_schedule(it->second);
    }
    co_return;
}

asio::awaitable<std::vector<std::string>>
MemoryDataStore::extend_acquired_job_leases(std::string scheduler_id, std::vector<std::string> ids,
                                            duration lease) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    const auto now = s.now();
    const auto until = now + lease;
    std::vector<std::string> cancel;
    for (auto &id : ids) {
        auto it = s.jobs.find(id);
        // An expired lease is not renewed: the job is abandoned at the next acquisition.
        if (it == s.jobs.end() || it->second.job.acquired_by != scheduler_id ||
            *it->second.job.acquired_until <= now)
            continue;
        Job &job = it->second.job;
        s.job_leases.erase({*job.acquired_until, id});
        job.acquired_until = until;
        s.job_leases.emplace(until, id);
        if (it->second.cancel_requested)
            cancel.push_back(id);
    }
    co_return cancel;
}

asio::awaitable<JobHistoryPage> MemoryDataStore::get_job_history(JobHistoryFilter filter) {
    detail::check_history_filter(filter);
    std::optional<State::HistoryKey> before;
    if (filter.cursor) {
        const auto [at, seq] = detail::parse_history_cursor(*filter.cursor);
        before = State::HistoryKey{time_point(duration(at)), seq};
    }
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    JobHistoryPage page;
    State::HistoryKey last{};
    // False once the page is full (with a cursor) or the records are older than `since`.
    auto take = [&](const State::HistoryKey &key, const JobHistoryRecord &r) {
        if (filter.since && r.finished_at < *filter.since)
            return false;
        if ((filter.until && r.finished_at >= *filter.until) ||
            (filter.task_id && r.task_id != *filter.task_id) ||
            (filter.schedule_id && r.schedule_id != filter.schedule_id) ||
            (filter.outcome && r.outcome != *filter.outcome))
            return true;
        if (page.records.size() == filter.limit) {
            page.next_cursor = detail::history_cursor(last.first, last.second);
            return false;
        }
        page.records.push_back(r);
        last = key;
        return true;
    };
    // Newest first, from the cursor down, through the narrowest index the filter allows.
    const std::set<State::HistoryKey> *index = nullptr;
    if (filter.schedule_id || filter.task_id) {
        auto &by = filter.schedule_id ? s.history_by_schedule : s.history_by_task;
        auto it = by.find(filter.schedule_id ? *filter.schedule_id : *filter.task_id);
        if (it == by.end())
            co_return page;
        index = &it->second;
    }
    if (index) {
        auto end = before ? index->lower_bound(*before) : index->end();
        for (auto it = std::make_reverse_iterator(end); it != index->rend(); ++it)
            if (!take(*it, s.history.at(*it)))
                break;
    } else {
        auto end = before ? s.history.lower_bound(*before) : s.history.end();
        for (auto it = std::make_reverse_iterator(end); it != s.history.rend(); ++it)
            if (!take(it->first, it->second))
                break;
    }
    co_return page;
}

asio::awaitable<std::size_t> MemoryDataStore::prune_history(time_point before) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    std::size_t n = 0;
    for (auto it = s.history.begin(); it != s.history.end() && it->first.first < before; ++n) {
        if (auto t = s.history_by_task.find(it->second.task_id); t != s.history_by_task.end()) {
            t->second.erase(it->first);
            if (t->second.empty())
                s.history_by_task.erase(t);
        }
        if (it->second.schedule_id)
            if (auto c = s.history_by_schedule.find(*it->second.schedule_id);
                c != s.history_by_schedule.end()) {
                c->second.erase(it->first);
                if (c->second.empty())
                    s.history_by_schedule.erase(c);
            }
        it = s.history.erase(it);
    }
    co_return n;
}

asio::awaitable<JobCancellation> MemoryDataStore::cancel_job(std::string job_id,
                                                             std::string scheduler_id) {
    std::vector<Event> events;
    JobCancellation out = JobCancellation::removed;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        auto it = s.jobs.find(job_id);
        if (it == s.jobs.end())
            throw Error(
                errc::job_lookup,
                fmt::format("job '{}' not found (it is neither queued nor running)", job_id));
        const Job &job = it->second.job;
        if (job.acquired_by) {
            it->second.cancel_requested = true;
            s.events.push_back(JobCancelRequested{s.now(), job.id, job.task_id, *job.acquired_by});
            out = JobCancellation::requested;
        } else {
            s.finish_job(it,
                         detail::store_result(job, JobOutcome::cancelled, s.now(),
                                              "cancelled by cancel_job() before it started"),
                         scheduler_id);
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
    co_return out;
}

asio::awaitable<void> MemoryDataStore::register_worker(WorkerInfo worker, duration lease,
                                                       std::optional<std::string> replaces) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    const auto now = s.now();
    const auto current = s.worker(worker.identity);
    if (!detail::may_register(current, worker, replaces, now))
        throw detail::identity_in_use(*current, now);
    const auto identity = worker.identity;
    s.workers[identity] = detail::worker_row_at(current, std::move(worker), now, lease);
    std::vector<std::string> held;
    for (auto &[until, id] : s.schedule_leases)
        if (s.schedules.at(id).acquired_by == identity)
            held.push_back(id);
    for (auto &id : held) {
        auto &sched = s.schedules.at(id);
        s.unindex_schedule(sched);
        sched.acquired_by.reset();
        sched.acquired_until.reset();
        s.index_schedule(sched);
    }
    co_return;
}

asio::awaitable<bool> MemoryDataStore::renew_worker(WorkerInfo worker, duration lease) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    const auto now = s.now();
    const auto current = s.worker(worker.identity);
    if (!detail::may_renew(current, worker, now))
        co_return false;
    const auto identity = worker.identity;
    s.workers[identity] = detail::worker_row_at(current, std::move(worker), now, lease);
    co_return true;
}

asio::awaitable<void> MemoryDataStore::unregister_worker(std::string identity,
                                                         std::string boot_id) {
    std::lock_guard lock(state_->mutex);
    auto &s = *state_;
    if (auto it = s.workers.find(identity); it != s.workers.end() && it->second.boot_id == boot_id)
        s.workers.erase(it);
    co_return;
}

asio::awaitable<std::vector<WorkerInfo>> MemoryDataStore::get_workers() {
    std::lock_guard lock(state_->mutex);
    std::vector<WorkerInfo> out;
    out.reserve(state_->workers.size());
    for (auto &[id, w] : state_->workers)
        out.push_back(w);
    co_return out;
}

asio::awaitable<StoreCheck> MemoryDataStore::check() {
    std::lock_guard lock(state_->mutex);
    StoreCheck out;
    out.backend = "memory";
    out.location = "this process";
    std::map<std::string, int> leased;
    for (const auto &[id, entry] : state_->jobs)
        if (entry.job.acquired_by)
            ++leased[entry.job.task_id];
    for (const auto &[id, task] : state_->tasks)
        if (task.running_jobs != leased[id])
            out.problems.push_back(
                detail::running_counter_problem(id, task.running_jobs, leased[id]));
    co_return out;
}

asio::awaitable<void> MemoryDataStore::reap_abandoned_jobs(std::string scheduler_id) {
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        const auto now = s.now();
        std::vector<std::string> mine;
        for (auto &[until, id] : s.job_leases)
            if (s.jobs.at(id).job.acquired_by == scheduler_id)
                mine.push_back(id);
        for (auto &id : mine) {
            auto it = s.jobs.find(id);
            s.finish_job(it,
                         detail::store_result(
                             it->second.job, JobOutcome::abandoned, now,
                             fmt::format("worker '{}' restarted while the job ran", scheduler_id)),
                         scheduler_id);
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
}

asio::awaitable<void> MemoryDataStore::cleanup() {
    std::vector<Event> events;
    {
        std::lock_guard lock(state_->mutex);
        auto &s = *state_;
        const auto now = s.now();
        while (!s.result_expiry.empty() && s.result_expiry.begin()->first <= now) {
            s.results.erase(s.result_expiry.begin()->second);
            s.result_expiry.erase(s.result_expiry.begin());
        }
        s.abandon_expired_job_leases(now);
        std::erase_if(s.workers, [&](const auto &w) {
            return w.second.expires_at + detail::dead_worker_retention <= now;
        });
        std::vector<std::string> finished;
        for (auto &[id, sched] : s.schedules)
            if (!sched.next_fire_time && !sched.acquired_by && !s.jobs_per_schedule.contains(id))
                finished.push_back(id);
        for (auto &id : finished) {
            auto it = s.schedules.find(id);
            s.events.push_back(ScheduleRemoved{now, id, it->second.task_id, true});
            s.unindex_schedule(it->second);
            s.schedules.erase(it);
        }
        events = s.take_events();
    }
    co_await detail::publish_all(state_->context.broker, std::move(events));
}

} // namespace asched
