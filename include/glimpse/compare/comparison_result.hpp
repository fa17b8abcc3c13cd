#pragma once
// What a comparison returns (maps, statistics and timings per model and box) and how it is
// written: the result JSON and the maps file's tensors.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/compare/request.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/stopwatch.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/io/safetensors.hpp"
#include "glimpse/models/qwen_heatmap.hpp"
#include "glimpse/version.hpp"

namespace glimpse::compare {

// ---- results -----------------------------------------------------------------------------

struct stage_timings {
    std::vector<std::pair<std::string, double>> ms;  // in the order they ran
    void add(const std::string& stage, double v) {
        for (auto& [k, x] : ms)
            if (k == stage) {
                x += v;
                return;
            }
        ms.emplace_back(stage, v);
    }
};

using glimpse::stopwatch;

// One heatmap run on one model: the map and what it says about every box.
struct query_result {
    std::string key;                     // the box it was built from, or "uniform"
    heatmap::box query;                  // pixels (uniform: the whole image)
    models::raster_attention attention;  // mean [gh, gw], per_head [H, gh, gw]
    analysis::map_stats stats;
    std::map<std::string, double> mass_in;  // box key -> coverage-weighted mass inside it
};

// The encoder's own attention received per patch (grounding).
struct own_attention {
    models::received_attention map;
    analysis::map_stats stats;
    std::map<std::string, double> mass_in;
};

struct model_result {
    std::string role;  // "base" | "finetuned"
    model_source source;
    std::string family;                                  // "qwen3_vl", ...
    std::string head_source;                             // qwen_encoder::head_source()
    std::optional<models::head_location> head_location;  // where the loaded head is (empty: seeded)
    bool head_trained = false;
    std::string head_path;  // auto, generic, dedup, folded: the path the head took
    std::vector<query_result> queries;
    std::optional<own_attention> own;
    bool shared_tower = false;  // features reused from the base model's tower run
};

struct comparison_result {
    request req;
    std::int64_t image_w = 0, image_h = 0;
    std::int64_t resized_w = 0, resized_h = 0;
    std::int64_t grid_h = 0, grid_w = 0;
    std::vector<named_box> boxes;
    std::map<std::string, double> uniform_mass;  // box key -> area fraction
    model_result base, finetuned;
    stage_timings timings;
    image_u8 image;  // the decoded original (for the figure)
};

// ---- JSON ---------------------------------------------------------------------------------

inline std::string output_stem(task_type t) { return "attention_comparison_" + std::string(name(t)); }

inline nlohmann::ordered_json box_json(const heatmap::box& b) { return {b.x1, b.y1, b.x2, b.y2}; }

inline nlohmann::ordered_json stats_json(const analysis::map_stats& s) {
    return {{"entropy", s.entropy},
            {"normalized_entropy", s.normalized_entropy},
            {"peak",
             {{"row", s.peak.row}, {"col", s.peak.col}, {"x", s.peak.x}, {"y", s.peak.y}, {"value", s.peak.value}}}};
}

inline nlohmann::ordered_json to_json(const comparison_result& r,
                                      const std::map<std::string, double>& timings_extra = {}) {
    using oj = nlohmann::ordered_json;
    oj j;
    j["tool"] = "glimpse-compare";
    j["version"] = GLIMPSE_VERSION_STRING;
    j["task_type"] = std::string(name(r.req.task));
    j["image"] = {{"path", r.req.image_label},
                  {"width", r.image_w},
                  {"height", r.image_h},
                  {"resized", {{"width", r.resized_w}, {"height", r.resized_h}}}};
    j["grid"] = {{"h", r.grid_h},
                 {"w", r.grid_w},
                 {"patch_in_original_px",
                  {static_cast<double>(r.image_w) / static_cast<double>(r.grid_w),
                   static_cast<double>(r.image_h) / static_cast<double>(r.grid_h)}}};
    j["action"] = r.req.action;
    j["object_category"] = r.req.object_category;
    oj boxes = oj::object();
    for (const auto& b : r.boxes) boxes[b.key] = box_json(b.b);
    j["boxes"] = boxes;
    oj uni = oj::object();
    for (const auto& [k, v] : r.uniform_mass) uni[k] = v;
    j["uniform_mass"] = uni;
    const auto model_json = [&](const model_result& m) {
        oj mj;
        mj["dir"] = m.source.given.string();
        mj["encoder_dir"] = m.source.encoder_dir.string();
        mj["family"] = m.family;
        mj["head"] = m.head_source;
        mj["head_trained"] = m.head_trained;
        if (m.head_location)
            mj["head_location"] = {{"prefix", m.head_location->prefix},
                                   {"file", m.head_location->file.string()},
                                   {"found_by", m.head_location->by_structure ? "structure" : "given prefix"},
                                   {"dtype", m.head_location->dtype_name}};
        mj["head_path"] = m.head_path;
        mj["tower_shared_with_base"] = m.shared_tower;
        oj qs = oj::object();
        for (const auto& q : m.queries) {
            oj qj;
            qj["query_box"] = box_json(q.query);
            qj["query_patches"] = q.attention.in_box_count;
            oj mi = oj::object();
            for (const auto& [k, v] : q.mass_in) mi[k] = v;
            qj["mass_in"] = mi;
            qj["mass_in_query_patches"] = q.attention.mass_on_box_patches;
            const oj st = stats_json(q.stats);
            for (auto it = st.begin(); it != st.end(); ++it) qj[it.key()] = it.value();
            qs[q.key] = qj;
        }
        mj["queries"] = qs;
        if (m.own) {
            oj e;
            e["block"] = m.own->map.block;
            e["what"] =
                "the encoder's own attention received per patch in its last full-attention block: mean over "
                "all queries and heads";
            oj mi = oj::object();
            for (const auto& [k, v] : m.own->mass_in) mi[k] = v;
            e["mass_in"] = mi;
            const oj st = stats_json(m.own->stats);
            for (auto it = st.begin(); it != st.end(); ++it) e[it.key()] = it.value();
            mj["encoder_attention"] = e;
        }
        return mj;
    };
    j["models"] = {{"base", model_json(r.base)}, {"finetuned", model_json(r.finetuned)}};
    // base - fine-tuned, per query and box.
    oj diff = oj::object();
    for (std::size_t i = 0; i < r.base.queries.size() && i < r.finetuned.queries.size(); ++i) {
        const auto& a = r.base.queries[i];
        const auto& b = r.finetuned.queries[i];
        oj d;
        oj mi = oj::object();
        for (const auto& [k, v] : a.mass_in) mi[k] = v - b.mass_in.at(k);
        d["mass_in"] = mi;
        d["entropy"] = a.stats.entropy - b.stats.entropy;
        d["normalized_entropy"] = a.stats.normalized_entropy - b.stats.normalized_entropy;
        d["peak_distance_px"] = std::hypot(a.stats.peak.x - b.stats.peak.x, a.stats.peak.y - b.stats.peak.y);
        diff[a.key] = d;
    }
    j["difference_base_minus_finetuned"] = diff;
    j["maps_file"] = output_stem(r.req.task) + ".safetensors";
    j["maps_layout"] =
        "<model>.<query> [grid_h, grid_w] raster, head mean; <model>.<query>.per_head [H, grid_h, "
        "grid_w]; heatmap.<query> [grid_h, grid_w]; <model>.encoder_attention (grounding)";
    oj t = oj::object();
    for (const auto& [k, v] : r.timings.ms) t[k] = v;
    for (const auto& [k, v] : timings_extra) t[k] = v;
    j["timings_ms"] = t;
    return j;
}

// The maps file's tensors (views into r; keep r alive while they are used).
struct maps_payload {
    std::vector<tensor> owned;
    std::vector<std::pair<std::string, cview>> tensors;
    std::map<std::string, std::string> metadata;
};

inline maps_payload maps_of(const comparison_result& r) {
    maps_payload p;
    p.owned.reserve(16);
    for (const auto* m : {&r.base, &r.finetuned}) {
        for (const auto& q : m->queries) {
            p.tensors.emplace_back(m->role + "." + q.key, q.attention.mean.cv());
            p.tensors.emplace_back(m->role + "." + q.key + ".per_head", q.attention.per_head.cv());
        }
        if (m->own) {
            p.tensors.emplace_back(m->role + ".encoder_attention", m->own->map.mean.cv());
            p.tensors.emplace_back(m->role + ".encoder_attention.per_head", m->own->map.per_head.cv());
        }
    }
    for (const auto& q : r.base.queries) {
        tensor h = q.key == "uniform"
                       ? [&] {
                             tensor u(shape{r.grid_h, r.grid_w});
                             for (std::int64_t i = 0; i < u.numel(); ++i) u.ptr<float>()[i] = 1.0f;
                             return u;
                         }()
                       : heatmap::box_heatmap(q.query, static_cast<double>(r.image_w), static_cast<double>(r.image_h),
                                              r.grid_h, r.grid_w);
        p.owned.push_back(std::move(h));
    }
    for (std::size_t i = 0; i < r.base.queries.size(); ++i)
        p.tensors.emplace_back("heatmap." + r.base.queries[i].key, p.owned[i].cv().reshape(shape{r.grid_h, r.grid_w}));
    p.metadata = {{"format", "pt"},
                  {"tool", "glimpse-compare"},
                  {"task_type", std::string(name(r.req.task))},
                  {"grid_hw", "[" + std::to_string(r.grid_h) + ", " + std::to_string(r.grid_w) + "]"},
                  {"image_wh", "[" + std::to_string(r.image_w) + ", " + std::to_string(r.image_h) + "]"},
                  {"order", "raster (row-major over the pre-merge patch grid)"}};
    return p;
}

}  // namespace glimpse::compare
