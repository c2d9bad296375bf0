// asched: the command-line tool. Inspects and changes a store that schedulers may be using at
// the same time, runs a worker whose tasks are programs, and serves the admin dashboard.
//
// Exit status: 0 done; 1 the store said no (an unknown id, a conflict) or failed; 2 bad usage
// (an unknown option, a malformed --store, cron line, time or JSON value).
#include <asched/admin_server.hpp>
#include <asched/asched.hpp>
#include <asched/command_task.hpp>
#include <asched/data_stores/mariadb_data_store.hpp>
#include <asched/data_stores/postgres_data_store.hpp>
#include <asched/data_stores/sqlite_data_store.hpp>
#include <asched/event_brokers/mqtt_event_broker.hpp>
#include <asched/event_brokers/postgres_event_broker.hpp>
#include <asched/event_brokers/redis_event_broker.hpp>
#include <asched/scheduler.hpp>

#include <asio/co_spawn.hpp>
#include <asio/ip/address.hpp>
#include <asio/use_future.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <pthread.h>

using namespace asched;
using nlohmann::json;

namespace {

// A usage error found after parsing (a bad value): exit status 2.
struct Usage : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// ---- the store ------------------------------------------------------------------------------

struct StoreSpec {
    std::string text; // as given
    std::shared_ptr<DataStore> store;
    std::shared_ptr<EventBroker> broker; // null: a local one (the others see changes at their poll)
};

// --broker redis:HOST[:PORT] | postgres:CONNINFO: the one the schedulers use, so that they hear
// of a change at once instead of at their next poll.
// HOST[:PORT] of --broker `text`: `port` is left alone without one.
void host_port(const std::string &rest, const std::string &text, std::string &host,
               std::uint16_t &port) {
    const auto colon = rest.rfind(':');
    host = rest.substr(0, colon);
    if (colon == std::string::npos)
        return;
    const std::string digits = rest.substr(colon + 1);
    char *end = nullptr;
    const long n = std::strtol(digits.c_str(), &end, 10);
    if (digits.empty() || *end != '\0' || n < 1 || n > 65535)
        throw Usage(fmt::format("--broker \"{}\": the port must be 1-65535", text));
    port = std::uint16_t(n);
}

std::shared_ptr<EventBroker> open_broker(const std::string &text, const std::string &channel) {
    if (text.empty())
        return nullptr;
    const auto colon = text.find(':');
    const std::string kind = text.substr(0, colon);
    const std::string rest = colon == std::string::npos ? "" : text.substr(colon + 1);
    if (kind == "postgres" && !rest.empty()) {
        PostgresEventBrokerOptions o;
        o.conninfo = rest;
        if (!channel.empty())
            o.channel = channel;
        return std::make_shared<PostgresEventBroker>(o);
    }
    if (kind == "redis" && !rest.empty()) {
        RedisEventBrokerOptions o;
        if (!channel.empty())
            o.channel = channel;
        host_port(rest, text, o.host, o.port);
        return std::make_shared<RedisEventBroker>(o);
    }
    if (kind == "mqtt" && !rest.empty()) {
        MqttEventBrokerOptions o;
        if (!channel.empty())
            o.topic_prefix = channel;
        host_port(rest, text, o.host, o.port);
        return std::make_shared<MqttEventBroker>(o);
    }
    throw Usage(fmt::format(
        "--broker \"{}\": expected redis:HOST[:PORT], mqtt:HOST[:PORT] or postgres:CONNINFO",
        text));
}

StoreSpec open_store(const std::string &text, const std::string &schema, bool migrate) {
    if (text.rfind("mariadb://", 0) == 0 || text.rfind("mysql://", 0) == 0) {
        auto o = MariaDbDataStoreOptions::from_url(text);
        o.migrate = migrate;
        // Shown in messages: never the password.
        const std::string shown = fmt::format(
            "mariadb://{}{}:{}/{}", o.user.empty() ? "" : o.user + "@", o.host, o.port, o.database);
        return {shown, std::make_shared<MariaDbDataStore>(o)};
    }
    const auto colon = text.find(':');
    const std::string kind = text.substr(0, colon);
    const std::string rest = colon == std::string::npos ? "" : text.substr(colon + 1);
    if (colon == std::string::npos || rest.empty() || (kind != "sqlite" && kind != "postgres"))
        throw Usage(fmt::format("--store \"{}\": expected sqlite:PATH, postgres:CONNINFO or "
                                "mariadb://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE]",
                                text));
    if (kind == "sqlite") {
        if (!migrate && !std::filesystem::exists(rest))
            throw Error(errc::store_failure, fmt::format("--store \"{}\": no such file", text));
        SqliteDataStoreOptions o;
        o.path = rest;
        o.migrate = migrate;
        return {text, std::make_shared<SqliteDataStore>(o)};
    }
    PostgresDataStoreOptions o;
    o.conninfo = rest;
    if (!schema.empty())
        o.schema = schema;
    o.migrate = migrate;
    o.connect_timeout = std::chrono::seconds(10);
    return {text, std::make_shared<PostgresDataStore>(o)};
}

// ---- output ---------------------------------------------------------------------------------

struct Output {
    bool as_json = false;
    TimeZone zone = TimeZone::utc();

