// CronTrigger: the field parser, the wall-clock search, and the walk over UTC-offset periods.
#include "../core/json_util.hpp"
#include "../core/text.hpp"

#include <asched/triggers/cron_trigger.hpp>

#include <algorithm>
#include <bitset>
#include <cctype>
#include <vector>

namespace asched {

namespace {

using std::chrono::days;
using std::chrono::seconds;
using local_seconds = std::chrono::local_time<seconds>;

enum Field { year_f, month_f, day_f, week_f, dow_f, hour_f, minute_f, second_f, field_count };

constexpr std::array<const char *, field_count> field_names{
    "year", "month", "day", "week", "day_of_week", "hour", "minute", "second"};
constexpr std::array<int, field_count> field_min{1970, 1, 1, 1, 0, 0, 0, 0};
constexpr std::array<int, field_count> field_max{9999, 12, 31, 53, 6, 23, 59, 59};
constexpr std::array<const char *, field_count> field_default{"*", "1", "1", "*",
                                                              "*", "0", "0", "0"};

constexpr std::array<const char *, 12> month_names{"jan", "feb", "mar", "apr", "may", "jun",
                                                   "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<const char *, 7> weekday_names{"mon", "tue", "wed", "thu",
                                                    "fri", "sat", "sun"};

[[noreturn]] void bad(int field, std::string_view expr, std::string_view why) {
    throw Error(errc::invalid_argument,
                fmt::format("cron field '{}': {} in \"{}\"", field_names[field], why,
                            detail::printable_input(expr)));
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto &c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

bool all_digits(std::string_view s) {
    return !s.empty() && s.size() <= 6 && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
    });
}

bool all_alpha(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalpha(static_cast<unsigned char>(c));
    });
}

int weekday_index(int field, std::string_view expr, std::string_view name) {
    for (int i = 0; i < 7; ++i)
        if (name == weekday_names[i])
            return i;
    bad(field, expr, fmt::format("invalid weekday name '{}'", detail::printable_input(name)));
}

// One endpoint of a range: a number in the field's own numbering, or a name. Returns the
// value in asched's internal numbering (day_of_week: Monday = 0).
int endpoint(int field, std::string_view expr, std::string_view token) {
    if (all_digits(token)) {
        const int v = std::stoi(std::string(token));
        if (field == dow_f) {
            if (v > 7)
                bad(field, expr, fmt::format("{} is out of range 0-7 (0 and 7 are Sunday)", v));
            return (v + 6) % 7; // crontab numbering: 0 and 7 are Sunday, 1 is Monday
        }
        if (v < field_min[field] || v > field_max[field])
            bad(field, expr,
                fmt::format("{} is out of range {}-{}", v, field_min[field], field_max[field]));
        return v;
    }
    if (field == month_f && all_alpha(token)) {
        for (int i = 0; i < 12; ++i)
            if (token == month_names[i])
                return i + 1;
        bad(field, expr, fmt::format("invalid month name '{}'", detail::printable_input(token)));
    }
    if (field == dow_f && all_alpha(token))
        return weekday_index(field, expr, token);
    bad(field, expr, fmt::format("unrecognised value '{}'", detail::printable_input(token)));
}

} // namespace

struct CronTrigger::Fields {
    std::bitset<10000> years;
    std::bitset<13> months;
    std::bitset<32> month_days;                    // static days of month
    bool last_day = false;                         // `last`, `L`
    std::vector<int> last_offsets;                 // `L-n`
    std::vector<int> nearest_weekdays;             // `nW`
    bool last_weekday = false;                     // `LW`
    std::vector<std::pair<int, int>> nth_weekdays; // (n 1-5 or 0 for last, weekday)
    bool any_day = true;
    std::bitset<54> weeks;
    bool any_week = true;
    std::bitset<7> weekdays;
    std::vector<std::pair<int, int>> weekday_nths; // day_of_week `5#2` / `5L`: (n or 0, weekday)
    bool any_weekday = true;
    bool either = false; // Vixie: day or day_of_week (both restricted, neither starts with `*`)
    std::bitset<24> hours;
    std::bitset<60> minutes;
    std::bitset<60> seconds_;

