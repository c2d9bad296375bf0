// asched_test_node: one scheduler process for the crash, restart and cluster tests.
//
// usage: asched_test_node --store sqlite:PATH|postgres:CONNINFO|mariadb://URL|memory --identity ID
//          [--broker local|redis:PORT|postgres:CONNINFO|mqtt:PORT] [--schedules N] [--every S]
//          [--start-at ISO] [--job-ms MS] [--lease S] [--poll MS] [--run-for S]
//          [--ledger FILE] [--grace S] [--retry ATTEMPTS] [--cap N] [--intervals FILE]
//          [--clock-offset-ms MS] [--blocking-ms MS]
//
// Registers the task "work" (a coroutine that appends "job_id schedule_id fire_us identity
// start_us attempt" to the ledger, then waits --job-ms; with --retry, its jobs are retried up
// to ATTEMPTS attempts in all, 200 ms apart; --cap: its max_running_jobs, else unlimited;
// --intervals: each job appends "start_us end_us identity" there when it ends), adds N
// interval schedules "s-0".."s-N-1"
// (every S seconds from --start-at, coalesce all, results kept an hour; an existing schedule
// is kept), --clock-offset-ms: the scheduler's clock runs MS ahead of the system's (negative:
// behind; ledger times stay on the system clock), --blocking-ms: "work" is a plain function on
// the thread pool that blocks its thread for MS after its ledger line (R5's busy task), and
// runs until --run-for elapses or
// SIGTERM/SIGINT arrives, then stops gracefully and exits 0. Exit status 3: the identity is in use
// by a live scheduler (refused at start); 1: any other failure. Ledger lines are single write(2)
// calls on an O_APPEND file: a SIGKILL loses none that were written.
#include <asched/asched.hpp>

#include <asio.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

struct Config {
    std::string store;
    std::string broker = "local";
    std::string identity;
    int schedules = 0;
    double every = 1.0;
    std::optional<asched::time_point> start_at;
    int job_ms = 10;
    double lease = 30.0;
    int poll_ms = 500;
    double run_for = 0; // 0: until a signal
    double grace = 5.0;
    std::string ledger;
    unsigned retry = 0; // 0: no retry policy
    int cap = 0;        // 0: unlimited
    std::string intervals;
    std::int64_t clock_offset_ms = 0;
    int blocking_ms = 0; // >0: "work" blocks a pool thread this long instead of awaiting
};

// The system clock shifted by a fixed offset: a node whose clock is wrong (R16).
class OffsetClock final : public asched::Clock {
  public:
    explicit OffsetClock(asched::duration offset) : offset_(offset) {}
    asched::time_point now() const override { return system_.now() + offset_; }

  private:
    asched::SystemClock system_;
    asched::duration offset_;
};

[[noreturn]] void usage(const std::string &why) {
    std::fprintf(stderr, "asched_test_node: %s\n", why.c_str());
    std::exit(2);
}

Config parse(int argc, char **argv) {
    Config c;
    std::map<std::string, std::string> kv;
    for (int i = 1; i < argc; ++i) {
        const std::string key = argv[i];
        if (key.rfind("--", 0) != 0 || i + 1 >= argc)
            usage("bad argument " + key);
        kv[key.substr(2)] = argv[++i];
    }
    auto take = [&](const char *k) -> std::optional<std::string> {
        auto it = kv.find(k);
        if (it == kv.end())
            return std::nullopt;
        auto v = it->second;
        kv.erase(it);
        return v;
    };
    c.store = take("store").value_or("");
    c.identity = take("identity").value_or("");
    c.broker = take("broker").value_or("local");
    if (c.store.empty() || c.identity.empty())
        usage("--store and --identity are required");
    if (auto v = take("schedules"))
        c.schedules = std::stoi(*v);
    if (auto v = take("every"))
        c.every = std::stod(*v);
    if (auto v = take("start-at"))
        c.start_at = asched::parse_time(*v);
    if (auto v = take("job-ms"))
        c.job_ms = std::stoi(*v);
    if (auto v = take("lease"))
        c.lease = std::stod(*v);
    if (auto v = take("poll"))
        c.poll_ms = std::stoi(*v);
    if (auto v = take("run-for"))
        c.run_for = std::stod(*v);
    if (auto v = take("grace"))
        c.grace = std::stod(*v);
    c.ledger = take("ledger").value_or("");
    if (auto v = take("retry"))
        c.retry = unsigned(std::stoul(*v));
    if (auto v = take("cap"))
        c.cap = std::stoi(*v);
    c.intervals = take("intervals").value_or("");
    if (auto v = take("clock-offset-ms"))
        c.clock_offset_ms = std::stoll(*v);
    if (auto v = take("blocking-ms"))
        c.blocking_ms = std::stoi(*v);
    if (!kv.empty())
        usage("unknown option --" + kv.begin()->first);
    return c;
}