    std::string time(const std::optional<time_point> &t) const { return t ? zone.format(*t) : "-"; }
    json time_json(const std::optional<time_point> &t) const {
        return t ? json(format_time(*t)) : json();
    }
};

// Aligned columns for people: a header in capitals, then the rows.
void print_table(const std::vector<std::string> &header,
                 const std::vector<std::vector<std::string>> &rows) {
    std::vector<std::size_t> width(header.size());
    for (std::size_t c = 0; c < header.size(); ++c)
        width[c] = header[c].size();
    for (const auto &r : rows)
        for (std::size_t c = 0; c < r.size() && c < width.size(); ++c)
            width[c] = std::max(width[c], r[c].size());
    const auto line = [&](const std::vector<std::string> &r) {
        std::string out;
        for (std::size_t c = 0; c < r.size(); ++c) {
            out += r[c];
            if (c + 1 < r.size())
                out += std::string(width[c] - r[c].size() + 2, ' ');
        }
        std::cout << out << "\n";
    };
    line(header);
    for (const auto &r : rows)
        line(r);
}

std::string or_dash(const std::optional<std::string> &s) {
    return s ? *s : "-";
}

// A duration as people read it: 850us, 12.4ms, 1.25s, 3m05s, 2h10m.
std::string human(duration d) {
    const auto us = d.count();
    if (us < 0)
        return "-" + human(-d);
    if (us < 1000)
        return fmt::format("{}us", us);
    if (us < 1'000'000)
        return fmt::format("{:.3g}ms", double(us) / 1e3);
    if (us < 60'000'000)
        return fmt::format("{:.3g}s", double(us) / 1e6);
    const auto s = us / 1'000'000;
    if (s < 3600)
        return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
}

std::string duration_text(std::optional<duration> d) {
    return d ? human(*d) : "-";
}

// One line of text (error messages can hold newlines), cut to `limit` characters.
std::string one_line(std::string s, std::size_t limit = 60) {
    for (auto &c : s)
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
    if (s.size() > limit)
        s = s.substr(0, limit - 3) + "...";
    return s;
}

// ---- values given on the command line ------------------------------------------------------

time_point read_time(const std::string &text, const char *option) {
    try {
        return parse_time(text);
    } catch (const Error &e) {
        throw Usage(fmt::format("{} \"{}\": {}", option, text, e.what()));
    }
}

json read_json_args(const std::string &text) {
    json args;
    try {
        args = json::parse(text);
    } catch (const std::exception &e) {
        throw Usage(fmt::format("--args \"{}\": not JSON: {}", text, e.what()));
    }
    if (!args.is_array())
        throw Usage(
            fmt::format("--args \"{}\": expected a JSON array of positional arguments", text));
    return args;
}

CrontabFields read_fields(const std::string &text) {
    static const std::map<std::string, CrontabFields> names{
        {"standard", CrontabFields::standard},
        {"with_seconds", CrontabFields::with_seconds},
        {"with_year", CrontabFields::with_year},
        {"with_seconds_and_year", CrontabFields::with_seconds_and_year},
        {"croner", CrontabFields::croner}};
    const auto it = names.find(text);
    if (it == names.end())
        throw Usage(fmt::format("--cron-fields \"{}\": expected standard, with_seconds, "
                                "with_year, with_seconds_and_year or croner",
                                text));
    return it->second;
}

// A command line for a command task, split like a shell would split words (single and double
// quotes, backslash escapes) but never run by one.
std::vector<std::string> split_words(const std::string &text, const std::string &what) {
    std::vector<std::string> out;
    std::string word;
    bool in_word = false;
    char quote = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (quote) {
            if (c == quote)
                quote = 0;
            else if (c == '\\' && quote == '"' && i + 1 < text.size())
                word += text[++i];
            else
                word += c;
        } else if (c == '\'' || c == '"') {
            quote = c;
            in_word = true;
        } else if (c == '\\' && i + 1 < text.size()) {
            word += text[++i];
            in_word = true;
        } else if (c == ' ' || c == '\t') {
            if (in_word)
                out.push_back(std::move(word));
            word.clear();
            in_word = false;
        } else {
            word += c;
            in_word = true;
        }
    }
    if (quote)
        throw Usage(fmt::format("{}: unterminated {} quote", what, quote));
    if (in_word)
        out.push_back(std::move(word));
    return out;
}

// ---- the commands ----------------------------------------------------------------------------

AsyncSchedulerOptions scheduler_options(const StoreSpec &store) {
    AsyncSchedulerOptions o;
    o.data_store = store.store;
    if (store.broker)
        o.event_broker = store.broker;
    // Warnings and errors on stderr; the rest of a one-shot command's log is noise.
    o.logger.level = LogLevel::warning;
    o.logger.sink = [](LogLevel, std::string_view message) {
        std::cerr << "asched: " << message << "\n";
    };
    return o;
}

json task_json(const Task &t) {
    json j = t;
    j["running_jobs"] = t.running_jobs;
    return j;
}

