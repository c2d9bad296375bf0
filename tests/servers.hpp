// Real servers for the tests: each on loopback, on a free port, with a temporary data
// directory, stopped (and its directory removed) when the object goes away, also when a test
// fails. No system service is needed or touched.
#pragma once

#include "test_support.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

extern char** environ;

namespace asched::test {

/// A port nobody listens on right now (the kernel's choice for port 0).
inline std::uint16_t free_port() {
    asio::io_context ioc;
    asio::ip::tcp::acceptor a(ioc, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    return a.local_endpoint().port();
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
inline bool accepts(std::uint16_t port) {
    asio::io_context ioc;
    asio::ip::tcp::socket s(ioc);
    asio::error_code ec;
    s.connect(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port), ec);
    return !ec;
}

/// A child process; SIGKILLed and reaped at destruction if still running.
class Process {
public:
    Process() = default;
    explicit Process(std::vector<std::string> argv) { spawn(std::move(argv)); }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process() { kill(SIGKILL); }

    void spawn(std::vector<std::string> argv) {
        std::vector<char*> args;
        for (auto& a : argv)
            args.push_back(a.data());
        args.push_back(nullptr);
        if (posix_spawnp(&pid_, args[0], nullptr, nullptr, args.data(), environ) != 0)
            throw std::runtime_error("cannot start " + argv[0]);
    }
    /// Sends `sig` and reaps the process.
    void kill(int sig) {
        if (pid_ <= 0)
            return;
        ::kill(pid_, sig);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

private:
    pid_t pid_ = -1;
};

/// redis-server on a free loopback port, no persistence.
class RedisServer {
public:
    RedisServer() : port_(free_port()) { start(); }

    std::uint16_t port() const noexcept { return port_; }

    /// Starts it again on the same port (after stop()).
    void start() {
        process_.spawn({"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", dir_.path(""), "--logfile", dir_.path("redis.log")});
        wait_until(true);
    }
    /// Kills it (SIGKILL: like a crash), so clients see their connections drop.
    void stop() {
        process_.kill(SIGKILL);
        wait_until(false);
    }

private:
    void wait_until(bool up) const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (accepts(port_) != up) {
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error(std::string("redis-server did not ") + (up ? "start" : "stop"));
            std::this_thread::sleep_for(std::chrono::milliseconds(10)); // bounded poll for the port
        }
    }

    TempDir dir_;
    std::uint16_t port_;
    Process process_;
};

} // namespace asched::test
