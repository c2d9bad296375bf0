// The dashboard in a real browser: `asched serve` over a SQLite file that a running scheduler
// uses, Debian's headless Chromium driven through chromedriver (W3C WebDriver over HTTP). The
// page must show the schedules, a click on Pause must reach the store, and a screenshot at
// 1280x800 is written to the build folder (the README's picture is a copy of it).
#include "cli_support.hpp"
#include "servers.hpp"

#include <asched/data_stores/sqlite_data_store.hpp>
#include <asched/scheduler.hpp>

#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/write.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/socket.h>
#include <sys/time.h>

using namespace std::chrono_literals;
using namespace asched::proc;
using nlohmann::json;

namespace {

const char *const chromium = "/usr/bin/chromium";
const char *const chromedriver = "/usr/bin/chromedriver";

struct HttpReply {
    int status = 0;
    std::string body;
};

// One request on a fresh connection; the answer is read by its Content-Length (chromedriver
// keeps the connection open whatever the request says). Every read is bounded: a silent peer
// fails the test instead of hanging it.
HttpReply http(std::uint16_t port, const std::string &method, const std::string &target,
               const std::string &body = {}) {
    asio::io_context ioc;
    asio::ip::tcp::socket socket(ioc);
    socket.connect({asio::ip::address_v4::loopback(), port});
    const timeval limit{60, 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    std::string request = method + " " + target +
                          " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                          "\r\nConnection: close\r\n";
    if (method != "GET")
        request +=
            "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n";
    request += "\r\n" + body;
    asio::write(socket, asio::buffer(request));
    std::string raw;
    const auto fail = [&](const std::string &why) {
        return std::runtime_error("HTTP " + method + " " + target + ": " + why);
    };
    asio::error_code ec;
    const std::size_t head = asio::read_until(socket, asio::dynamic_buffer(raw), "\r\n\r\n", ec);
    if (ec)
        throw fail("no answer: " + ec.message());
    HttpReply r;
    r.status = std::stoi(raw.substr(9, 3));
    std::string lower = raw.substr(0, head);
    for (auto &c : lower)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    const auto at = lower.find("\r\ncontent-length:");
    if (at == std::string::npos)
        throw fail("no Content-Length");
    const std::size_t length = std::stoul(lower.substr(at + 17));
    if (raw.size() < head + length)
        asio::read(socket, asio::dynamic_buffer(raw),
                   asio::transfer_exactly(head + length - raw.size()), ec);
    if (ec || raw.size() < head + length)
        throw fail("the answer was cut short");
    r.body = raw.substr(head, length);
    return r;
}

std::string base64_decode(const std::string &in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z')
            return c - 'A';
        if (c >= 'a' && c <= 'z')
            return c - 'a' + 26;
        if (c >= '0' && c <= '9')
            return c - '0' + 52;
        return c == '+' ? 62 : c == '/' ? 63 : -1;
    };
    std::string out;
    unsigned bits = 0;
    int count = 0;
    for (char c : in) {
        const int v = value(c);
        if (v < 0)
            continue; // padding and line breaks
        bits = (bits << 6) | unsigned(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out.push_back(char((bits >> count) & 0xFF));
        }
    }
    return out;
}

// A chromedriver process and one headless Chromium session in it.
class Browser {
  public:
    explicit Browser(const Dir &dir) : port_(asched::test::free_port()) {
        BOOST_REQUIRE_MESSAGE(std::filesystem::exists(chromium) &&
                                  std::filesystem::exists(chromedriver),
                              "the dashboard test needs Debian's chromium and chromium-driver "
                              "(scripts/run.sh test installs them)");
        driver_.spawn({chromedriver, "--port=" + std::to_string(port_), "--silent",
                       "--log-path=" + (dir / "chromedriver.log")});
        eventually(
            [&] {
                try {
                    return json::parse(http(port_, "GET", "/status").body)["value"]["ready"] ==
                           true;
                } catch (const std::exception &) {
                    return false;
                }
            },
            "chromedriver answers /status", 30s);
        const json capabilities{
            {"capabilities",
             {{"alwaysMatch",
               {{"browserName", "chrome"},
                {"goog:chromeOptions",
                 {{"binary", chromium},
                  {"args",
                   {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--hide-scrollbars", "--window-size=1280,800",
                    "--user-data-dir=" + (dir / "chromium-profile")}}}}}}}}};
        session_ = call("POST", "/session", capabilities)["sessionId"].get<std::string>();
    }
    ~Browser() {
        try {
            if (!session_.empty())
                http(port_, "DELETE", "/session/" + session_);
        } catch (const std::exception &) {
            // chromedriver is killed below either way
        }
    }