void tasks_list(Scheduler &s, const Output &out) {
    const auto tasks = s.get_tasks();
    if (out.as_json) {
        json all = json::array();
        for (const auto &t : tasks)
            all.push_back(task_json(t));
        std::cout << all.dump() << "\n";
        return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto &t : tasks)
        rows.push_back({t.id, t.job_executor,
                        t.max_running_jobs ? std::to_string(*t.max_running_jobs) : "unlimited",
                        std::to_string(t.running_jobs), duration_text(t.timeout),
                        t.retry ? std::to_string(t.retry->max_attempts) : "1"});
    print_table({"ID", "EXECUTOR", "MAX_RUNNING", "RUNNING", "TIMEOUT", "ATTEMPTS"}, rows);
}

json schedule_json(const Schedule &s, const Output &out) {
    json j = s;
    j["describe"] = s.trigger ? s.trigger->describe() : "";
    j["next_fire_time"] = out.time_json(s.next_fire_time);
    return j;
}

void schedules_list(Scheduler &s, const Output &out) {
    const auto schedules = s.get_schedules();
    if (out.as_json) {
        json all = json::array();
        for (const auto &sc : schedules)
            all.push_back(schedule_json(sc, out));
        std::cout << all.dump() << "\n";
        return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto &sc : schedules)
        rows.push_back({sc.id, sc.task_id, sc.paused ? "paused" : "active",
                        out.time(sc.next_fire_time), out.time(sc.last_fire_time),
                        sc.trigger ? one_line(sc.trigger->describe(), 70) : "-"});
    print_table({"ID", "TASK", "STATE", "NEXT_FIRE", "LAST_FIRE", "TRIGGER"}, rows);
}

void schedules_show(Scheduler &s, const Output &out, const std::string &id) {
    const Schedule sc = s.get_schedule(id);
    if (out.as_json) {
        std::cout << schedule_json(sc, out).dump() << "\n";
        return;
    }
    print_table({"FIELD", "VALUE"}, {{"id", sc.id},
                                     {"task", sc.task_id},
                                     {"state", sc.paused ? "paused" : "active"},
                                     {"trigger", sc.trigger ? sc.trigger->describe() : "-"},
                                     {"next_fire", out.time(sc.next_fire_time)},
                                     {"last_fire", out.time(sc.last_fire_time)},
                                     {"args", sc.args.dump()},
                                     {"coalesce", std::string(to_string(sc.coalesce))},
                                     {"misfire_grace", duration_text(sc.misfire_grace_time)},
                                     {"leased_by", or_dash(sc.acquired_by)},
                                     {"leased_until", out.time(sc.acquired_until)}});
}

struct AddSchedule {
    std::string task;
    std::string id;
    std::string cron;
    std::string cron_fields = "standard";
    bool vixie = false;
    double interval = 0;
    std::string at;
    std::string timezone = "UTC";
    std::string args = "[]";
    bool paused = false;
    bool replace = false;
    double keep_results = 0;
};

void schedules_add(Scheduler &s, const Output &out, const AddSchedule &a) {
    const int given = int(!a.cron.empty()) + int(a.interval > 0) + int(!a.at.empty());
    if (given != 1)
        throw Usage("schedules add: give exactly one of --cron, --interval or --at");
    TimeZone zone;
    try {
        zone = TimeZone(a.timezone);
    } catch (const Error &e) {
        throw Usage(fmt::format("--timezone \"{}\": {}", a.timezone, e.what()));
    }
    TriggerPtr trigger;
    const std::string what = !a.cron.empty()  ? fmt::format("--cron \"{}\"", a.cron)
                             : a.interval > 0 ? fmt::format("--interval {}", a.interval)
                                              : fmt::format("--at \"{}\"", a.at);
    try {
        if (!a.cron.empty()) {
            CrontabOptions o;
            o.fields = read_fields(a.cron_fields);
            o.day_match = a.vixie ? CronDayMatch::either : CronDayMatch::both;
            trigger =
                std::make_shared<const CronTrigger>(CronTrigger::from_crontab(a.cron, zone, o));
        } else if (a.interval > 0) {
            IntervalTriggerOptions o;
            o.seconds = a.interval;
            o.timezone = zone;
            trigger = std::make_shared<const IntervalTrigger>(o);
        } else {
            trigger = std::make_shared<const DateTrigger>(read_time(a.at, "--at"), zone);
        }
    } catch (const Error &e) {
        throw Usage(fmt::format("{}: {}", what, e.what()));
    }
    ScheduleOptions o;
    o.id = a.id;
    o.args = read_json_args(a.args);
    o.paused = a.paused;
    o.conflict_policy = a.replace ? ConflictPolicy::replace : ConflictPolicy::exception;
    o.job_result_expiration_time = from_seconds(a.keep_results);
    std::string id;
    try {
        id = s.add_schedule(a.task, trigger, o);
    } catch (const Error &e) {
        if (e.code() != make_error_code(errc::task_lookup))
            throw;
        throw Error(errc::task_lookup,
                    fmt::format("{}; a worker registers it when it starts, e.g. asched worker "
                                "--store ... --task {}='program args...'",
                                e.what(), a.task));
    }
    if (out.as_json)
        std::cout << json{{"id", id}}.dump() << "\n";
    else
        std::cout << id << "\n";
}

void schedules_resume(Scheduler &s, const std::string &id, const std::string &from) {
    ResumeFrom r = ResumeFrom::stored();
    if (from == "now")
        r = ResumeFrom::now();
    else if (from != "stored")
        r = ResumeFrom::time(read_time(from, "--from"));
    s.unpause_schedule(id, r);
}

