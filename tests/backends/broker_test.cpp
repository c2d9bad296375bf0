// The event-broker contract, run against LocalEventBroker, RedisEventBroker (on a real
// redis-server) and PostgresEventBroker (on a real PostgreSQL), plus what only a networked
// broker has: other nodes, reconnecting, payload limits, a heartbeat.
#include "servers.hpp"
#include "test_support.hpp"

#include <asched/event_brokers/mqtt_event_broker.hpp>
#include <asched/event_brokers/postgres_event_broker.hpp>

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>

#include <algorithm>
#include <signal.h>
#include <sstream>

using namespace asched;
using namespace std::chrono_literals;
using test::eventually;

namespace {

const char *const broker_kinds[] = {"local", "redis", "postgres", "mqtt"};
const auto brokers = boost::unit_test::data::make(broker_kinds);

struct Inbox {
    std::vector<Event> events;
    std::vector<std::string> ids() const {
        std::vector<std::string> out;
        for (auto &e : events)
            if (auto *j = std::get_if<JobAdded>(&e))
                out.push_back(j->job_id);
        return out;
    }
};

// Whether a networked broker is connected and receiving.
bool up(const RedisEventBroker &b) {
    return b.subscribed();
}
bool up(const PostgresEventBroker &b) {
    return b.listening();
}
bool up(const MqttEventBroker &b) {
    return b.subscribed();
}

test::PostgresServer &postgres() {
    return test::shared_postgres();
}

struct BrokerFixture {
    asio::io_context ioc;
    std::optional<test::RedisServer> redis;
    std::optional<test::MosquittoServer> mosquitto;
    Logger quiet{LogLevel::off, {}};

    std::shared_ptr<EventBroker> make(const std::string &kind) {
        if (kind == "local")
            return std::make_shared<LocalEventBroker>();
        if (kind == "postgres")
            return std::make_shared<PostgresEventBroker>(
                PostgresEventBrokerOptions{.conninfo = postgres().conninfo()});
        if (kind == "mqtt") {
            if (!mosquitto)
                mosquitto.emplace();
            return std::make_shared<MqttEventBroker>(
                MqttEventBrokerOptions{.port = mosquitto->port()});
        }
        if (!redis)
            redis.emplace();
        return std::make_shared<RedisEventBroker>(RedisEventBrokerOptions{.port = redis->port()});
    }

