// Unit tests of the pure core and the memory store: no I/O, no real time.
#define BOOST_TEST_MODULE asched_unit_tests
#include <boost/test/unit_test.hpp>