    void set(int field, int v) {
        switch (field) {
        case year_f:
            years.set(v);
            break;
        case month_f:
            months.set(v);
            break;
        case day_f:
            month_days.set(v);
            break;
        case week_f:
            weeks.set(v);
            break;
        case dow_f:
            weekdays.set(v);
            break;
        case hour_f:
            hours.set(v);
            break;
        case minute_f:
            minutes.set(v);
            break;
        default:
            seconds_.set(v);
            break;
        }
    }

    void parse(int field, std::string_view text) {
        const std::string all = lower(trim(text));
        std::size_t pos = 0;
        bool star = false;
        for (;;) {
            const auto comma = all.find(',', pos);
            const std::string_view expr = trim(std::string_view(all).substr(
                pos, comma == std::string::npos ? std::string::npos : comma - pos));
            star |= parse_one(field, expr);
            if (comma == std::string::npos)
                break;
            pos = comma + 1;
        }
        if (field == day_f)
            any_day = star;
        if (field == week_f)
            any_week = star;
        if (field == dow_f)
            any_weekday = star;
    }

    // Returns true when the expression is an unrestricted `*` (no step).
    bool parse_one(int field, std::string_view expr) {
        if (expr.empty())
            bad(field, expr, "empty expression");
        if (expr == "?" && (field == day_f || field == dow_f)) {
            for (int v = field_min[field]; v <= field_max[field]; ++v)
                set(field, v);
            return true; // Quartz's "no specific value": the same as `*`
        }
        if (field == day_f && parse_day_special(expr))
            return false;
        if (field == dow_f && parse_weekday_special(expr))
            return false;
        std::string_view base = expr;
        int step = 0;
        if (const auto slash = expr.find('/'); slash != std::string_view::npos) {
            const auto s = expr.substr(slash + 1);
            if (!all_digits(s))
                bad(field, expr, "the step after '/' must be a whole number");
            step = std::stoi(std::string(s));
            if (step <= 0)
                bad(field, expr, fmt::format("step must be positive, got {}", step));
            base = expr.substr(0, slash);
        }
        const int lo = field_min[field], hi = field_max[field];
        int first = lo, last = hi;
        bool wraps = false;
        if (base == "*") {
            if (step == 0) {
                for (int v = lo; v <= hi; ++v)
                    set(field, v);
                return true;
            }
        } else {
            const auto dash = base.find('-');
            const auto a = base.substr(0, dash);
            first = endpoint(field, expr, a);
            if (dash != std::string_view::npos) {
                const auto b = base.substr(dash + 1);
                if (b.find('-') != std::string_view::npos || b.empty())
                    bad(field, expr, "a range is written a-b");
                last = endpoint(field, expr, b);
                if (field == dow_f) {
                    wraps = last < first; // sat-mon: saturday, sunday, monday
                    // Numeric 7-0 and 0-0 both mean Sunday alone.
                    if (all_digits(a) && all_digits(b) && first == last)
                        wraps = false;
                } else if (last < first) {
                    bad(field, expr,
                        fmt::format("the range start {} is after its end {}", first, last));
                }
            } else if (step == 0) {
                last = first;
            } else if (field == dow_f && all_digits(a)) {
                last = 6; // a/n: from a to Sunday
                wraps = first > last;
            }
        }
        const int span = wraps ? (last + 7 - first) : (last - first);
        // day_of_week steps are checked against 0-7, its crontab numbering (`*/7` is valid).
        const int star_range = field == dow_f ? 7 : hi - lo;
        if (step > 0 && step > (base == "*" ? star_range : span))
            bad(field, expr,
                fmt::format("the step {} is larger than the range it divides ({})", step,
                            base == "*" ? star_range : span));
        const int stride = step > 0 ? step : 1;
        for (int k = 0; k <= span; k += stride)
            set(field, wraps ? (first + k) % 7 : first + k);
        return false;
    }

