// 08: structured logs through spdlog. The Logger's structured sink gets each message with the
// scheduler, task, schedule, job and attempt it is about; here one spdlog logger shows them to
// people as key=value pairs, another writes them as JSON lines for a log pipeline.
#include <asched/asched.hpp>

#include <asio.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {

spdlog::level::level_enum to_spdlog(asched::LogLevel l) {
    switch (l) {
    case asched::LogLevel::debug:
        return spdlog::level::debug;
    case asched::LogLevel::info:
        return spdlog::level::info;
    case asched::LogLevel::warning:
        return spdlog::level::warn;
    case asched::LogLevel::error:
        return spdlog::level::err;
    case asched::LogLevel::off:
        break;
    }
    return spdlog::level::off;
}

// The fields that apply (an empty one does not), in a fixed order.
std::vector<std::pair<const char *, std::string>> fields_of(const asched::LogFields &f) {
    std::vector<std::pair<const char *, std::string>> out;
    const auto add = [&](const char *name, std::string_view v) {
        if (!v.empty())
            out.emplace_back(name, std::string(v));
    };
    add("scheduler", f.scheduler);
    add("task", f.task);
    add("schedule", f.schedule);
    add("job", f.job);
    if (f.attempt > 0)
        out.emplace_back("attempt", std::to_string(f.attempt));
    return out;
}

// Fails on its first attempt: the retry shows the attempt field changing.
asio::awaitable<std::string> sync_invoices(asched::JobContext &job) {
    if (job.attempt == 1)
        throw std::runtime_error("billing API answered 502");
    co_return "synced on attempt " + std::to_string(job.attempt);
}

asio::awaitable<void> body(asched::AsyncScheduler &s) {
    asched::TaskOptions retried;
    retried.retry = asched::RetryPolicy{.max_attempts = 3, .initial_delay = 50ms, .jitter = 0};
    co_await s.add_task("sync_invoices", sync_invoices, retried);
    co_await s.start_in_background();
    asched::JobOptions o{.id = "invoices-2026-12", .wait_timeout = 10s};
    const auto value = co_await s.run_job("sync_invoices", o);
    std::printf("result: %s\n", value.dump().c_str());
}

} // namespace

int main() try {
    auto people = spdlog::stdout_logger_mt("asched");
    people->set_pattern("%H:%M:%S.%e %-7l %v");
    people->set_level(spdlog::level::debug);
    std::ostringstream json_lines;
    auto pipeline = std::make_shared<spdlog::logger>(
        "asched-json", std::make_shared<spdlog::sinks::ostream_sink_st>(json_lines));
    pipeline->set_pattern("%v");
    pipeline->set_level(spdlog::level::debug);

    asched::AsyncSchedulerOptions options;
    options.identity = "example-08";
    options.logger.level = asched::LogLevel::debug;
    options.logger.structured_sink = [&](asched::LogLevel level, std::string_view message,
                                         const asched::LogFields &fields) {
        const auto kv = fields_of(fields);
        std::string pairs;
        nlohmann::json line{{"level", asched::to_string(level)}, {"message", message}};
        for (const auto &[name, value] : kv) {
            pairs += fmt::format(" {}={}", name, value);
            line[name] = name == std::string_view("attempt") ? nlohmann::json(std::stoi(value))
                                                             : nlohmann::json(value);
        }
        people->log(to_spdlog(level), "{}{}", message, pairs);
        pipeline->log(to_spdlog(level), "{}", line.dump());
    };
    asio::io_context ioc;
    asched::AsyncScheduler scheduler(ioc, options);
    std::function<asio::awaitable<void>(asched::AsyncScheduler &)> run = body;
    auto done = asio::co_spawn(ioc, scheduler.scoped(run), asio::use_future);
    ioc.run();
    done.get();

    std::printf("as JSON lines:\n%s", json_lines.str().c_str());
    // The failed first attempt was logged with its job and attempt as fields.
    bool first_attempt_logged = false;
    std::istringstream lines(json_lines.str());
    for (std::string l; std::getline(lines, l);) {
        const auto j = nlohmann::json::parse(l);
        first_attempt_logged |= j.value("job", "") == "invoices-2026-12" &&
                                j.value("task", "") == "sync_invoices" &&
                                j.value("attempt", 0) == 1;
    }
    if (!first_attempt_logged)
        throw std::runtime_error("no log line named the job's first attempt");
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "08_spdlog_logging: %s\n", e.what());
    return 1;
}
