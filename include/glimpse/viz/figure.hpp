#pragma once
// A grid of heatmap panels, laid out like a matplotlib figure of
// imshow(image); imshow(map, cmap="hot", alpha); colorbar() subplots: a figure
// title and subtitle, column labels over the columns, row labels left of the
// rows (turned, reading upwards, when they fit along a panel; else level, in a
// column as wide as they need), per panel a title, the image with the map
// overlaid and box outlines, and a colour bar with ticks; a legend and a
// footer at the bottom.
//
// Every size is measured from the text before anything is drawn, and the
// image's size follows from the content, so nothing overlaps or is clipped for
// any aspect ratio (tested from 1:50 to 50:1, tests/compare/test_figure_layout.cpp):
//   - panels keep their short side at least `panel_min_side`; an elongated
//     image grows up to `panel_max_long_side` on its long side to get there,
//     and beyond that it is letterboxed (the panel's frame keeps the minimum,
//     the image is centred in it);
//   - colour bars get as many ticks as their height holds at the tick text's
//     height (at least one);
//   - titles, labels, legend and footer wrap to the space they have, and what
//     still does not fit ends in an ellipsis.
// Everything drawn is recorded on the canvas (canvas::drawn(); checked by
// viz/layout_check.hpp).
//
// Panels show the map over the image's full extent: the patch grid tiles the
// (resized) image, so grid cell (r, c) lies over original pixels
// [c W/gw, (c+1) W/gw) x [r H/gh, (r+1) H/gh).
//
// Flat maps: a map whose spread max - min is within 1/256 of its magnitude
// (`flat_relative_spread`) falls inside one entry of the 256-entry colormap
// even on the tightest scale a panel gets ([0, its max]), so it can show no
// structure: it is drawn as one colour — its mean on the panel's scale — and
// labelled "flat". When every panel sharing a scale is flat and their values
// sit at the scale's top (the scale was taken from the flat maps themselves,
// which would paint them all white), the scale becomes [0, 2 x the largest
// value]: flat maps show the colormap's middle colour, and the bar says where.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "glimpse/core/box.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/viz/canvas.hpp"
#include "glimpse/viz/colormap.hpp"
#include "glimpse/viz/font.hpp"
#include "glimpse/viz/text_fit.hpp"