    // day_of_week `5#2` / `fri#2` (the second Friday of the month), `5L` / `friL` (the last).
    bool parse_weekday_special(std::string_view expr) {
        if (const auto hash = expr.find('#'); hash != std::string_view::npos) {
            const auto a = expr.substr(0, hash);
            const auto k = expr.substr(hash + 1);
            if (a.empty() || a.find_first_of("-/*") != std::string_view::npos)
                bad(dow_f, expr, "'#' follows a single weekday, as in 5#2 or fri#2");
            const int wd = endpoint(dow_f, expr, a);
            if (k.size() != 1 || k[0] < '1' || k[0] > '5')
                bad(dow_f, expr,
                    fmt::format("after '#' comes the occurrence in the month, 1-5, got '{}'",
                                detail::printable_input(k)));
            weekday_nths.emplace_back(k[0] - '0', wd);
            return true;
        }
        if (expr == "l")
            bad(dow_f, expr,
                "'L' alone is ambiguous (Quartz reads it as Saturday): write 5L or friL for the "
                "last Friday of the month");
        if (expr.size() > 1 && expr.back() == 'l') {
            const auto a = expr.substr(0, expr.size() - 1);
            const bool name =
                std::find_if(weekday_names.begin(), weekday_names.end(),
                             [&](const char *n) { return a == n; }) != weekday_names.end();
            if (all_digits(a) || name) {
                weekday_nths.emplace_back(0, endpoint(dow_f, expr, a));
                return true;
            }
        }
        return false;
    }

    bool parse_day_special(std::string_view expr) {
        // Quartz/croner: L, L-n, nW, LW.
        if (expr == "l") {
            last_day = true;
            return true;
        }
        if (expr == "lw") {
            last_weekday = true;
            return true;
        }
        if (expr.size() > 2 && expr.substr(0, 2) == "l-") {
            const auto n = expr.substr(2);
            if (!all_digits(n))
                bad(day_f, expr, "L-n takes a whole number of days before the last, as in L-3");
            const int v = std::stoi(std::string(n));
            if (v < 1 || v > 30)
                bad(day_f, expr, fmt::format("the offset in L-{} must be 1-30", v));
            last_offsets.push_back(v);
            return true;
        }
        if (expr.size() > 1 && expr.back() == 'w') {
            const auto n = expr.substr(0, expr.size() - 1);
            if (!all_digits(n))
                bad(day_f, expr, "W follows a single day of the month, as in 15W (or LW)");
            const int v = std::stoi(std::string(n));
            if (v < 1 || v > 31)
                bad(day_f, expr, fmt::format("the day in {}W must be 1-31", v));
            nearest_weekdays.push_back(v);
            return true;
        }
        static constexpr std::array<const char *, 5> ordinals{"1st", "2nd", "3rd", "4th", "5th"};
        const auto space = expr.find(' ');
        const auto head = expr.substr(0, space);
        if (space == std::string_view::npos) {
            if (head == "last") {
                last_day = true;
                return true;
            }
            if (all_alpha(head) || (head.size() > 4 && head.substr(0, 4) == "last"))
                bad(day_f, expr,
                    "unrecognised expression (after 'last' only a weekday name may follow)");
            return false;
        }
        const auto tail = trim(expr.substr(space + 1));
        int n = -1;
        if (head == "last")
            n = 0;
        for (int i = 0; i < 5; ++i)
            if (head == ordinals[i])
                n = i + 1;
        if (n < 0)
            bad(day_f, expr, "expected 1st..5th or last before the weekday");
        nth_weekdays.emplace_back(n, weekday_index(day_f, expr, tail));
        return true;
    }

    // The days of month (y, m) that the day field allows.
    std::bitset<32> days_of(std::chrono::year y, std::chrono::month m) const {
        const unsigned length = unsigned((y / m / std::chrono::last).day());
        std::bitset<32> out;
        if (any_day) {
            for (unsigned d = 1; d <= length; ++d)
                out.set(d);
            return out;
        }
        out = month_days;
        for (unsigned d = length + 1; d < 32; ++d)
            out.reset(d);
        if (last_day)
            out.set(length);
        for (const int n : last_offsets)
            if (n < int(length))
                out.set(length - unsigned(n));
        const std::chrono::weekday first_wd{std::chrono::sys_days(y / m / 1)};
        const int first_mon0 = (int(first_wd.c_encoding()) + 6) % 7;
        const auto mon0_of = [&](int d) { return (first_mon0 + d - 1) % 7; };
        // The weekday nearest day n, never leaving the month (Quartz's W): Saturday moves to
        // Friday (or to Monday the 3rd from the 1st), Sunday to Monday (or to Friday from the
        // month's last day).
        for (const int n : nearest_weekdays) {
            if (n > int(length))
                continue;
            int d = n;
            if (mon0_of(n) == 5)
                d = n == 1 ? 3 : n - 1;
            else if (mon0_of(n) == 6)
                d = n == int(length) ? n - 2 : n + 1;
            out.set(unsigned(d));
        }
        if (last_weekday) {
            int d = int(length);
            while (mon0_of(d) >= 5)
                --d;
            out.set(unsigned(d));
        }
        if (!nth_weekdays.empty()) {
            for (auto [n, wd] : nth_weekdays) {
                const int first_day = 1 + (wd - first_mon0 + 7) % 7;
                if (n == 0) {
                    int d = first_day;
                    while (d + 7 <= int(length))
                        d += 7;
                    out.set(d);
                } else if (const int d = first_day + 7 * (n - 1); d <= int(length)) {
                    out.set(d);
                }
            }
        }
        return out;
    }

