// The worker registry as the scheduler uses it: a row per running scheduler, registered at
// start (refusing an identity a live process holds), renewed with the job leases, deleted at
// stop; and the "no live worker runs this task" warning of add_job and add_schedule.
#include "scheduler_state.hpp"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <mutex>
#include <set>
#include <signal.h>
#include <unistd.h>

namespace asched::detail {
namespace {

// The boot ids of the schedulers registered by this process: a row with our own pid is a
// sibling scheduler (live) if its boot id is here, else an earlier process that had our pid.
std::mutex live_here_mutex;
std::set<std::string> live_here;

bool is_live_here(const std::string &boot_id) {
    std::lock_guard lock(live_here_mutex);
    return live_here.contains(boot_id);
}
void set_live_here(const std::string &boot_id, bool live) {
    std::lock_guard lock(live_here_mutex);
    if (live)
        live_here.insert(boot_id);
    else
        live_here.erase(boot_id);
}

// The kernel's boot id and this process's pid namespace: pids are comparable, and kill(pid,
// 0) means something, only between rows with the same scope. "" when either is unreadable.
std::string read_process_scope() {
    std::string boot;
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    if (!std::getline(in, boot) || boot.empty())
        return {};
    char ns[128] = {};
    const auto n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    if (n <= 0)
        return {};
    return boot + "/" + std::string(ns, std::size_t(n));
}

const std::string &process_scope() {
    static const std::string scope = read_process_scope();
    return scope;
}

// Whether the process of `row` has certainly ended (so its row, though fresh, is stale).
bool process_gone(const WorkerInfo &row) {
    const auto &scope = process_scope();
    if (scope.empty() || row.process_scope != scope || row.pid <= 0)
        return false;
    if (row.pid == ::getpid())
        return !is_live_here(row.boot_id);
    return ::kill(pid_t(row.pid), 0) != 0 && errno == ESRCH;
}

WorkerInfo worker_info(const SchedulerState &self) {
    WorkerInfo w;
    w.identity = self.identity;
    w.boot_id = self.boot_id;
    w.host = host_name();
    w.pid = ::getpid();
    w.process_scope = process_scope();
    w.role = self.options.role;
    if (self.options.role != SchedulerRole::scheduler) {
        for (const auto &[id, fn] : self.functions)
            w.task_ids.push_back(id);
        std::sort(w.task_ids.begin(), w.task_ids.end());
    }
    return w;
}

} // namespace

const std::string &host_name() {
    static const std::string name = [] {
        char host[256] = {};
        if (::gethostname(host, sizeof host - 1) != 0)
            return std::string("localhost");
        return std::string(host);
    }();
    return name;
}

asio::awaitable<bool> register_worker(std::shared_ptr<SchedulerState> self) {
    if (!self->boot_id.empty())
        set_live_here(self->boot_id, false);
    {
        std::lock_guard lock(self->boot_id_mutex);
        self->boot_id = make_uuid();
    }
    self->worker_registered = false;
    self->worker_dirty = false;
    const auto info = worker_info(*self);
    try {
        auto rows = co_await self->store->get_workers();
        std::optional<std::string> replaces;
        for (const auto &row : rows)
            if (row.identity == self->identity && row.boot_id != self->boot_id &&
                row.live_at(self->clock->now()) && process_gone(row)) {
                self->log(LogLevel::info,
                          "scheduler '{}': replacing the registry row of pid {} on this host "
                          "(started {}; that process is gone)",
                          self->identity, row.pid, format_time(row.started_at));
                replaces = row.boot_id;
            }
        auto call = self->store->register_worker(info, self->options.lease_duration, replaces);
        co_await std::move(call);
        self->worker_registered = true;
        set_live_here(self->boot_id, true);
    } catch (const std::exception &e) {
        if (auto *refused = dynamic_cast<const Error *>(&e);
            refused && refused->code_value() == errc::identity_in_use)
            throw;
        self->log(LogLevel::warning,
                  "scheduler '{}': registering in the worker registry failed ({}); the lease "
                  "renewal tries again",
                  self->identity, e.what());
    }
    co_return self->worker_registered;
}

asio::awaitable<void> renew_worker(std::shared_ptr<SchedulerState> self) {
    const auto info = worker_info(*self);
    self->worker_dirty = false;
    bool renewed = false, failed = false;
    try {
        auto call = self->store->renew_worker(info, self->options.lease_duration);
        renewed = co_await std::move(call);
    } catch (const std::exception &e) {
        failed = true;
        self->worker_dirty = true;
        self->log(LogLevel::warning, "scheduler '{}': worker registry renewal failed: {}",
                  self->identity, e.what());
    }
    if (failed)
        co_return;
    if (renewed) {
        if (!self->worker_registered) {
            self->worker_registered = true;
            set_live_here(self->boot_id, true);
        }
        co_return;
    }
    // Another process registered this identity while this one looked dead (no renewal for a
    // whole lease: paused, or cut off from the store). Its start reaped our jobs; going on
    // would run them twice.
    self->worker_registered = false;
    set_live_here(self->boot_id, false);
    crash(*self, fmt::format("identity '{}' was taken over by another scheduler while this one "
                             "was seen as dead (no renewal within lease_duration {}); stopping "
                             "so that no job runs twice",
                             self->identity, format_duration(self->options.lease_duration)));
}

asio::awaitable<void> unregister_worker(std::shared_ptr<SchedulerState> self) {
    if (!self->worker_registered)
        co_return;
    self->worker_registered = false;
    set_live_here(self->boot_id, false);
    try {
        auto call = self->store->unregister_worker(self->identity, self->boot_id);
        co_await std::move(call);
    } catch (const std::exception &e) {
        self->log(LogLevel::warning,
                  "scheduler '{}': deleting its worker registry row failed ({}); it expires "
                  "after lease_duration",
                  self->identity, e.what());
    }
}

asio::awaitable<std::optional<std::size_t>> live_workers_of(std::shared_ptr<SchedulerState> self,
                                                            std::string task_id) {
    std::vector<WorkerInfo> rows;
    try {
        auto call = self->store->get_workers();
        rows = co_await std::move(call);
    } catch (const std::exception &) {
        co_return std::nullopt;
    }
    const auto now = self->clock->now();
    const auto n = std::count_if(rows.begin(), rows.end(), [&](const WorkerInfo &w) {
        return w.live_at(now) &&
               std::find(w.task_ids.begin(), w.task_ids.end(), task_id) != w.task_ids.end();
    });
    co_return std::size_t(n);
}

asio::awaitable<void> warn_if_unserved(std::shared_ptr<SchedulerState> self, std::string task_id,
                                       std::string what) {
    if (self->options.role != SchedulerRole::scheduler && self->functions.contains(task_id))
        co_return; // this scheduler runs it (once started)
    if (auto it = self->served_checked.find(task_id);
        it != self->served_checked.end() && it->second > steady::now())
        co_return;
    auto call = live_workers_of(self, task_id);
    const auto live = co_await std::move(call);
    self->served_checked[task_id] =
        steady::now() + std::chrono::duration_cast<steady::duration>(self->options.lease_duration);
    if (live && *live == 0)
        self->log(LogLevel::warning,
                  "{}: no live worker has registered task '{}' (see get_workers()); its jobs wait "
                  "until a scheduler that runs it starts",
                  what, task_id);
}

} // namespace asched::detail