json job_json(const Job &j, const Output &out) {
    json v = j;
    v["state"] = j.acquired_by ? "running" : "queued";
    v["earliest_start"] = out.time_json(j.earliest_start());
    return v;
}

void jobs_list(Scheduler &s, const Output &out, const std::string &task, bool running_only) {
    std::vector<Job> jobs;
    for (auto &j : s.get_jobs())
        if ((task.empty() || j.task_id == task) && (!running_only || j.acquired_by))
            jobs.push_back(std::move(j));
    if (out.as_json) {
        json all = json::array();
        for (const auto &j : jobs)
            all.push_back(job_json(j, out));
        std::cout << all.dump() << "\n";
        return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto &j : jobs)
        rows.push_back({j.id, j.task_id, or_dash(j.schedule_id),
                        j.acquired_by ? "running on " + *j.acquired_by : "queued",
                        out.time(j.earliest_start()), std::to_string(j.attempt)});
    print_table({"ID", "TASK", "SCHEDULE", "STATE", "START", "ATTEMPT"}, rows);
}

void jobs_show(Scheduler &s, const Output &out, const std::string &id) {
    for (const auto &j : s.get_jobs()) {
        if (j.id != id)
            continue;
        if (out.as_json) {
            std::cout << job_json(j, out).dump() << "\n";
            return;
        }
        print_table({"FIELD", "VALUE"},
                    {{"id", j.id},
                     {"task", j.task_id},
                     {"schedule", or_dash(j.schedule_id)},
                     {"state", j.acquired_by ? "running on " + *j.acquired_by : "queued"},
                     {"scheduled_fire", out.time(j.scheduled_fire_time)},
                     {"earliest_start", out.time(j.earliest_start())},
                     {"attempt", std::to_string(j.attempt)},
                     {"args", j.args.dump()},
                     {"timeout", duration_text(j.timeout)}});
        return;
    }
    // Finished: its kept result, if any (get_job_result throws job_lookup otherwise).
    const auto result = s.get_job_result(id, false);
    if (!result)
        throw Error(errc::job_lookup, fmt::format("job '{}' not found", id));
    if (out.as_json) {
        std::cout << json(*result).dump() << "\n";
        return;
    }
    print_table({"FIELD", "VALUE"},
                {{"id", result->job_id},
                 {"task", result->task_id},
                 {"schedule", or_dash(result->schedule_id)},
                 {"state", "finished: " + std::string(to_string(result->outcome))},
                 {"started", out.time(result->started_at)},
                 {"finished", out.time(result->finished_at)},
                 {"attempt", std::to_string(result->attempt)},
                 {"error", or_dash(result->exception_message)},
                 {"return_value", result->return_value.dump()}});
}

struct ResultsFilter {
    std::string task, schedule, outcome, since;
    std::size_t limit = 50;
};

void results_list(Scheduler &s, const Output &out, const ResultsFilter &f) {
    JobHistoryFilter filter;
    if (!f.task.empty())
        filter.task_id = f.task;
    if (!f.schedule.empty())
        filter.schedule_id = f.schedule;
    if (!f.outcome.empty()) {
        try {
            filter.outcome = enum_from_string<JobOutcome>(f.outcome);
        } catch (const Error &) {
            throw Usage(fmt::format("--outcome \"{}\": expected success, error, "
                                    "missed_start_deadline, cancelled, abandoned or timed_out",
                                    f.outcome));
        }
    }
    if (!f.since.empty())
        filter.since = read_time(f.since, "--since");
    if (f.limit < 1 || f.limit > 10000)
        throw Usage(fmt::format("--limit {}: expected 1 to 10000", f.limit));
    filter.limit = f.limit;
    const auto page = s.get_job_results(filter);
    if (out.as_json) {
        json all = json::array();
        for (const auto &r : page.records)
            all.push_back(
                {{"job_id", r.job_id},
                 {"attempt", r.attempt},
                 {"task_id", r.task_id},
                 {"schedule_id", r.schedule_id ? json(*r.schedule_id) : json()},
                 {"outcome", to_string(r.outcome)},
                 {"scheduled_fire_time", out.time_json(r.scheduled_fire_time)},
                 {"started_at", out.time_json(r.started_at)},
                 {"finished_at", out.time_json(r.finished_at)},
                 {"worker", r.worker},
                 {"exception_type", r.exception_type ? json(*r.exception_type) : json()},
                 {"exception_message", r.exception_message ? json(*r.exception_message) : json()},
                 {"retry_at", out.time_json(r.retry_at)}});
        std::cout << all.dump() << "\n";
        return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto &r : page.records)
        rows.push_back({out.time(r.finished_at), r.job_id, std::to_string(r.attempt), r.task_id,
                        std::string(to_string(r.outcome)),
                        r.started_at ? human(r.finished_at - *r.started_at) : "-", r.worker,
                        one_line(r.exception_message.value_or("-"))});
    print_table({"FINISHED", "JOB", "ATTEMPT", "TASK", "OUTCOME", "RAN", "WORKER", "ERROR"}, rows);
}