    // Whether day_of_week allows day d (of a month `length` long) that falls on weekday mon0.
    bool weekday_allows(int mon0, unsigned d, unsigned length) const {
        if (any_weekday || weekdays[mon0])
            return true;
        for (auto [n, wd] : weekday_nths)
            if (wd == mon0 && (n == 0 ? d + 7 > length : (d - 1) / 7 + 1 == unsigned(n)))
                return true;
        return false;
    }

    // Whether day_of_week and week allow a day that `day` (the day field) allowed, or, for the
    // Vixie reading, whether day or day_of_week allow it (`in_day`) and week does.
    bool day_filters(std::chrono::sys_days day, unsigned length, bool in_day = true) const {
        if (any_weekday && any_week)
            return true;
        const std::chrono::weekday wd{day};
        const int mon0 = (int(wd.c_encoding()) + 6) % 7;
        const unsigned d = unsigned(std::chrono::year_month_day{day}.day());
        const bool weekday_ok = weekday_allows(mon0, d, length);
        if (either ? !(in_day || weekday_ok) : !weekday_ok)
            return false;
        if (!any_week) {
            // ISO week: the week (Monday first) that holds the year's first Thursday is week 1.
            const auto thursday = day + days(3 - mon0);
            const std::chrono::year_month_day t{thursday};
            const auto jan1 = std::chrono::sys_days(t.year() / 1 / 1);
            const int week = int((thursday - jan1).count() / 7) + 1;
            if (!weeks[week])
                return false;
        }
        return true;
    }

    template <std::size_t N> static int next_set(const std::bitset<N> &b, int from) {
        for (int i = std::max(from, 0); i < int(N); ++i)
            if (b[i])
                return i;
        return -1;
    }

    // The first (hour, minute, second) at or after (h, mi, s) that the fields allow.
    std::optional<std::array<int, 3>> next_time(int h, int mi, int s) const {
        for (int H = next_set(hours, h); H >= 0; H = next_set(hours, H + 1)) {
            for (int M = next_set(minutes, H == h ? mi : 0); M >= 0; M = next_set(minutes, M + 1)) {
                const int S = next_set(seconds_, H == h && M == mi ? s : 0);
                if (S >= 0)
                    return std::array<int, 3>{H, M, S};
            }
        }
        return std::nullopt;
    }

