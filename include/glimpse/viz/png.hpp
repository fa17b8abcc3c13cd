#pragma once
// PNG output through stb_image_write (compiled into Debian's libstb), atomic:
// the file is written beside its destination under a temporary name and
// renamed over it, so a reader (or a crash) never sees half a PNG.

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

#include <stb/stb_image_write.h>

#include "glimpse/core/error.hpp"
#include "glimpse/viz/canvas.hpp"

namespace glimpse::viz {

// A temporary name beside `dest` (same directory, so rename is atomic).
inline std::filesystem::path temp_path_for(const std::filesystem::path& dest) {
    return dest.parent_path() / ("." + dest.filename().string() + ".tmp-" + std::to_string(::getpid()));
}

// Writes `c` as an 8-bit RGB PNG to `tmp` (no rename): for callers that commit
// several files together.
inline void write_png_file(const canvas& c, const std::filesystem::path& tmp) {
    glimpse::detail::check(c.width() > 0 && c.height() > 0, "write_png: empty canvas");
    const int ok = stbi_write_png(tmp.c_str(), static_cast<int>(c.width()), static_cast<int>(c.height()), 3, c.data(),
                                  static_cast<int>(c.width() * 3));
    if (!ok) {
        std::error_code ec;
        std::filesystem::remove(tmp, ec);
        glimpse::detail::fail("cannot write PNG '", tmp.string(), "'");
    }
}

// Writes `c` to `path` atomically.
inline void write_png(const canvas& c, const std::filesystem::path& path) {
    const auto tmp = temp_path_for(path);
    write_png_file(c, tmp);
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        glimpse::detail::fail("cannot write PNG '", path.string(), "': ", ec.message());
    }
}

}  // namespace glimpse::viz