void workers_list(Scheduler &s, const Output &out) {
    const auto workers = s.get_workers();
    const auto now = SystemClock().now();
    if (out.as_json) {
        json all = json::array();
        for (const auto &w : workers)
            all.push_back({{"identity", w.identity},
                           {"boot_id", w.boot_id},
                           {"host", w.host},
                           {"pid", w.pid},
                           {"role", to_string(w.role)},
                           {"task_ids", w.task_ids},
                           {"started_at", out.time_json(w.started_at)},
                           {"last_seen", out.time_json(w.last_seen)},
                           {"expires_at", out.time_json(w.expires_at)},
                           {"live", w.live_at(now)}});
        std::cout << all.dump() << "\n";
        return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto &w : workers) {
        std::string tasks;
        for (const auto &t : w.task_ids)
            tasks += (tasks.empty() ? "" : ",") + t;
        rows.push_back({w.identity, w.live_at(now) ? "live" : "dead", w.host, std::to_string(w.pid),
                        std::string(to_string(w.role)), tasks.empty() ? "-" : one_line(tasks),
                        out.time(w.last_seen)});
    }
    print_table({"IDENTITY", "STATE", "HOST", "PID", "ROLE", "TASKS", "LAST_SEEN"}, rows);
}

// Exit status 1 when the check found a problem.
int store_check(Scheduler &s, const Output &out) {
    const StoreCheck c = s.check_store();
    if (out.as_json) {
        json recent = json::array();
        for (const auto &r : c.recent)
            recent.push_back({{"kind", r.kind},
                              {"id", r.id},
                              {"error", r.error},
                              {"quarantined_at", out.time_json(r.quarantined_at)}});
        std::cout << json{{"backend", c.backend},
                          {"location", c.location},
                          {"schema_version", c.schema_version},
                          {"problems", c.problems},
                          {"quarantined", c.quarantined},
                          {"recent_quarantined", recent},
                          {"ok", c.problems.empty()}}
                         .dump()
                  << "\n";
    } else {
        std::vector<std::vector<std::string>> rows{
            {"backend", c.backend},
            {"location", c.location},
            {"schema_version", std::to_string(c.schema_version)},
            {"integrity",
             c.problems.empty() ? "ok" : std::to_string(c.problems.size()) + " problem(s)"},
            {"quarantined_rows", std::to_string(c.quarantined)}};
        for (const auto &p : c.problems)
            rows.push_back({"problem", p});
        for (const auto &r : c.recent)
            rows.push_back(
                {"quarantined", fmt::format("{} '{}' at {}: {}", r.kind, r.id,
                                            out.time(r.quarantined_at), one_line(r.error, 100))});
        print_table({"CHECK", "RESULT"}, rows);
    }
    return c.problems.empty() ? 0 : 1;
}

void store_migrate(Scheduler &s, const Output &out) {
    const StoreCheck c = s.check_store();
    if (out.as_json) {
        std::cout << json{{"location", c.location},
                          {"schema_version", c.schema_version},
                          {"found_version", c.found_version}}
                         .dump()
                  << "\n";
        return;
    }
    if (c.found_version == c.schema_version)
        std::cout << fmt::format("{}: schema version {}, nothing to migrate\n", c.location,
                                 c.schema_version);
    else if (c.found_version == 0)
        std::cout << fmt::format("{}: created schema version {}\n", c.location, c.schema_version);
    else
        std::cout << fmt::format("{}: migrated from schema version {} to {}\n", c.location,
                                 c.found_version, c.schema_version);
}

// SIGINT and SIGTERM are taken by sigtimedwait or sigwaitinfo: block them before the scheduler's
// threads exist, so that no other thread receives them.
sigset_t block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    return signals;
}

struct WorkerArgs {
    std::vector<std::string> tasks; // NAME=command line
    std::string identity;
    int max_running = 1;
    std::size_t max_jobs = 100;
    double poll_interval = 5;
};

// Runs until SIGINT or SIGTERM (graceful stop) or until the scheduler stops on its own.
int run_worker(const StoreSpec &store, const WorkerArgs &w) {
    if (w.tasks.empty())
        throw Usage("worker: give at least one --task NAME='program args...'");
    // Every command is checked (command_task's own rules included) before a store is opened.
    std::vector<std::pair<std::string, std::shared_ptr<const TaskFunction>>> commands;
    for (const auto &t : w.tasks) {
        const auto eq = t.find('=');
        if (eq == std::string::npos || eq == 0)
            throw Usage(fmt::format("--task \"{}\": expected NAME='program args...'", t));
        auto argv = split_words(t.substr(eq + 1), fmt::format("--task \"{}\"", t));
        if (argv.empty())
            throw Usage(fmt::format("--task \"{}\": the command is empty", t));
        try {
            commands.emplace_back(t.substr(0, eq), command_task({.argv = std::move(argv)}));
        } catch (const Error &e) {
            throw Usage(fmt::format("--task \"{}\": {}", t, e.what()));
        }
    }
    sigset_t signals = block_stop_signals();

    AsyncSchedulerOptions o = scheduler_options(store);
    o.logger.level = LogLevel::info;
    o.logger.sink = [](LogLevel, std::string_view message) {
        std::cerr << "asched worker: " << message << "\n";
    };
    if (!w.identity.empty())
        o.identity = w.identity;
    o.max_concurrent_jobs = w.max_jobs;
    if (w.poll_interval <= 0)
        throw Usage(fmt::format("--poll-interval {}: must be positive", w.poll_interval));
    o.poll_interval = from_seconds(w.poll_interval);
    Scheduler s(o);
    for (auto &[name, fn] : commands) {
        TaskOptions t;
        t.max_running_jobs = w.max_running > 0 ? std::optional<int>(w.max_running) : unlimited;
        s.add_task_function(name, fn, t);
    }
    s.start_in_background();
    std::cerr << fmt::format("asched worker: '{}' runs {} task(s) on {}\n", s.async().identity(),
                             commands.size(), store.text);
    const timespec tick{0, 200'000'000};
    for (;;) {
        const int sig = sigtimedwait(&signals, nullptr, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
            std::cerr << "asched worker: stopping (the running jobs finish first)\n";
            s.stop();
            s.wait_until_stopped();
            return 0;
        }
        if (s.state() == RunState::stopped) {
            std::cerr << "asched worker: the scheduler stopped (see above)\n";
            return 1;
        }
    }
}

