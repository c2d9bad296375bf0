// Registration derives argument and result conversion from a callable's signature.
#include "test_support.hpp"

using namespace asched;
using nlohmann::json;

namespace {

JobContext context() {
    return JobContext{"job-1", "t", std::nullopt, std::nullopt, json::object(), {}};
}

struct Point {
    int x = 0;
    int y = 0;
};
void to_json(json &j, const Point &p) {
    j = {{"x", p.x}, {"y", p.y}};
}
void from_json(const json &j, Point &p) {
    p.x = j.at("x").get<int>();
    p.y = j.at("y").get<int>();
}

int plain_function(int a) {
    return a + 1;
}

std::string error_of(const TaskFunction &f, const json &args) {
    auto ctx = context();
    try {
        f.blocking(ctx, args);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

} // namespace

BOOST_AUTO_TEST_SUITE(task_functions)

BOOST_AUTO_TEST_CASE(blocking_callables_convert_arguments_and_results) {
    auto add = make_task_function([](int a, int b) { return a + b; });
    BOOST_TEST(!add->is_coroutine);
    BOOST_TEST(add->arity == 2u);
    auto ctx = context();
    BOOST_TEST(add->blocking(ctx, {2, 3}) == 5);

    auto point = make_task_function([](Point p, std::string s) {
        return Point{p.y, int(s.size())};
    });
    BOOST_TEST(point->blocking(ctx, json::array({{{"x", 1}, {"y", 2}}, "abc"})) ==
               (json{{"x", 2}, {"y", 3}}));

    auto fp = make_task_function(&plain_function);
    BOOST_TEST(fp->blocking(ctx, {41}) == 42);

    auto nothing = make_task_function([] {});
    BOOST_TEST(nothing->blocking(ctx, json()).is_null());
}

BOOST_AUTO_TEST_CASE(job_context_is_passed_first) {
    auto f = make_task_function(
        [](JobContext &job, int n) { return job.job_id + ":" + std::to_string(n); });
    BOOST_TEST(f->arity == 1u);
    auto ctx = context();
    BOOST_TEST(f->blocking(ctx, {7}) == "job-1:7");
}

BOOST_AUTO_TEST_CASE(arguments_that_do_not_fit_name_the_argument) {
    auto add = make_task_function([](int a, int b) { return a + b; });
    BOOST_TEST(error_of(*add, {1}) == "task arguments: the task takes 2 arguments, the job has 1");
    const auto msg = error_of(*add, json::array({1, "two"}));
    BOOST_TEST(msg.find("task argument 2 (of type int)") != std::string::npos, msg);
    BOOST_TEST(error_of(*add, json{{"a", 1}}).find("expected a JSON array") != std::string::npos);
    auto point = make_task_function([](Point p) { return p.x; });
    const auto pmsg = error_of(*point, json::array({json::object()}));
    BOOST_TEST(pmsg.find("task argument 1 (of type") != std::string::npos, pmsg);
    BOOST_TEST(pmsg.find("Point") != std::string::npos, pmsg);
}

BOOST_AUTO_TEST_CASE(coroutines_are_recognised) {
    auto f = make_task_function([](int a) -> asio::awaitable<int> { co_return a * 2; });
    BOOST_TEST(f->is_coroutine);
    asio::io_context ioc;
    auto ctx = context();
    json args = {21};
    auto value = test::run(ioc, f->coroutine(ctx, args));
    BOOST_TEST(value == 42);
}

BOOST_AUTO_TEST_SUITE_END()
