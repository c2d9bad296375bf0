// The admin endpoint: an Asio acceptor and one coroutine per connection, all on a strand of
// the scheduler's executor. Requests are read by HttpRequestParser (http-parser) within the
// header, body and time bounds, routed here, and answered by the scheduler's own API.
#include "assets.hpp"
#include "http_request.hpp"

#include <asched/admin_server.hpp>
#include <asched/error.hpp>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <charconv>
#include <map>

namespace asched {

using asio::ip::tcp;
using nlohmann::json;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

Response json_response(int status, const json &body) {
    return {status,
            "application/json",
            body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
            {}};
}

Response error_response(int status, std::string_view message) {
    return json_response(status, json{{"error", message}});
}

int status_of(errc e) {
    switch (e) {
    case errc::task_lookup:
    case errc::schedule_lookup:
    case errc::job_lookup:
        return 404;
    case errc::conflicting_id:
    case errc::not_running:
    case errc::identity_in_use:
        return 409;
    case errc::invalid_argument:
    case errc::serialization:
    case errc::deserialization:
    case errc::max_iterations:
        return 400;
    case errc::store_failure:
        return 503;
    default:
        return 500;
    }
}

std::string serialize(const Response &r, bool keep_alive) {
    std::string head = fmt::format("HTTP/1.1 {} {}\r\n"
                                   "Content-Type: {}\r\n"
                                   "Content-Length: {}\r\n"
                                   "Cache-Control: no-store\r\n"
                                   "X-Content-Type-Options: nosniff\r\n"
                                   "Connection: {}\r\n",
                                   r.status, admin::status_text(r.status), r.content_type,
                                   r.body.size(), keep_alive ? "keep-alive" : "close");
    for (const auto &[k, v] : r.headers)
        head += fmt::format("{}: {}\r\n", k, v);
    head += "\r\n";
    return head + r.body;
}

// ---- JSON views of the model -----------------------------------------------------------------

json opt_time(const std::optional<time_point> &t) {
    return t ? json(format_time(*t)) : json();
}

json task_view(const Task &t) {
    json j = t;
    j["running_jobs"] = t.running_jobs;
    return j;
}

json schedule_view(const Schedule &s) {
    json j = s;
    j["describe"] = s.trigger ? s.trigger->describe() : "";
    j.erase("lease_token");
    return j;
}

json job_view(const Job &j) {
    json v = j;
    v["state"] = j.acquired_by ? "running" : "queued";
    v["earliest_start"] = format_time(j.earliest_start());
    v.erase("lease_token");
    return v;
}

json record_view(const JobHistoryRecord &r) {
    return {{"job_id", r.job_id},
            {"attempt", r.attempt},
            {"task_id", r.task_id},
            {"schedule_id", r.schedule_id ? json(*r.schedule_id) : json()},
            {"outcome", to_string(r.outcome)},
            {"scheduled_fire_time", opt_time(r.scheduled_fire_time)},
            {"started_at", opt_time(r.started_at)},
            {"finished_at", format_time(r.finished_at)},
            {"worker", r.worker},
            {"exception_type", r.exception_type ? json(*r.exception_type) : json()},
            {"exception_message", r.exception_message ? json(*r.exception_message) : json()},
            {"retry_at", opt_time(r.retry_at)}};
}

json worker_view(const WorkerInfo &w, time_point now) {
    return {{"identity", w.identity},
            {"boot_id", w.boot_id},
            {"host", w.host},
            {"pid", w.pid},
            {"role", to_string(w.role)},
            {"task_ids", w.task_ids},
            {"started_at", format_time(w.started_at)},
            {"last_seen", format_time(w.last_seen)},
            {"expires_at", format_time(w.expires_at)},
            {"live", w.live_at(now)}};
}

json health_view(const HealthReport &h) {
    json j{{"status", h.store_ok ? "ok" : "degraded"},
           {"state", to_string(h.state)},
           {"store_ok", h.store_ok},
           {"broker_connected", h.broker_connected}};
    if (!h.store_ok)
        j["reason"] = "the data store fails: " + h.store_problem;
    return j;
}

json check_view(const StoreCheck &c) {
    json recent = json::array();
    for (const auto &r : c.recent)
        recent.push_back({{"kind", r.kind},
                          {"id", r.id},
                          {"error", r.error},
                          {"quarantined_at", format_time(r.quarantined_at)}});
    return {{"backend", c.backend},
            {"location", c.location},
            {"schema_version", c.schema_version},
            {"found_version", c.found_version},
            {"problems", c.problems},
            {"quarantined", c.quarantined},
            {"recent_quarantined", recent},
            {"ok", c.problems.empty()}};
}

// ---- request checks ----------------------------------------------------------------------------

bool loopback_host(std::string_view host) {
    if (host.empty())
        return true; // HTTP/1.0 without Host
    if (host.front() == '[') {
        const auto end = host.find(']');
        return end != std::string_view::npos && host.substr(1, end - 1) == "::1";
    }
    host = host.substr(0, host.find(':'));
    if (host == "localhost")
        return true;
    std::error_code ec;
    const auto a = asio::ip::make_address_v4(std::string(host), ec);
    return !ec && a.is_loopback();
}

// The Host header's name, without a port ("[::1]:80" -> "::1", "Example.org:80" -> "example.org").
std::string host_name(std::string_view host) {
    std::string_view name = host;
    if (!name.empty() && name.front() == '[') {
        const auto end = name.find(']');
        name = end == std::string_view::npos ? name.substr(1) : name.substr(1, end - 1);
    } else {
        name = name.substr(0, name.find(':'));
    }
    std::string out(name);
    for (auto &c : out)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool allowed_host(std::string_view host, const std::vector<std::string> &allowed) {
    if (allowed.empty())
        return true;
    const std::string name = host_name(host);
    for (const auto &a : allowed)
        if (host_name(a) == name)
            return true;
    return false;
}

bool same_text(std::string_view a, std::string_view b) {
    // Compares every byte whatever the first difference, so timing tells nothing of the token.
    unsigned diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < a.size(); ++i)
        diff |= unsigned(static_cast<unsigned char>(a[i]) ^
                         static_cast<unsigned char>(i < b.size() ? b[i] : 0));
    return diff == 0;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto &c : out)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::optional<Response> refuse_mutation(const AdminServerOptions &options,
                                        const admin::HttpRequest &r) {
    if (options.token) {
        const auto auth = r.header("authorization");
        if (!same_text(auth, "Bearer " + *options.token))
            return Response{401,
                            "application/json",
                            json{{"error", auth.empty() ? "this server needs a bearer token "
                                                          "for changes: send Authorization: "
                                                          "Bearer <token>"
                                                        : "the bearer token is not the one "
                                                          "this server was given"}}
                                .dump(),
                            {{"WWW-Authenticate", "Bearer realm=\"asched\""}}};
    }
    if (r.method != "DELETE" && lower(r.header("content-type")).rfind("application/json", 0) != 0)
        return error_response(415, "a change must be sent with Content-Type: application/json");
    const auto origin = r.header("origin");
    if (!origin.empty() && origin != "http://" + std::string(r.header("host")))
        return error_response(
            403, fmt::format("Origin '{}' is not this server (Host '{}'): cross-site changes "
                             "are refused",
                             origin, r.header("host")));
    return std::nullopt;
}

std::string param(const admin::HttpRequest &r, const std::string &key) {
    const auto it = r.query.find(key);
    return it == r.query.end() ? std::string() : it->second;
}

JobHistoryFilter history_filter(const admin::HttpRequest &r, std::size_t default_limit) {
    JobHistoryFilter f;
    if (auto v = param(r, "task"); !v.empty())
        f.task_id = v;
    if (auto v = param(r, "schedule"); !v.empty())
        f.schedule_id = v;
    if (auto v = param(r, "outcome"); !v.empty()) {
        try {
            f.outcome = enum_from_string<JobOutcome>(v);
        } catch (const Error &) {
            throw Error(errc::invalid_argument,
                        fmt::format("query 'outcome': expected success, error, "
                                    "missed_start_deadline, cancelled, abandoned or timed_out, "
                                    "got '{}'",
                                    v));
        }
    }
    if (auto v = param(r, "since"); !v.empty()) {
        try {
            f.since = parse_time(v);
        } catch (const Error &e) {
            throw Error(errc::invalid_argument, fmt::format("query 'since': {}", e.what()));
        }
    }
    f.limit = default_limit;
    if (auto v = param(r, "limit"); !v.empty()) {
        std::size_t n = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || end != v.data() + v.size() || n < 1 || n > 10000)
            throw Error(errc::invalid_argument,
                        fmt::format("query 'limit': expected 1 to 10000, got '{}'", v));
        f.limit = n;
    }
    if (auto v = param(r, "cursor"); !v.empty())
        f.cursor = v;
    return f;
}

