// The job a thread-pool thread is running, so that a blocking call that would wait for that
// very job (the facade's wait_until_stopped() or destructor) can refuse instead of hanging.
#pragma once

#include <asched/job_context.hpp>

namespace asched::detail {

/// Set by ThreadPoolExecutor while a callable runs on this thread; null elsewhere.
const JobContext *current_blocking_job() noexcept;

} // namespace asched::detail
