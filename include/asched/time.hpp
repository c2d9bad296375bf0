// Time vocabulary: UTC instants in microseconds, durations, and time zones (IANA or fixed).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace asched {

/// Every duration in asched: microseconds.
using duration = std::chrono::microseconds;
/// Every instant in asched: UTC, microsecond resolution.
using time_point = std::chrono::sys_time<std::chrono::microseconds>;

/// A span of time over which a zone's UTC offset is constant: [begin, end).
struct OffsetPeriod {
    time_point begin;
    time_point end;
    std::chrono::seconds offset{0};
};

/// A local (wall-clock) time with microseconds, in no particular zone.
using local_time = std::chrono::local_time<duration>;

/// How a wall-clock time maps onto instants in a zone.
struct LocalTimeInfo {
    enum class Kind { unique, nonexistent, ambiguous } kind = Kind::unique;
    time_point first{};  ///< unique: the instant; ambiguous: the earlier (DST) one
    time_point second{}; ///< ambiguous: the later one
};

/// A time zone: an IANA zone ("Europe/Berlin", "UTC") read from the system tzdata, or a fixed
/// UTC offset ("+05:30"). A cheap value: copying shares the zone database entry.
class TimeZone {
  public:
    /// UTC.
    TimeZone();
    /// Throws Error(invalid_argument) naming the zone when it is unknown or malformed.
    explicit TimeZone(std::string_view name_or_offset);
    static TimeZone utc() { return TimeZone(); }
    static TimeZone fixed(std::chrono::seconds offset);

    /// "UTC", "Europe/Berlin" or "+05:30".
    const std::string &name() const noexcept { return name_; }
    bool is_fixed() const noexcept { return zone_ == nullptr; }
    /// The UTC offset in force at the instant `t`. After the last transition stored in the
    /// zone file (2037 on Debian) the file's POSIX-TZ footer rule applies.
    std::chrono::seconds offset_at(time_point t) const;
    /// The period of constant offset that contains `t`.
    OffsetPeriod period_at(time_point t) const;
    /// Which instants show the wall time `local` (none in a gap, two in a repeated hour).
    LocalTimeInfo resolve(local_time local) const;
    /// The wall time at `t`.
    local_time to_local(time_point t) const {
        return local_time((t + offset_at(t)).time_since_epoch());
    }
    /// `t` as local ISO 8601 with its offset: 2025-03-31T09:00:00+02:00 (fraction only if any).
    std::string format(time_point t) const;
    /// The underlying date::time_zone (nullptr for fixed offsets); for asched's own sources.
    const void *native() const noexcept { return zone_; }

    friend bool operator==(const TimeZone &a, const TimeZone &b) noexcept {
        return a.name_ == b.name_;
    }

  private:
    std::string name_;
    std::chrono::seconds offset_{0};
    const void *zone_ = nullptr;
    // The zone file's POSIX-TZ footer rule (a Posix::time_zone) and the instant from which it
    // governs, when the rule has DST: date's OS-tzdb reader stops at the last stored transition.
    std::shared_ptr<const void> footer_;
    time_point footer_from_{};
};

/// An instant together with the zone it was written in.
struct ZonedTime {
    time_point instant;
    TimeZone zone;
};

/// `t` as UTC ISO 8601: 2025-03-28T01:30:00Z, with a 6-digit fraction only when non-zero.
std::string format_time(time_point t);
/// Parses ISO 8601 with a `Z` or `+hh:mm` offset and an optional `[Area/Zone]` suffix.
/// Throws Error(invalid_argument) naming the text and the position that is wrong.
ZonedTime parse_zoned_time(std::string_view text);
/// parse_zoned_time(text).instant.
time_point parse_time(std::string_view text);

/// Seconds as a floating-point number (the JSON form of durations).
double to_seconds(duration d) noexcept;
/// Rounds to whole microseconds, half to even. Throws Error(invalid_argument) if not finite
/// or out of range.
duration from_seconds(double seconds);
/// A short human form: "1h30m", "2d", "250ms", "0s".
std::string format_duration(duration d);

} // namespace asched
