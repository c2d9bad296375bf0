// The dashboard's files, compiled in from src/admin/assets by cmake/embed_assets.cmake.
#pragma once

#include <string_view>

namespace asched::admin {

struct Asset {
    std::string_view path; ///< "/index.html"
    std::string_view content_type;
    std::string_view body;
};

/// The asset served at `path`, or nullptr.
const Asset *find_asset(std::string_view path) noexcept;

} // namespace asched::admin