ResumeFrom resume_from(const admin::HttpRequest &r) {
    std::string from = param(r, "from");
    if (!r.body.empty()) {
        json body;
        try {
            body = json::parse(r.body);
        } catch (const json::exception &e) {
            throw Error(errc::invalid_argument,
                        fmt::format("request body: not JSON: {}", e.what()));
        }
        if (!body.is_object())
            throw Error(errc::invalid_argument, "request body: expected a JSON object");
        if (auto it = body.find("from"); it != body.end()) {
            if (!it->is_string())
                throw Error(errc::invalid_argument,
                            "request body: field 'from': expected \"stored\", \"now\" or a time");
            from = it->get<std::string>();
        }
    }
    if (from.empty() || from == "stored")
        return ResumeFrom::stored();
    if (from == "now")
        return ResumeFrom::now();
    try {
        return ResumeFrom::time(parse_time(from));
    } catch (const Error &e) {
        throw Error(
            errc::invalid_argument,
            fmt::format("field 'from': expected \"stored\", \"now\" or a time: {}", e.what()));
    }
}

} // namespace

// ---- the server's state -------------------------------------------------------------------------

struct AdminServer::State : std::enable_shared_from_this<State> {
    State(AsyncScheduler &s, AdminServerOptions o)
        : scheduler(&s), options(std::move(o)), strand(asio::make_strand(s.get_executor())),
          acceptor(strand), drained(strand, asio::steady_timer::time_point::max()) {}