    // A WebDriver command on this session; fails with WebDriver's own error message.
    json command(const std::string &method, const std::string &path, const json &body = {}) {
        return call(method, "/session/" + session_ + path, body);
    }
    void open(const std::string &url) { command("POST", "/url", {{"url", url}}); }
    // Sizes the window so that the page itself (the viewport) is width x height.
    void set_viewport(int width, int height) {
        const json inner = command("POST", "/execute/sync",
                                   {{"script", "return [window.innerWidth, window.innerHeight];"},
                                    {"args", json::array()}});
        const json outer = command("GET", "/window/rect");
        command("POST", "/window/rect",
                {{"width", outer["width"].get<int>() + width - inner[0].get<int>()},
                 {"height", outer["height"].get<int>() + height - inner[1].get<int>()}});
    }
    // The first element matching `css`, or nullopt.
    std::optional<std::string> find(const std::string &css) {
        const HttpReply r = http(port_, "POST", "/session/" + session_ + "/elements",
                                 json{{"using", "css selector"}, {"value", css}}.dump());
        const json found = json::parse(r.body)["value"];
        if (r.status != 200 || !found.is_array() || found.empty())
            return std::nullopt;
        return found[0].begin().value().get<std::string>();
    }
    // The page redraws its tables every 2 s, so an element found by one command may be gone by
    // the next: text is read in one script run, and a click on a replaced element is retried.
    std::optional<std::string> text_of(const std::string &css) {
        const json v = command("POST", "/execute/sync",
                               {{"script", "const e = document.querySelector(arguments[0]); "
                                           "return e ? e.innerText : null;"},
                                {"args", json::array({css})}});
        if (v.is_null())
            return std::nullopt;
        return v.get<std::string>();
    }
    // Waits until an element matches `css`; returns its text.
    std::string wait_for(const std::string &css, const char *what) {
        std::optional<std::string> text;
        eventually([&] { return bool(text = text_of(css)); }, what, 30s);
        return *text;
    }
    void click(const std::string &css, const char *what) {
        eventually(
            [&] {
                const auto element = find(css);
                if (!element)
                    return false;
                const HttpReply r =
                    http(port_, "POST", "/session/" + session_ + "/element/" + *element + "/click",
                         "{}");
                if (r.status == 200)
                    return true;
                const std::string error = json::parse(r.body)["value"].value("error", "");
                if (error != "stale element reference")
                    throw std::runtime_error("WebDriver click on " + css + ": " + r.body);
                return false;
            },
            what, 30s);
    }
    std::string screenshot_png() {
        return base64_decode(command("GET", "/screenshot").get<std::string>());
    }

  private:
    json call(const std::string &method, const std::string &target, const json &body) {
        const HttpReply r = http(port_, method, target, body.is_null() ? "" : body.dump());
        const json answer = json::parse(r.body);
        if (r.status != 200)
            throw std::runtime_error("WebDriver " + method + " " + target + ": " +
                                     answer["value"].value("message", r.body.substr(0, 300)));
        return answer["value"];
    }

    std::uint16_t port_;
    asched::test::Process driver_;
    std::string session_;
};

std::pair<std::uint32_t, std::uint32_t> png_size(const std::string &png) {
    BOOST_REQUIRE(png.size() > 24 && png.compare(1, 3, "PNG") == 0);
    const auto be32 = [&](std::size_t at) {
        return std::uint32_t(std::uint8_t(png[at])) << 24 |
               std::uint32_t(std::uint8_t(png[at + 1])) << 16 |
               std::uint32_t(std::uint8_t(png[at + 2])) << 8 |
               std::uint32_t(std::uint8_t(png[at + 3]));
    };
    return {be32(16), be32(20)};
}

int nightly_backup() {
    return 0;
}
std::string report(std::string name) {
    return "report " + name + " sent";
}
int flaky_export() {
    throw std::runtime_error("export target refused the upload (HTTP 503)");
}

} // namespace

BOOST_AUTO_TEST_SUITE(dashboard)

