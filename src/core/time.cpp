// Time zones (date/tz on the system tzdata), ISO 8601 text and duration conversions.
#include <asched/error.hpp>
#include <asched/time.hpp>

#include <date/tz.h>
// ptz.h names hh_mm_ss unqualified under both `using namespace date` and `using namespace
// std::chrono`, which C++20 makes ambiguous; give it a name only date has for this include.
namespace date {
template <class Duration> using ptz_hh_mm_ss = hh_mm_ss<Duration>;
}
#define hh_mm_ss ptz_hh_mm_ss
#include <date/ptz.h>
#undef hh_mm_ss
#include <fmt/format.h>

#include <cfenv>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>

namespace asched {
namespace {

using std::chrono::seconds;

std::string format_offset(seconds off) {
    const char sign = off < seconds(0) ? '-' : '+';
    auto a = off < seconds(0) ? -off.count() : off.count();
    if (a % 60 != 0)
        return fmt::format("{}{:02}:{:02}:{:02}", sign, a / 3600, a / 60 % 60, a % 60);
    return fmt::format("{}{:02}:{:02}", sign, a / 3600, a / 60 % 60);
}

// Parses [+-]HH:MM[:SS] or [+-]HHMM; nullopt when `text` is not an offset.
std::optional<seconds> parse_offset(std::string_view text) {
    if (text.size() < 5 || (text[0] != '+' && text[0] != '-'))
        return std::nullopt;
    auto digits = [&](std::size_t at) -> int {
        if (at + 2 > text.size() || !std::isdigit(static_cast<unsigned char>(text[at])) ||
            !std::isdigit(static_cast<unsigned char>(text[at + 1])))
            return -1;
        return (text[at] - '0') * 10 + (text[at + 1] - '0');
    };
    int h = digits(1), m = -1, s = 0;
    if (text.size() == 5) {
        m = digits(3);
    } else if (text.size() == 6 && text[3] == ':') {
        m = digits(4);
    } else if (text.size() == 9 && text[3] == ':' && text[6] == ':') {
        m = digits(4);
        s = digits(7);
    }
    if (h < 0 || m < 0 || s < 0 || h > 23 || m > 59 || s > 59)
        return std::nullopt;
    seconds off{h * 3600 + m * 60 + s};
    return text[0] == '-' ? -off : off;
}

[[noreturn]] void bad_time(std::string_view text, std::size_t pos, std::string_view expected) {
    throw Error(errc::invalid_argument,
                fmt::format("time \"{}\": expected {} at position {}", text, expected, pos + 1));
}

std::string format_local(time_point t, seconds offset) {
    const auto local = t + offset;
    const auto day = std::chrono::floor<std::chrono::days>(local);
    const std::chrono::year_month_day ymd{day};
    const std::chrono::hh_mm_ss hms{local - day};
    std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", int(ymd.year()),
                                  unsigned(ymd.month()), unsigned(ymd.day()), hms.hours().count(),
                                  hms.minutes().count(), hms.seconds().count());
    if (auto us = hms.subseconds().count(); us != 0)
        out += fmt::format(".{:06}", us);
    return out;
}

struct Footer {
    std::shared_ptr<const void> rule; // Posix::time_zone
    time_point from{};
};

// Reads the POSIX-TZ rule at the end of a TZif v2+ file; only rules with DST matter, as date
// already keeps a constant offset after the last stored transition. Zone data is immutable, so
// it is read once per process per zone.
Footer load_footer(const std::string &name, const date::time_zone *zone) {
    static std::mutex mutex;
    static std::map<std::string, Footer> cache;
    std::lock_guard lock(mutex);
    if (auto it = cache.find(name); it != cache.end())
        return it->second;
    Footer footer;
    std::ifstream in("/usr/share/zoneinfo/" + name, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    std::string data = buffer.str();
    while (!data.empty() && data.back() == '\n')
        data.pop_back();
    const auto nl = data.rfind('\n');
    const std::string rule = nl == std::string::npos ? "" : data.substr(nl + 1);
    if (rule.find(',') != std::string::npos && rule.find('\0') == std::string::npos) {
        try {
            auto posix = std::make_shared<const Posix::time_zone>(rule);
            const auto last = zone->get_info(date::sys_days(date::year(9000) / 1 / 1));
            footer.rule = posix;
            footer.from = time_point(last.begin);
        } catch (const std::exception &) {
            // An unreadable footer leaves date's own behaviour in place.
        }
    }
    cache.emplace(name, footer);
    return footer;
}

} // namespace

TimeZone::TimeZone() : name_("UTC") {}

TimeZone::TimeZone(std::string_view text) {
    if (text == "UTC" || text == "Z" || text == "utc") {
        name_ = "UTC";
        return;
    }
    if (auto off = parse_offset(text)) {
        offset_ = *off;
        name_ = format_offset(*off);
        return;
    }
    if (text.empty() || text.find_first_of(" \t\n") != std::string_view::npos)
        throw Error(errc::invalid_argument, fmt::format("time zone \"{}\": not a zone name", text));
    try {
        zone_ = date::locate_zone(text);
    } catch (const std::exception &) {
        throw Error(
            errc::invalid_argument,
            fmt::format("time zone \"{}\": unknown IANA zone (not in the system tzdata)", text));
    }
    name_ = std::string(text);
    auto footer = load_footer(name_, static_cast<const date::time_zone *>(zone_));
    footer_ = std::move(footer.rule);
    footer_from_ = footer.from;
}

TimeZone TimeZone::fixed(seconds offset) {
    if (offset <= -std::chrono::hours(24) || offset >= std::chrono::hours(24))
        throw Error(errc::invalid_argument,
                    fmt::format("time zone offset {} s: must be within 24 hours", offset.count()));
    return TimeZone(format_offset(offset));
}

seconds TimeZone::offset_at(time_point t) const {
    return period_at(t).offset;
}

OffsetPeriod TimeZone::period_at(time_point t) const {
    if (!zone_)
        return {time_point::min(), time_point::max(), offset_};
    const auto st = std::chrono::floor<seconds>(t);
    auto to_period = [](const date::sys_info &info) {
        const auto lo =
            info.begin <= date::sys_seconds::min() ? time_point::min() : time_point(info.begin);
        const auto hi =
            info.end >= date::sys_seconds::max() ? time_point::max() : time_point(info.end);
        return OffsetPeriod{lo, hi, info.offset};
    };
    if (footer_ && t >= footer_from_) {
        auto p = to_period(static_cast<const Posix::time_zone *>(footer_.get())->get_info(st));
        p.begin = std::max(p.begin, footer_from_);
        return p;
    }
    auto p = to_period(static_cast<const date::time_zone *>(zone_)->get_info(st));
    if (footer_)
        p.end = std::min(p.end, footer_from_);
    return p;
}

LocalTimeInfo TimeZone::resolve(local_time local) const {
    if (!zone_)
        return {LocalTimeInfo::Kind::unique, time_point(local.time_since_epoch()) - offset_, {}};
    const auto whole = std::chrono::floor<seconds>(local);
    const auto frac = local - whole;
    date::local_info info;
    // Beyond the stored transitions the footer rule decides (a day of margin for the offset).
    const date::local_seconds lt(whole.time_since_epoch());
    if (footer_ && time_point(local.time_since_epoch()) - std::chrono::hours(26) >= footer_from_)
        info = static_cast<const Posix::time_zone *>(footer_.get())->get_info(lt);
    else
        info = static_cast<const date::time_zone *>(zone_)->get_info(lt);
    const time_point as_utc(whole.time_since_epoch());
    switch (info.result) {
    case date::local_info::unique:
        return {LocalTimeInfo::Kind::unique, as_utc - info.first.offset + frac, {}};
    case date::local_info::nonexistent:
        return {LocalTimeInfo::Kind::nonexistent, {}, {}};
    default:
        return {LocalTimeInfo::Kind::ambiguous, as_utc - info.first.offset + frac,
                as_utc - info.second.offset + frac};
    }
}

std::string TimeZone::format(time_point t) const {
    const auto off = offset_at(t);
    return format_local(t, off) + format_offset(off);
}

std::string format_time(time_point t) {
    return format_local(t, seconds(0)) + "Z";
}

ZonedTime parse_zoned_time(std::string_view text) {
    // YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM)[[Area/Zone]]
    auto num = [&](std::size_t at, std::size_t n, std::string_view what) {
        int v = 0;
        for (std::size_t i = at; i < at + n; ++i) {
            if (i >= text.size() || !std::isdigit(static_cast<unsigned char>(text[i])))
                bad_time(text, i, what);
            v = v * 10 + (text[i] - '0');
        }
        return v;
    };
    auto expect = [&](std::size_t at, char c) {
        if (at >= text.size() || text[at] != c)
            bad_time(text, at, fmt::format("'{}'", c));
    };
    const int y = num(0, 4, "a 4-digit year");
    expect(4, '-');
    const int mo = num(5, 2, "a 2-digit month");
    expect(7, '-');
    const int d = num(8, 2, "a 2-digit day");
    expect(10, 'T');
    const int h = num(11, 2, "a 2-digit hour");
    expect(13, ':');
    const int mi = num(14, 2, "2-digit minutes");
    expect(16, ':');
    const int s = num(17, 2, "2-digit seconds");
    std::size_t pos = 19;
    long us = 0;
    if (pos < text.size() && text[pos] == '.') {
        std::size_t n = 0;
        ++pos;
        while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])) && n < 6) {
            us = us * 10 + (text[pos] - '0');
            ++pos;
            ++n;
        }
        if (n == 0)
            bad_time(text, pos, "fraction digits");
        for (; n < 6; ++n)
            us *= 10;
    }
    const std::chrono::year_month_day ymd{std::chrono::year(y), std::chrono::month(mo),
                                          std::chrono::day(d)};
    if (!ymd.ok())
        throw Error(errc::invalid_argument, fmt::format("time \"{}\": no such date", text));
    if (h > 23 || mi > 59 || s > 59)
        throw Error(errc::invalid_argument,
                    fmt::format("time \"{}\": time of day out of range", text));
    seconds offset{0};
    const bool zulu = pos < text.size() && text[pos] == 'Z';
    if (zulu) {
        ++pos;
    } else {
        const std::size_t start = pos;
        while (pos < text.size() && text[pos] != '[')
            ++pos;
        auto off = parse_offset(text.substr(start, pos - start));
        if (!off)
            bad_time(text, start, "a UTC offset ('Z' or +HH:MM)");
        offset = *off;
    }
    const time_point instant = std::chrono::sys_days(ymd) + std::chrono::hours(h) +
                               std::chrono::minutes(mi) + seconds(s) + duration(us) - offset;
    TimeZone zone = zulu ? TimeZone::utc() : TimeZone::fixed(offset);
    if (pos < text.size()) {
        expect(pos, '[');
        const auto close = text.find(']', pos);
        if (close == std::string_view::npos || close + 1 != text.size())
            bad_time(text, pos, "a zone name in [brackets] at the end");
        zone = TimeZone(text.substr(pos + 1, close - pos - 1));
        if (zone.offset_at(instant) != offset)
            throw Error(errc::invalid_argument,
                        fmt::format("time \"{}\": offset {} is not the offset of {} at that time",
                                    text, format_offset(offset), zone.name()));
    }
    return {instant, zone};
}

