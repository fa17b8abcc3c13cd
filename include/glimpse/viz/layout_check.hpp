#pragma once
// Checks a canvas's layout record (canvas::drawn()) for what makes a figure
// unreadable: anything outside the image (clipped), two texts overlapping,
// text over a panel, colour bar or legend swatch (unless it is that panel's
// own overlay label, which must then lie inside it), and panels, bars or
// swatches overlapping each other. Returns one line per problem; empty: clean.

#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

#include "glimpse/viz/canvas.hpp"

namespace glimpse::viz {

namespace detail {

inline const char* kind_name(mark_kind k) {
    switch (k) {
        case mark_kind::text:
            return "text";
        case mark_kind::panel:
            return "panel";
        case mark_kind::colorbar:
            return "colour bar";
        case mark_kind::swatch:
            return "swatch";
    }
    return "?";
}

inline std::string describe(const mark& m) {
    std::ostringstream o;
    o << kind_name(m.kind);
    if (!m.text.empty()) o << " '" << m.text << "'";
    if (m.kind != mark_kind::text && m.owner >= 0) o << " #" << m.owner;
    o << " [" << m.box.x0 << "," << m.box.y0 << ")-[" << m.box.x1 << "," << m.box.y1 << ")";
    return o.str();
}

}  // namespace detail

inline std::vector<std::string> layout_problems(const canvas& c) {
    std::vector<std::string> out;
    const auto& d = c.drawn();
    const rect all = c.bounds();
    for (const auto& m : d) {
        if (m.box.empty()) out.push_back(detail::describe(m) + " is empty");
        if (!m.box.inside(all))
            out.push_back(detail::describe(m) + " runs outside the " + std::to_string(c.width()) + "x" +
                          std::to_string(c.height()) + " image");
    }
    for (std::size_t i = 0; i < d.size(); ++i)
        for (std::size_t j = i + 1; j < d.size(); ++j) {
            const mark &a = d[i], &b = d[j];
            if (!a.box.intersects(b.box)) continue;
            const bool ta = a.kind == mark_kind::text, tb = b.kind == mark_kind::text;
            if (ta != tb) {  // a text over a panel is fine only as that panel's own overlay
                const mark& t = ta ? a : b;
                const mark& p = ta ? b : a;
                if (p.kind == mark_kind::panel && t.owner >= 0 && t.owner == p.owner) continue;
            }
            out.push_back(detail::describe(a) + " overlaps " + detail::describe(b));
        }
    // An overlay label lies inside the panel it labels.
    for (const auto& t : d) {
        if (t.kind != mark_kind::text || t.owner < 0) continue;
        bool found = false;
        for (const auto& p : d)
            if (p.kind == mark_kind::panel && p.owner == t.owner) found = found || t.box.inside(p.box);
        if (!found) out.push_back(detail::describe(t) + " is not inside its panel #" + std::to_string(t.owner));
    }
    return out;
}

}  // namespace glimpse::viz
