#pragma once
// A grid of heatmap panels, laid out like a matplotlib figure of
// imshow(image); imshow(map, cmap="hot", alpha); colorbar() subplots: a figure
// title and subtitle, column labels over the columns, row labels (turned,
// reading upwards) left of the rows, per panel a title, the image with the map
// overlaid and box outlines, and a colour bar with ticks; a legend line at the
// bottom. Every size is measured from the text before anything is drawn, so
// labels never overlap whatever their length.
//
// Panels show the map over the image's full extent: the patch grid tiles the
// (resized) image, so grid cell (r, c) lies over original pixels
// [c W/gw, (c+1) W/gw) x [r H/gh, (r+1) H/gh).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "glimpse/core/error.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/viz/canvas.hpp"
#include "glimpse/viz/colormap.hpp"
#include "glimpse/viz/font.hpp"

namespace glimpse::viz {

inline constexpr rgb8 black{0, 0, 0}, white{255, 255, 255}, text_grey{80, 80, 80};
// The seed's box colours: person green, object cyan, interaction (union) yellow.
inline constexpr rgb8 box_green{0, 255, 0}, box_cyan{0, 255, 255}, box_yellow{255, 255, 0};

struct box_outline {
    heatmap::box b;  // original-image pixels
    rgb8 color;
    std::int64_t thickness = 3;  // panel pixels, drawn inside the box
};

struct panel_spec {
    std::vector<float> map;  // [grid_h * grid_w] raster
    std::int64_t grid_h = 0, grid_w = 0;
    std::vector<std::string> title;  // lines, first one bold
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
    std::string footer;                  // one line after the legend
    std::int64_t panel_long_side = 360;  // pixels of the image's longer side in a panel
    double alpha = 0.6;                  // weight of the colormap over the image
    interpolation interp = interpolation::bilinear;
};

// Where things went, for callers that annotate further (and tests).
struct panel_place {
    std::int64_t x = 0, y = 0, w = 0, h = 0;  // the image area
    double scale = 1;                         // panel pixels per original pixel
    std::int64_t bar_x = 0;                   // colour bar's left edge
    double vmin = 0, vmax = 0;
};
struct figure_layout {
    std::int64_t width = 0, height = 0;
    std::vector<std::vector<panel_place>> panels;
};

// Ticks at multiples of a "nice" step (1, 2, 2.5, 5 x 10^k), at most ~5 in [lo, hi].
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

inline std::string format_fixed(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

// Draws one map over an image of panel size (w x h) at (x, y) on `c`.
inline void draw_overlay(canvas& c, const canvas& image, const panel_spec& p, std::int64_t x, std::int64_t y,
                         double vmin, double vmax, double alpha, interpolation how) {
    const auto up = upsample(p.map, p.grid_h, p.grid_w, image.width(), image.height(), how);
    const double span = vmax > vmin ? vmax - vmin : 1.0;
    for (std::int64_t yy = 0; yy < image.height(); ++yy)
        for (std::int64_t xx = 0; xx < image.width(); ++xx) {
            c.set(x + xx, y + yy, image.at(xx, yy));
            const double v = (up[static_cast<std::size_t>(yy * image.width() + xx)] - vmin) / span;
            c.blend(x + xx, y + yy, hot_u8(v), alpha);
        }
}

inline canvas render_figure(const figure_spec& s, const canvas& image, const font& regular, const font& bold,
                            figure_layout* layout_out = nullptr) {
    const std::int64_t rows = static_cast<std::int64_t>(s.panels.size());
    glimpse::detail::check(rows > 0 && !s.panels[0].empty(), "figure: no panels");
    const std::int64_t cols = static_cast<std::int64_t>(s.panels[0].size());
    for (const auto& r : s.panels)
        glimpse::detail::check(static_cast<std::int64_t>(r.size()) == cols, "figure: ragged panel grid");
    glimpse::detail::check(image.width() > 0 && image.height() > 0, "figure: empty image");

    // Sizes (pixels). Text sizes are pixel heights of the face (ascent + descent).
    const double f_title = 26, f_sub = 16, f_col = 21, f_row = 21, f_rowsub = 15, f_ptitle = 16, f_tick = 14,
                 f_legend = 16;
    const std::int64_t margin = 28, gap_col = 34, gap_row = 26, bar_gap = 10, bar_w = 16, tick_len = 5, tick_gap = 4;

    const double scale =
        static_cast<double>(s.panel_long_side) / static_cast<double>(std::max(image.width(), image.height()));
    const auto pw = std::max<std::int64_t>(1, std::lround(image.width() * scale));
    const auto ph = std::max<std::int64_t>(1, std::lround(image.height() * scale));
    const canvas small = resize_image(image, pw, ph);

    // Colour scales and tick label widths.
    std::vector<std::vector<std::pair<double, double>>> range(static_cast<std::size_t>(rows));
    double tick_w = 0;
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t k = 0; k < cols; ++k) {
            const auto& p = s.panels[static_cast<std::size_t>(r)][static_cast<std::size_t>(k)];
            double lo = p.vmin, hi = p.vmax;
            if (!(hi > lo)) {
                lo = 0;
                hi = 0;
                for (float v : p.map) hi = std::max(hi, static_cast<double>(v));
                if (!(hi > lo)) hi = lo + 1;
            }
            range[static_cast<std::size_t>(r)].push_back({lo, hi});
            const ticks t = nice_ticks(lo, hi);
            for (double v : t.values)
                tick_w = std::max(tick_w, regular.measure(format_fixed(v, t.decimals), f_tick).width);
        }
    const std::int64_t cell_w =
        pw + bar_gap + bar_w + tick_len + tick_gap + static_cast<std::int64_t>(std::ceil(tick_w));

    // Vertical extents of text blocks.
    const auto line_h = [&](const font& f, double px) {
        return static_cast<std::int64_t>(std::ceil(f.measure("Ag", px).height() * 1.22));
    };
    std::size_t title_lines = 0;
    for (const auto& r : s.panels)
        for (const auto& p : r) title_lines = std::max(title_lines, p.title.size());
    const std::int64_t ptitle_h = static_cast<std::int64_t>(title_lines) * line_h(regular, f_ptitle) + 6;
    const std::int64_t head_h =
        (s.title.empty() ? 0 : line_h(bold, f_title)) + (s.subtitle.empty() ? 0 : line_h(regular, f_sub)) + 12;
    const std::int64_t col_h = s.col_labels.empty() ? 0 : line_h(bold, f_col) + 4;
    const std::int64_t row_label_w = (s.row_labels.empty() ? 0 : line_h(bold, f_row)) +
                                     (s.row_sublabels.empty() ? 0 : line_h(regular, f_rowsub)) + 10;
    const std::int64_t legend_h =
        (s.legend.empty() ? 0 : line_h(regular, f_legend) + 6) + (s.footer.empty() ? 0 : line_h(regular, f_sub));

    const std::int64_t grid_x = margin + row_label_w;
    const std::int64_t grid_y = margin + head_h + col_h;
    const std::int64_t row_h = ptitle_h + ph;
    std::int64_t width = grid_x + cols * cell_w + (cols - 1) * gap_col + margin;
    const std::int64_t height = grid_y + rows * row_h + (rows - 1) * gap_row + 18 + legend_h + margin;

    // Wide titles widen the figure rather than run off it.
    const auto text_w = [](const font& f, const std::string& t, double px) {
        return static_cast<std::int64_t>(std::ceil(f.measure(t, px).width));
    };
    if (!s.title.empty()) width = std::max(width, 2 * margin + text_w(bold, s.title, f_title));
    if (!s.subtitle.empty()) width = std::max(width, 2 * margin + text_w(regular, s.subtitle, f_sub));
    const std::int64_t extra = width - (grid_x + cols * cell_w + (cols - 1) * gap_col + margin);
    const std::int64_t x0 = grid_x + extra / 2;

    canvas c(width, height, white);
    figure_layout lay;
    lay.width = width;
    lay.height = height;

    // Figure title and subtitle, centred.
    std::int64_t y = margin;
    if (!s.title.empty()) {
        const auto e = bold.measure(s.title, f_title);
        bold.draw(c, s.title, (static_cast<double>(width) - e.width) / 2, static_cast<double>(y) + e.ascent, f_title,
                  black);
        y += line_h(bold, f_title);
    }
    if (!s.subtitle.empty()) {
        const auto e = regular.measure(s.subtitle, f_sub);
        regular.draw(c, s.subtitle, (static_cast<double>(width) - e.width) / 2, static_cast<double>(y) + e.ascent,
                     f_sub, text_grey);
    }

    // Column labels, centred over the image part of each cell.
    for (std::int64_t k = 0; k < cols && k < static_cast<std::int64_t>(s.col_labels.size()); ++k) {
        const auto& t = s.col_labels[static_cast<std::size_t>(k)];
        const auto e = bold.measure(t, f_col);
        const double cx = static_cast<double>(x0 + k * (cell_w + gap_col)) + static_cast<double>(pw) / 2;
        bold.draw(c, t, cx - e.width / 2, static_cast<double>(margin + head_h) + e.ascent, f_col, black);
    }

    lay.panels.assign(static_cast<std::size_t>(rows), {});
    for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t ry = grid_y + r * (row_h + gap_row);
        const std::int64_t iy = ry + ptitle_h;
        // Row label and sub-label, turned, centred on the image.
        const double cy = static_cast<double>(iy) + static_cast<double>(ph) / 2;
        double lx = static_cast<double>(margin);
        if (r < static_cast<std::int64_t>(s.row_labels.size())) {
            const auto& t = s.row_labels[static_cast<std::size_t>(r)];
            const auto e = bold.measure(t, f_row);
            bold.draw(c, t, lx + e.ascent, cy + e.width / 2, f_row, black, true);
            lx += static_cast<double>(line_h(bold, f_row));
        }
        if (r < static_cast<std::int64_t>(s.row_sublabels.size())) {
            const auto& t = s.row_sublabels[static_cast<std::size_t>(r)];
            const auto e = regular.measure(t, f_rowsub);
            regular.draw(c, t, lx + e.ascent, cy + e.width / 2, f_rowsub, text_grey, true);
        }
        for (std::int64_t k = 0; k < cols; ++k) {
            const auto& p = s.panels[static_cast<std::size_t>(r)][static_cast<std::size_t>(k)];
            const auto [lo, hi] = range[static_cast<std::size_t>(r)][static_cast<std::size_t>(k)];
            const std::int64_t ix = x0 + k * (cell_w + gap_col);
            // Title lines, centred over the image; the first bold.
            for (std::size_t l = 0; l < p.title.size(); ++l) {
                const font& f = l == 0 ? bold : regular;
                const auto e = f.measure(p.title[l], f_ptitle);
                f.draw(c, p.title[l], static_cast<double>(ix) + (static_cast<double>(pw) - e.width) / 2,
                       static_cast<double>(ry + static_cast<std::int64_t>(l) * line_h(regular, f_ptitle)) + e.ascent,
                       f_ptitle, l == 0 ? black : text_grey);
            }
            draw_overlay(c, small, p, ix, iy, lo, hi, s.alpha, s.interp);
            for (const auto& b : p.boxes) {
                const auto bx0 = ix + static_cast<std::int64_t>(std::floor(b.b.x1 * scale));
                const auto by0 = iy + static_cast<std::int64_t>(std::floor(b.b.y1 * scale));
                const auto bx1 = ix + std::min<std::int64_t>(pw, static_cast<std::int64_t>(std::ceil(b.b.x2 * scale)));
                const auto by1 = iy + std::min<std::int64_t>(ph, static_cast<std::int64_t>(std::ceil(b.b.y2 * scale)));
                c.stroke_rect(bx0, by0, bx1, by1, b.color, b.thickness);
            }
            // Colour bar: top = hi, with a thin frame and ticks on the right.
            const std::int64_t bx = ix + pw + bar_gap;
            for (std::int64_t yy = 0; yy < ph; ++yy) {
                const double v = 1.0 - (static_cast<double>(yy) + 0.5) / static_cast<double>(ph);
                c.fill_rect(bx, iy + yy, bx + bar_w, iy + yy + 1, hot_u8(v));
            }
            c.stroke_rect(bx - 1, iy - 1, bx + bar_w + 1, iy + ph + 1, black, 1);
            const ticks t = nice_ticks(lo, hi);
            for (double v : t.values) {
                const auto ty = iy + static_cast<std::int64_t>(
                                         std::lround((1.0 - (v - lo) / (hi - lo)) * static_cast<double>(ph - 1)));
                c.fill_rect(bx + bar_w, ty, bx + bar_w + tick_len, ty + 1, black);
                const std::string lab = format_fixed(v, t.decimals);
                const auto e = regular.measure(lab, f_tick);
                regular.draw(c, lab, static_cast<double>(bx + bar_w + tick_len + tick_gap),
                             static_cast<double>(ty) + (e.ascent - e.descent) / 2, f_tick, black);
            }
            lay.panels[static_cast<std::size_t>(r)].push_back({ix, iy, pw, ph, scale, bx, lo, hi});
        }
    }

