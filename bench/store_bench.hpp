// What the SQL store benchmarks share: client processes run at once, and a figure printed as a
// line for people and a JSON line for bench/report.py.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace bench {

// Runs `work` in `clients` forked processes at once; the seconds until the last one ends.
template <class F> inline double in_processes(int clients, F work) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<pid_t> children;
    for (int i = 0; i < clients; ++i) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            work(i);
            std::_Exit(0);
        }
        children.push_back(pid);
    }
    for (pid_t pid : children) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            std::fprintf(stderr, "a benchmark process failed\n");
            std::exit(1);
        }
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Stat {
    double median, min, max;
};

inline Stat stat(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return {v[v.size() / 2], v.front(), v.back()};
}

inline void print(const std::string &name, const char *unit, const Stat &s, int reps,
                  const std::string &baseline = {}, double peer = 0) {
    std::printf("%-34s %12.0f %12.0f %12.0f %s\n", name.c_str(), s.median, s.min, s.max, unit);
    if (peer > 0)
        std::printf("{\"name\":\"%s\",\"unit\":\"%s\",\"median\":%.0f,\"min\":%.0f,\"max\":%.0f,"
                    "\"repetitions\":%d,"
                    "\"baseline\":\"%s\",\"baseline_median\":%.0f,\"ratio\":%.3f}\n",
                    name.c_str(), unit, s.median, s.min, s.max, reps, baseline.c_str(), peer,
                    s.median / peer);
    else
        std::printf("{\"name\":\"%s\",\"unit\":\"%s\",\"median\":%.0f,\"min\":%.0f,\"max\":%.0f,"
                    "\"repetitions\":%d}\n",
                    name.c_str(), unit, s.median, s.min, s.max, reps);
}

struct StoreFigures {
    double add = 0;  // jobs per second added, batches of 100
    double jobs = 0; // jobs per second acquired (batches of 100), run and released
};

/// The figures of one SQL store (`name`: "postgres", "mariadb") beside a bare claim on the same
/// server, for 1 and 2 client processes: `raw(clients, batch)` claims per second (batch 1: a
/// single-row claim transaction; 100: batched), `store(clients)` the store's rates.
inline void compare_with_raw_claims(const std::string &name, int reps, std::size_t n,
                                    const std::function<double(int, int)> &raw,
                                    const std::function<StoreFigures(int)> &store) {
    std::printf("%-34s %12s %12s %12s (%zu jobs, %d repetitions)\n", "figure", "median", "min",
                "max", n, reps);
    for (int clients : {1, 2}) {
        std::vector<double> single, batched, add, jobs;
        for (int r = 0; r < reps; ++r) {
            single.push_back(raw(clients, 1));
            batched.push_back(raw(clients, 100));
            const auto f = store(clients);
            add.push_back(f.add);
            jobs.push_back(f.jobs);
        }
        const auto suffix = "_" + std::to_string(clients);
        const auto raw_stat = stat(single);
        print(name + "_raw_claim" + suffix, "claims/s", raw_stat, reps);
        if (clients == 1)
            print(name + "_store_add_job", "jobs/s", stat(add), reps);
        const auto jobs_stat = stat(jobs);
        print(name + "_store_jobs" + suffix, "jobs/s", jobs_stat, reps,
              name + "_raw_claim" + suffix, raw_stat.median);
        std::printf("%s_store_jobs%s / raw claim with %d client(s): %.2f (target: above 1)\n",
                    name.c_str(), suffix.c_str(), clients, jobs_stat.median / raw_stat.median);
        const auto batched_stat = stat(batched);
        print(name + "_raw_claim_batched" + suffix, "claims/s", batched_stat, reps);
        std::printf("%s_store_jobs%s / raw batched claim with %d client(s): %.2f (target: at "
                    "least 0.5)\n",
                    name.c_str(), suffix.c_str(), clients, jobs_stat.median / batched_stat.median);
    }
}

} // namespace bench
