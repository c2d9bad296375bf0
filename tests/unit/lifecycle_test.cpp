// The scheduler's lifecycle as a table: every transition, every way out, and what is refused.
#include "scheduler/lifecycle.hpp"

#include <boost/test/unit_test.hpp>

#include <set>
#include <vector>

using namespace asched;
using namespace asched::detail;

namespace {

Phase run(Phase p, std::initializer_list<LifeEvent> events) {
    for (auto e : events)
        if (auto t = next_transition(p, e))
            p = t->to;
    return p;
}

} // namespace

BOOST_AUTO_TEST_SUITE(lifecycle)

BOOST_AUTO_TEST_CASE(the_table) {
    using P = Phase;
    using E = LifeEvent;
    using A = LifeAction;
    struct Row {
        P from;
        E event;
        std::optional<P> to;
        std::optional<A> action;
    };
    const std::vector<Row> rows{
        {P::stopped, E::start, P::starting, A::open},
        {P::stopped, E::stop, {}, {}},
        {P::stopped, E::idle, {}, {}},
        {P::stopped, E::crash, {}, {}},
        {P::starting, E::ready, P::started, A::spawn_loops},
        {P::starting, E::stop, P::draining, A::stop_acquiring},
        {P::starting, E::start, {}, {}},
        {P::starting, E::crash, P::crashed, A::cancel_jobs},
        {P::started, E::start, {}, {}},
        {P::started, E::ready, {}, {}},
        {P::started, E::idle, {}, {}},
        {P::started, E::stop, P::draining, A::stop_acquiring},
        {P::started, E::crash, P::crashed, A::cancel_jobs},
        {P::draining, E::stop, {}, {}},
        {P::draining, E::ready, {}, {}}, // a stop during the start: the loops never start
        {P::draining, E::grace_over, P::cancelling, A::cancel_jobs},
        {P::draining, E::idle, P::releasing, A::release_leases},
        {P::draining, E::released, {}, {}},
        {P::draining, E::crash, P::crashed, A::cancel_jobs},
        {P::cancelling, E::stop, {}, {}},
        {P::cancelling, E::grace_over, P::cancelling, A::cancel_jobs},
        {P::cancelling, E::idle, P::releasing, A::release_leases},
        {P::cancelling, E::crash, P::crashed, A::cancel_jobs},
        {P::crashed, E::stop, {}, {}},
        {P::crashed, E::grace_over, P::crashed, A::cancel_jobs},
        {P::crashed, E::idle, P::releasing, A::release_leases},
        {P::releasing, E::stop, {}, {}},
        {P::releasing, E::start, {}, {}},
        {P::releasing, E::released, P::stopped, A::finish},
        {P::releasing, E::crash, P::stopped, A::finish},
    };
    for (const auto &r : rows) {
        BOOST_TEST_CONTEXT(to_string(r.from) << " + " << to_string(r.event)) {
            auto t = next_transition(r.from, r.event);
            BOOST_TEST(t.has_value() == r.to.has_value());
            if (t && r.to) {
                BOOST_TEST(to_string(t->to) == to_string(*r.to));
                BOOST_TEST(int(t->action) == int(*r.action));
            }
        }
    }
    // Every row of the table is listed above.
    std::size_t listed = 0;
    for (const auto &r : rows)
        listed += r.to.has_value();
    BOOST_TEST(listed == lifecycle_table().size());
}

BOOST_AUTO_TEST_CASE(every_way_out_ends_stopped_after_releasing) {
    using E = LifeEvent;
    // stop while started, with and without the grace period running out
    BOOST_TEST((run(Phase::stopped, {E::start, E::ready, E::stop, E::idle, E::released}) ==
                Phase::stopped));
    BOOST_TEST((run(Phase::stopped, {E::start, E::ready, E::stop, E::grace_over, E::idle,
                                     E::released}) == Phase::stopped));
    // stop (or the destructor) while starting
    BOOST_TEST((run(Phase::stopped, {E::start, E::stop, E::ready, E::idle, E::released}) ==
                Phase::stopped));
    // a crash while started, while draining, while cancelling
    BOOST_TEST((run(Phase::stopped, {E::start, E::ready, E::crash, E::idle, E::released}) ==
                Phase::stopped));
    BOOST_TEST((run(Phase::stopped, {E::start, E::ready, E::stop, E::crash, E::idle,
                                     E::released}) == Phase::stopped));
    // nothing reaches stopped without passing through releasing
    for (const auto &t : lifecycle_table())
        if (t.to == Phase::stopped)
            BOOST_TEST(to_string(t.from) == "releasing");
    // and a job can only be running in the phases that renew leases
    BOOST_TEST(!jobs_may_run(Phase::releasing));
    BOOST_TEST(!jobs_may_run(Phase::stopped));
    BOOST_TEST(acquiring(Phase::started));
    BOOST_TEST(!acquiring(Phase::draining));
}

BOOST_AUTO_TEST_CASE(public_states) {
    BOOST_TEST((run_state_of(Phase::stopped) == RunState::stopped));
    BOOST_TEST((run_state_of(Phase::starting) == RunState::starting));
    BOOST_TEST((run_state_of(Phase::started) == RunState::started));
    for (auto p : {Phase::draining, Phase::cancelling, Phase::crashed, Phase::releasing})
        BOOST_TEST((run_state_of(p) == RunState::stopping));
}

BOOST_AUTO_TEST_SUITE_END()