struct ServeArgs {
    std::string listen = "127.0.0.1:8080";
    std::string token_env = "ASCHED_ADMIN_TOKEN";
    bool allow_unauthenticated = false;
    std::vector<std::string> allowed_hosts;
};

// --listen ADDRESS:PORT, with an IPv6 address in brackets ([::1]:8080); port 0: a free one.
// Checked before the store is opened, so that a typo is a usage error (exit status 2).
std::pair<std::string, std::uint16_t> parse_listen(const std::string &text) {
    const auto colon = text.rfind(':');
    const auto bad = [&](const std::string &why) {
        return Usage(fmt::format("--listen \"{}\": {} (expected ADDRESS:PORT, e.g. "
                                 "127.0.0.1:8080 or [::1]:8080)",
                                 text, why));
    };
    if (colon == std::string::npos || colon == 0)
        throw bad("no port");
    std::string address = text.substr(0, colon);
    if (address.front() == '[') {
        if (address.size() < 3 || address.back() != ']')
            throw bad("an IPv6 address needs both brackets");
        address = address.substr(1, address.size() - 2);
    }
    const std::string digits = text.substr(colon + 1);
    char *end = nullptr;
    const long port = std::strtol(digits.c_str(), &end, 10);
    if (digits.empty() || *end != '\0' || port < 0 || port > 65535)
        throw bad(fmt::format("the port '{}' is not 0-65535", digits));
    std::error_code ec;
    asio::ip::make_address(address, ec);
    if (ec)
        throw bad(fmt::format("address '{}' is not an IP address", address));
    return {address, std::uint16_t(port)};
}

