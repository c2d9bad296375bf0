// asched's one exception type and its error codes.
#pragma once

#include <string>
#include <system_error>

namespace asched {

/// What went wrong; the category of every asched::Error.
enum class errc {
    invalid_argument = 1, ///< a value given by the caller is out of range or malformed
    task_lookup,          ///< no task with that id
    schedule_lookup,      ///< no schedule with that id
    job_lookup,           ///< no job or result with that id
    conflicting_id,       ///< a schedule with that id exists (ConflictPolicy::exception)
    serialization,        ///< a value could not be turned into JSON
    deserialization,      ///< stored JSON could not be turned back into a value
    job_failed,           ///< run_job: the job raised an exception
    job_cancelled,        ///< run_job: the job was cancelled
    job_deadline_missed,  ///< run_job: the job missed its start deadline
    job_abandoned,        ///< run_job: the job's worker died or its lease ran out
    max_iterations,       ///< a combining trigger found no common fire time
    not_running,          ///< the operation needs a scheduler in another run state
    store_failure,        ///< the data store or broker failed
    job_timed_out,        ///< run_job: the job ran past its timeout and was cancelled
    wait_timed_out,       ///< run_job: no result within its wait bound (the job goes on)
    identity_in_use,      ///< start: a live scheduler has this identity in the store
};

/// The error category of asched::errc.
const std::error_category &error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// The one exception type asched throws. The message names the field, position and value at
/// fault, e.g. `interval trigger: field 'seconds': total interval must be positive, got 0`.
class Error : public std::system_error {
  public:
    Error(errc code, const std::string &what)
        : std::system_error(make_error_code(code), what), message_(what) {}
    /// Exactly the message given: no category text appended.
    const char *what() const noexcept override { return message_.c_str(); }
    errc code_value() const noexcept { return static_cast<errc>(code().value()); }

  private:
    std::string message_;
};

} // namespace asched

template <> struct std::is_error_code_enum<asched::errc> : std::true_type {};