BOOST_AUTO_TEST_CASE(schedules_shown_and_paused_from_a_real_browser) {
    Dir dir;
    const std::string file = dir / "dashboard.db";
    // A scheduler that runs a few jobs and keeps running: the page shows its worker row and
    // results next to the schedules.
    asched::AsyncSchedulerOptions o;
    o.data_store =
        std::make_shared<asched::SqliteDataStore>(asched::SqliteDataStoreOptions{.path = file});
    o.identity = "billing-worker-1";
    o.logger.level = asched::LogLevel::off;
    asched::Scheduler s(o);
    s.add_task("nightly_backup", nightly_backup);
    s.add_task("report", report);
    s.add_task("flaky_export", flaky_export);
    asched::ScheduleOptions backup;
    backup.id = "nightly-backup";
    s.add_schedule("nightly_backup", asched::CronTrigger::from_crontab("30 2 * * *"), backup);
    asched::ScheduleOptions weekly;
    weekly.id = "weekly-report";
    weekly.args = json::array({"sales"});
    s.add_schedule("report", asched::CronTrigger::from_crontab("0 8 * * mon"), weekly);
    asched::ScheduleOptions exports;
    exports.id = "hourly-export";
    exports.paused = true;
    s.add_schedule("flaky_export", asched::IntervalTrigger({.hours = 1}), exports);
    s.start_in_background();
    asched::JobOptions keep{.result_expiration_time = 1h};
    keep.args = json::array({"daily"});
    BOOST_TEST(s.run_job("report", keep) == "report daily sent");
    asched::JobOptions failing{.result_expiration_time = 1h};
    BOOST_CHECK_THROW(s.run_job("flaky_export", failing), asched::Error);

    // `asched serve` on a free port, read from its first line.
    const pid_t serve = spawn_cli({"--store", "sqlite:" + file, "serve", "--listen", "127.0.0.1:0"},
                                  dir / "serve.out", dir / "serve.err");
    std::string url;
    eventually(
        [&] {
            url = slurp(dir / "serve.out");
            return url.find('\n') != std::string::npos;
        },
        "asched serve prints its URL", 30s);
    url.erase(url.find('\n'));
    BOOST_TEST_MESSAGE("asched serve: " << url);
    BOOST_REQUIRE(url.rfind("http://127.0.0.1:", 0) == 0);

    {
        Browser browser(dir);
        browser.open(url);
        browser.set_viewport(1280, 800);
        browser.wait_for("body[data-loaded='true']", "the page loaded its overview");
        // Every schedule is on the page, with its state.
        BOOST_TEST(browser.wait_for("tr[data-schedule-id='nightly-backup']", "the backup row")
                       .find("nightly_backup") != std::string::npos);
        BOOST_TEST(
            browser.find("tr[data-schedule-id='weekly-report'][data-state='active']").has_value());
        BOOST_TEST(
            browser.find("tr[data-schedule-id='hourly-export'][data-state='paused']").has_value());
        // The worker and the results, with the failed job's error.
        BOOST_TEST(
            browser.wait_for("#workers tbody tr", "the worker row").find("billing-worker-1") !=
            std::string::npos);
        BOOST_TEST(browser.wait_for("#results td.outcome-error", "the failed result") == "error");
        BOOST_TEST(
            browser.wait_for("#results td.error:not(:empty)", "its error").find("HTTP 503") !=
            std::string::npos);

        // Pause from the page: the row turns paused, and so does the stored schedule.
        BOOST_TEST(!s.get_schedule("nightly-backup").paused);
        browser.click("tr[data-schedule-id='nightly-backup'] button[data-action='pause']", "Pause");
        browser.wait_for("tr[data-schedule-id='nightly-backup'][data-state='paused']",
                         "the row shows the schedule paused");
        BOOST_TEST(s.get_schedule("nightly-backup").paused);
        BOOST_TEST(!s.get_schedule("weekly-report").paused);

        const std::string png = browser.screenshot_png();
        const auto [width, height] = png_size(png);
        BOOST_TEST(width == 1280u);
        BOOST_TEST(height == 800u);
        std::ofstream(ASCHED_SCREENSHOT, std::ios::binary) << png;
        BOOST_TEST_MESSAGE("dashboard screenshot: " << ASCHED_SCREENSHOT);
    }

    ::kill(serve, SIGTERM);
    BOOST_TEST(wait_exit(serve, 30s) == 0);
    BOOST_TEST(slurp(dir / "serve.err").find("asched serve: stopping") != std::string::npos);
    s.stop();
    s.wait_until_stopped();
}

BOOST_AUTO_TEST_CASE(serve_refuses_a_bad_listen_address_and_a_missing_store) {
    Dir dir;
    const std::string store = "sqlite:" + (dir / "x.db");
    const pid_t p = spawn_cli({"--store", store, "serve", "--listen", "127.0.0.1:99999"},
                              dir / "out", dir / "err");
    BOOST_TEST(wait_exit(p, 30s) == 2);
    BOOST_TEST(slurp(dir / "err")
                   .find("--listen \"127.0.0.1:99999\": the port '99999' is not "
                         "0-65535") != std::string::npos);
    const pid_t q = spawn_cli({"--store", store, "serve", "--listen", "localhost:8080"},
                              dir / "out", dir / "err");
    BOOST_TEST(wait_exit(q, 30s) == 2);
    BOOST_TEST(slurp(dir / "err").find("address 'localhost' is not an IP address") !=
               std::string::npos);
    // It serves a store, never creates one: a mistyped path is refused.
    const pid_t r =
        spawn_cli({"--store", store, "serve", "--listen", "127.0.0.1:0"}, dir / "out", dir / "err");
    BOOST_TEST(wait_exit(r, 30s) == 1);
    BOOST_TEST(slurp(dir / "err").find("no such file") != std::string::npos);
    BOOST_TEST(!std::filesystem::exists(dir / "x.db"));
}

BOOST_AUTO_TEST_SUITE_END()
