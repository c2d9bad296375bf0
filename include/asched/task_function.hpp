// Task registration: turns an ordinary callable into a job runner, from its signature.
#pragma once

#include <asched/error.hpp>
#include <asched/job_context.hpp>

#include <asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace asched {

/// A registered callable, type-erased. Coroutine tasks (returning asio::awaitable<T>) run
/// inline on the scheduler's executor; any other callable is blocking and runs on the
/// scheduler's thread pool.
struct TaskFunction {
    bool is_coroutine = false;
    std::size_t arity = 0; ///< JSON arguments it takes (not counting a JobContext&)
    std::function<asio::awaitable<nlohmann::json>(JobContext &, const nlohmann::json &)> coroutine;
    std::function<nlohmann::json(JobContext &, const nlohmann::json &)> blocking;
};

namespace detail {

std::string demangle(const char *mangled);
[[noreturn]] void throw_bad_arity(std::size_t expected, const nlohmann::json &args);
[[noreturn]] void throw_bad_argument(std::size_t index, const char *type, const char *reason);

template <class T> struct callable_traits : callable_traits<decltype(&T::operator())> {};
template <class R, class... A> struct callable_traits<R (*)(A...)> {
    using result = R;
    using args = std::tuple<A...>;
};
template <class R, class... A>
struct callable_traits<R (*)(A...) noexcept> : callable_traits<R (*)(A...)> {};
template <class R, class... A> struct callable_traits<R(A...)> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...)> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const noexcept> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) noexcept> : callable_traits<R (*)(A...)> {};

template <class T> struct awaitable_value { static constexpr bool is_awaitable = false; };
template <class T, class E> struct awaitable_value<asio::awaitable<T, E>> {
    static constexpr bool is_awaitable = true;
    using type = T;
};

template <class T>
concept json_readable = std::is_default_constructible_v<T> &&
    requires(const nlohmann::json &j, T &t) {
    nlohmann::adl_serializer<T>::from_json(j, t);
};
template <class T>
concept json_writable = std::is_void_v<T> || std::is_constructible_v<nlohmann::json, T>;

template <class Args> constexpr bool takes_context() {
    if constexpr (std::tuple_size_v<Args> == 0) {
        return false;
    } else {
        return std::is_same_v<std::tuple_element_t<0, Args>, JobContext &>;
    }
}

template <class T> std::decay_t<T> read_argument(const nlohmann::json &args, std::size_t i) {
    using V = std::decay_t<T>;
    try {
        return args[i].template get<V>();
    } catch (const std::exception &e) {
        throw_bad_argument(i, typeid(V).name(), e.what());
    }
}

template <class Args, std::size_t Offset, std::size_t... I>
auto read_arguments(const nlohmann::json &args, std::index_sequence<I...>) {
    // Braced initialisation evaluates left to right: arguments are checked in order.
    return std::tuple<std::decay_t<std::tuple_element_t<I + Offset, Args>>...>{
        read_argument<std::tuple_element_t<I + Offset, Args>>(args, I)...};
}

template <class F> decltype(auto) call_task(F &f, JobContext &context, const nlohmann::json &args) {
    using Args = typename callable_traits<std::decay_t<F>>::args;
    constexpr bool with_context = takes_context<Args>();
    constexpr std::size_t offset = with_context ? 1 : 0;
    constexpr std::size_t arity = std::tuple_size_v<Args> - offset;
    const nlohmann::json empty = nlohmann::json::array();
    const nlohmann::json &a = args.is_null() ? empty : args;
    if (!a.is_array() || a.size() != arity)
        throw_bad_arity(arity, args);
    auto values = read_arguments<Args, offset>(a, std::make_index_sequence<arity>{});
    if constexpr (with_context) {
        return std::apply([&](auto &...v) -> decltype(auto) { return f(context, std::move(v)...); },
                          values);
    } else {
        return std::apply([&](auto &...v) -> decltype(auto) { return f(std::move(v)...); }, values);
    }
}

template <class T> asio::awaitable<nlohmann::json> to_json_awaitable(asio::awaitable<T> a) {
    if constexpr (std::is_void_v<T>) {
        co_await std::move(a);
        co_return nlohmann::json();
    } else {
        co_return nlohmann::json(co_await std::move(a));
    }
}

} // namespace detail

/// Wraps `f` for registration. Its parameters (after an optional leading `JobContext&`) are
/// read from the job's JSON arguments and its result written as JSON, through nlohmann's
/// to_json/from_json; a type that cannot convert is a compile error here. A stored argument
/// that does not fit ends that job with outcome error and a message naming the argument.
template <class F> std::shared_ptr<const TaskFunction> make_task_function(F f) {
    using Traits = detail::callable_traits<std::decay_t<F>>;
    using Args = typename Traits::args;
    using R = typename Traits::result;
    constexpr std::size_t offset = detail::takes_context<Args>() ? 1 : 0;
    []<std::size_t... I>(std::index_sequence<I...>) {
        static_assert(
            (detail::json_readable<std::decay_t<std::tuple_element_t<I + offset, Args>>> && ...),
            "asched: every task parameter must be readable from JSON (nlohmann from_json) "
            "and default-constructible; only the first may be JobContext&");
    }
    (std::make_index_sequence<std::tuple_size_v<Args> - offset>{});

    auto task = std::make_shared<TaskFunction>();
    task->arity = std::tuple_size_v<Args> - offset;
    if constexpr (detail::awaitable_value<R>::is_awaitable) {
        using T = typename detail::awaitable_value<R>::type;
        static_assert(detail::json_writable<T>, "asched: a task's result must convert to JSON");
        []<std::size_t... I>(std::index_sequence<I...>) {
            static_assert((!std::is_reference_v<std::tuple_element_t<I + offset, Args>> && ...),
                          "asched: a coroutine task takes its parameters by value (a reference "
                          "would dangle once the coroutine suspends)");
        }
        (std::make_index_sequence<std::tuple_size_v<Args> - offset>{});
        task->is_coroutine = true;
        task->coroutine = [f = std::move(f)](JobContext &context,
                                             const nlohmann::json &args) mutable {
            return detail::to_json_awaitable<T>(detail::call_task(f, context, args));
        };
    } else {
        static_assert(detail::json_writable<R>, "asched: a task's result must convert to JSON");
        task->blocking = [f = std::move(f)](JobContext &context,
                                            const nlohmann::json &args) mutable -> nlohmann::json {
            if constexpr (std::is_void_v<R>) {
                detail::call_task(f, context, args);
                return nlohmann::json();
            } else {
                return nlohmann::json(detail::call_task(f, context, args));
            }
        };
    }
    return task;
}

} // namespace asched
