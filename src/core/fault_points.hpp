// Fault points for crash and failure tests: ASCHED_FAULTPOINTS="name=action[@n],..." makes
// the named point act on its n-th hit (default: the first, then every hit after for throw).
// Actions: kill (SIGKILL this process), stop (SIGSTOP it), abort, exit (_exit(86)), throw
// (Error(store_failure) from the point). Unset, a point costs one relaxed atomic load.
// Points: schedules.acquired (schedules leased, not yet released), jobs.acquired (jobs
// leased, not yet started), jobs.releasing (a batch of finished jobs about to be released),
// store.migrating (the SQL stores, after each migration step, before the commit).
#pragma once

namespace asched::detail {

void fault_point(const char *name);

} // namespace asched::detail
