// The real servers the store and broker tests use start, answer, stop and come back.
#include "servers.hpp"
#include "test_support.hpp"

#include <libpq-fe.h>

namespace {

// The first column of the first row of `sql`, or the connection error.
std::string query_one(const std::string &conninfo, const char *sql) {
    PGconn *c = PQconnectdb(conninfo.c_str());
    std::string out;
    if (PQstatus(c) != CONNECTION_OK) {
        out = std::string("error: ") + PQerrorMessage(c);
    } else {
        PGresult *r = PQexec(c, sql);
        out = PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0)
                                                   : std::string("error: ") + PQerrorMessage(c);
        PQclear(r);
    }
    PQfinish(c);
    return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(test_servers)

BOOST_AUTO_TEST_CASE(postgres_starts_answers_stops_and_comes_back) {
    asched::test::PostgresServer pg;
    BOOST_TEST(query_one(pg.conninfo(), "SELECT current_user") == "asched");
    BOOST_TEST(query_one(pg.conninfo(), "SHOW server_version_num").substr(0, 2) == "15");
    pg.stop();
    BOOST_TEST(query_one(pg.conninfo(), "SELECT 1").rfind("error: ", 0) == 0u);
    pg.start();
    BOOST_TEST(query_one(pg.conninfo(), "SELECT 1") == "1");
}

BOOST_AUTO_TEST_SUITE_END()
