// The admin endpoint: HTTP/1.1 on the scheduler's executor, serving Prometheus metrics, a
// health check, a JSON API and a web dashboard (component asched::admin).
#pragma once

#include <asched/async_scheduler.hpp>
#include <asched/logger.hpp>
#include <asched/time.hpp>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asched {

struct AdminServerOptions {
    /// The address to listen on. The default takes connections from this host only; a
    /// loopback listener also refuses requests whose Host header names another host (DNS
    /// rebinding). Any other address needs a token, or allow_unauthenticated and
    /// allowed_hosts: start() refuses it otherwise.
    std::string address = "127.0.0.1";
    /// 0: a free port chosen by the system (local_endpoint() tells which).
    std::uint16_t port = 0;
    /// When set, every mutating request (pause, resume, run-now, remove, cancel) must carry
    /// `Authorization: Bearer <token>`; reads stay open. Unset: anyone who can connect may
    /// change schedules (fine on loopback for one user, not on a shared host).
    std::optional<std::string> token;
    /// A listener that is not on loopback may run without a token only when this says so
    /// (start() then logs a warning): anyone who reaches the port may change schedules.
    bool allow_unauthenticated = false;
    /// Host header values (a name or address, with or without ":PORT") this server answers to
    /// on a listener that is not on loopback; any other gets 403 (DNS rebinding). Empty: every
    /// Host, which start() allows only with a token.
    std::vector<std::string> allowed_hosts;
    std::size_t max_header_bytes = 8 * 1024; ///< request line and headers: 431 beyond
    std::size_t max_body_bytes = 64 * 1024;  ///< 413 beyond
    /// A request must arrive whole within this time of its first byte, and an idle
    /// keep-alive connection is closed after it (408 for a request cut short).
    duration read_timeout = std::chrono::seconds(10);
    /// An answer must be written within this time, or its connection is closed (a client that
    /// stops reading must not hold a connection slot).
    duration write_timeout = std::chrono::seconds(10);
    /// Connections served at once; one more is answered 503 and closed.
    std::size_t max_connections = 64;
    /// Where start()'s warning and the accept loop's trouble (out of file descriptors) go.
    Logger logger;
    /// Recent results shown by the dashboard (GET /api/overview).
    std::size_t recent_results = 50;
};

/// Serves one AsyncScheduler (which must outlive it) on that scheduler's executor. The
/// scheduler need not run jobs: `asched serve` opens a store and serves it.
///
/// Routes (JSON unless said; times are ISO 8601 UTC):
///   GET  /                       the dashboard (HTML, CSS and JS compiled in)
///   GET  /healthz                200 {"status":"ok"}, or 503 {"status":"degraded","reason"}
///   GET  /metrics                Prometheus text (AsyncScheduler::metrics())
///   GET  /api/overview           everything the dashboard shows, in one answer
///   GET  /api/tasks | /api/schedules | /api/schedules/ID | /api/workers | /api/store/check
///   GET  /api/jobs[?task=T&running=1] | /api/jobs/ID (a finished job: its result)
///   GET  /api/results[?task=&schedule=&outcome=&since=&limit=]
///   POST /api/schedules/ID/pause | /resume (body {"from":"stored"|"now"|TIME}) | /run-now
///   DELETE /api/schedules/ID
///   POST /api/jobs/ID/cancel
/// Mutations need `Content-Type: application/json` (so that a page of another site cannot
/// send one with a plain form), the bearer token when one is set, and an Origin, when sent,
/// that matches the Host. Errors are {"error": message} with 400 (bad value), 401, 403,
/// 404 (unknown id or route), 405, 409, 413, 415, 431, 503 (the store failed).
class AdminServer {
  public:
    AdminServer(AsyncScheduler &scheduler, AdminServerOptions options = {});
    ~AdminServer();
    AdminServer(const AdminServer &) = delete;
    AdminServer &operator=(const AdminServer &) = delete;

    /// Binds and listens; throws Error(invalid_argument) naming the address and port when it
    /// cannot, and for a listener off loopback without a token (unless allow_unauthenticated
    /// and allowed_hosts say so). Connections are then served until stop().
    asio::awaitable<void> start();
    /// Closes the listener and every connection, and waits until their handlers ended.
    asio::awaitable<void> stop();

    asio::ip::tcp::endpoint local_endpoint() const;
    /// "http://127.0.0.1:PORT/" (an IPv6 address in brackets).
    std::string url() const;

    struct State;

  private:
    std::shared_ptr<State> state_;
};

} // namespace asched
