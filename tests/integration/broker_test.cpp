// The event-broker contract, run against LocalEventBroker and RedisEventBroker (on a real
// redis-server), plus what only a networked broker has: other nodes, and reconnecting.
#include "servers.hpp"
#include "test_support.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>

using namespace asched;
using namespace std::chrono_literals;
using test::eventually;

namespace {

const char* const broker_kinds[] = {"local", "redis"};
const auto brokers = boost::unit_test::data::make(broker_kinds);

struct Inbox {
    std::vector<Event> events;
    std::vector<std::string> ids() const {
        std::vector<std::string> out;
        for (auto& e : events)
            if (auto* j = std::get_if<JobAdded>(&e))
                out.push_back(j->job_id);
        return out;
    }
};

struct BrokerFixture {
    asio::io_context ioc;
    std::optional<test::RedisServer> redis;
    Logger quiet{LogLevel::off, {}};

    std::shared_ptr<EventBroker> make(const std::string& kind) {
        if (kind == "local")
            return std::make_shared<LocalEventBroker>();
        if (!redis)
            redis.emplace();
        return std::make_shared<RedisEventBroker>(RedisEventBrokerOptions{.port = redis->port()});
    }

    template <class T> T run(asio::awaitable<T> op) { return test::run(ioc, std::move(op)); }
};

JobAdded job_added(int i) { return JobAdded{test::t0, "job-" + std::to_string(i), "t", std::nullopt}; }

asio::awaitable<void> start(std::shared_ptr<EventBroker> b, Logger logger) {
    co_await b->start(co_await asio::this_coro::executor, logger);
}

asio::awaitable<void> publish_all(std::shared_ptr<EventBroker> b, std::vector<Event> events) {
    for (auto& e : events)
        co_await b->publish(e);
}

// Local delivery: the mask filters, order is kept, one-shot and unsubscribe end delivery.
asio::awaitable<void> delivery_contract(std::shared_ptr<EventBroker> b, Logger logger) {
    co_await start(b, logger);
    auto ex = co_await asio::this_coro::executor;
    Inbox jobs, once, all;
    auto s1 = b->subscribe([&](const Event& e) { jobs.events.push_back(e); }, event_mask<JobAdded>(), ex);
    auto s2 = b->subscribe([&](const Event& e) { once.events.push_back(e); }, all_events, ex, true);
    auto s3 = b->subscribe([&](const Event& e) { all.events.push_back(e); }, all_events, ex);
    std::vector<Event> events;
    std::vector<std::string> expected;
    for (int i = 0; i < 100; ++i) {
        events.push_back(job_added(i));
        expected.push_back("job-" + std::to_string(i));
        events.push_back(TaskAdded{test::t0, "t"});
    }
    co_await publish_all(b, events);
    co_await eventually([&] { return jobs.events.size() == 100 && all.events.size() == 200; }, "local delivery");
    BOOST_TEST(jobs.ids() == expected);
    BOOST_TEST(once.events.size() == 1u);
    s3.unsubscribe();
    std::vector<Event> more{job_added(100)};
    co_await publish_all(b, more);
    co_await eventually([&] { return jobs.events.size() == 101; }, "after unsubscribe");
    BOOST_TEST(all.events.size() == 200u);
    co_await b->stop();
}

// Two nodes on one Redis channel: each event reaches the other node once, and the publishing
// node once (locally, not again through Redis).
asio::awaitable<void> other_nodes_get_each_event_once(std::shared_ptr<RedisEventBroker> a,
                                                      std::shared_ptr<RedisEventBroker> b, Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return a->subscribed() && b->subscribed(); }, "both subscribed");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_a, at_b;
    auto sa = a->subscribe([&](const Event& e) { at_a.events.push_back(e); }, all_events, ex);
    auto sb = b->subscribe([&](const Event& e) { at_b.events.push_back(e); }, all_events, ex);
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

asio::awaitable<void> reconnects_and_subscribes_again(test::RedisServer* redis, std::shared_ptr<RedisEventBroker> a,
                                                      std::shared_ptr<RedisEventBroker> b, Logger logger) {
    co_await start(a, logger);
    co_await start(b, logger);
    co_await eventually([&] { return a->subscribed() && b->subscribed(); }, "both subscribed");
    auto ex = co_await asio::this_coro::executor;
    Inbox at_b;
    auto sb = b->subscribe([&](const Event& e) { at_b.events.push_back(e); }, all_events, ex);
    redis->stop();
    co_await eventually([&] { return !b->subscribed(); }, "the subscription noticed the outage");
    // Published while Redis is down: delivered locally, not queued (nodes also poll).
    std::vector<Event> lost{job_added(1)};
    co_await publish_all(a, lost);
    redis->start();
    co_await eventually([&] { return a->subscribed() && b->subscribed(); }, "subscribed again", 30s);
    std::vector<Event> after{job_added(2)};
    co_await publish_all(a, after);
    co_await eventually([&] { return !at_b.ids().empty(); }, "an event after the reconnect");
    BOOST_TEST(at_b.ids() == std::vector<std::string>{"job-2"});
    co_await a->stop();
    co_await b->stop();
}

} // namespace

BOOST_AUTO_TEST_SUITE(event_broker_contract)

BOOST_DATA_TEST_CASE_F(BrokerFixture, delivers_in_order_by_mask, brokers, kind) {
    run(delivery_contract(make(kind), quiet));
}

BOOST_FIXTURE_TEST_CASE(redis_other_nodes_get_each_event_once, BrokerFixture) {
    redis.emplace();
    RedisEventBrokerOptions o{.port = redis->port()};
    run(other_nodes_get_each_event_once(std::make_shared<RedisEventBroker>(o), std::make_shared<RedisEventBroker>(o),
                                        quiet));
}

BOOST_FIXTURE_TEST_CASE(redis_reconnects_and_subscribes_again, BrokerFixture) {
    redis.emplace();
    RedisEventBrokerOptions o{.port = redis->port(), .max_reconnect_delay = 200ms};
    run(reconnects_and_subscribes_again(&*redis, std::make_shared<RedisEventBroker>(o),
                                        std::make_shared<RedisEventBroker>(o), quiet));
}

BOOST_AUTO_TEST_SUITE_END()