// Serves the dashboard, /metrics, /healthz and the JSON API over the store until SIGINT or
// SIGTERM; runs no job. The token, when set, comes from the environment (not argv, which
// every user of the host can read).
int run_serve(const StoreSpec &store, const ServeArgs &a,
              const std::pair<std::string, std::uint16_t> &listen) {
    AdminServerOptions options;
    options.address = listen.first;
    options.port = listen.second;
    if (const char *token = std::getenv(a.token_env.c_str()); token && *token)
        options.token = token;
    options.allow_unauthenticated = a.allow_unauthenticated;
    options.allowed_hosts = a.allowed_hosts;
    options.logger.level = LogLevel::warning;
    options.logger.sink = [](LogLevel, std::string_view message) {
        std::cerr << "asched serve: " << message << "\n";
    };
    sigset_t signals = block_stop_signals();
    Scheduler s(scheduler_options(store));
    AdminServer server(s.async(), options);
    asio::co_spawn(s.async().get_executor(), server.start(), asio::use_future).get();
    // The first line on stdout is the URL, so that a script can read where it listens.
    std::cout << server.url() << std::endl;
    std::cerr << fmt::format(
        "asched serve: {} on {}{}; stop with Ctrl-C\n", server.url(), store.text,
        options.token ? ", changes need the bearer token from $" + a.token_env : "");
    int sig = 0;
    do
        sig = sigwaitinfo(&signals, nullptr);
    while (sig != SIGINT && sig != SIGTERM);
    std::cerr << "asched serve: stopping\n";
    asio::co_spawn(s.async().get_executor(), server.stop(), asio::use_future).get();
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    CLI::App app{"asched: inspect and manage an asched store, or run a worker whose tasks are "
                 "programs"};
    app.require_subcommand(1);
    app.fallthrough();
    std::string store_text;
    bool as_json = false;
    std::string zone_name = "UTC";
    app.add_option("--store", store_text,
                   "sqlite:PATH, postgres:CONNINFO or mariadb://[USER[:PASSWORD]@]HOST[:PORT][/DB]")
        ->required();
    app.add_flag("--json", as_json, "print JSON for scripts instead of tables");
    app.add_option("--timezone", zone_name, "show times in this zone (default UTC)");
    std::string broker_text;
    app.add_option(
        "--broker", broker_text,
        "redis:HOST[:PORT], mqtt:HOST[:PORT] or postgres:CONNINFO, the schedulers' broker: "
        "they hear of "
        "a change at once (default: at their next poll)");
    std::string schema, channel;
    app.add_option("--schema", schema,
                   "the PostgreSQL store's schema, as the schedulers configured it (default "
                   "asched)");
    app.add_option("--channel", channel,
                   "the broker's channel (MQTT: topic prefix), as the schedulers configured it "
                   "(default asched_events on PostgreSQL, asched.events on Redis, asched on MQTT)");

    std::function<int(Scheduler &, const Output &)> action;
    // Only `store migrate` and `worker` create or migrate a store: every other command refuses a
    // missing one by name (a mistyped path or --schema must not leave an empty store behind).
    bool migrate = false;
    bool worker = false;

    auto *tasks = app.add_subcommand("tasks", "the tasks workers registered");
    tasks->require_subcommand(1);
    tasks->add_subcommand("list", "list the tasks")->callback([&] {
        action = [](Scheduler &s, const Output &o) { return tasks_list(s, o), 0; };
    });

    auto *schedules = app.add_subcommand("schedules", "when tasks run");
    schedules->require_subcommand(1);
    schedules->add_subcommand("list", "list the schedules")->callback([&] {
        action = [](Scheduler &s, const Output &o) { return schedules_list(s, o), 0; };
    });
    std::string id;
    auto *show = schedules->add_subcommand("show", "one schedule");
    show->add_option("ID", id, "schedule id")->required();
    show->callback([&] {
        action = [&](Scheduler &s, const Output &o) { return schedules_show(s, o, id), 0; };
    });
    AddSchedule add;
    auto *add_cmd = schedules->add_subcommand("add", "add a schedule for a task");
    add_cmd->add_option("TASK", add.task, "the task id")->required();
    add_cmd->add_option("--id", add.id, "the schedule id (default: a random UUID)");
    add_cmd->add_option("--cron", add.cron, "a crontab line, e.g. '*/5 * * * *' or @daily");
    add_cmd->add_option("--cron-fields", add.cron_fields,
                        "standard, with_seconds, with_year, with_seconds_and_year or croner");
    add_cmd->add_flag("--vixie", add.vixie,
                      "day and day_of_week both restricted: either may match (Vixie cron)");
    add_cmd->add_option("--interval", add.interval, "every this many seconds");
    add_cmd->add_option("--at", add.at, "once, at this time (ISO 8601 with an offset)");
    add_cmd->add_option("--timezone", add.timezone, "the trigger's zone (default UTC)");
    add_cmd->add_option("--args", add.args, "positional arguments as a JSON array");
    add_cmd->add_flag("--paused", add.paused, "add it paused");
    add_cmd->add_flag("--replace", add.replace, "replace a schedule with the same --id");
    add_cmd->add_option("--keep-results", add.keep_results,
                        "keep each job's result this many seconds (default 0)");
    add_cmd->callback([&] {
        action = [&](Scheduler &s, const Output &o) { return schedules_add(s, o, add), 0; };
    });
    auto *pause = schedules->add_subcommand("pause", "pause a schedule");
    pause->add_option("ID", id, "schedule id")->required();
    pause->callback(
        [&] { action = [&](Scheduler &s, const Output &) { return s.pause_schedule(id), 0; }; });
    std::string from = "stored";
    auto *resume = schedules->add_subcommand("resume", "resume a paused schedule");
    resume->add_option("ID", id, "schedule id")->required();
    resume->add_option("--from", from,
                       "now (skip the fires missed while paused), stored (catch up, by its "
                       "coalesce policy) or a TIME");
    resume->callback([&] {
        action = [&](Scheduler &s, const Output &) { return schedules_resume(s, id, from), 0; };
    });
    auto *remove = schedules->add_subcommand("remove", "remove a schedule");
    remove->add_option("ID", id, "schedule id")->required();
    remove->callback([&] {
        action = [&](Scheduler &s, const Output &) {
            s.get_schedule(id); // an unknown id is an error, not a silent no-op
            s.remove_schedule(id);
            return 0;
        };
    });
    auto *run_now = schedules->add_subcommand("run-now", "one job of the schedule, due now");
    run_now->add_option("ID", id, "schedule id")->required();
    run_now->callback([&] {
        action = [&](Scheduler &s, const Output &o) {
            const auto job = s.run_schedule_now(id);
            std::cout << (o.as_json ? json{{"job_id", job}}.dump() : job) << "\n";
            return 0;
        };
    });

    auto *jobs = app.add_subcommand("jobs", "queued and running jobs");
    jobs->require_subcommand(1);
    std::string task_filter;
    bool running_only = false;
    auto *jobs_list_cmd = jobs->add_subcommand("list", "list queued and running jobs");
    jobs_list_cmd->add_option("--task", task_filter, "only this task's");
    jobs_list_cmd->add_flag("--running", running_only, "only running ones");
    jobs_list_cmd->callback([&] {
        action = [&](Scheduler &s, const Output &o) {
            return jobs_list(s, o, task_filter, running_only), 0;
        };
    });
    auto *job_show = jobs->add_subcommand("show", "one job, or its kept result");
    job_show->add_option("ID", id, "job id")->required();
    job_show->callback(
        [&] { action = [&](Scheduler &s, const Output &o) { return jobs_show(s, o, id), 0; }; });
    auto *cancel = jobs->add_subcommand("cancel", "cancel a queued or running job");
    cancel->add_option("ID", id, "job id")->required();
    cancel->callback([&] {
        action = [&](Scheduler &s, const Output &o) {
            const auto done = s.cancel_job(id);
            const std::string what = done == JobCancellation::removed ? "cancelled" : "requested";
            std::cout << (o.as_json ? json{{"job_id", id}, {"cancellation", what}}.dump()
                          : done == JobCancellation::removed
                              ? "cancelled (it had not started)"
                              : "cancellation requested from the node running it")
                      << "\n";
            return 0;
        };
    });

    ResultsFilter filter;
    auto *results = app.add_subcommand("results", "the job history");
    results->require_subcommand(1);
    auto *results_list_cmd = results->add_subcommand("list", "finished attempts, newest first");
    results_list_cmd->add_option("--task", filter.task, "only this task's");
    results_list_cmd->add_option("--schedule", filter.schedule, "only this schedule's");
    results_list_cmd->add_option("--outcome", filter.outcome,
                                 "success, error, missed_start_deadline, cancelled, abandoned "
                                 "or timed_out");
    results_list_cmd->add_option("--since", filter.since, "finished at or after this TIME");
    results_list_cmd->add_option("--limit", filter.limit, "at most this many (default 50)");
    results_list_cmd->callback([&] {
        action = [&](Scheduler &s, const Output &o) { return results_list(s, o, filter), 0; };
    });

    auto *workers = app.add_subcommand("workers", "the worker registry");
    workers->require_subcommand(1);
    workers->add_subcommand("list", "live and recently dead schedulers")->callback([&] {
        action = [](Scheduler &s, const Output &o) { return workers_list(s, o), 0; };
    });

    auto *store = app.add_subcommand("store", "the store itself");
    store->require_subcommand(1);
    store->add_subcommand("check", "schema version, integrity, quarantined rows (read-only)")
        ->callback([&] {
            migrate = false;
            action = [](Scheduler &s, const Output &o) { return store_check(s, o); };
        });
    store->add_subcommand("migrate", "create or migrate the schema to this build's")->callback([&] {
        migrate = true;
        action = [](Scheduler &s, const Output &o) { return store_migrate(s, o), 0; };
    });

    WorkerArgs worker_args;
    auto *worker_cmd = app.add_subcommand("worker", "run jobs of command tasks until SIGTERM");
    worker_cmd->add_option("--task", worker_args.tasks, "NAME='program args...' (repeatable)");
    worker_cmd->add_option("--identity", worker_args.identity, "the scheduler identity");
    worker_cmd->add_option("--max-running", worker_args.max_running,
                           "each task's cap across nodes (default 1; 0: unlimited)");
    worker_cmd->add_option("--max-jobs", worker_args.max_jobs,
                           "jobs this worker runs at once (default 100)");
    worker_cmd->add_option("--poll-interval", worker_args.poll_interval,
                           "seconds between looks at the store without a broker event (default 5)");
    worker_cmd->callback([&] {
        worker = true;
        migrate = true;
    });

    ServeArgs serve_args;
    bool serve = false;
    auto *serve_cmd = app.add_subcommand(
        "serve", "serve the web dashboard, /metrics, /healthz and the JSON API until SIGTERM");
    serve_cmd->add_option("--listen", serve_args.listen,
                          "ADDRESS:PORT to listen on (default 127.0.0.1:8080; port 0: a free one, "
                          "printed on stdout)");
    serve_cmd->add_option("--token-env", serve_args.token_env,
                          "the environment variable whose value, when set, is the bearer token "
                          "that changes need (default ASCHED_ADMIN_TOKEN)");
    serve_cmd->add_flag("--allow-unauthenticated", serve_args.allow_unauthenticated,
                        "serve an address off loopback without a token (needs --allowed-host)");
    serve_cmd->add_option("--allowed-host", serve_args.allowed_hosts,
                          "a Host header value accepted off loopback (repeatable; a request "
                          "naming another host gets 403)");
    serve_cmd->callback([&] {
        serve = true;
        migrate = false; // a mistyped path is refused, not created as an empty store
    });

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    try {
        Output out;
        out.as_json = as_json;
        try {
            out.zone = TimeZone(zone_name);
        } catch (const Error &e) {
            throw Usage(fmt::format("--timezone \"{}\": {}", zone_name, e.what()));
        }
        const auto listen =
            serve ? parse_listen(serve_args.listen) : std::pair<std::string, std::uint16_t>();
        if (!schema.empty() && store_text.rfind("postgres:", 0) != 0)
            throw Usage(
                fmt::format("--schema \"{}\": only a PostgreSQL store has a schema", schema));
        if (!channel.empty() && broker_text.empty())
            throw Usage(fmt::format("--channel \"{}\": needs --broker", channel));
        StoreSpec spec = open_store(store_text, schema, migrate);
        spec.broker = open_broker(broker_text, channel);
        if (worker)
            return run_worker(spec, worker_args);
        if (serve)
            return run_serve(spec, serve_args, listen);
        Scheduler s(scheduler_options(spec));
        return action(s, out);
    } catch (const Usage &e) {
        std::cerr << "asched: " << e.what() << "\n";
        return 2;
    } catch (const Error &e) {
        std::cerr << "asched: " << e.what() << "\n";
        return e.code() == make_error_code(errc::invalid_argument) ? 2 : 1;
    } catch (const std::exception &e) {
        std::cerr << "asched: " << e.what() << "\n";
        return 1;
    }
}