std::shared_ptr<asched::DataStore> make_store(const std::string &spec) {
    if (spec.rfind("sqlite:", 0) == 0)
        return std::make_shared<asched::SqliteDataStore>(
            asched::SqliteDataStoreOptions{.path = spec.substr(7)});
    if (spec.rfind("postgres:", 0) == 0)
        return std::make_shared<asched::PostgresDataStore>(
            asched::PostgresDataStoreOptions{.conninfo = spec.substr(9),
                                             .schema = "cluster",
                                             .connect_timeout = 2s,
                                             .query_timeout = 5s});
    if (spec.rfind("mariadb://", 0) == 0) {
        auto o = asched::MariaDbDataStoreOptions::from_url(spec);
        o.connect_timeout = 2s;
        o.query_timeout = 5s;
        return std::make_shared<asched::MariaDbDataStore>(o);
    }
    if (spec == "memory")
        return std::make_shared<asched::MemoryDataStore>();
    usage("unknown store " + spec);
}

std::shared_ptr<asched::EventBroker> make_broker(const std::string &spec) {
    if (spec == "local")
        return std::make_shared<asched::LocalEventBroker>();
    if (spec.rfind("redis:", 0) == 0)
        return std::make_shared<asched::RedisEventBroker>(
            asched::RedisEventBrokerOptions{.port = std::uint16_t(std::stoi(spec.substr(6)))});
    if (spec.rfind("postgres:", 0) == 0)
        return std::make_shared<asched::PostgresEventBroker>(
            asched::PostgresEventBrokerOptions{.conninfo = spec.substr(9), .connect_timeout = 2s});
    if (spec.rfind("mqtt:", 0) == 0)
        return std::make_shared<asched::MqttEventBroker>(
            asched::MqttEventBrokerOptions{.port = std::uint16_t(std::stoi(spec.substr(5)))});
    usage("unknown broker " + spec);
}

struct Ledger {
    int fd = -1;
    int intervals_fd = -1;
    void write(const std::string &line) const {
        if (fd >= 0 && ::write(fd, line.data(), line.size()) != ssize_t(line.size()))
            std::perror("ledger write");
    }
    void interval(const std::string &line) const {
        if (intervals_fd >= 0 &&
            ::write(intervals_fd, line.data(), line.size()) != ssize_t(line.size()))
            std::perror("intervals write");
    }
};

// Writes the job's ledger line; returns its start time.
asched::time_point write_start(const Ledger &ledger, const std::string &identity,
                               const asched::JobContext &job) {
    const auto now =
        std::chrono::time_point_cast<asched::duration>(std::chrono::system_clock::now());
    ledger.write(fmt::format(
        "{} {} {} {} {} {}\n", job.job_id, job.schedule_id.value_or("-"),
        job.scheduled_fire_time ? job.scheduled_fire_time->time_since_epoch().count() : 0, identity,
        now.time_since_epoch().count(), job.attempt));
    return now;
}

asio::awaitable<void> work(std::shared_ptr<const Ledger> ledger, std::string identity, int job_ms,
                           asched::JobContext &job) {
    const auto now = write_start(*ledger, identity, job);
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(job_ms));
    co_await t.async_wait(asio::use_awaitable);
    const auto end =
        std::chrono::time_point_cast<asched::duration>(std::chrono::system_clock::now());
    ledger->interval(fmt::format("{} {} {}\n", now.time_since_epoch().count(),
                                 end.time_since_epoch().count(), identity));
}

