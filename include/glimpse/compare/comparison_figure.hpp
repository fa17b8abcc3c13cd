#pragma once
// The comparison figure: rows base / fine-tuned; columns person, object,
// interaction (referring) or head-under-a-uniform-heatmap and the encoder's own
// attention (grounding). Each panel: the image, its map in `hot`, the boxes
// (person green, object cyan, union yellow), a title with the numbers that
// matter and a colour bar.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/viz/figure.hpp"

namespace glimpse::compare {

// How panels share a colour scale. column (default): base and fine-tuned of a
// box share one, so a flat map looks flat next to a focused one; panel: each
// its own [0, max] (matplotlib's imshow default); figure: one for all. Every
// scale's top is at least figure_options::uniform_floor times the uniform value.
enum class color_scale { column, panel, figure };

inline color_scale parse_color_scale(std::string_view s) {
    if (s == "column") return color_scale::column;
    if (s == "panel") return color_scale::panel;
    if (s == "figure") return color_scale::figure;
    glimpse::detail::fail("unknown colour scale '", s, "' (expected column, panel or figure)");
}

struct figure_options {
    color_scale scale = color_scale::column;
    std::int64_t panel_long_side = 360;
    std::int64_t panel_min_side = 96;  // viz::figure_spec: a panel's short side at least this
    // Every scale's top is at least this many times the uniform value 1/(grid_h grid_w):
    // the maps sum to 1, so 1/S is "no preference", and a near-uniform map is drawn
    // near the colormap's middle rather than stretched to white by a [0, its max]
    // scale. 0: off (scales are [0, max]).
    double uniform_floor = 2.0;
    double alpha = 0.5;
    viz::interpolation interp = viz::interpolation::bilinear;
    std::string model_note;  // appended to the footer (e.g. "the bundled encoder is tiny and random")
};

inline viz::rgb8 box_color(const std::string& key) {
    if (key == "person") return viz::box_green;
    if (key == "object") return viz::box_cyan;
    return viz::box_yellow;
}

namespace detail {

inline std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

inline std::string quoted(const std::string& s) { return "\u201c" + s + "\u201d"; }

// "untrained head (seeded, seed 0)" / "trained head: <dir>/heatmap_head.safetensors".
inline std::string head_label(const model_result& m) {
    if (!m.head_trained) {
        const auto at = m.head_source.find("(seed ");
        const auto end = m.head_source.find(')', at);
        return "untrained head, seeded" + (at != std::string::npos && end != std::string::npos
                                               ? " (" + m.head_source.substr(at + 1, end - at - 1) + ")"
                                               : "");
    }
    const std::string dir =
        m.source.head_only() ? m.source.head_dir.filename().string() : m.source.given.filename().string();
    return "trained head from " + (dir.empty() ? m.source.given.string() : dir);
}

inline std::vector<float> values(const tensor& t) { return {t.ptr<float>(), t.ptr<float>() + t.numel()}; }

}  // namespace detail

inline viz::figure_spec make_figure(const comparison_result& r, const figure_options& o = {}) {
    viz::figure_spec s;
    s.panel_long_side = o.panel_long_side;
    s.panel_min_side = o.panel_min_side;
    s.alpha = o.alpha;
    s.interp = o.interp;
    const bool grounding = r.req.task == task_type::grounding;
    s.title = grounding ? "Grounding: where the models look without a box"
                        : "Where the heatmap head looks: base vs fine-tuned";
    std::string sub = r.req.image_label + " (" + std::to_string(r.image_w) + "\u00d7" + std::to_string(r.image_h) + ")";
    sub += " \u00b7 " + std::string(name(r.req.task));
    if (!r.req.action.empty()) sub += " \u00b7 action " + detail::quoted(r.req.action);
    if (!r.req.object_category.empty()) sub += " \u00b7 object " + detail::quoted(r.req.object_category);
    sub +=
        " \u00b7 " + r.base.family + ", " + std::to_string(r.grid_h) + "\u00d7" + std::to_string(r.grid_w) + " patches";
    s.subtitle = sub;
    s.row_labels = {"Base", "Fine-tuned"};
    s.row_sublabels = {detail::head_label(r.base), detail::head_label(r.finetuned)};

    std::vector<viz::box_outline> all;
    for (const auto& b : r.boxes)  // the union is implied by the two boxes
        if (b.key != "interaction") all.push_back({b.b, box_color(b.key), 2});

    for (const auto* m : {&r.base, &r.finetuned}) {
        std::vector<viz::panel_spec> row;
        for (const auto& q : m->queries) {
            viz::panel_spec p;
            p.map = detail::values(q.attention.mean);
            p.grid_h = r.grid_h;
            p.grid_w = r.grid_w;
            if (q.key == "uniform") {
                p.title.push_back("all patches as queries");
                p.boxes = all;
            } else {
                p.title.push_back("mass in box " + detail::fmt("%.3f", q.mass_in.at(q.key)) + "  (uniform " +
                                  detail::fmt("%.3f", r.uniform_mass.at(q.key)) + ")");
                if (q.key == "interaction")
                    for (const auto& b : r.boxes)
                        if (b.key != "interaction") p.boxes.push_back({b.b, box_color(b.key), 1});
                p.boxes.push_back({q.query, box_color(q.key), 3});
            }
            p.title.push_back("entropy " + detail::fmt("%.2f", q.stats.normalized_entropy) + " \u00b7 peak (" +
                              detail::fmt("%.0f", q.stats.peak.x) + ", " + detail::fmt("%.0f", q.stats.peak.y) +
                              ") px");
            row.push_back(std::move(p));
        }
        if (m->own) {
            viz::panel_spec p;
            p.map = detail::values(m->own->map.mean);
            p.grid_h = r.grid_h;
            p.grid_w = r.grid_w;
            p.boxes = all;
            p.title.push_back("received per patch, block " + std::to_string(m->own->map.block) + ", head-averaged");
            p.title.push_back("entropy " + detail::fmt("%.2f", m->own->stats.normalized_entropy) + " \u00b7 peak (" +
                              detail::fmt("%.0f", m->own->stats.peak.x) + ", " +
                              detail::fmt("%.0f", m->own->stats.peak.y) + ") px");
            row.push_back(std::move(p));
        }
        s.panels.push_back(std::move(row));
    }

    // Colour scales: [0, max over the panels that share], topped up to the uniform floor.
    {
        const double floor =
            std::max(0.0, o.uniform_floor) / static_cast<double>(std::max<std::int64_t>(1, r.grid_h * r.grid_w));
        const std::size_t cols = s.panels[0].size();
        double all = 0;
        std::vector<double> col(cols, 0.0);
        for (const auto& row : s.panels)
            for (std::size_t k = 0; k < row.size() && k < cols; ++k)
                for (float v : row[k].map)
                    if (std::isfinite(v)) {
                        col[k] = std::max(col[k], static_cast<double>(v));
                        all = std::max(all, static_cast<double>(v));
                    }
        for (auto& row : s.panels)
            for (std::size_t k = 0; k < row.size() && k < cols; ++k) {
                double own = 0;
                for (float v : row[k].map)
                    if (std::isfinite(v)) own = std::max(own, static_cast<double>(v));
                row[k].vmin = 0;
                row[k].vmax = std::max(floor, o.scale == color_scale::figure   ? all
                                              : o.scale == color_scale::column ? col[k]
                                                                               : own);
            }
    }

    if (grounding) {
        s.col_labels = {"Heatmap head, uniform heatmap", "Encoder's own attention"};
    } else {
        for (const auto& q : r.base.queries) {
            if (q.key == "person")
                s.col_labels.push_back("Person box");
            else if (q.key == "object")
                s.col_labels.push_back(r.req.object_category.empty() ? "Object box"
                                                                     : "Object box: " + r.req.object_category);
            else
                s.col_labels.push_back(r.req.action.empty() ? "Interaction (union)"
                                                            : "Interaction: " + r.req.action + " (union)");
        }
    }
    for (const auto& b : r.boxes)
        s.legend.push_back({box_color(b.key), b.key == "person"   ? "person box"
                                              : b.key == "object" ? "object box"
                                                                  : "interaction (union of both)"});
    const char* shared = o.scale == color_scale::column   ? " Base and fine-tuned share each column's colour scale."
                         : o.scale == color_scale::figure ? " One colour scale for all panels."
                                                          : " Each panel has its own colour scale.";
    s.footer =
        std::string(
            grounding
                ? "Colour: attention per patch (each map sums to 1)."
                : "Colour: attention the box's patches place on every patch, mean over heads (each map sums to 1).") +
        shared + " Entropy normalised: 1 = uniform.";
    if (!o.model_note.empty()) s.footer += " " + o.model_note;
    return s;
}

}  // namespace glimpse::compare