    AsyncScheduler *scheduler;
    AdminServerOptions options;
    asio::strand<asio::any_io_executor> strand;
    tcp::acceptor acceptor;
    tcp::endpoint endpoint;
    bool loopback = false;
    bool started = false;
    bool stopping = false;
    std::size_t handlers = 0; // the accept loop and the connections
    std::uint64_t next_id = 0;
    std::map<std::uint64_t, std::shared_ptr<tcp::socket>> connections;
    asio::steady_timer drained;       // cancelled when the last handler ends during stop
    std::atomic<bool> stopped{false}; // stop() completed

    void handler_done() {
        if (--handlers == 0 && stopping)
            drained.cancel();
    }

    asio::awaitable<Response> route(admin::HttpRequest &r);
    asio::awaitable<Response> route_api(admin::HttpRequest &r);
};

namespace {

// False when the answer could not be written whole within write_timeout: the caller closes
// the connection (a peer that stopped reading, or left without a word, holds no slot).
asio::awaitable<bool> write_response(std::shared_ptr<AdminServer::State> st,
                                     std::shared_ptr<tcp::socket> socket, Response response,
                                     bool keep_alive) {
    const std::string bytes = serialize(response, keep_alive);
    asio::steady_timer timer(st->strand);
    timer.expires_after(st->options.write_timeout);
    auto write = asio::async_write(*socket, asio::buffer(bytes), tuple_awaitable);
    auto wait = timer.async_wait(tuple_awaitable);
    auto either = std::move(write) || std::move(wait);
    auto result = co_await std::move(either);
    if (result.index() == 1)
        co_return false;
    const auto [ec, n] = std::get<0>(result);
    (void)n;
    co_return !ec;
}

asio::awaitable<void> serve_connection(std::shared_ptr<AdminServer::State> st, std::uint64_t id,
                                       std::shared_ptr<tcp::socket> socket) {
    const admin::HttpLimits limits{st->options.max_header_bytes, st->options.max_body_bytes};
    asio::steady_timer timer(st->strand);
    std::string pending; // bytes of the next request read with the last one
    std::array<char, 8192> chunk;
    for (;;) {
        admin::HttpRequestParser parser(limits);
        if (!pending.empty()) {
            const auto used = parser.feed(pending);
            pending.erase(0, used);
        }
        timer.expires_after(st->options.read_timeout);
        bool timed_out = false, ended = false;
        while (!parser.complete() && !parser.error()) {
            auto read = socket->async_read_some(asio::buffer(chunk), tuple_awaitable);
            auto wait = timer.async_wait(tuple_awaitable);
            auto either = std::move(read) || std::move(wait);
            auto result = co_await std::move(either);
            if (result.index() == 1) {
                timed_out = true;
                break;
            }
            const auto [ec, n] = std::get<0>(result);
            if (ec) {
                parser.end_of_input();
                ended = true;
                break;
            }
            const std::string_view data(chunk.data(), n);
            const auto used = parser.feed(data);
            if (parser.complete())
                pending.append(data.substr(used));
        }
        if (st->stopping)
            break;
        if (timed_out) {
            if (parser.started()) {
                auto answer =
                    error_response(408, fmt::format("the request did not arrive within {}",
                                                    format_duration(st->options.read_timeout)));
                co_await write_response(st, socket, std::move(answer), false);
            }
            break;
        }
        if (parser.error()) {
            if (!ended) {
                auto answer = error_response(parser.error()->status, parser.error()->reason);
                co_await write_response(st, socket, std::move(answer), false);
            }
            break;
        }
        if (ended)
            break;
        auto &request = parser.request();
        auto answer = co_await st->route(request);
        const bool keep_alive = request.keep_alive && !st->stopping;
        const bool written = co_await write_response(st, socket, std::move(answer), keep_alive);
        if (!written || !keep_alive)
            break;
    }
    std::error_code ignored;
    socket->shutdown(tcp::socket::shutdown_both, ignored);
    socket->close(ignored);
    st->connections.erase(id);
}

asio::awaitable<void> accept_loop(std::shared_ptr<AdminServer::State> st) {
    // Out of descriptors, accept() fails at once and again: wait before the next try (up to a
    // second), and say so once per episode.
    auto backoff = std::chrono::milliseconds(0);
    asio::steady_timer pause(st->strand);
    for (;;) {
        auto socket = std::make_shared<tcp::socket>(st->strand);
        auto [ec] = co_await st->acceptor.async_accept(*socket, tuple_awaitable);
        if (st->stopping || ec == asio::error::operation_aborted)
            break;
        if (ec == asio::error::no_descriptors || ec.value() == ENFILE ||
            ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
            if (backoff.count() == 0)
                st->options.logger.log(
                    LogLevel::error,
                    fmt::format("admin server on {}:{}: cannot accept connections: {}; trying "
                                "again, less often, until it can",
                                st->endpoint.address().to_string(), st->endpoint.port(),
                                ec.message()));
            backoff = std::min(std::max(backoff * 2, std::chrono::milliseconds(10)),
                               std::chrono::milliseconds(1000));
            pause.expires_after(backoff);
            auto [waited] = co_await pause.async_wait(tuple_awaitable);
            (void)waited;
            if (st->stopping)
                break;
            continue;
        }
        if (ec)
            continue; // a connection that failed before it was accepted
        if (backoff.count() > 0) {
            st->options.logger.log(LogLevel::info, "admin server: accepting connections again");
            backoff = std::chrono::milliseconds(0);
        }
        if (st->connections.size() >= st->options.max_connections) {
            auto answer =
                error_response(503, fmt::format("this server serves {} connections at once",
                                                st->options.max_connections));
            co_await write_response(st, socket, std::move(answer), false);
            std::error_code ignored;
            socket->close(ignored);
            continue;
        }
        const auto id = st->next_id++;
        st->connections.emplace(id, socket);
        ++st->handlers;
        asio::co_spawn(st->strand, serve_connection(st, id, socket),
                       [st](std::exception_ptr) { st->handler_done(); });
    }
}

} // namespace