    // The first wall time at or after `from` that matches every field; nullopt past 9999.
    std::optional<local_seconds> next_match(local_seconds from) const {
        auto day = std::chrono::floor<days>(from);
        std::chrono::hh_mm_ss hms{from - day};
        int h = int(hms.hours().count()), mi = int(hms.minutes().count()),
            s = int(hms.seconds().count());
        std::chrono::year_month_day ymd{std::chrono::sys_days(day.time_since_epoch())};
        int y = int(ymd.year()), m = int(unsigned(ymd.month())), d = int(unsigned(ymd.day()));
        auto reset_time = [&] { h = mi = s = 0; };
        while (y <= 9999) {
            if (y < 1970 || !years[y]) {
                const int ny = next_set(years, std::max(y + 1, 1970));
                if (ny < 0)
                    return std::nullopt;
                y = ny, m = 1, d = 1;
                reset_time();
                continue;
            }
            if (!months[m]) {
                const int nm = next_set(months, m + 1);
                if (nm < 0) {
                    ++y, m = 1, d = 1;
                } else {
                    m = nm, d = 1;
                }
                reset_time();
                continue;
            }
            const auto cy = std::chrono::year(y);
            const auto cm = std::chrono::month(unsigned(m));
            const unsigned length = unsigned((cy / cm / std::chrono::last).day());
            const auto in_day = days_of(cy, cm);
            std::bitset<32> allowed = in_day;
            if (either)
                for (unsigned k = 1; k <= length; ++k)
                    allowed.set(k);
            int nd = next_set(allowed, d);
            while (nd > 0 &&
                   !day_filters(std::chrono::sys_days(cy / cm / std::chrono::day(unsigned(nd))),
                                length, in_day[nd]))
                nd = next_set(allowed, nd + 1);
            if (nd < 0) {
                if (++m > 12)
                    ++y, m = 1;
                d = 1;
                reset_time();
                continue;
            }
            if (nd != d) {
                d = nd;
                reset_time();
            }
            const auto time = next_time(h, mi, s);
            if (!time) {
                ++d;
                reset_time();
                continue; // the day bitset ends at the month's length
            }
            const auto [nh, nmi, ns] = *time;
            const auto date = local_seconds(
                std::chrono::sys_days(cy / cm / std::chrono::day(unsigned(d))).time_since_epoch());
            return date + std::chrono::hours(nh) + std::chrono::minutes(nmi) + seconds(ns);
        }
        return std::nullopt;
    }
};

namespace {

std::array<std::optional<std::string>, field_count> given(const CronTriggerOptions &o) {
    return {o.year, o.month, o.day, o.week, o.day_of_week, o.hour, o.minute, o.second};
}

} // namespace

CronTrigger::CronTrigger(CronTriggerOptions options) : options_(std::move(options)) {
    auto fields = std::make_shared<Fields>();
    const auto values = given(options_);
    int last_given = -1;
    for (int f = 0; f < field_count; ++f)
        if (values[f])
            last_given = f;
    std::array<std::string, field_count> texts;
    for (int f = 0; f < field_count; ++f) {
        texts[f] = values[f] ? *values[f] : (f < last_given ? "*" : field_default[f]);
        fields->parse(f, texts[f]);
    }
    // Vixie's rule: day OR day_of_week when both are restricted, where a field that starts
    // with `*` (or `?`) counts as unrestricted, `*/2` included.
    const auto starred = [](std::string_view text) {
        const auto t = trim(text);
        return !t.empty() && (t.front() == '*' || t.front() == '?');
    };
    fields->either = options_.day_match == CronDayMatch::either && !starred(texts[day_f]) &&
                     !starred(texts[dow_f]);
    fields_ = std::move(fields);
}

std::vector<std::string> CronTrigger::lint() const {
    std::vector<std::string> out;
    const auto wild = [](const std::optional<std::string> &v) { return !v || *v == "*"; };
    const auto hour = options_.hour.value_or("*");
    if (options_.minute && *options_.minute == "*" && hour != "*")
        out.push_back(fmt::format(
            "minute is '*' under hour '{}': this fires every minute of those hours; for once an "
            "hour write minute '0'",
            hour));
    if (options_.second && *options_.second == "*" && !wild(options_.minute))
        out.push_back(fmt::format(
            "second is '*' under minute '{}': this fires every second of those minutes; for once "
            "a minute write second '0'",
            *options_.minute));
    return out;
}

CronTrigger CronTrigger::from_crontab(std::string_view line, TimeZone timezone,
                                      std::optional<time_point> start_time,
                                      std::optional<time_point> end_time) {
    return from_crontab(line, std::move(timezone),
                        CrontabOptions{.start_time = start_time, .end_time = end_time});
}

CronTrigger CronTrigger::from_crontab(std::string_view line, TimeZone timezone,
                                      CrontabFields fields) {
    return from_crontab(line, std::move(timezone), CrontabOptions{.fields = fields});
}