namespace glimpse::viz {

inline constexpr rgb8 black{0, 0, 0}, white{255, 255, 255}, text_grey{80, 80, 80};
// The seed's box colours: person green, object cyan, interaction (union) yellow.
inline constexpr rgb8 box_green{0, 255, 0}, box_cyan{0, 255, 255}, box_yellow{255, 255, 0};
// Around an image that is letterboxed in its panel.
inline constexpr rgb8 letterbox_grey{232, 232, 232};

// A map is flat when max - min <= this x max |value| (see the top of the file).
inline constexpr double flat_relative_spread = 1.0 / 256;

struct box_outline {
    glimpse::box b;  // original-image pixels
    rgb8 color;
    std::int64_t thickness = 3;  // panel pixels, drawn inside the box
};

struct panel_spec {
    std::vector<float> map;  // [grid_h * grid_w] raster
    std::int64_t grid_h = 0, grid_w = 0;
    std::vector<std::string> title;  // paragraphs, each wrapped to the panel's width; the first bold
    std::vector<box_outline> boxes;
    double vmin = 0, vmax = 0;  // colour scale; vmax <= vmin: [0, max of the map]
};

struct legend_item {
    rgb8 color;
    std::string label;
};

struct figure_spec {
    std::string title, subtitle;
    std::vector<std::string> col_labels;
    std::vector<std::string> row_labels, row_sublabels;
    std::vector<std::vector<panel_spec>> panels;  // [rows][cols]
    std::vector<legend_item> legend;
    std::string footer;                    // wrapped below the legend
    std::int64_t panel_long_side = 360;    // pixels of the image's longer side in a panel (>= 32)
    std::int64_t panel_min_side = 96;      // a panel's shorter side at least this (at most panel_long_side)
    std::int64_t panel_max_long_side = 0;  // how far an elongated image may grow; 0: 2 x panel_long_side
    double alpha = 0.6;                    // weight of the colormap over the image
    interpolation interp = interpolation::bilinear;
};

// Where things went, for callers that annotate further (and tests).
struct panel_place {
    std::int64_t x = 0, y = 0, w = 0, h = 0;  // the image area
    double scale = 1;                         // panel pixels per original pixel
    std::int64_t bar_x = 0;                   // colour bar's left edge
    double vmin = 0, vmax = 0;                // the colour scale used
    rect frame;                               // the panel: the image area, letterboxed to the minimum size
    rect bar;                                 // the colour bar's colours (its 1-px frame lies around it)
    bool flat = false;                        // drawn flat, labelled "flat"
    double flat_value = 0;                    // the value it was drawn at
    std::vector<double> ticks;
};
struct figure_layout {
    std::int64_t width = 0, height = 0;
    std::int64_t min_side = 0;  // the minimum panel side in effect
    bool turned_row_labels = false;
    std::vector<std::vector<panel_place>> panels;
};

// Ticks at multiples of a "nice" step (1, 2, 2.5, 5 x 10^k), at most ~max_ticks in [lo, hi].
struct ticks {
    std::vector<double> values;
    int decimals = 0;
};
inline ticks nice_ticks(double lo, double hi, int max_ticks = 5) {
    ticks t;
    if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) {
        t.values = {lo};
        t.decimals = 3;
        return t;
    }
    const double raw = (hi - lo) / std::max(1, max_ticks - 1);
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = 10 * mag;
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
        if (m * mag >= raw * (1 - 1e-9)) {
            step = m * mag;
            break;
        }
    const double first = std::ceil(lo / step - 1e-9) * step;
    for (double v = first; v <= hi + step * 1e-9; v += step) t.values.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    t.decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
    if (std::abs(step / std::pow(10.0, -t.decimals) - std::round(step / std::pow(10.0, -t.decimals))) > 1e-6)
        ++t.decimals;
    return t;
}

// The most nice ticks (at most max_count) on a bar `bar_h` pixels tall whose
// neighbours lie at least `min_gap` pixels apart: short bars get fewer.
inline ticks bar_ticks(double lo, double hi, std::int64_t bar_h, double min_gap, int max_count = 5) {
    for (int k = 8; k >= 2; --k) {
        ticks t = nice_ticks(lo, hi, k);
        if (static_cast<int>(t.values.size()) > max_count) continue;
        if (t.values.size() >= 2 && (t.values[1] - t.values[0]) / (hi - lo) * static_cast<double>(bar_h - 1) < min_gap)
            continue;
        return t;
    }
    ticks t = nice_ticks(lo, hi, 2);
    t.values.resize(std::min<std::size_t>(t.values.size(), 1));
    return t;
}

