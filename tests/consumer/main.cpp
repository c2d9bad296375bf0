// Uses an installed asched through find_package: a blocking run_job round trip.
#include <asched/asched.hpp>

#include <iostream>

int main() {
    asched::Scheduler scheduler;
    scheduler.add_task("answer", [](int a, int b) { return a * b; });
    scheduler.start_in_background();
    const auto value = scheduler.run_job("answer", {.args = {6, 7}});
    std::cout << "consumer ok: " << value.get<int>() << "\n";
    return 0;
}