asio::awaitable<Response> AdminServer::State::route(admin::HttpRequest &r) {
    if (loopback && !loopback_host(r.header("host")))
        co_return error_response(
            403, fmt::format("Host '{}' is not this loopback server's name", r.header("host")));
    if (!loopback && !allowed_host(r.header("host"), options.allowed_hosts))
        co_return error_response(
            403,
            fmt::format("Host '{}' is not among this server's allowed hosts", r.header("host")));
    try {
        if (!r.segments.empty() && r.segments[0] == "api") {
            auto answer = co_await route_api(r);
            co_return answer;
        }
        if (r.method != "GET")
            co_return error_response(405, fmt::format("{} {}: only GET here", r.method, r.path));
        if (r.path == "/healthz") {
            const HealthReport h = co_await scheduler->health();
            co_return json_response(h.store_ok ? 200 : 503, health_view(h));
        }
        if (r.path == "/metrics") {
            auto text = co_await scheduler->metrics();
            co_return Response{
                200, "text/plain; version=0.0.4; charset=utf-8", std::move(text), {}};
        }
        if (const auto *asset = admin::find_asset(r.path == "/" ? "/index.html" : r.path))
            co_return Response{200, std::string(asset->content_type), std::string(asset->body), {}};
        co_return error_response(404, fmt::format("no such page: {}", r.path));
    } catch (const Error &e) {
        co_return error_response(status_of(e.code_value()), e.what());
    } catch (const std::exception &e) {
        co_return error_response(500, e.what());
    }
}