    template <class T> T run(asio::awaitable<T> op) { return test::run(ioc, std::move(op)); }
};

JobAdded job_added(int i) {
    return JobAdded{test::t0, "job-" + std::to_string(i), "t", std::nullopt};
}

asio::awaitable<void> start(std::shared_ptr<EventBroker> b, Logger logger) {
    co_await b->start(co_await asio::this_coro::executor, logger);
}

asio::awaitable<void> publish_all(std::shared_ptr<EventBroker> b, std::vector<Event> events) {
    for (auto &e : events)
        co_await b->publish(e);
}

// Local delivery: the mask filters, order is kept, one-shot and unsubscribe end delivery.
asio::awaitable<void> delivery_contract(std::shared_ptr<EventBroker> b, Logger logger) {
    co_await start(b, logger);
    auto ex = co_await asio::this_coro::executor;
    Inbox jobs, once, all;
    auto s1 =
        b->subscribe([&](const Event &e) { jobs.events.push_back(e); }, event_mask<JobAdded>(), ex);
    auto s2 = b->subscribe([&](const Event &e) { once.events.push_back(e); }, all_events, ex, true);
    auto s3 = b->subscribe([&](const Event &e) { all.events.push_back(e); }, all_events, ex);
    std::vector<Event> events;
    std::vector<std::string> expected;
    for (int i = 0; i < 100; ++i) {
        events.push_back(job_added(i));
        expected.push_back("job-" + std::to_string(i));
        events.push_back(TaskAdded{test::t0, "t"});
    }
    co_await publish_all(b, events);
    co_await eventually([&] { return jobs.events.size() == 100 && all.events.size() == 200; },
                        "local delivery");
    BOOST_TEST(jobs.ids() == expected);
    BOOST_TEST(once.events.size() == 1u);
    s3.unsubscribe();
    std::vector<Event> more{job_added(100)};
    co_await publish_all(b, more);
    co_await eventually([&] { return jobs.events.size() == 101; }, "after unsubscribe");
    BOOST_TEST(all.events.size() == 200u);
    co_await b->stop();
}

// Starts `b`, waits until it receives from its server (`connected`), stops it.
asio::awaitable<void> starts_connected(std::shared_ptr<EventBroker> b,
                                       std::function<bool()> connected, Logger logger) {
    co_await start(b, logger);
    co_await eventually(connected, "connected");
    co_await b->stop();
    BOOST_TEST(!connected());
}

// A node that publishes and stops at once (the `asched` tool does): the event still reaches
// the others. stop() sends what waits first; before, it was dropped ("... not sent to other
// nodes: ... stopped") because the sending connection was not open yet.
asio::awaitable<void> published_just_before_stop_is_sent(std::shared_ptr<EventBroker> a,
                                                         std::shared_ptr<EventBroker> b,
                                                         std::function<bool()> b_up,
                                                         Logger logger) {
    co_await start(b, logger);
    co_await eventually(b_up, "the other node listens");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_b;
    auto sb = b->subscribe([&](const Event &e) { at_b.events.push_back(e); }, all_events, ex);
    co_await start(a, logger);
    std::vector<Event> one{job_added(7)};
    co_await publish_all(a, one);
    co_await a->stop();
    co_await eventually([&] { return at_b.events.size() == 1; }, "the event at the other node");
    co_await b->stop();
}

// Two clusters on one MQTT server, told apart by their topic prefix: an event of one never
// reaches the other.
asio::awaitable<void> prefixes_keep_clusters_apart(std::shared_ptr<MqttEventBroker> a,
                                                   std::shared_ptr<MqttEventBroker> a2,
                                                   std::shared_ptr<MqttEventBroker> other,
                                                   Logger logger) {
    co_await start(a, logger);
    co_await start(a2, logger);
    co_await start(other, logger);
    co_await eventually([&] { return up(*a) && up(*a2) && up(*other); }, "all subscribed");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_a2, at_other;
    auto s1 = a2->subscribe([&](const Event &e) { at_a2.events.push_back(e); }, all_events, ex);
    auto s2 =
        other->subscribe([&](const Event &e) { at_other.events.push_back(e); }, all_events, ex);
    std::vector<Event> one{job_added(1)};
    co_await publish_all(a, one);
    std::vector<Event> marker{job_added(2)};
    co_await publish_all(other, marker); // the other cluster's own: delivered there locally
    co_await eventually([&] { return at_a2.events.size() == 1 && at_other.events.size() == 1; },
                        "each cluster's event in its own cluster");
    // One more round trip in cluster one, so that a stray delivery to the other would show.
    std::vector<Event> again{job_added(3)};
    co_await publish_all(a, again);
    co_await eventually([&] { return at_a2.events.size() == 2; }, "the second event");
    BOOST_TEST(at_a2.ids() == (std::vector<std::string>{"job-1", "job-3"}));
    BOOST_TEST(at_other.ids() == std::vector<std::string>{"job-2"});
    co_await a->stop();
    co_await a2->stop();
    co_await other->stop();
}

asio::awaitable<void> keepalive_finds_a_frozen_mqtt(test::MosquittoServer *server,
                                                    std::shared_ptr<MqttEventBroker> a,
                                                    std::shared_ptr<MqttEventBroker> b,
                                                    Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return up(*a) && up(*b); }, "both subscribed");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_b;
    auto sb = b->subscribe([&](const Event &e) { at_b.events.push_back(e); }, all_events, ex);
    server->freeze();
    const auto frozen_at = std::chrono::steady_clock::now();
    co_await eventually([&] { return !up(*a) && !up(*b); }, "both find the broker dead", 30s);
    const auto found_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - frozen_at)
                              .count();
    BOOST_TEST_MESSAGE("MQTT: a frozen broker found dead after " << found_ms << " ms");
    server->thaw();
    co_await eventually([&] { return up(*a) && up(*b); }, "subscribed again", 30s);
    BOOST_TEST(a->reconnects() >= 1u);
    std::vector<Event> after{job_added(4)};
    co_await publish_all(a, after);
    co_await eventually([&] { return std::ranges::count(at_b.ids(), "job-4") == 1; },
                        "an event after the thaw");
    co_await a->stop();
    co_await b->stop();
}

