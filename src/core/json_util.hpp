// Internal helpers for reading and writing asched's JSON forms with errors that name the field.
#pragma once

#include <asched/error.hpp>
#include <asched/model.hpp>

#include <fmt/format.h>

namespace asched::detail {

[[noreturn]] inline void bad_field(std::string_view what, std::string_view field,
                                   std::string_view why) {
    throw Error(errc::deserialization, fmt::format("{}: field '{}': {}", what, field, why));
}

inline void check_version(const nlohmann::json &j, std::string_view what) {
    if (!j.is_object())
        throw Error(errc::deserialization,
                    fmt::format("{}: expected a JSON object, got {}", what, j.type_name()));
    if (auto it = j.find("version"); it != j.end()) {
        if (!it->is_number_integer())
            bad_field(what, "version", "not an integer");
        if (it->get<int>() > json_format_version)
            bad_field(what, "version",
                      fmt::format("version {} is newer than this asched reads ({})", it->get<int>(),
                                  json_format_version));
    }
}

inline const nlohmann::json *find(const nlohmann::json &j, const char *field) {
    auto it = j.find(field);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

template <class T> T get(const nlohmann::json &j, std::string_view what, const char *field) {
    const auto *v = find(j, field);
    if (!v)
        bad_field(what, field, "missing");
    try {
        return v->get<T>();
    } catch (const Error &) {
        throw;
    } catch (const std::exception &e) {
        bad_field(what, field, e.what());
    }
}

template <class T>
T get_or(const nlohmann::json &j, std::string_view what, const char *field, T fallback) {
    if (!find(j, field))
        return fallback;
    return get<T>(j, what, field);
}

template <class T>
std::optional<T> get_opt(const nlohmann::json &j, std::string_view what, const char *field) {
    if (!find(j, field))
        return std::nullopt;
    return get<T>(j, what, field);
}

inline std::optional<time_point> get_time(const nlohmann::json &j, std::string_view what,
                                          const char *field) {
    const auto *v = find(j, field);
    if (!v)
        return std::nullopt;
    if (!v->is_string())
        bad_field(what, field, "expected an ISO 8601 string");
    try {
        return parse_time(v->get<std::string>());
    } catch (const Error &e) {
        bad_field(what, field, e.what());
    }
}

inline std::optional<duration> get_duration(const nlohmann::json &j, std::string_view what,
                                            const char *field) {
    const auto *v = find(j, field);
    if (!v)
        return std::nullopt;
    if (!v->is_number())
        bad_field(what, field, "expected a number of seconds");
    try {
        return from_seconds(v->get<double>());
    } catch (const Error &e) {
        bad_field(what, field, e.what());
    }
}

inline nlohmann::json time_json(const std::optional<time_point> &t) {
    return t ? nlohmann::json(format_time(*t)) : nlohmann::json();
}

inline nlohmann::json duration_json(const std::optional<duration> &d) {
    return d ? nlohmann::json(to_seconds(*d)) : nlohmann::json();
}

template <class T> nlohmann::json opt_json(const std::optional<T> &v) {
    return v ? nlohmann::json(*v) : nlohmann::json();
}

template <class E>
E get_enum(const nlohmann::json &j, std::string_view what, const char *field, E fallback) {
    const auto *v = find(j, field);
    if (!v)
        return fallback;
    if (!v->is_string())
        bad_field(what, field, "expected an enum member name");
    try {
        return enum_from_string<E>(v->get<std::string>());
    } catch (const Error &e) {
        bad_field(what, field, e.what());
    }
}

/// The optional "timezone" member (UTC when absent), with an error naming the field.
inline TimeZone get_timezone(const nlohmann::json &j, std::string_view what) {
    TimeZone zone;
    if (auto name = get_opt<std::string>(j, what, "timezone")) {
        try {
            zone = TimeZone(*name);
        } catch (const Error &e) {
            bad_field(what, "timezone", e.what());
        }
    }
    return zone;
}

/// Runs `make` (a constructor that validates), reporting its errors as stored data that
/// cannot be read back.
template <class F> auto deserializing(F make) -> decltype(make()) {
    try {
        return make();
    } catch (const Error &e) {
        throw Error(errc::deserialization, e.what());
    }
}

} // namespace asched::detail