asio::awaitable<Response> AdminServer::State::route_api(admin::HttpRequest &r) {
    const auto &seg = r.segments;
    const bool get = r.method == "GET";
    const auto n = seg.size();
    const auto name = [&](std::size_t i) -> std::string_view {
        return i < n ? std::string_view(seg[i]) : std::string_view();
    };
    const bool is_mutation = !get;
    if (is_mutation) {
        if (auto refused = refuse_mutation(options, r))
            co_return *refused;
    }
    auto &s = *scheduler;
    const auto not_allowed = [&] {
        return error_response(405, fmt::format("{} {}: not allowed here", r.method, r.path));
    };

    if (name(1) == "overview" && n == 2) {
        if (!get)
            co_return not_allowed();
        json out;
        out["identity"] = s.identity();
        out["now"] = format_time(s.clock()->now());
        const HealthReport h = co_await s.health();
        out["health"] = health_view(h);
        if (h.store_ok) {
            const auto tasks = co_await s.get_tasks();
            const auto schedules = co_await s.get_schedules();
            const auto jobs = co_await s.get_jobs();
            JobHistoryFilter filter;
            filter.limit = options.recent_results;
            const auto page = co_await s.get_job_results(filter);
            const auto workers = co_await s.get_workers();
            const auto now = s.clock()->now();
            out["tasks"] = json::array();
            for (const auto &t : tasks)
                out["tasks"].push_back(task_view(t));
            out["schedules"] = json::array();
            for (const auto &x : schedules)
                out["schedules"].push_back(schedule_view(x));
            out["jobs"] = json::array();
            for (const auto &j : jobs)
                out["jobs"].push_back(job_view(j));
            out["results"] = json::array();
            for (const auto &rec : page.records)
                out["results"].push_back(record_view(rec));
            out["workers"] = json::array();
            for (const auto &w : workers)
                out["workers"].push_back(worker_view(w, now));
        }
        co_return json_response(200, out);
    }
    if (name(1) == "tasks" && n == 2) {
        if (!get)
            co_return not_allowed();
        const auto tasks = co_await s.get_tasks();
        json all = json::array();
        for (const auto &t : tasks)
            all.push_back(task_view(t));
        co_return json_response(200, all);
    }
    if (name(1) == "schedules") {
        if (n == 2) {
            if (!get)
                co_return not_allowed();
            const auto schedules = co_await s.get_schedules();
            json all = json::array();
            for (const auto &x : schedules)
                all.push_back(schedule_view(x));
            co_return json_response(200, all);
        }
        const std::string id = seg[2];
        if (n == 3) {
            if (get) {
                const Schedule sc = co_await s.get_schedule(id);
                co_return json_response(200, schedule_view(sc));
            }
            if (r.method == "DELETE") {
                const Schedule sc = co_await s.get_schedule(id); // 404 for an unknown id
                co_await s.remove_schedule(sc.id);
                co_return json_response(200, json{{"removed", id}});
            }
            co_return not_allowed();
        }
        if (n == 4 && r.method == "POST") {
            if (seg[3] == "pause") {
                co_await s.pause_schedule(id);
                const Schedule sc = co_await s.get_schedule(id);
                co_return json_response(200, schedule_view(sc));
            }
            if (seg[3] == "resume") {
                const ResumeFrom from = resume_from(r);
                co_await s.unpause_schedule(id, from);
                const Schedule sc = co_await s.get_schedule(id);
                co_return json_response(200, schedule_view(sc));
            }
            if (seg[3] == "run-now") {
                const std::string job = co_await s.run_schedule_now(id);
                co_return json_response(200, json{{"job_id", job}});
            }
        }
        if (n == 4 && (seg[3] == "pause" || seg[3] == "resume" || seg[3] == "run-now"))
            co_return not_allowed();
    }
    if (name(1) == "jobs") {
        if (n == 2) {
            if (!get)
                co_return not_allowed();
            const std::string task = param(r, "task");
            const std::string running = param(r, "running");
            const bool running_only = running == "1" || running == "true";
            const auto jobs = co_await s.get_jobs();
            json all = json::array();
            for (const auto &j : jobs)
                if ((task.empty() || j.task_id == task) && (!running_only || j.acquired_by))
                    all.push_back(job_view(j));
            co_return json_response(200, all);
        }
        const std::string id = seg[2];
        if (n == 3) {
            if (!get)
                co_return not_allowed();
            const auto jobs = co_await s.get_jobs();
            for (const auto &j : jobs)
                if (j.id == id)
                    co_return json_response(200, job_view(j));
            const auto result = co_await s.get_job_result(id, false);
            if (!result)
                co_return error_response(404, fmt::format("job '{}' not found", id));
            json v = *result;
            v["state"] = "finished";
            co_return json_response(200, v);
        }
        if (n == 4 && seg[3] == "cancel") {
            if (r.method != "POST")
                co_return not_allowed();
            const JobCancellation c = co_await s.cancel_job(id);
            co_return json_response(
                200,
                json{{"job_id", id},
                     {"cancellation", c == JobCancellation::removed ? "removed" : "requested"}});
        }
    }
    if (name(1) == "results" && n == 2) {
        if (!get)
            co_return not_allowed();
        const JobHistoryFilter filter = history_filter(r, 100);
        const auto page = co_await s.get_job_results(filter);
        json records = json::array();
        for (const auto &rec : page.records)
            records.push_back(record_view(rec));
        co_return json_response(
            200, json{{"records", records},
                      {"next_cursor", page.next_cursor ? json(*page.next_cursor) : json()}});
    }
    if (name(1) == "workers" && n == 2) {
        if (!get)
            co_return not_allowed();
        const auto workers = co_await s.get_workers();
        const auto now = s.clock()->now();
        json all = json::array();
        for (const auto &w : workers)
            all.push_back(worker_view(w, now));
        co_return json_response(200, all);
    }
    if (name(1) == "store" && name(2) == "check" && n == 3) {
        if (!get)
            co_return not_allowed();
        const StoreCheck c = co_await s.check_store();
        co_return json_response(200, check_view(c));
    }
    co_return error_response(404, fmt::format("no such API route: {} {}", r.method, r.path));
}