    // Legend: colour swatches with labels, centred; then the footer line.
    std::int64_t ly = grid_y + rows * row_h + (rows - 1) * gap_row + 18;
    if (!s.legend.empty()) {
        const std::int64_t sw = 26, sgap = 8, igap = 30;
        double total = 0;
        for (const auto& it : s.legend)
            total += static_cast<double>(sw + sgap) + regular.measure(it.label, f_legend).width + igap;
        total -= igap;
        double lx = (static_cast<double>(width) - total) / 2;
        const auto e0 = regular.measure("Ag", f_legend);
        for (const auto& it : s.legend) {
            const auto sx = static_cast<std::int64_t>(std::lround(lx));
            const auto sy = ly + static_cast<std::int64_t>(std::lround((e0.height() - 14) / 2));
            c.fill_rect(sx, sy, sx + sw, sy + 14, {40, 40, 40});
            c.stroke_rect(sx, sy, sx + sw, sy + 14, it.color, 3);
            regular.draw(c, it.label, lx + sw + sgap, static_cast<double>(ly) + e0.ascent, f_legend, black);
            lx += static_cast<double>(sw + sgap) + regular.measure(it.label, f_legend).width + igap;
        }
        ly += line_h(regular, f_legend) + 6;
    }
    if (!s.footer.empty()) {
        const auto e = regular.measure(s.footer, f_sub);
        regular.draw(c, s.footer, (static_cast<double>(width) - e.width) / 2, static_cast<double>(ly) + e.ascent, f_sub,
                     text_grey);
    }
    if (layout_out) *layout_out = std::move(lay);
    return c;
}

}  // namespace glimpse::viz