inline std::string format_fixed(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

// Extremes and mean of a map's finite values.
struct map_summary {
    double min = 0, max = 0, mean = 0;
    bool any = false;  // had a finite value
};
inline map_summary summarize(std::span<const float> map) {
    map_summary m;
    double sum = 0;
    std::size_t n = 0;
    for (float v : map) {
        if (!std::isfinite(v)) continue;
        m.min = m.any ? std::min(m.min, static_cast<double>(v)) : v;
        m.max = m.any ? std::max(m.max, static_cast<double>(v)) : v;
        m.any = true;
        sum += v;
        ++n;
    }
    if (n) m.mean = sum / static_cast<double>(n);
    return m;
}
inline bool is_flat(const map_summary& m) {
    return m.any && m.max - m.min <= flat_relative_spread * std::max(std::abs(m.min), std::abs(m.max));
}

// The colour scale of every panel ([rows][cols] of {lo, hi}), as the top of the file says.
inline std::vector<std::vector<std::pair<double, double>>> color_ranges(
    const std::vector<std::vector<panel_spec>>& panels, const std::vector<std::vector<map_summary>>& sums) {
    std::vector<std::vector<std::pair<double, double>>> out;
    // Panels with one explicit scale share it; each auto-scaled panel is its own group.
    std::map<std::pair<double, double>, std::vector<std::pair<std::size_t, std::size_t>>> shared;
    std::vector<std::vector<std::pair<std::size_t, std::size_t>>> groups;
    for (std::size_t r = 0; r < panels.size(); ++r) {
        out.emplace_back();
        for (std::size_t k = 0; k < panels[r].size(); ++k) {
            const auto& p = panels[r][k];
            const auto& m = sums[r][k];
            const bool given = p.vmax > p.vmin && std::isfinite(p.vmin) && std::isfinite(p.vmax);
            if (given) {
                out[r].push_back({p.vmin, p.vmax});
                shared[{p.vmin, p.vmax}].push_back({r, k});
            } else {
                out[r].push_back({0.0, m.any && m.max > 0 ? m.max : 1.0});
                groups.push_back({{r, k}});
            }
        }
    }
    for (auto& [key, g] : shared) groups.push_back(std::move(g));
    for (const auto& g : groups) {
        const auto [lo, hi] = out[g[0].first][g[0].second];
        bool all_flat = true;
        double c_lo = 0, c_hi = 0;
        for (std::size_t i = 0; i < g.size(); ++i) {
            const auto& m = sums[g[i].first][g[i].second];
            all_flat = all_flat && is_flat(m);
            c_lo = i ? std::min(c_lo, m.mean) : m.mean;
            c_hi = i ? std::max(c_hi, m.mean) : m.mean;
        }
        if (!all_flat || hi - c_hi > (hi - lo) / 256) continue;
        std::pair<double, double> r;
        if (c_hi <= 0)
            r = {c_hi - 1, c_hi + 1};
        else if (c_lo >= 0)
            r = {0.0, 2 * c_hi};
        else
            r = {-2 * std::max(-c_lo, c_hi), 2 * std::max(-c_lo, c_hi)};
        for (const auto& [rr, kk] : g) out[rr][kk] = r;
    }
    return out;
}

// Draws one map over an image of panel size at (x, y) on `c`; `flat`: one colour, that value's.
inline void draw_overlay(canvas& c, const canvas& image, const panel_spec& p, std::int64_t x, std::int64_t y,
                         double vmin, double vmax, double alpha, interpolation how,
                         std::optional<double> flat = std::nullopt) {
    const double span = vmax > vmin ? vmax - vmin : 1.0;
    std::vector<float> up;
    if (!flat) up = upsample(p.map, p.grid_h, p.grid_w, image.width(), image.height(), how);
    const rgb8 flat_color = hot_u8(flat ? (*flat - vmin) / span : 0.0);
    for (std::int64_t yy = 0; yy < image.height(); ++yy)
        for (std::int64_t xx = 0; xx < image.width(); ++xx) {
            c.set(x + xx, y + yy, image.at(xx, yy));
            const rgb8 col =
                flat ? flat_color : hot_u8((up[static_cast<std::size_t>(yy * image.width() + xx)] - vmin) / span);
            c.blend(x + xx, y + yy, col, alpha);
        }
}

namespace detail {

// Baseline-to-baseline distance for a size; never less than a text box and a pixel.
inline std::int64_t line_height(const font& f, double px) {
    return std::max(static_cast<std::int64_t>(std::ceil(f.measure("Ag", px).height() * 1.22)), f.box_height(px) + 1);
}

struct styled_line {
    std::string text;
    const font* f = nullptr;
    double px = 0;
    rgb8 color;
};

inline std::int64_t widest(const std::vector<styled_line>& lines) {
    std::int64_t w = 0;
    for (const auto& l : lines) w = std::max(w, l.f->box_width(l.text, l.px));
    return w;
}

inline void append_wrapped(std::vector<styled_line>& out, const font& f, std::string_view text, double px,
                           std::int64_t max_w, std::size_t max_lines, rgb8 color) {
    for (auto& l : wrap_text(f, text, px, max_w, max_lines)) out.push_back({std::move(l), &f, px, color});
}

}  // namespace detail

inline canvas render_figure(const figure_spec& s, const canvas& image, const font& regular, const font& bold,
                            figure_layout* layout_out = nullptr) {
    using detail::line_height;
    const std::int64_t rows = static_cast<std::int64_t>(s.panels.size());
    glimpse::detail::check(rows > 0 && !s.panels[0].empty(), "figure: no panels");
    const std::int64_t cols = static_cast<std::int64_t>(s.panels[0].size());
    for (const auto& r : s.panels)
        glimpse::detail::check(static_cast<std::int64_t>(r.size()) == cols, "figure: ragged panel grid");
    glimpse::detail::check(image.width() > 0 && image.height() > 0, "figure: empty image");
    glimpse::detail::check(s.panel_long_side >= 32 && s.panel_long_side <= 8192, "figure: panel_long_side ",
                           s.panel_long_side, " outside 32..8192");
    glimpse::detail::check(s.panel_min_side >= 0 && s.panel_max_long_side >= 0, "figure: negative panel size (min ",
                           s.panel_min_side, ", max ", s.panel_max_long_side, ")");

    // Sizes (pixels). Text sizes are pixel heights of the face (ascent + descent).
    const double f_title = 26, f_sub = 16, f_col = 21, f_row = 21, f_rowsub = 15, f_ptitle = 16, f_tick = 14,
                 f_legend = 16, f_flat = 14;
    const std::int64_t margin = 28, gap_col = 34, bar_gap = 10, bar_w = 16, tick_len = 5, tick_gap = 4, label_gap = 10,
                       max_label_w = 220, min_width = 560, max_text_w = 1200, swatch_w = 26, swatch_h = 14,
                       swatch_gap = 8, item_gap = 30;

    // Panel geometry: the image area (pw x ph) and the frame around it (fw x fh).
    const double W = static_cast<double>(image.width()), H = static_cast<double>(image.height());
    const double L = static_cast<double>(s.panel_long_side);
    const double min_side = std::min(static_cast<double>(s.panel_min_side), L);
    const double max_long = s.panel_max_long_side > 0 ? std::max(static_cast<double>(s.panel_max_long_side), L) : 2 * L;
    double scale = L / std::max(W, H);
    if (std::min(W, H) * scale < min_side) scale = std::min(min_side / std::min(W, H), max_long / std::max(W, H));
    const auto pw = std::max<std::int64_t>(1, std::lround(W * scale));
    const auto ph = std::max<std::int64_t>(1, std::lround(H * scale));
    const auto m_side = static_cast<std::int64_t>(min_side);
    const std::int64_t fw = std::max(pw, m_side), fh = std::max(ph, m_side);
    const canvas small = resize_image(image, pw, ph);

    // Colour scales, flatness, ticks.
    std::vector<std::vector<map_summary>> sums(static_cast<std::size_t>(rows));
    for (std::size_t r = 0; r < sums.size(); ++r)
        for (const auto& p : s.panels[r]) sums[r].push_back(summarize(p.map));
    const auto range = color_ranges(s.panels, sums);
    const std::int64_t tick_h = regular.box_height(f_tick);
    std::vector<std::vector<ticks>> tks(static_cast<std::size_t>(rows));
    std::int64_t tick_w = 0;
    for (std::size_t r = 0; r < tks.size(); ++r)
        for (std::size_t k = 0; k < static_cast<std::size_t>(cols); ++k) {
            const auto [lo, hi] = range[r][k];
            tks[r].push_back(bar_ticks(lo, hi, fh, 1.4 * static_cast<double>(tick_h)));
            for (double v : tks[r].back().values)
                tick_w = std::max(tick_w, regular.box_width(format_fixed(v, tks[r].back().decimals), f_tick));
        }
    const std::int64_t cell_w = fw + bar_gap + bar_w + tick_len + tick_gap + tick_w;

    // Panel titles and column labels, wrapped to the cell.
    std::vector<std::vector<std::vector<detail::styled_line>>> ptitles(static_cast<std::size_t>(rows));
    std::size_t ptitle_lines = 0;
    for (std::size_t r = 0; r < ptitles.size(); ++r)
        for (const auto& p : s.panels[r]) {
            std::vector<detail::styled_line> lines;
            for (std::size_t l = 0; l < p.title.size(); ++l)
                detail::append_wrapped(lines, l == 0 ? bold : regular, p.title[l], f_ptitle, cell_w, 3,
                                       l == 0 ? black : text_grey);
            ptitle_lines = std::max(ptitle_lines, lines.size());
            ptitles[r].push_back(std::move(lines));
        }
    const std::int64_t lh_ptitle = line_height(regular, f_ptitle);
    const std::int64_t ptitle_h = static_cast<std::int64_t>(ptitle_lines) * lh_ptitle;
    // Room above the frame for the top tick label, which is centred on the bar's top row.
    const std::int64_t pad_top = tick_h / 2 + 6;

    std::vector<std::vector<detail::styled_line>> col_lines(static_cast<std::size_t>(cols));
    std::size_t col_n = 0;
    for (std::int64_t k = 0; k < cols && k < static_cast<std::int64_t>(s.col_labels.size()); ++k) {
        detail::append_wrapped(col_lines[static_cast<std::size_t>(k)], bold, s.col_labels[static_cast<std::size_t>(k)],
                               f_col, cell_w, 3, black);
        col_n = std::max(col_n, col_lines[static_cast<std::size_t>(k)].size());
    }
    const std::int64_t lh_col = line_height(bold, f_col);
    const std::int64_t col_h = col_n ? static_cast<std::int64_t>(col_n) * lh_col + 4 : 0;

    // Row labels: turned when every one fits along a frame, else level in a column sized to them.
    const auto row_text = [&](const std::vector<std::string>& v, std::int64_t r) -> std::string_view {
        return r < static_cast<std::int64_t>(v.size()) ? std::string_view(v[static_cast<std::size_t>(r)])
                                                       : std::string_view();
    };
    bool turned = true, any_label = false, any_sub = false;
    std::int64_t natural_label_w = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto a = row_text(s.row_labels, r), b = row_text(s.row_sublabels, r);
        any_label = any_label || !a.empty();
        any_sub = any_sub || !b.empty();
        const std::int64_t wa = a.empty() ? 0 : bold.box_width(a, f_row),
                           wb = b.empty() ? 0 : regular.box_width(b, f_rowsub);
        turned = turned && wa <= fh && wb <= fh;
        natural_label_w = std::max({natural_label_w, wa, wb});
    }
    const std::int64_t lh_row = line_height(bold, f_row), lh_rowsub = line_height(regular, f_rowsub);
    std::int64_t label_col_w = 0;
    std::vector<std::vector<detail::styled_line>> row_lines(static_cast<std::size_t>(rows));
    if (turned) {
        label_col_w = (any_label ? lh_row : 0) + (any_sub ? lh_rowsub : 0);
    } else {
        label_col_w = std::min(natural_label_w, max_label_w);
        for (std::int64_t r = 0; r < rows; ++r) {
            auto& lines = row_lines[static_cast<std::size_t>(r)];
            detail::append_wrapped(lines, bold, row_text(s.row_labels, r), f_row, label_col_w, 2, black);
            detail::append_wrapped(lines, regular, row_text(s.row_sublabels, r), f_rowsub, label_col_w, 4, text_grey);
        }
    }
    const auto block_h = [&](const std::vector<detail::styled_line>& lines) {
        std::int64_t h = 0;
        for (const auto& l : lines) h += line_height(*l.f, l.px);
        return h;
    };

    // Widths: the grid, and the figure (at least the grid, a minimum, and the
    // title's natural width up to a limit; longer titles wrap).
    const std::int64_t grid_w = label_col_w + (label_col_w > 0 ? label_gap : 0) + cols * cell_w + (cols - 1) * gap_col;
    const std::int64_t natural_title = std::max(s.title.empty() ? 0 : bold.box_width(s.title, f_title),
                                                s.subtitle.empty() ? 0 : regular.box_width(s.subtitle, f_sub));
    const std::int64_t width =
        std::max({grid_w + 2 * margin, min_width, std::min(natural_title + 2 * margin, max_text_w)});
    const std::int64_t text_w = width - 2 * margin;

    std::vector<detail::styled_line> head;
    detail::append_wrapped(head, bold, s.title, f_title, text_w, 2, black);
    detail::append_wrapped(head, regular, s.subtitle, f_sub, text_w, 4, text_grey);
    const std::int64_t head_h = head.empty() ? 0 : block_h(head) + 12;

    // Legend items packed into lines; then the footer, wrapped.
    struct legend_place {
        std::string label;
        rgb8 color;
        std::int64_t dx = 0;  // from the line's left end
    };
    std::vector<std::pair<std::int64_t, std::vector<legend_place>>> legend_lines;  // (width, items)
    for (const auto& it : s.legend) {
        const std::string lab = fit_line(regular, it.label, f_legend, text_w - swatch_w - swatch_gap);
        const std::int64_t iw = swatch_w + swatch_gap + (lab.empty() ? 0 : regular.box_width(lab, f_legend));
        if (legend_lines.empty() || legend_lines.back().first + item_gap + iw > text_w)
            legend_lines.push_back({-item_gap, {}});
        auto& line = legend_lines.back();
        line.second.push_back({lab, it.color, line.first + item_gap});
        line.first += item_gap + iw;
    }
    const std::int64_t lh_legend = std::max(line_height(regular, f_legend), swatch_h + 2) + 6;
    std::vector<detail::styled_line> foot;
    detail::append_wrapped(foot, regular, s.footer, f_sub, text_w, 8, text_grey);

    // Vertical layout of the rows.
    const std::int64_t gap_row = std::max<std::int64_t>(26, (tick_h + 1) / 2 + 16);
    const std::int64_t grid_x = margin + (text_w - grid_w) / 2;
    const std::int64_t cells_x = grid_x + label_col_w + (label_col_w > 0 ? label_gap : 0);
    std::vector<std::int64_t> frame_y(static_cast<std::size_t>(rows)), label_top(static_cast<std::size_t>(rows));
    std::int64_t y = margin + head_h + col_h;
    for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t fy = y + ptitle_h + pad_top;
        frame_y[static_cast<std::size_t>(r)] = fy;
        std::int64_t bottom = fy + fh;
        if (!turned) {
            const std::int64_t bh = block_h(row_lines[static_cast<std::size_t>(r)]);
            const std::int64_t lt = std::max(y, fy + fh / 2 - bh / 2);
            label_top[static_cast<std::size_t>(r)] = lt;
            bottom = std::max(bottom, lt + bh);
        }
        y = bottom + (r + 1 < rows ? gap_row : 0);
    }
    const std::int64_t legend_y = y + (tick_h + 1) / 2 + 12;
    const std::int64_t foot_y = legend_y + static_cast<std::int64_t>(legend_lines.size()) * lh_legend;
    const std::int64_t height = foot_y + block_h(foot) + margin;

    canvas c(width, height, white);
    figure_layout lay;
    lay.width = width;
    lay.height = height;
    lay.min_side = m_side;
    lay.turned_row_labels = turned;

    // Text lines from `top` down, centred on one centre: `cx`, moved as little as
    // keeps the widest line inside [left, right) (the lines were wrapped to fit).
    const auto draw_centred = [&](const std::vector<detail::styled_line>& lines, std::int64_t top, std::int64_t cx,
                                  std::int64_t left, std::int64_t right) {
        const std::int64_t widest = detail::widest(lines);
        const std::int64_t lo = left + (widest + 1) / 2;
        const std::int64_t centre = std::clamp(cx, lo, std::max(lo, right - widest / 2));
        for (const auto& l : lines) {
            const std::int64_t w = l.f->box_width(l.text, l.px);
            const std::int64_t x = std::clamp(centre - w / 2, left, std::max(left, right - w));
            l.f->draw_in_box(c, l.text, x, top, l.px, l.color);
            top += line_height(*l.f, l.px);
        }
        return top;
    };
    draw_centred(head, margin, width / 2, margin, width - margin);

    for (std::int64_t k = 0; k < cols; ++k) {
        const std::int64_t cx = cells_x + k * (cell_w + gap_col);
        draw_centred(col_lines[static_cast<std::size_t>(k)], margin + head_h, cx + fw / 2, cx, cx + cell_w);
    }

    lay.panels.assign(static_cast<std::size_t>(rows), {});
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto ru = static_cast<std::size_t>(r);
        const std::int64_t fy = frame_y[ru];
        const std::int64_t ry = fy - pad_top - ptitle_h;
        // Row labels.
        if (turned) {
            const std::int64_t cy = fy + fh / 2;
            std::int64_t lx = grid_x;
            const auto a = row_text(s.row_labels, r), b = row_text(s.row_sublabels, r);
            if (any_label) {
                if (!a.empty()) bold.draw_turned_in_box(c, a, lx, cy + bold.box_width(a, f_row) / 2, f_row, black);
                lx += lh_row;
            }
            if (!b.empty())
                regular.draw_turned_in_box(c, b, lx, cy + regular.box_width(b, f_rowsub) / 2, f_rowsub, text_grey);
        } else {
            std::int64_t ty = label_top[ru];
            for (const auto& l : row_lines[ru]) {
                l.f->draw_in_box(c, l.text, grid_x, ty, l.px, l.color);
                ty += line_height(*l.f, l.px);
            }
        }
        for (std::int64_t k = 0; k < cols; ++k) {
            const auto ku = static_cast<std::size_t>(k);
            const auto& p = s.panels[ru][ku];
            const std::int64_t idx = r * cols + k;
            const auto [lo, hi] = range[ru][ku];
            const std::int64_t cx = cells_x + k * (cell_w + gap_col);
            draw_centred(ptitles[ru][ku], ry, cx + fw / 2, cx, cx + cell_w);

            // The frame, letterboxed when the image is smaller, and the image with its map.
            const rect frame{cx, fy, cx + fw, fy + fh};
            if (pw < fw || ph < fh) c.fill_rect(frame.x0, frame.y0, frame.x1, frame.y1, letterbox_grey);
            c.record({mark_kind::panel, {}, frame, idx});
            const std::int64_t ix = cx + (fw - pw) / 2, iy = fy + (fh - ph) / 2;
            const bool flat = is_flat(sums[ru][ku]);
            draw_overlay(c, small, p, ix, iy, lo, hi, s.alpha, s.interp,
                         flat ? std::optional<double>(sums[ru][ku].mean) : std::nullopt);
            for (const auto& b : p.boxes) {
                const auto bx0 = ix + static_cast<std::int64_t>(std::floor(b.b.x1 * scale));
                const auto by0 = iy + static_cast<std::int64_t>(std::floor(b.b.y1 * scale));
                const auto bx1 = ix + std::min<std::int64_t>(pw, static_cast<std::int64_t>(std::ceil(b.b.x2 * scale)));
                const auto by1 = iy + std::min<std::int64_t>(ph, static_cast<std::int64_t>(std::ceil(b.b.y2 * scale)));
                c.stroke_rect(bx0, by0, bx1, by1, b.color, b.thickness);
            }
            if (flat) {  // "flat", on a light patch at the top of the frame, when it fits there
                const std::int64_t bw = bold.box_width("flat", f_flat), bh = bold.box_height(f_flat), pad = 3;
                if (bw + 2 * pad + 2 <= fw && bh + 2 * pad + 8 <= fh) {
                    const std::int64_t lx = cx + (fw - bw) / 2, ly = fy + 4 + pad;
                    for (std::int64_t yy = ly - pad; yy < ly + bh + pad; ++yy)
                        for (std::int64_t xx = lx - pad; xx < lx + bw + pad; ++xx) c.blend(xx, yy, white, 0.8);
                    bold.draw_in_box(c, "flat", lx, ly, f_flat, black, idx);
                }
            }

            // Colour bar: top = hi, with a thin frame and ticks on the right.
            const std::int64_t bx = cx + fw + bar_gap;
            for (std::int64_t yy = 0; yy < fh; ++yy) {
                const double v = 1.0 - (static_cast<double>(yy) + 0.5) / static_cast<double>(fh);
                c.fill_rect(bx, fy + yy, bx + bar_w, fy + yy + 1, hot_u8(v));
            }
            c.stroke_rect(bx - 1, fy - 1, bx + bar_w + 1, fy + fh + 1, black, 1);
            c.record({mark_kind::colorbar, {}, {bx - 1, fy - 1, bx + bar_w + tick_len, fy + fh + 1}, idx});
            const ticks& t = tks[ru][ku];
            for (double v : t.values) {
                const auto ty = fy + static_cast<std::int64_t>(
                                         std::lround((1.0 - (v - lo) / (hi - lo)) * static_cast<double>(fh - 1)));
                c.fill_rect(bx + bar_w, ty, bx + bar_w + tick_len, ty + 1, black);
                regular.draw_in_box(c, format_fixed(v, t.decimals), bx + bar_w + tick_len + tick_gap, ty - tick_h / 2,
                                    f_tick, black);
            }
            panel_place pl;
            pl.x = ix, pl.y = iy, pl.w = pw, pl.h = ph, pl.scale = scale, pl.bar_x = bx, pl.vmin = lo, pl.vmax = hi;
            pl.frame = frame;
            pl.bar = {bx, fy, bx + bar_w, fy + fh};
            pl.flat = flat;
            pl.flat_value = flat ? sums[ru][ku].mean : 0.0;
            pl.ticks = t.values;
            lay.panels[ru].push_back(std::move(pl));
        }
    }

    // Legend lines, centred: swatches with labels.
    std::int64_t ly = legend_y;
    const std::int64_t leg_text_h = regular.box_height(f_legend);
    for (const auto& [lw, items] : legend_lines) {
        const std::int64_t x0 = margin + (text_w - lw) / 2;
        for (const auto& it : items) {
            const std::int64_t sx = x0 + it.dx, sy = ly + (leg_text_h - swatch_h) / 2;
            c.fill_rect(sx, sy, sx + swatch_w, sy + swatch_h, {40, 40, 40});
            c.stroke_rect(sx, sy, sx + swatch_w, sy + swatch_h, it.color, 3);
            c.record({mark_kind::swatch, it.label, {sx, sy, sx + swatch_w, sy + swatch_h}, -1});
            regular.draw_in_box(c, it.label, sx + swatch_w + swatch_gap, ly, f_legend, black);
        }
        ly += lh_legend;
    }
    draw_centred(foot, foot_y, width / 2, margin, width - margin);
    if (layout_out) *layout_out = std::move(lay);
    return c;
}

}  // namespace glimpse::viz
