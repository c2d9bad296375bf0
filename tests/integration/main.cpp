// Integration tests: AsyncScheduler and Scheduler with the memory store on real io_contexts.
#define BOOST_TEST_MODULE asched_integration_tests
#include <boost/test/unit_test.hpp>