namespace {

// The macros of Vixie cron and croner, as 5-field lines.
std::optional<std::string_view> crontab_macro(std::string_view line, std::string_view what) {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 7> macros{{
        {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"},
        {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"},
        {"@daily", "0 0 * * *"},
        {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},
    }};
    const std::string name = lower(trim(line));
    for (const auto &[macro, expansion] : macros)
        if (name == macro)
            return expansion;
    if (name == "@reboot")
        throw Error(errc::invalid_argument,
                    fmt::format("{}: @reboot is not a time; run the task at start-up instead "
                                "(add_job when the scheduler starts)",
                                what));
    throw Error(errc::invalid_argument,
                fmt::format("{}: unknown macro; expected one of @yearly @annually @monthly "
                            "@weekly @daily @midnight @hourly",
                            what));
}

} // namespace

CronTrigger CronTrigger::from_crontab(std::string_view line, TimeZone timezone,
                                      const CrontabOptions &options) {
    const std::string what = fmt::format("crontab \"{}\"", detail::printable_input(line));
    std::string_view text = line;
    const auto first = line.find_first_not_of(" \t");
    const bool macro = first != std::string_view::npos && line[first] == '@';
    if (macro)
        text = *crontab_macro(line, what);
    std::vector<std::pair<std::size_t, std::string>> parts; // (1-based column, text)
    for (std::size_t i = 0; i < text.size();) {
        if (std::isspace(static_cast<unsigned char>(text[i]))) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j])))
            ++j;
        parts.emplace_back(i + 1, std::string(text.substr(i, j - i)));
        i = j;
    }
    using Names = std::vector<const char *>;
    static const Names standard{"minute", "hour", "day", "month", "day_of_week"};
    static const Names seconds{"second", "minute", "hour", "day", "month", "day_of_week"};
    static const Names year{"minute", "hour", "day", "month", "day_of_week", "year"};
    static const Names both{"second", "minute", "hour", "day", "month", "day_of_week", "year"};
    const Names *names = &standard;
    std::string expected;
    switch (macro ? CrontabFields::standard : options.fields) {
    case CrontabFields::standard:
        break;
    case CrontabFields::with_seconds:
        names = &seconds;
        break;
    case CrontabFields::with_year:
        names = &year;
        break;
    case CrontabFields::with_seconds_and_year:
        names = &both;
        break;
    case CrontabFields::croner:
        names = parts.size() == 6 ? &seconds : parts.size() == 7 ? &both : &standard;
        if (parts.size() < 5 || parts.size() > 7)
            expected = "5, 6 or 7 fields (croner's reading: minute hour day month day_of_week, "
                       "with a leading second for 6, and a trailing year for 7)";
        break;
    }
    if (expected.empty() && parts.size() != names->size()) {
        expected = fmt::format("{} fields (", names->size());
        for (std::size_t k = 0; k < names->size(); ++k)
            expected += fmt::format("{}{}", k ? " " : "", (*names)[k]);
        expected += ")";
    }
    if (!expected.empty())
        throw Error(errc::invalid_argument,
                    fmt::format("{}: expected {}, got {}", what, expected, parts.size()));
    CronTriggerOptions o;
    std::array<std::pair<const char *, std::optional<std::string> *>, field_count> slots{{
        {"year", &o.year},
        {"month", &o.month},
        {"day", &o.day},
        {"week", &o.week},
        {"day_of_week", &o.day_of_week},
        {"hour", &o.hour},
        {"minute", &o.minute},
        {"second", &o.second},
    }};
    for (std::size_t k = 0; k < names->size(); ++k)
        for (auto &[name, slot] : slots)
            if (std::string_view(name) == (*names)[k])
                *slot = parts[k].second;
    o.start_time = options.start_time;
    o.end_time = options.end_time;
    o.timezone = std::move(timezone);
    o.day_match = options.day_match;
    try {
        return CronTrigger(std::move(o));
    } catch (const Error &e) {
        // Name the column of the field at fault.
        std::string where;
        for (std::size_t k = 0; k < names->size(); ++k)
            if (std::string_view(e.what()).find(fmt::format("'{}'", (*names)[k])) !=
                std::string_view::npos)
                where = fmt::format(" at position {}", parts[k].first);
        throw Error(errc::invalid_argument, fmt::format("{}{}: {}", what, where, e.what()));
    }
}

