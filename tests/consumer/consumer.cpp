// A program that uses asched the way a user's would, built by the consumer tests against an
// install (CMake and pkg-config), the build tree, or asched added as a subdirectory. Each
// CONSUMER_<COMPONENT> definition adds a use of that component's library.
#include <asched/asched.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>

int main() {
    std::cout << "asched " << ASCHED_VERSION << "\n";
    asched::AsyncSchedulerOptions options;
#ifdef CONSUMER_SQLITE
    const auto path = std::filesystem::temp_directory_path() / "asched-consumer.db";
    std::filesystem::remove(path);
    options.data_store =
        std::make_shared<asched::SqliteDataStore>(asched::SqliteDataStoreOptions{.path = path});
#endif
#ifdef CONSUMER_POSTGRES
    // Linked, not connected: the store connects at start().
    asched::PostgresDataStore pg({.conninfo = "host=127.0.0.1 port=1"});
    asched::PostgresEventBroker pg_broker({.conninfo = "host=127.0.0.1 port=1"});
#endif
#ifdef CONSUMER_REDIS
    asched::RedisEventBroker redis;
#endif
#ifdef CONSUMER_MARIADB
    asched::MariaDbDataStore mariadb({.port = 1}); // Connector/C linked, not connected
#endif
#ifdef CONSUMER_MQTT
    asched::MqttEventBroker mqtt; // libmosquitto linked, not connected
#endif
    asched::Scheduler scheduler(std::move(options));
    scheduler.add_task("answer", [](int a, int b) { return a * b; });
    scheduler.start_in_background();
    const auto value = scheduler.run_job("answer", {.args = {6, 7}});
    scheduler.stop();
#ifdef CONSUMER_SQLITE
    std::filesystem::remove(path);
#endif
    if (value.get<int>() != 42) {
        std::cerr << "consumer: expected 42, got " << value.dump() << "\n";
        return 1;
    }
    std::cout << "consumer ok: " << value.get<int>() << "\n";
    return 0;
}