// Two nodes on one channel: each event reaches the other node once, and the publishing node
// once (locally, not again through the server).
template <class Broker>
asio::awaitable<void> other_nodes_get_each_event_once(std::shared_ptr<Broker> a,
                                                      std::shared_ptr<Broker> b, Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return up(*a) && up(*b); }, "both subscribed");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_a, at_b;
    auto sa = a->subscribe([&](const Event &e) { at_a.events.push_back(e); }, all_events, ex);
    auto sb = b->subscribe([&](const Event &e) { at_b.events.push_back(e); }, all_events, ex);
    std::vector<Event> events;
    for (int i = 0; i < 50; ++i)
        events.push_back(job_added(i));
    co_await publish_all(a, events);
    co_await eventually([&] { return at_b.events.size() == 50; }, "events at the other node");
    // Give a duplicate echo the chance to arrive before counting: one more round trip.
    std::vector<Event> marker{job_added(999)};
    co_await publish_all(a, marker);
    co_await eventually([&] { return at_b.events.size() == 51; }, "marker at the other node");
    BOOST_TEST(at_a.events.size() == 51u);
    BOOST_TEST(at_a.ids() == at_b.ids());
    co_await a->stop();
    co_await b->stop();
}

template <class Server, class Broker>
asio::awaitable<void> reconnects_and_subscribes_again(Server *server, std::shared_ptr<Broker> a,
                                                      std::shared_ptr<Broker> b, Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return up(*a) && up(*b); }, "both subscribed");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_b;
    auto sb = b->subscribe([&](const Event &e) { at_b.events.push_back(e); }, all_events, ex);
    server->stop();
    co_await eventually([&] { return !up(*b); }, "the subscription noticed the outage");
    // Published while the server is down: delivered locally, not queued (nodes also poll).
    std::vector<Event> lost{job_added(1)};
    co_await publish_all(a, lost);
    server->start();
    co_await eventually([&] { return up(*a) && up(*b); }, "subscribed again", 30s);
    std::vector<Event> after{job_added(2)};
    co_await publish_all(a, after);
    co_await eventually([&] { return std::ranges::count(at_b.ids(), "job-2") == 1; },
                        "an event after the reconnect");
    // job-1 may still pass if the publisher had not tried before the server came back (this
    // coroutine blocks its thread while the server starts); nothing arrives twice.
    auto ids = at_b.ids();
    BOOST_TEST(ids.back() == "job-2");
    BOOST_TEST((ids.size() == 1 || (ids.size() == 2 && ids[0] == "job-1")));
    co_await a->stop();
    co_await b->stop();
}

// NOTIFY's 8000-byte limit: free text is left out of the payload, an event still too big is
// delivered locally only, and neither breaks what follows.
asio::awaitable<void> big_events_never_break_notify(std::shared_ptr<PostgresEventBroker> a,
                                                    std::shared_ptr<PostgresEventBroker> b,
                                                    Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return up(*a) && up(*b); }, "both listening");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_a, at_b;
    auto sa = a->subscribe([&](const Event &e) { at_a.events.push_back(e); }, all_events, ex);
    auto sb = b->subscribe([&](const Event &e) { at_b.events.push_back(e); }, all_events, ex);
    JobReleased released{test::t0, "job-r", "node-a", "t"};
    released.outcome = JobOutcome::error;
    released.exception_message = std::string(64 * 1024, 'x');
    std::vector<Event> events{
        released, JobAdded{test::t0, std::string(10'000, 'j'), "t", std::nullopt}, job_added(7)};
    co_await publish_all(a, events);
    co_await eventually([&] { return at_b.events.size() == 2; }, "the two events that fit");
    auto *got = std::get_if<JobReleased>(&at_b.events[0]);
    BOOST_REQUIRE(got);
    BOOST_TEST(got->job_id == "job-r");
    BOOST_TEST(!got->exception_message.has_value()); // ids only on the wire
    BOOST_TEST(at_b.ids() == std::vector<std::string>{"job-7"});
    co_await eventually([&] { return at_a.events.size() == 3; }, "all three delivered locally");
    BOOST_TEST(std::get<JobReleased>(at_a.events[0]).exception_message->size() == 64u * 1024);
    co_await a->stop();
    co_await b->stop();
}

// A listener whose server side stops answering (the backend frozen: the TCP connection stays
// open) is found by the heartbeat and replaced.
asio::awaitable<void> heartbeat_replaces_a_frozen_listener(std::shared_ptr<PostgresEventBroker> a,
                                                           std::shared_ptr<PostgresEventBroker> b,
                                                           Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return up(*a) && up(*b); }, "both listening");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_b;
    auto sb = b->subscribe([&](const Event &e) { at_b.events.push_back(e); }, all_events, ex);
    test::Psql side(postgres().conninfo());
    // Every LISTENing backend of the test channel: freeze them.
    const std::string pids =
        side.exec("SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE query LIKE "
                  "'LISTEN \"heartbeat_test\"%'");
    std::vector<int> frozen;
    for (std::istringstream in(pids); !in.eof();) {
        int pid = 0;
        if (in >> pid)
            frozen.push_back(pid);
    }
    BOOST_REQUIRE(frozen.size() == 2u);
    for (int pid : frozen)
        ::kill(pid, SIGSTOP);
    co_await eventually([&] { return b->reconnects() >= 1 && up(*b); },
                        "the heartbeat replaced the listener");
    for (int pid : frozen)
        ::kill(pid, SIGCONT);
    co_await eventually([&] { return a->reconnects() >= 1 && up(*a); }, "both replaced");
    std::vector<Event> after{job_added(3)};
    co_await publish_all(a, after);
    co_await eventually([&] { return !at_b.ids().empty(); }, "an event through the new listener");
    BOOST_TEST(at_b.ids() == std::vector<std::string>{"job-3"});
    co_await a->stop();
    co_await b->stop();
}