std::optional<time_point> CronTrigger::next(std::optional<time_point> previous) const {
    if (!options_.start_time && !previous)
        throw Error(errc::invalid_argument,
                    "cron trigger: field 'start_time': not set (add the trigger to a scheduler, "
                    "which fixes it to now, or give one)");
    // As the reference: the first candidate is start_time itself, later ones previous + 1 s;
    // a candidate whose whole second matches fires as it is (its microseconds included).
    time_point candidate = previous ? *previous + seconds(1) : *options_.start_time;
    if (options_.start_time && candidate < *options_.start_time)
        candidate = *options_.start_time;
    const TimeZone &zone = options_.timezone;
    // Walk the periods of constant UTC offset in order: a wall time inside a gap belongs to no
    // period (skipped), a repeated wall time to two (fired twice, in instant order).
    for (;;) {
        const OffsetPeriod period = zone.period_at(candidate);
        const local_seconds local(std::chrono::floor<seconds>(candidate).time_since_epoch() +
                                  period.offset);
        const auto match = fields_->next_match(local);
        if (!match)
            return std::nullopt;
        const time_point instant =
            *match == local ? candidate : time_point(match->time_since_epoch() - period.offset);
        if (period.end == time_point::max() || instant < period.end) {
            if (options_.end_time && instant > *options_.end_time)
                return std::nullopt;
            return instant;
        }
        if (options_.end_time && period.end > *options_.end_time)
            return std::nullopt;
        candidate = period.end;
    }
}

bool CronTrigger::matches(time_point t) const {
    const local_seconds local(std::chrono::floor<seconds>(t).time_since_epoch() +
                              options_.timezone.offset_at(t));
    const auto match = fields_->next_match(local);
    return match && *match == local;
}

std::shared_ptr<const Trigger> CronTrigger::with_start(time_point now) const {
    if (options_.start_time)
        return nullptr;
    auto o = options_;
    // Whole seconds: the reference keeps now's microseconds, so its fires land at
    // ...:23.268613 for second='*'; a cron fire is a whole second here.
    o.start_time = std::chrono::floor<std::chrono::seconds>(now);
    return std::make_shared<const CronTrigger>(std::move(o));
}

nlohmann::json CronTrigger::to_json() const {
    nlohmann::json j{{"type", "cron"}, {"version", json_format_version}};
    const auto values = given(options_);
    for (int f = 0; f < field_count; ++f)
        if (values[f])
            j[field_names[f]] = *values[f];
    j["start_time"] = detail::time_json(options_.start_time);
    j["end_time"] = detail::time_json(options_.end_time);
    j["timezone"] = options_.timezone.name();
    if (options_.day_match == CronDayMatch::either)
        j["day_match"] = "either"; // absent means both, as before the option existed
    return j;
}

std::string CronTrigger::describe() const {
    std::string out = "cron[";
    const auto values = given(options_);
    bool first = true;
    for (int f = 0; f < field_count; ++f) {
        if (!values[f])
            continue;
        out += fmt::format("{}{}='{}'", first ? "" : ", ", field_names[f], *values[f]);
        first = false;
    }
    if (options_.day_match == CronDayMatch::either)
        out += ", day_match='either'";
    return out + fmt::format(", timezone='{}']", options_.timezone.name());
}

std::shared_ptr<const CronTrigger> CronTrigger::from_json(const nlohmann::json &j) {
    constexpr std::string_view what = "cron trigger";
    detail::check_version(j, what);
    CronTriggerOptions o;
    std::array<std::optional<std::string> *, field_count> slots{
        &o.year, &o.month, &o.day, &o.week, &o.day_of_week, &o.hour, &o.minute, &o.second};
    for (int f = 0; f < field_count; ++f) {
        const auto *v = detail::find(j, field_names[f]);
        if (!v)
            continue;
        if (v->is_number_integer())
            *slots[f] = std::to_string(v->get<long long>());
        else if (v->is_string())
            *slots[f] = v->get<std::string>();
        else
            detail::bad_field(what, field_names[f], "expected a string or an integer");
    }
    o.start_time = detail::get_time(j, what, "start_time");
    o.end_time = detail::get_time(j, what, "end_time");
    o.timezone = detail::get_timezone(j, what);
    if (const auto *v = detail::find(j, "day_match")) {
        if (v->is_string() && v->get<std::string>() == "either")
            o.day_match = CronDayMatch::either;
        else if (!v->is_string() || v->get<std::string>() != "both")
            detail::bad_field(what, "day_match", "expected \"both\" or \"either\"");
    }
    return detail::deserializing([&] { return std::make_shared<const CronTrigger>(std::move(o)); });
}

} // namespace asched