// ---- AdminServer -------------------------------------------------------------------------------

AdminServer::AdminServer(AsyncScheduler &scheduler, AdminServerOptions options)
    : state_(std::make_shared<State>(scheduler, std::move(options))) {
    if (state_->options.max_header_bytes < 256)
        throw Error(errc::invalid_argument,
                    fmt::format("admin server: max_header_bytes must be at least 256, got {}",
                                state_->options.max_header_bytes));
    if (state_->options.read_timeout <= duration::zero())
        throw Error(errc::invalid_argument, "admin server: read_timeout must be positive");
    if (state_->options.max_connections == 0)
        throw Error(errc::invalid_argument, "admin server: max_connections must be positive");
    if (state_->options.token && state_->options.token->empty())
        throw Error(errc::invalid_argument, "admin server: token must not be empty when set");
    if (state_->options.write_timeout <= duration::zero())
        throw Error(errc::invalid_argument, "admin server: write_timeout must be positive");
}

AdminServer::~AdminServer() {
    // Without stop(): close what is open so that the handlers end; they hold the state.
    auto st = state_;
    if (st->stopped)
        return;
    asio::post(st->strand, [st] {
        if (st->stopping)
            return;
        st->stopping = true;
        std::error_code ignored;
        st->acceptor.close(ignored);
        for (auto &[id, socket] : st->connections)
            socket->close(ignored);
    });
}