// R10: the LISTENing backends are ended by the server (pg_terminate_backend, as an operator
// or a failover does). With the default heartbeat (5 s + 5 s), each broker notices within
// 10 s, LISTENs again on a new connection, and the next event arrives once.
asio::awaitable<void> a_terminated_listener_is_replaced(std::shared_ptr<PostgresEventBroker> a,
                                                        std::shared_ptr<PostgresEventBroker> b,
                                                        Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return up(*a) && up(*b); }, "both listening");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_b;
    auto sb = b->subscribe([&](const Event &e) { at_b.events.push_back(e); }, all_events, ex);
    test::Psql side(postgres().conninfo());
    const std::string ended =
        side.exec("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
                  "pg_stat_activity WHERE query LIKE 'LISTEN \"terminate_test\"%'");
    BOOST_TEST(ended == "2");
    co_await eventually([&] { return a->reconnects() >= 1 && b->reconnects() >= 1; },
                        "both noticed", 10s);
    co_await eventually([&] { return up(*a) && up(*b); }, "both listening again", 10s);
    std::vector<Event> after{job_added(5)};
    co_await publish_all(a, after);
    co_await eventually([&] { return !at_b.ids().empty(); }, "an event through the new listener");
    BOOST_TEST(at_b.ids() == std::vector<std::string>{"job-5"});
    co_await a->stop();
    co_await b->stop();
}

// R14: a broker that reaches PostgreSQL through PgBouncer in transaction mode, where LISTEN
// binds to whichever server connection ran it and notifications are lost. Its listener's
// probe never comes back: the broker says why and runs poll-only (not listening, sending
// nothing), publishing still delivers locally, and stopping is clean. The same broker pointed
// at the server passes its probe and listens.
asio::awaitable<void> pgbouncer_in_transaction_mode_is_run_poll_only(
    std::shared_ptr<PostgresEventBroker> behind, std::shared_ptr<PostgresEventBroker> direct,
    std::shared_ptr<std::vector<std::string>> warnings, Logger logger) {
    co_await start(behind, logger);
    co_await start(direct, logger);
    co_await eventually([&] { return behind->poll_only(); }, "the probe found no way back", 20s);
    BOOST_TEST(!behind->listening());
    BOOST_TEST(!behind->connected());
    const auto said = std::find_if(warnings->begin(), warnings->end(), [](const std::string &w) {
        return w.find("PgBouncer in transaction mode") != std::string::npos;
    });
    BOOST_REQUIRE(said != warnings->end());
    BOOST_TEST(said->find("runs poll-only") != std::string::npos, *said);
    co_await eventually([&] { return up(*direct); }, "the direct broker listens", 20s);
    // Give the direct broker's probe time to come back (or not): it must stay listening.
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer pause(ex, std::chrono::milliseconds(700));
    co_await pause.async_wait(asio::use_awaitable);
    BOOST_TEST(!direct->poll_only());
    BOOST_TEST(up(*direct));
    Inbox local;
    auto sub =
        behind->subscribe([&](const Event &e) { local.events.push_back(e); }, all_events, ex);
    std::vector<Event> one{job_added(6)};
    co_await publish_all(behind, one);
    co_await eventually([&] { return !local.ids().empty(); }, "delivered locally");
    BOOST_TEST(local.ids() == std::vector<std::string>{"job-6"});
    co_await behind->stop();
    co_await direct->stop();
}

