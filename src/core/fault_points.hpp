// Fault points for crash and failure tests: ASCHED_FAULTPOINTS="name=action[@n],..." makes
// the named point act on its n-th hit (default: the first, then every hit after for throw).
// Actions: kill (SIGKILL this process), stop (SIGSTOP it), abort, exit (_exit(86)), throw
// (Error(store_failure) from the point), drop (fault_point returns true: a point that holds a
// database connection closes it and fails as if the server's reply had been lost; other
// points ignore it). Unset, a point costs one relaxed atomic load. Compiled in only by a build
// configured with -DASCHED_FAULTPOINTS=ON (the test command's); otherwise every point is a
// constant false the compiler removes, and the environment variable is ignored.
// Points: schedules.acquired (schedules leased, not yet released), jobs.acquired (jobs
// leased, not yet started), jobs.releasing (a batch of finished jobs about to be released),
// store.migrating (the SQL stores, after each migration step, before the commit); in the
// release of fired schedules (the SQL stores' one transaction that creates a fire's jobs and
// advances its schedule): release.after_job_insert (after each job row), release.before_commit,
// release.after_commit_before_ack (committed, the caller not yet told).
#pragma once

#include <asched/config.hpp>

namespace asched::detail {

#if ASCHED_FAULTPOINTS
/// Acts as configured; true when the action is drop (the caller drops its connection).
bool fault_point(const char *name);
#else
constexpr bool fault_point(const char *) noexcept {
    return false;
}
#endif

} // namespace asched::detail
