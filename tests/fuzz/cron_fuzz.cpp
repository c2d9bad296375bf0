// libFuzzer target: the cron field parser and the crontab constructor must either build a
// trigger or throw asched::Error, never crash, and every next() must terminate.
#include <asched/error.hpp>
#include <asched/triggers/cron_trigger.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

void exercise(const asched::CronTrigger &t) {
    std::optional<asched::time_point> prev;
    for (int i = 0; i < 4; ++i) {
        prev = t.next(prev);
        if (!prev)
            break;
    }
    (void)t.to_json();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size == 0)
        return 0;
    static const asched::TimeZone berlin("Europe/Berlin"); // DST gaps and overlaps
    static const auto start = asched::parse_time("2025-03-29T23:00:00Z");
    const std::string_view text(reinterpret_cast<const char *>(data) + 1, size - 1);
    try {
        if (data[0] % 2 == 0) {
            // The first byte also picks the crontab layout and the day/day_of_week reading.
            static constexpr asched::CrontabFields layouts[] = {
                asched::CrontabFields::standard, asched::CrontabFields::with_seconds,
                asched::CrontabFields::with_year, asched::CrontabFields::with_seconds_and_year,
                asched::CrontabFields::croner};
            asched::CrontabOptions o;
            o.fields = layouts[(data[0] / 2) % 5];
            o.day_match =
                data[0] >= 128 ? asched::CronDayMatch::either : asched::CronDayMatch::both;
            o.start_time = start;
            exercise(asched::CronTrigger::from_crontab(text, berlin, o));
        } else {
            // Up to eight fields separated by newlines, in significance order; empty lines unset.
            asched::CronTriggerOptions o;
            std::optional<std::string> *slots[] = {&o.year,        &o.month, &o.day,    &o.week,
                                                   &o.day_of_week, &o.hour,  &o.minute, &o.second};
            std::size_t field = 0, pos = 0;
            while (field < 8 && pos <= text.size()) {
                const auto nl = text.find('\n', pos);
                const auto part = text.substr(
                    pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
                if (!part.empty())
                    *slots[field] = std::string(part);
                ++field;
                if (nl == std::string_view::npos)
                    break;
                pos = nl + 1;
            }
            o.start_time = start;
            o.timezone = berlin;
            exercise(asched::CronTrigger(o));
        }
    } catch (const asched::Error &) {
        // A clear error is the expected answer to junk.
    }
    return 0;
}