// The other side of R14: through PgBouncer in session mode (one server connection per client
// for its whole session) notifications pass; the probe comes back and the broker listens.
asio::awaitable<void>
pgbouncer_in_session_mode_passes_notifications(std::shared_ptr<PostgresEventBroker> behind,
                                               std::shared_ptr<PostgresEventBroker> direct,
                                               Logger logger) {
    co_await start(behind, logger);
    co_await start(direct, logger);
    co_await eventually([&] { return up(*behind) && up(*direct); }, "both listening", 20s);
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer pause(ex, std::chrono::milliseconds(700)); // past the probe's 500 ms
    co_await pause.async_wait(asio::use_awaitable);
    BOOST_TEST(!behind->poll_only());
    BOOST_TEST(up(*behind));
    Inbox at_behind;
    auto sub =
        behind->subscribe([&](const Event &e) { at_behind.events.push_back(e); }, all_events, ex);
    std::vector<Event> one{job_added(8)};
    co_await publish_all(direct, one);
    co_await eventually([&] { return !at_behind.ids().empty(); }, "an event through PgBouncer");
    BOOST_TEST(at_behind.ids() == std::vector<std::string>{"job-8"});
    co_await behind->stop();
    co_await direct->stop();
}

// A frozen redis-server (SIGSTOP: connections stay open, nothing answers) is found by the
// subscribed connection's PING within heartbeat_interval + heartbeat_timeout; once it thaws,
// both brokers subscribe again and events flow, each once.
asio::awaitable<void> heartbeat_finds_a_frozen_redis(test::RedisServer *server,
                                                     std::shared_ptr<RedisEventBroker> a,
                                                     std::shared_ptr<RedisEventBroker> b,
                                                     Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return up(*a) && up(*b); }, "both subscribed");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_b;
    auto sb = b->subscribe([&](const Event &e) { at_b.events.push_back(e); }, all_events, ex);
    server->freeze();
    co_await eventually([&] { return !up(*a) && !up(*b); }, "the heartbeat noticed", 10s);
    server->thaw();
    co_await eventually([&] { return up(*a) && up(*b); }, "subscribed again", 20s);
    BOOST_TEST(a->reconnects() >= 1u);
    BOOST_TEST(b->reconnects() >= 1u);
    std::vector<Event> after{job_added(4)};
    co_await publish_all(a, after);
    co_await eventually([&] { return !at_b.ids().empty(); }, "an event after the thaw");
    BOOST_TEST(at_b.ids() == std::vector<std::string>{"job-4"});
    co_await a->stop();
    co_await b->stop();
}

} // namespace

BOOST_AUTO_TEST_SUITE(event_broker_contract)

BOOST_DATA_TEST_CASE_F(BrokerFixture, delivers_in_order_by_mask, brokers, kind) {
    run(delivery_contract(make(kind), quiet));
}

// A stopped broker keeps nothing of the io_context it ran on: it may outlive it (the `asched`
// tool keeps its broker past the blocking Scheduler that ran it: it crashed at exit before) and
// start again on another one, connected again.
BOOST_DATA_TEST_CASE_F(BrokerFixture, a_stopped_broker_outlives_its_io_context_and_starts_again,
                       brokers, kind) {
    auto b = make(kind);
    {
        asio::io_context first;
        test::run(first, delivery_contract(b, quiet));
    }
    run(delivery_contract(b, quiet));
    if (kind == "redis") {
        auto r = std::static_pointer_cast<RedisEventBroker>(b);
        run(starts_connected(
            b, [r] { return up(*r); }, quiet));
    }
    if (kind == "postgres") {
        auto p = std::static_pointer_cast<PostgresEventBroker>(b);
        run(starts_connected(
            b, [p] { return up(*p); }, quiet));
    }
    if (kind == "mqtt") {
        auto m = std::static_pointer_cast<MqttEventBroker>(b);
        run(starts_connected(
            b, [m] { return up(*m); }, quiet));
    }
}

BOOST_FIXTURE_TEST_CASE(redis_an_event_published_just_before_stop_is_sent, BrokerFixture) {
    redis.emplace();
    RedisEventBrokerOptions o{.port = redis->port()};
    auto b = std::make_shared<RedisEventBroker>(o);
    run(published_just_before_stop_is_sent(
        std::make_shared<RedisEventBroker>(o), b, [b] { return up(*b); }, quiet));
}

