#pragma once
// A map over a patch grid as text, for a terminal: one character and a space per patch, from
// ' ' (nothing) to '@' (the map's peak), so a look says where the attention is without a figure.
// A box (in patches: x = column, y = row, half-open) is outlined with '+' where the map is faint
// under its edge.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "glimpse/core/box.hpp"
#include "glimpse/core/error.hpp"

namespace glimpse::viz {

inline std::string ascii_map(std::span<const float> map, std::int64_t grid_h, std::int64_t grid_w,
                             const std::optional<box>& outline = std::nullopt, std::string_view indent = "  ") {
    glimpse::detail::check(grid_h > 0 && grid_w > 0 && static_cast<std::int64_t>(map.size()) == grid_h * grid_w,
                           "ascii_map: ", map.size(), " values for a ", grid_h, "x", grid_w, " grid");
    static constexpr std::string_view ramp = " .:-=+*#%@";
    const float peak = *std::max_element(map.begin(), map.end());
    const auto inside = [&](std::int64_t r, std::int64_t c) {
        return outline && c >= outline->x1 && c < outline->x2 && r >= outline->y1 && r < outline->y2;
    };
    std::string out;
    for (std::int64_t r = 0; r < grid_h; ++r) {
        out += indent;
        for (std::int64_t c = 0; c < grid_w; ++c) {
            const float v = map[static_cast<std::size_t>(r * grid_w + c)];
            const int lvl = peak > 0 ? static_cast<int>(std::lround(9.0 * v / peak)) : 0;
            const bool edge =
                inside(r, c) && (r == outline->y1 || r == outline->y2 - 1 || c == outline->x1 || c == outline->x2 - 1);
            out += edge && lvl < 3 ? '+' : ramp[static_cast<std::size_t>(std::clamp(lvl, 0, 9))];
            out += ' ';
        }
        out += '\n';
    }
    return out;
}

}  // namespace glimpse::viz