asio::awaitable<void> run(asched::AsyncScheduler &s, Config c,
                          std::shared_ptr<const Ledger> ledger) {
    auto task = [ledger, identity = c.identity, ms = c.job_ms](asched::JobContext &job) {
        return work(ledger, identity, ms, job);
    };
    asched::TaskOptions task_options;
    task_options.max_running_jobs = asched::unlimited;
    if (c.cap > 0)
        task_options.max_running_jobs = c.cap;
    if (c.retry > 0) {
        asched::RetryPolicy retry;
        retry.max_attempts = c.retry;
        retry.initial_delay = 200ms;
        retry.jitter = 0;
        task_options.retry = retry;
    }
    if (c.blocking_ms > 0) {
        auto busy = [ledger, identity = c.identity, ms = c.blocking_ms](asched::JobContext &job) {
            write_start(*ledger, identity, job);
            std::this_thread::sleep_for(
                std::chrono::milliseconds(ms)); // the scenario: a blocked thread
        };
        task_options.job_executor = "threadpool";
        co_await s.add_task("work", busy, task_options);
    } else {
        co_await s.add_task("work", task, task_options);
    }
    const auto start = c.start_at.value_or(
        std::chrono::time_point_cast<asched::duration>(std::chrono::system_clock::now()));
    for (int i = 0; i < c.schedules; ++i) {
        asched::IntervalTrigger trigger({.seconds = c.every, .start_time = start});
        asched::ScheduleOptions o;
        o.id = "s-" + std::to_string(i);
        o.coalesce = asched::CoalescePolicy::all;
        o.job_result_expiration_time = 1h;
        co_await s.add_schedule("work", trigger, o);
    }
    co_await s.start_in_background();
    std::printf("node %s: started\n", c.identity.c_str());
    std::fflush(stdout);

    auto ex = co_await asio::this_coro::executor;
    asio::signal_set signals(ex, SIGTERM, SIGINT);
    asio::steady_timer deadline(ex);
    if (c.run_for > 0)
        deadline.expires_after(std::chrono::milliseconds(std::int64_t(c.run_for * 1000)));
    else
        deadline.expires_at(asio::steady_timer::time_point::max());
    // A signal cancels the deadline; either way the wait below ends.
    signals.async_wait([&deadline](const std::error_code &ec, int) {
        if (!ec)
            deadline.cancel();
    });
    std::error_code ec;
    co_await deadline.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    signals.cancel();
    std::printf("node %s: stopping\n", c.identity.c_str());
    std::fflush(stdout);
}

} // namespace

int main(int argc, char **argv) {
    // Under `prlimit --fsize` (R12's full disk) a write past the limit then fails with EFBIG,
    // as one fails with ENOSPC on a full disk, instead of killing the process.
    std::signal(SIGXFSZ, SIG_IGN);
    const Config c = parse(argc, argv);
    auto ledger = std::make_shared<Ledger>();
    if (!c.ledger.empty()) {
        ledger->fd = ::open(c.ledger.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (ledger->fd < 0)
            usage("cannot open ledger " + c.ledger);
    }
    if (!c.intervals.empty()) {
        ledger->intervals_fd = ::open(c.intervals.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (ledger->intervals_fd < 0)
            usage("cannot open intervals file " + c.intervals);
    }
    asio::io_context ioc;
    asched::AsyncSchedulerOptions options;
    options.data_store = make_store(c.store);
    options.event_broker = make_broker(c.broker);
    options.identity = c.identity;
    options.lease_duration =
        std::chrono::duration_cast<asched::duration>(std::chrono::duration<double>(c.lease));
    options.poll_interval = std::chrono::milliseconds(c.poll_ms);
    options.stop_grace_period =
        std::chrono::duration_cast<asched::duration>(std::chrono::duration<double>(c.grace));
    options.logger.level = asched::LogLevel::warning;
    if (c.clock_offset_ms != 0)
        options.clock = std::make_shared<OffsetClock>(std::chrono::milliseconds(c.clock_offset_ms));
    asched::AsyncScheduler scheduler(ioc.get_executor(), std::move(options));
    std::exception_ptr failure;
    std::function<asio::awaitable<void>(asched::AsyncScheduler &)> body =
        [&c, ledger](asched::AsyncScheduler &s) { return run(s, c, ledger); };
    asio::co_spawn(ioc, scheduler.scoped(body), [&](std::exception_ptr e) { failure = e; });
    ioc.run();
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const asched::Error &e) {
            std::fprintf(stderr, "node %s failed: %s\n", c.identity.c_str(), e.what());
            return e.code_value() == asched::errc::identity_in_use ? 3 : 1;
        } catch (const std::exception &e) {
            std::fprintf(stderr, "node %s failed: %s\n", c.identity.c_str(), e.what());
            return 1;
        }
    }
    std::printf("node %s: stopped\n", c.identity.c_str());
    return 0;
}