BOOST_FIXTURE_TEST_CASE(postgres_an_event_published_just_before_stop_is_sent, BrokerFixture) {
    PostgresEventBrokerOptions o{.conninfo = postgres().conninfo(), .channel = "drain_test"};
    auto b = std::make_shared<PostgresEventBroker>(o);
    run(published_just_before_stop_is_sent(
        std::make_shared<PostgresEventBroker>(o), b, [b] { return up(*b); }, quiet));
}

BOOST_FIXTURE_TEST_CASE(mqtt_an_event_published_just_before_stop_is_sent, BrokerFixture) {
    mosquitto.emplace();
    MqttEventBrokerOptions o{.port = mosquitto->port()};
    auto b = std::make_shared<MqttEventBroker>(o);
    run(published_just_before_stop_is_sent(
        std::make_shared<MqttEventBroker>(o), b, [b] { return up(*b); }, quiet));
}

BOOST_FIXTURE_TEST_CASE(mqtt_other_nodes_get_each_event_once, BrokerFixture) {
    mosquitto.emplace();
    MqttEventBrokerOptions o{.port = mosquitto->port(), .topic_prefix = "once/test"};
    run(other_nodes_get_each_event_once(std::make_shared<MqttEventBroker>(o),
                                        std::make_shared<MqttEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(mqtt_topic_prefixes_keep_clusters_apart, BrokerFixture) {
    mosquitto.emplace();
    MqttEventBrokerOptions one{.port = mosquitto->port(), .topic_prefix = "cluster-one"};
    MqttEventBrokerOptions two{.port = mosquitto->port(), .topic_prefix = "cluster-two"};
    run(prefixes_keep_clusters_apart(std::make_shared<MqttEventBroker>(one),
                                     std::make_shared<MqttEventBroker>(one),
                                     std::make_shared<MqttEventBroker>(two), quiet));
}

BOOST_FIXTURE_TEST_CASE(mqtt_reconnects_and_subscribes_again, BrokerFixture) {
    mosquitto.emplace();
    MqttEventBrokerOptions o{.port = mosquitto->port(), .max_reconnect_delay = 200ms};
    run(reconnects_and_subscribes_again(&*mosquitto, std::make_shared<MqttEventBroker>(o),
                                        std::make_shared<MqttEventBroker>(o), quiet));
}

// Keepalive finds a frozen broker (SIGSTOP: the TCP connection stays open, nothing answers):
// with the least keepalive (5 s), each client drops its connection within about two
// keepalives, reconnects after SIGCONT, and the next event arrives once.
BOOST_FIXTURE_TEST_CASE(mqtt_keepalive_finds_a_frozen_broker, BrokerFixture) {
    mosquitto.emplace();
    MqttEventBrokerOptions o{.port = mosquitto->port(),
                             .keepalive = std::chrono::seconds(5),
                             .max_reconnect_delay = 200ms};
    run(keepalive_finds_a_frozen_mqtt(&*mosquitto, std::make_shared<MqttEventBroker>(o),
                                      std::make_shared<MqttEventBroker>(o), quiet));
}

BOOST_AUTO_TEST_CASE(mqtt_options_are_checked) {
    auto refused = [](MqttEventBrokerOptions o, const std::string &names) {
        try {
            MqttEventBroker b(o);
            BOOST_ERROR("accepted options that name " << names);
        } catch (const Error &e) {
            BOOST_TEST(e.code() == errc::invalid_argument);
            BOOST_TEST(std::string(e.what()).find(names) != std::string::npos, e.what());
        }
    };
    refused({.host = ""}, "'host'");
    refused({.topic_prefix = "a/+/b"}, "'topic_prefix'");
    refused({.topic_prefix = "a/#"}, "'topic_prefix'");
    refused({.topic_prefix = ""}, "'topic_prefix'");
    refused({.keepalive = std::chrono::seconds(2)}, "'keepalive'");
}

BOOST_FIXTURE_TEST_CASE(redis_other_nodes_get_each_event_once, BrokerFixture) {
    redis.emplace();
    RedisEventBrokerOptions o{.port = redis->port()};
    run(other_nodes_get_each_event_once(std::make_shared<RedisEventBroker>(o),
                                        std::make_shared<RedisEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(redis_reconnects_and_subscribes_again, BrokerFixture) {
    redis.emplace();
    RedisEventBrokerOptions o{.port = redis->port(), .max_reconnect_delay = 200ms};
    run(reconnects_and_subscribes_again(&*redis, std::make_shared<RedisEventBroker>(o),
                                        std::make_shared<RedisEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(redis_heartbeat_finds_a_frozen_server, BrokerFixture) {
    redis.emplace();
    RedisEventBrokerOptions o{.port = redis->port(),
                              .max_reconnect_delay = 200ms,
                              .heartbeat_interval = 200ms,
                              .heartbeat_timeout = 300ms};
    run(heartbeat_finds_a_frozen_redis(&*redis, std::make_shared<RedisEventBroker>(o),
                                       std::make_shared<RedisEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(postgres_other_nodes_get_each_event_once, BrokerFixture) {
    PostgresEventBrokerOptions o{.conninfo = postgres().conninfo(), .channel = "once_test"};
    run(other_nodes_get_each_event_once(std::make_shared<PostgresEventBroker>(o),
                                        std::make_shared<PostgresEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(postgres_reconnects_and_listens_again, BrokerFixture) {
    PostgresEventBrokerOptions o{.conninfo = postgres().conninfo(),
                                 .channel = "reconnect_test",
                                 .max_reconnect_delay = 200ms};
    run(reconnects_and_subscribes_again(&postgres(), std::make_shared<PostgresEventBroker>(o),
                                        std::make_shared<PostgresEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(postgres_big_events_never_break_notify, BrokerFixture) {
    PostgresEventBrokerOptions o{.conninfo = postgres().conninfo(), .channel = "size_test"};
    run(big_events_never_break_notify(std::make_shared<PostgresEventBroker>(o),
                                      std::make_shared<PostgresEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(postgres_heartbeat_replaces_a_frozen_listener, BrokerFixture) {
    PostgresEventBrokerOptions o{.conninfo = postgres().conninfo(),
                                 .channel = "heartbeat_test",
                                 .heartbeat_interval = 200ms,
                                 .heartbeat_timeout = 300ms,
                                 .max_reconnect_delay = 200ms};
    run(heartbeat_replaces_a_frozen_listener(std::make_shared<PostgresEventBroker>(o),
                                             std::make_shared<PostgresEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(postgres_a_terminated_listener_is_replaced, BrokerFixture) {
    PostgresEventBrokerOptions o{.conninfo = postgres().conninfo(), .channel = "terminate_test"};
    run(a_terminated_listener_is_replaced(std::make_shared<PostgresEventBroker>(o),
                                          std::make_shared<PostgresEventBroker>(o), quiet));
}

BOOST_FIXTURE_TEST_CASE(postgres_through_pgbouncer_in_transaction_mode_runs_poll_only,
                        BrokerFixture) {
    test::PgBouncer bouncer(postgres(), "transaction");
    const auto probe = std::chrono::milliseconds(500);
    PostgresEventBrokerOptions behind{.conninfo = bouncer.conninfo(), .channel = "bouncer_test"};
    behind.listen_probe_timeout = probe;
    PostgresEventBrokerOptions direct{.conninfo = postgres().conninfo(), .channel = "bouncer_test"};
    direct.listen_probe_timeout = probe;
    auto warnings = std::make_shared<std::vector<std::string>>();
    Logger logger{LogLevel::warning,
                  [warnings](LogLevel, std::string_view m) { warnings->emplace_back(m); }};
    run(pgbouncer_in_transaction_mode_is_run_poll_only(
        std::make_shared<PostgresEventBroker>(behind),
        std::make_shared<PostgresEventBroker>(direct), warnings, logger));
}

BOOST_FIXTURE_TEST_CASE(postgres_through_pgbouncer_in_session_mode_listens, BrokerFixture) {
    test::PgBouncer bouncer(postgres(), "session");
    PostgresEventBrokerOptions behind{.conninfo = bouncer.conninfo(), .channel = "session_test"};
    behind.listen_probe_timeout = std::chrono::milliseconds(500);
    PostgresEventBrokerOptions direct{.conninfo = postgres().conninfo(), .channel = "session_test"};
    run(pgbouncer_in_session_mode_passes_notifications(
        std::make_shared<PostgresEventBroker>(behind),
        std::make_shared<PostgresEventBroker>(direct), quiet));
}

BOOST_AUTO_TEST_SUITE_END()
