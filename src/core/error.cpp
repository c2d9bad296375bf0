// The asched error category.
#include <asched/error.hpp>

namespace asched {
namespace {

class Category final : public std::error_category {
  public:
    const char *name() const noexcept override { return "asched"; }
    std::string message(int code) const override {
        switch (static_cast<errc>(code)) {
        case errc::invalid_argument:
            return "invalid argument";
        case errc::task_lookup:
            return "task not found";
        case errc::schedule_lookup:
            return "schedule not found";
        case errc::job_lookup:
            return "job not found";
        case errc::conflicting_id:
            return "conflicting id";
        case errc::serialization:
            return "serialization failed";
        case errc::deserialization:
            return "deserialization failed";
        case errc::job_failed:
            return "job failed";
        case errc::job_cancelled:
            return "job cancelled";
        case errc::job_deadline_missed:
            return "job missed its start deadline";
        case errc::job_abandoned:
            return "job abandoned";
        case errc::max_iterations:
            return "maximum iterations reached";
        case errc::not_running:
            return "wrong run state";
        case errc::store_failure:
            return "data store failure";
        case errc::job_timed_out:
            return "job timed out";
        case errc::wait_timed_out:
            return "wait timed out";
        case errc::identity_in_use:
            return "identity in use";
        }
        return "unknown asched error";
    }
};

} // namespace

const std::error_category &error_category() noexcept {
    static const Category category;
    return category;
}

} // namespace asched