time_point parse_time(std::string_view text) {
    return parse_zoned_time(text).instant;
}

double to_seconds(duration d) noexcept {
    return static_cast<double>(d.count()) / 1e6;
}

duration from_seconds(double s) {
    const long double us = static_cast<long double>(s) * 1e6L;
    if (!std::isfinite(s) ||
        std::fabs(us) > static_cast<long double>(std::numeric_limits<std::int64_t>::max() / 2))
        throw Error(errc::invalid_argument, fmt::format("duration {} s: out of range", s));
    const int mode = std::fegetround();
    std::fesetround(FE_TONEAREST);
    const auto r = std::nearbyint(us);
    std::fesetround(mode);
    return duration(static_cast<std::int64_t>(r));
}

std::string format_duration(duration d) {
    if (d == duration(0))
        return "0s";
    std::string out;
    if (d < duration(0)) {
        out = "-";
        d = -d;
    }
    using namespace std::chrono;
    const auto days_ = duration_cast<std::chrono::days>(d);
    d -= days_;
    const auto h = duration_cast<hours>(d);
    d -= h;
    const auto m = duration_cast<minutes>(d);
    d -= m;
    const auto s = duration_cast<seconds>(d);
    d -= s;
    if (days_.count())
        out += fmt::format("{}d", days_.count());
    if (h.count())
        out += fmt::format("{}h", h.count());
    if (m.count())
        out += fmt::format("{}m", m.count());
    if (s.count())
        out += fmt::format("{}s", s.count());
    if (d.count() % 1000 == 0 && d.count())
        out += fmt::format("{}ms", d.count() / 1000);
    else if (d.count())
        out += fmt::format("{}us", d.count());
    return out;
}

} // namespace asched
