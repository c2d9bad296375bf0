// The admin endpoint on a real socket: routes, the JSON API against the store, the bearer
// token and the cross-site checks, the request bounds, keep-alive and stop.
#include "fixture.hpp"
#include "hooked_store.hpp"

#include <asched/admin_server.hpp>

#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

#include <sys/resource.h>
#include <unistd.h>

using namespace asched;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct Reply {
    int status = 0;
    std::map<std::string, std::string> headers; // lower-case names
    std::string body;
    json data() const { return json::parse(body); }
};

// Splits one response off `raw` (Content-Length framed); nullopt until it is all there.
std::optional<Reply> take_reply(std::string &raw) {
    const auto end = raw.find("\r\n\r\n");
    if (end == std::string::npos)
        return std::nullopt;
    Reply r;
    std::istringstream head(raw.substr(0, end));
    std::string line;
    std::getline(head, line);
    r.status = std::stoi(line.substr(9, 3));
    std::size_t length = 0;
    while (std::getline(head, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        const auto colon = line.find(':');
        std::string name = line.substr(0, colon);
        for (auto &c : name)
            c = char(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = line.substr(colon + 2);
    }
    length = std::stoul(r.headers.at("content-length"));
    if (raw.size() < end + 4 + length)
        return std::nullopt;
    r.body = raw.substr(end + 4, length);
    raw.erase(0, end + 4 + length);
    return r;
}

// Sends `request` as is and reads `count` responses (then what the server does: EOF or not).
asio::awaitable<std::vector<Reply>> exchange(asio::ip::tcp::endpoint at, std::string request,
                                             std::size_t count = 1) {
    auto ex = co_await asio::this_coro::executor;
    asio::ip::tcp::socket socket(ex);
    co_await socket.async_connect(at, asio::use_awaitable);
    co_await asio::async_write(socket, asio::buffer(request), asio::use_awaitable);
    std::string raw;
    std::vector<Reply> replies;
    std::array<char, 4096> chunk;
    while (replies.size() < count) {
        auto [ec, n] = co_await socket.async_read_some(
            asio::buffer(chunk), asio::experimental::as_tuple(asio::use_awaitable));
        raw.append(chunk.data(), n);
        while (auto r = take_reply(raw))
            replies.push_back(std::move(*r));
        if (ec)
            break;
    }
    co_return replies;
}

std::string request(std::string method, std::string target, std::string body = {},
                    std::vector<std::string> headers = {}) {
    std::string r = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    for (const auto &h : headers)
        r += h + "\r\n";
    if (!body.empty() || method == "POST")
        r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    return r + "\r\n" + body;
}

const std::string json_type = "Content-Type: application/json";

asio::awaitable<Reply> call(asio::ip::tcp::endpoint at, std::string raw) {
    auto replies = co_await exchange(at, std::move(raw));
    if (replies.empty())
        throw std::runtime_error("no reply");
    co_return replies.front();
}

int noop() {
    return 1;
}

// Built before the scheduler fixture, which takes the hooked store.
struct HooksHolder {
    std::shared_ptr<test::StoreHooks> hooks = std::make_shared<test::StoreHooks>();
};

struct AdminFixture : HooksHolder, test::SchedulerFixture {
    std::optional<AdminServer> server;

    static AsyncSchedulerOptions hooked(std::shared_ptr<test::StoreHooks> h) {
        auto o = base_options();
        o.data_store = std::make_shared<test::HookedStore>(std::make_shared<MemoryDataStore>(), h);
        return o;
    }
    AdminFixture() : test::SchedulerFixture(hooked(hooks)) {}

    void serve(AdminServerOptions options = {}) {
        server.emplace(s(), std::move(options));
        run(server->start());
    }
    asio::ip::tcp::endpoint at() const { return server->local_endpoint(); }
    Reply get(const std::string &target) { return run(call(at(), request("GET", target))); }
    Reply post(const std::string &target, const std::string &body = "{}",
               std::vector<std::string> headers = {json_type}) {
        return run(call(at(), request("POST", target, body, std::move(headers))));
    }

    ~AdminFixture() {
        if (server)
            run(server->stop());
    }
};

asio::awaitable<void> add_paused_and_active(AsyncScheduler &s) {
    co_await s.add_task("noop", noop);
    IntervalTrigger hourly({.hours = 1, .start_time = test::t0 + 1h});
    ScheduleOptions a;
    a.id = "hourly/a b"; // a '/' and a space: percent-encoded in the path
    co_await s.add_schedule("noop", hourly, a);
    CronTrigger nightly = CronTrigger::from_crontab("0 3 * * *");
    ScheduleOptions b;
    b.id = "nightly";
    b.paused = true;
    co_await s.add_schedule("noop", nightly, b);
}

} // namespace

BOOST_AUTO_TEST_SUITE(admin)

BOOST_FIXTURE_TEST_CASE(pages_metrics_health_and_the_read_api, AdminFixture) {
    run(add_paused_and_active(s()));
    serve();
    BOOST_TEST(server->url() == fmt::format("http://127.0.0.1:{}/", at().port()));

    const auto page = get("/");
    BOOST_TEST(page.status == 200);
    BOOST_TEST(page.headers.at("content-type") == "text/html; charset=utf-8");
    BOOST_TEST(page.body.find("<title>asched</title>") != std::string::npos);
    const auto js = get("/app.js");
    BOOST_TEST(js.headers.at("content-type") == "text/javascript; charset=utf-8");
    BOOST_TEST(js.body.find("/api/overview") != std::string::npos);
    BOOST_TEST(get("/style.css").status == 200);
    const auto missing = get("/nothing-here");
    BOOST_TEST(missing.status == 404);
    BOOST_TEST(missing.data()["error"] == "no such page: /nothing-here");

    const auto health = get("/healthz");
    BOOST_TEST(health.status == 200);
    BOOST_TEST(health.data()["status"] == "ok");

    const auto metrics = get("/metrics");
    BOOST_TEST(metrics.status == 200);
    BOOST_TEST(metrics.headers.at("content-type") == "text/plain; version=0.0.4; charset=utf-8");
    BOOST_TEST(metrics.body.find("asched_store_healthy 1") != std::string::npos);
    BOOST_TEST(metrics.body.find("asched_schedules") != std::string::npos);

    const auto schedules = get("/api/schedules").data();
    BOOST_REQUIRE(schedules.size() == 2u);
    const auto one = get("/api/schedules/hourly%2Fa%20b");
    BOOST_TEST(one.status == 200);
    BOOST_TEST(one.data()["id"] == "hourly/a b");
    BOOST_TEST(one.data()["next_fire_time"] == format_time(test::t0 + 1h));
    BOOST_TEST(!one.data().contains("lease_token"));
    const auto unknown = get("/api/schedules/nope");
    BOOST_TEST(unknown.status == 404);
    BOOST_TEST(unknown.data()["error"].get<std::string>().find("nope") != std::string::npos);

    const auto overview = get("/api/overview").data();
    BOOST_TEST(overview["identity"] == "test-node");
    BOOST_TEST(overview["schedules"].size() == 2u);
    BOOST_TEST(overview["tasks"][0]["id"] == "noop");
    BOOST_TEST(overview["health"]["status"] == "ok");
    BOOST_TEST(get("/api/tasks").data().size() == 1u);
    BOOST_TEST(get("/api/jobs").data().empty());
    BOOST_TEST(get("/api/results").data()["records"].empty());
    BOOST_TEST(get("/api/store/check").data()["backend"] == "memory");

    const auto bad_limit = get("/api/results?limit=0");
    BOOST_TEST(bad_limit.status == 400);
    BOOST_TEST(bad_limit.data()["error"] == "query 'limit': expected 1 to 10000, got '0'");
    const auto bad_outcome = get("/api/results?outcome=fine");
    BOOST_TEST(bad_outcome.status == 400);
    BOOST_TEST(bad_outcome.data()["error"].get<std::string>().find("'fine'") != std::string::npos);
    BOOST_TEST(get("/api/nothing").status == 404);
    BOOST_TEST(post("/healthz").status == 405);
}

BOOST_FIXTURE_TEST_CASE(changes_reach_the_store, AdminFixture) {
    run(add_paused_and_active(s()));
    serve();
    const std::string id = "/api/schedules/hourly%2Fa%20b";

    // A plain form post (what another site's page can send without asking) is refused.
    const auto form =
        post(id + "/pause", "x=1", {"Content-Type: application/x-www-form-urlencoded"});
    BOOST_TEST(form.status == 415);
    BOOST_TEST(!run(s().get_schedule("hourly/a b")).paused);
    const auto cross = post(id + "/pause", "{}", {json_type, "Origin: http://evil.example"});
    BOOST_TEST(cross.status == 403);
    BOOST_TEST(!run(s().get_schedule("hourly/a b")).paused);

    const auto paused = post(id + "/pause");
    BOOST_TEST(paused.status == 200);
    BOOST_TEST(paused.data()["paused"] == true);
    BOOST_TEST(run(s().get_schedule("hourly/a b")).paused);

    clock->advance(3h);
    const auto resumed = post(id + "/resume", R"({"from": "now"})");
    BOOST_TEST(resumed.status == 200);
    const Schedule after = run(s().get_schedule("hourly/a b"));
    BOOST_TEST(!after.paused);
    BOOST_TEST(*after.next_fire_time >= clock->now());
    const auto bad_from = post(id + "/resume", R"({"from": "yesterday"})");
    BOOST_TEST(bad_from.status == 400);
    BOOST_TEST(bad_from.data()["error"].get<std::string>().find("field 'from'") !=
               std::string::npos);

    const auto started = post("/api/schedules/nightly/run-now");
    BOOST_TEST(started.status == 200);
    const std::string job = started.data()["job_id"];
    const auto jobs = run(s().get_jobs());
    BOOST_REQUIRE(jobs.size() == 1u);
    BOOST_TEST(jobs[0].id == job);
    BOOST_TEST(get("/api/jobs/" + job).data()["state"] == "queued");
    BOOST_TEST(get("/api/jobs?task=noop").data().size() == 1u);
    BOOST_TEST(get("/api/jobs?running=1").data().empty());
    const auto cancelled = post("/api/jobs/" + job + "/cancel");
    BOOST_TEST(cancelled.status == 200);
    BOOST_TEST(cancelled.data()["cancellation"] == "removed");
    BOOST_TEST(run(s().get_jobs()).empty());
    BOOST_TEST(post("/api/jobs/" + job + "/cancel").status == 404);

    const auto removed = run(call(at(), request("DELETE", "/api/schedules/nightly", "", {})));
    BOOST_TEST(removed.status == 200);
    BOOST_TEST(!run(s().try_get_schedule("nightly")));
    BOOST_TEST(run(call(at(), request("DELETE", "/api/schedules/nightly"))).status == 404);
    BOOST_TEST(post("/api/schedules/nope/pause").status == 404);
    BOOST_TEST(get(id + "/pause").status == 405);
}

BOOST_FIXTURE_TEST_CASE(results_and_workers_of_a_running_scheduler, AdminFixture) {
    run(s().add_task("noop", noop));
    run(s().start_in_background());
    serve();
    const std::string job = run(s().add_job("noop", JobOptions{.result_expiration_time = 1h}));
    const auto result = run(s().get_job_result(job, true));
    BOOST_REQUIRE(result);
    const auto records = get("/api/results?task=noop&outcome=success").data()["records"];
    BOOST_REQUIRE(records.size() == 1u);
    BOOST_TEST(records[0]["job_id"] == job);
    BOOST_TEST(get("/api/results?outcome=error").data()["records"].empty());
    const auto workers = get("/api/workers").data();
    BOOST_REQUIRE(workers.size() == 1u);
    BOOST_TEST(workers[0]["identity"] == "test-node");
    BOOST_TEST(workers[0]["live"] == true);
    BOOST_TEST(get("/api/overview").data()["health"]["state"] == "started");
}

BOOST_FIXTURE_TEST_CASE(the_bearer_token_guards_changes_only, AdminFixture) {
    run(add_paused_and_active(s()));
    AdminServerOptions o;
    o.token = "s3cret";
    serve(o);
    const auto none = post("/api/schedules/nightly/resume");
    BOOST_TEST(none.status == 401);
    BOOST_TEST(none.headers.at("www-authenticate") == "Bearer realm=\"asched\"");
    BOOST_TEST(
        post("/api/schedules/nightly/resume", "{}", {json_type, "Authorization: Bearer nope"})
            .status == 401);
    BOOST_TEST(run(s().get_schedule("nightly")).paused);
    BOOST_TEST(get("/api/schedules").status == 200); // reads stay open
    const auto ok =
        post("/api/schedules/nightly/resume", "{}", {json_type, "Authorization: Bearer s3cret"});
    BOOST_TEST(ok.status == 200);
    BOOST_TEST(!run(s().get_schedule("nightly")).paused);
    BOOST_CHECK_THROW(AdminServer(s(), AdminServerOptions{.token = ""}), Error);
}

BOOST_FIXTURE_TEST_CASE(requests_past_the_bounds_are_refused, AdminFixture) {
    AdminServerOptions o;
    o.read_timeout = 300ms;
    serve(o);
    const auto big_header =
        run(call(at(), request("GET", "/healthz", "", {"X-Pad: " + std::string(9000, 'a')})));
    BOOST_TEST(big_header.status == 431);
    const auto big_body = post("/api/schedules/x/pause", std::string(70 * 1024, 'x'));
    BOOST_TEST(big_body.status == 413);
    const auto chunked = run(
        call(at(), "POST /api/schedules/x/pause HTTP/1.1\r\nHost: 127.0.0.1\r\n" + json_type +
                       "\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" + std::string(65536, 'x') +
                       "\r\n10\r\n" + std::string(16, 'x') + "\r\n0\r\n\r\n"));
    BOOST_TEST(chunked.status == 413);
    const auto garbage = run(call(at(), "NOT HTTP AT ALL\r\n\r\n"));
    BOOST_TEST(garbage.status == 400);
    BOOST_TEST(garbage.data()["error"].get<std::string>().find("malformed request") == 0u);
    // Half a request, then silence: 408 after the read timeout, and the connection closes.
    const auto slow = run(call(at(), "GET /healthz HTTP/1.1\r\nHost: 127"));
    BOOST_TEST(slow.status == 408);
    const auto rebound = run(
        call(at(),
             "GET /api/schedules HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n"));
    BOOST_TEST(rebound.status == 403);
    BOOST_TEST(run(call(at(), "GET /healthz HTTP/1.1\r\nHost: localhost:1\r\nConnection: "
                              "close\r\n\r\n"))
                   .status == 200);
}

BOOST_FIXTURE_TEST_CASE(keep_alive_pipelining_and_the_connection_cap, AdminFixture) {
    AdminServerOptions o;
    o.max_connections = 1;
    serve(o);
    const std::string two =
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        "GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    const auto replies = run(exchange(at(), two, 2));
    BOOST_REQUIRE(replies.size() == 2u);
    BOOST_TEST(replies[0].headers.at("connection") == "keep-alive");
    BOOST_TEST(replies[0].data()["status"] == "ok");
    BOOST_TEST(replies[1].data().is_array());
    BOOST_TEST(replies[1].headers.at("connection") == "close");

    // One idle keep-alive connection holds the only slot: the next one is told so.
    asio::ip::tcp::socket idle(ioc);
    idle.connect(at());
    const std::string first = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    asio::write(idle, asio::buffer(first));
    std::string raw;
    std::array<char, 1024> chunk;
    while (!take_reply(raw)) // served on the test's io_context: run it while reading
        raw.append(chunk.data(),
                   run(idle.async_read_some(asio::buffer(chunk), asio::use_awaitable)));
    const auto refused = get("/healthz");
    BOOST_TEST(refused.status == 503);
    // stop() closes the idle connection and returns.
    run(server->stop());
    auto [ec, n] = run(idle.async_read_some(asio::buffer(chunk),
                                            asio::experimental::as_tuple(asio::use_awaitable)));
    BOOST_TEST(n == 0u);
    BOOST_TEST(ec == asio::error::eof);
    server.reset();
}

BOOST_FIXTURE_TEST_CASE(healthz_says_503_and_why_when_the_store_fails, AdminFixture) {
    serve();
    hooks->reads_fail = true;
    const auto down = get("/healthz");
    BOOST_TEST(down.status == 503);
    BOOST_TEST(down.data()["status"] == "degraded");
    BOOST_TEST(down.data()["reason"] == "the data store fails: test: the store does not answer");
    BOOST_TEST(get("/metrics").body.find("asched_store_healthy 0") != std::string::npos);
    BOOST_TEST(get("/api/overview").data()["health"]["status"] == "degraded");
    hooks->reads_fail = false;
    BOOST_TEST(get("/healthz").status == 200);
}

// 100 clients pipeline requests for large answers and then stop reading, their sockets left
// open (a peer gone without a word): each write has a deadline, so every slot comes free and
// /healthz answers again.
BOOST_FIXTURE_TEST_CASE(clients_that_stop_reading_hold_no_slot, AdminFixture) {
    AdminServerOptions o;
    o.write_timeout = 300ms;
    serve(o);
    std::string burst;
    for (int i = 0; i < 200; ++i)
        burst += "GET /app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    std::vector<std::unique_ptr<asio::ip::tcp::socket>> stuck;
    for (int i = 0; i < 100; ++i) {
        auto c = std::make_unique<asio::ip::tcp::socket>(ioc);
        c->open(asio::ip::tcp::v4());
        c->set_option(asio::socket_base::receive_buffer_size(4096));
        c->connect(at());
        c->non_blocking(true);
        std::error_code ec;
        asio::write(*c, asio::buffer(burst), ec); // what fits; the rest never matters
        stuck.push_back(std::move(c));
    }
    // Bounded: the slots free themselves after the write deadline.
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (status != 200 && std::chrono::steady_clock::now() < deadline) {
        status = get("/healthz").status;
        if (status != 200)
            ioc.run_for(50ms);
    }
    BOOST_TEST(status == 200);
}

BOOST_FIXTURE_TEST_CASE(off_loopback_needs_a_token_or_a_named_host, AdminFixture) {
    AdminServer open_to_all(s(), AdminServerOptions{.address = "0.0.0.0"});
    try {
        run(open_to_all.start());
        BOOST_FAIL("a listener off loopback started without a token");
    } catch (const Error &e) {
        BOOST_TEST(std::string(e.what()).find("address '0.0.0.0' is not loopback and no token") !=
                       std::string::npos,
                   e.what());
    }
    run(open_to_all.stop());
    std::vector<std::string> warnings;
    AdminServerOptions named{.address = "0.0.0.0"};
    named.allow_unauthenticated = true;
    named.allowed_hosts = {"ops.example"};
    named.logger.sink = [&](LogLevel, std::string_view m) { warnings.emplace_back(m); };
    serve(named);
    BOOST_TEST(warnings.size() == 1u);
    const asio::ip::tcp::endpoint here(asio::ip::make_address("127.0.0.1"), at().port());
    const auto rebound = run(call(here, "GET /api/schedules HTTP/1.1\r\nHost: attacker.example\r\n"
                                        "Connection: close\r\n\r\n"));
    BOOST_TEST(rebound.status == 403);
    const auto named_ok = run(call(here, "GET /healthz HTTP/1.1\r\nHost: OPS.example:8080\r\n"
                                         "Connection: close\r\n\r\n"));
    BOOST_TEST(named_ok.status == 200);
}

// Out of file descriptors, the accept loop waits and says so once, then serves again.
BOOST_FIXTURE_TEST_CASE(out_of_descriptors_the_accept_loop_backs_off, AdminFixture) {
    std::vector<std::string> log;
    AdminServerOptions o;
    o.logger.sink = [&](LogLevel, std::string_view m) { log.emplace_back(m); };
    serve(o);
    asio::ip::tcp::socket client(ioc);
    client.open(asio::ip::tcp::v4());
    // A low soft limit for the moment, so that taking every descriptor left is quick.
    rlimit before{};
    ::getrlimit(RLIMIT_NOFILE, &before);
    const int probe = ::dup(0);
    ::close(probe);
    rlimit low = before;
    low.rlim_cur = static_cast<rlim_t>(probe) + 64;
    ::setrlimit(RLIMIT_NOFILE, &low);
    std::vector<int> filler;
    for (;;) { // take every descriptor left
        const int fd = ::dup(0);
        if (fd < 0)
            break;
        filler.push_back(fd);
    }
    client.connect(at()); // the kernel completes it; accept() has no descriptor to give
    ioc.run_for(300ms);
    for (int fd : filler)
        ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &before);
    BOOST_TEST(filler.size() > 10u);
    const std::string req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    asio::write(client, asio::buffer(req));
    std::string raw;
    std::array<char, 1024> chunk;
    std::optional<Reply> reply;
    while (!(reply = take_reply(raw)))
        raw.append(chunk.data(),
                   run(client.async_read_some(asio::buffer(chunk), asio::use_awaitable)));
    BOOST_TEST(reply->status == 200);
    BOOST_REQUIRE(log.size() == 2u);
    BOOST_TEST(log[0].find("cannot accept connections: Too many open files") != std::string::npos,
               log[0]);
    BOOST_TEST(log[1] == "admin server: accepting connections again");
}

BOOST_AUTO_TEST_CASE(a_port_in_use_is_named) {
    test::SchedulerFixture f;
    AdminServer first(f.s());
    f.run(first.start());
    AdminServer second(f.s(), AdminServerOptions{.port = first.local_endpoint().port()});
    try {
        f.run(second.start());
        BOOST_FAIL("a second listener on the same port started");
    } catch (const Error &e) {
        BOOST_TEST(
            std::string(e.what()).find(fmt::format("admin server: cannot listen on 127.0.0.1:{}",
                                                   first.local_endpoint().port())) == 0u);
    }
    AdminServer bad(f.s(), AdminServerOptions{.address = "localhost:80"});
    BOOST_CHECK_THROW(f.run(bad.start()), Error);
    f.run(first.stop());
    f.run(second.stop());
    f.run(bad.stop());
}

BOOST_AUTO_TEST_SUITE_END()
