// Error messages for task arguments that do not fit the registered signature.
#include <asched/task_function.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <cxxabi.h>
#include <memory>

namespace asched::detail {

std::string demangle(const char *mangled) {
    int status = 0;
    std::unique_ptr<char, void (*)(void *)> out(
        abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
    if (status != 0 || !out)
        return mangled;
    std::string name = out.get();
    // Spell the standard string as users write it.
    const std::string long_string =
        "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
    for (auto pos = name.find(long_string); pos != std::string::npos; pos = name.find(long_string))
        name.replace(pos, long_string.size(), "std::string");
    return name;
}

void throw_bad_arity(std::size_t expected, const nlohmann::json &args) {
    if (!args.is_array())
        throw Error(errc::invalid_argument,
                    fmt::format("task arguments: expected a JSON array, got {}", args.type_name()));
    throw Error(errc::invalid_argument,
                fmt::format("task arguments: the task takes {} argument{}, the job has {}",
                            expected, expected == 1 ? "" : "s", args.size()));
}

void throw_bad_argument(std::size_t index, const char *type, const char *reason) {
    throw Error(errc::invalid_argument, fmt::format("task argument {} (of type {}): {}", index + 1,
                                                    demangle(type), reason));
}

} // namespace asched::detail
