// Backend tests: SQLite, PostgreSQL and Redis. The servers are real, started by the test run on
// free loopback ports with temporary data directories, and stopped afterwards.
#define BOOST_TEST_MODULE asched_backend_tests
#include <boost/test/unit_test.hpp>
