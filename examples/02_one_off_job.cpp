// 02: one-off jobs and their results: run_job, add_job + get_job_result, and an error.
#include <asched/asched.hpp>

#include <asio.hpp>

#include <cstdio>
#include <stdexcept>

asio::awaitable<void> body(asched::AsyncScheduler &s) {
    co_await s.add_task("add", [](int a, int b) { return a + b; });
    co_await s.add_task("divide", [](double a, double b) {
        if (b == 0)
            throw std::domain_error("division by zero");
        return a / b;
    });
    co_await s.start_in_background();

    asched::JobOptions two_and_three{.args = {2, 3}};
    const auto sum = co_await s.run_job("add", two_and_three);
    std::printf("add(2, 3) = %s\n", sum.dump().c_str());
    if (sum != 5)
        throw std::runtime_error("add(2, 3) returned " + sum.dump());

    asched::JobOptions keep{.args = {1.0, 0.0}, .result_expiration_time = std::chrono::minutes(5)};
    const auto id = co_await s.add_job("divide", keep);
    const auto result = co_await s.get_job_result(id);
    if (!result || result->outcome != asched::JobOutcome::error || !result->exception_message)
        throw std::runtime_error("divide(1, 0) did not end with an error");
    std::printf("divide(1, 0): outcome %s, %s: %s\n",
                std::string(asched::to_string(result->outcome)).c_str(),
                result->exception_type->c_str(), result->exception_message->c_str());
}

int main() try {
    asio::io_context ioc;
    asched::AsyncScheduler scheduler(ioc);
    std::function<asio::awaitable<void>(asched::AsyncScheduler &)> run = body;
    auto done = asio::co_spawn(ioc, scheduler.scoped(run), asio::use_future);
    ioc.run();
    done.get(); // rethrows what body() or the scheduler threw
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "02_one_off_job: %s\n", e.what());
    return 1;
}
