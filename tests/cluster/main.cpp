// Cluster tests: several real processes on one store (SQLite file, PostgreSQL server), kill -9,
// restarts, database restarts, and the process executor's children.
#define BOOST_TEST_MODULE asched_cluster_tests
#include <boost/test/unit_test.hpp>