namespace {

asio::awaitable<void> do_start(std::shared_ptr<AdminServer::State> st) {
    if (st->started)
        throw Error(errc::not_running, "admin server: already started");
    std::error_code ec;
    const auto address = asio::ip::make_address(st->options.address, ec);
    if (ec)
        throw Error(errc::invalid_argument,
                    fmt::format("admin server: address '{}' is not an IP address: {}",
                                st->options.address, ec.message()));
    if (!address.is_loopback() && !st->options.token) {
        // Without a token, whoever reaches the port (or a page that rebinds a name to it) may
        // pause, remove and cancel.
        if (!st->options.allow_unauthenticated || st->options.allowed_hosts.empty())
            throw Error(errc::invalid_argument,
                        fmt::format("admin server: address '{}' is not loopback and no token is "
                                    "set: set a token (asched serve: $ASCHED_ADMIN_TOKEN), or "
                                    "allow_unauthenticated with allowed_hosts "
                                    "(--allow-unauthenticated --allowed-host NAME)",
                                    st->options.address));
        st->options.logger.log(
            LogLevel::warning,
            fmt::format("admin server: listening on {} without a token: anyone who reaches it "
                        "may change schedules",
                        st->options.address));
    }
    const tcp::endpoint wanted(address, st->options.port);
    st->acceptor.open(wanted.protocol(), ec);
    if (!ec)
        st->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
        st->acceptor.bind(wanted, ec);
    if (!ec)
        st->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        std::error_code ignored;
        st->acceptor.close(ignored);
        throw Error(errc::invalid_argument,
                    fmt::format("admin server: cannot listen on {}:{}: {}", st->options.address,
                                st->options.port, ec.message()));
    }
    st->endpoint = st->acceptor.local_endpoint();
    st->loopback = address.is_loopback();
    st->started = true;
    ++st->handlers;
    asio::co_spawn(st->strand, accept_loop(st), [st](std::exception_ptr) { st->handler_done(); });
    co_return;
}

asio::awaitable<void> do_stop(std::shared_ptr<AdminServer::State> st) {
    st->stopping = true;
    std::error_code ignored;
    st->acceptor.close(ignored);
    for (auto &[id, socket] : st->connections) {
        socket->shutdown(tcp::socket::shutdown_both, ignored);
        socket->close(ignored);
    }
    if (st->handlers > 0) {
        auto [ec] = co_await st->drained.async_wait(tuple_awaitable);
        (void)ec;
    }
    st->stopped = true;
}

} // namespace

asio::awaitable<void> AdminServer::start() {
    auto st = state_;
    co_await asio::co_spawn(st->strand, do_start(st), asio::use_awaitable);
}

asio::awaitable<void> AdminServer::stop() {
    auto st = state_;
    co_await asio::co_spawn(st->strand, do_stop(st), asio::use_awaitable);
}

asio::ip::tcp::endpoint AdminServer::local_endpoint() const {
    return state_->endpoint;
}

std::string AdminServer::url() const {
    const auto &e = state_->endpoint;
    if (e.address().is_v6())
        return fmt::format("http://[{}]:{}/", e.address().to_string(), e.port());
    return fmt::format("http://{}:{}/", e.address().to_string(), e.port());
}

} // namespace asched
