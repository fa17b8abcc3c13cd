#pragma once
// Base vs fine-tuned: where the heatmap head of two Qwen vision models looks
// for the same boxes on the same image (the library behind glimpse-compare).
//
//   auto cmp = compare::comparer<cpu>::load(be, model_source::resolve(base), model_source::resolve(tuned, base));
//   auto r   = cmp.run(be, image, request);          // maps + statistics, nothing written
//   compare::write_outputs(r, out_dir, fonts);        // PNG + JSON + safetensors, atomically
//
// Per model and image the tower runs ONCE (encode_site; once for both models
// when they share an encoder, e.g. a glimpse-train head directory on its base),
// the head's norm1/K/V are computed ONCE (prepare_head), and each box is one
// attend() on them — referring: the person box, the object box and their union
// (interaction). Grounding (no box input to the model): the head under a
// uniform heatmap (every patch a query) and the encoder's own attention
// received per patch in its last full-attention block, head-averaged.
//
// Maps: raster [grid_h, grid_w] over the pre-merge patch grid, the attention
// the query patches (those the box touches) place on every patch, mean over
// heads, summing to 1 (models/qwen_heatmap.hpp, raster_attention). Statistics:
// analysis/attention_stats.hpp.

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
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/stopwatch.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/io/safetensors.hpp"
#include "glimpse/models/qwen_heatmap.hpp"
#include "glimpse/version.hpp"

namespace glimpse::compare {

// ---- what the user asks for --------------------------------------------------------------

enum class task_type { referring, grounding };

inline std::string_view name(task_type t) { return t == task_type::referring ? "referring" : "grounding"; }

inline task_type parse_task_type(std::string_view s) {
    if (s == "referring") return task_type::referring;
    if (s == "grounding") return task_type::grounding;
    glimpse::detail::fail("unknown task type '", s, "' (expected referring or grounding)");
}

// pixels: original-image pixels (HICO-DET, COCO xyxy). norm1000: Qwen3-VL's
// 0..1000 grounding convention, x * W / 1000, y * H / 1000.
enum class box_format { pixels, norm1000 };

inline std::string_view name(box_format f) { return f == box_format::pixels ? "pixels" : "norm1000"; }

inline box_format parse_box_format(std::string_view s) {
    if (s == "pixels") return box_format::pixels;
    if (s == "norm1000") return box_format::norm1000;
    glimpse::detail::fail("unknown box format '", s, "' (expected pixels or norm1000)");
}

// Four numbers as typed -> a validated box in pixels of a W x H image.
inline heatmap::box to_pixel_box(const std::vector<double>& v, box_format f, double W, double H,
                                 const std::string& what) {
    glimpse::detail::check(v.size() == 4, what, " needs 4 numbers x1 y1 x2 y2, got ", v.size());
    heatmap::box b{v[0], v[1], v[2], v[3]};
    if (f == box_format::norm1000) {
        for (double c : v)
            glimpse::detail::check(std::isfinite(c) && c >= 0 && c <= 1000, what, " [", v[0], ", ", v[1], ", ", v[2],
                                   ", ", v[3], "] is outside 0..1000 (--box_format norm1000)");
        b = {v[0] * W / 1000, v[1] * H / 1000, v[2] * W / 1000, v[3] * H / 1000};
    }
    heatmap::validate_box(b, W, H, what);
    return b;
}

// A named box of the comparison (person, object, interaction).
struct named_box {
    std::string key;  // "person", "object", "interaction"
    heatmap::box b;   // original-image pixels
};

struct request {
    task_type task = task_type::referring;
    std::optional<heatmap::box> person, object;  // pixels, validated
    std::string action, object_category;
    std::string image_label;  // shown in titles (the file name)

    // The boxes the maps are computed for / reported on: person, object and, with
    // both, their union (the interaction).
    std::vector<named_box> boxes() const {
        std::vector<named_box> out;
        if (person) out.push_back({"person", *person});
        if (object) out.push_back({"object", *object});
        if (person && object) out.push_back({"interaction", heatmap::union_of(*person, *object)});
        return out;
    }
    void check() const {
        glimpse::detail::check(task != task_type::referring || person || object,
                               "the referring task needs --person_box and/or --object_box");
    }
};

// ---- where a model comes from -------------------------------------------------------------

// A model argument: a Hugging Face checkpoint directory (config.json; its own
// heatmap_head.* when present, else a seeded untrained head) or a head-only
// directory written by glimpse-train (heatmap_head.safetensors, whose encoder
// is the base model's).
struct model_source {
    std::filesystem::path given;        // as typed
    std::filesystem::path encoder_dir;  // the checkpoint with config.json
    std::filesystem::path head_dir;     // non-empty: head-only directory
    // How its head is found (models/head_locator.hpp): an explicit prefix, renamed leaves,
    // and whether a model with no head is an error (the fine-tuned model, unless the user
    // allowed an untrained one) or gets a seeded, untrained head (the base model).
    std::string head_prefix;
    models::head_name_map head_names;
    bool require_head = false;

    bool head_only() const { return !head_dir.empty(); }

    static model_source resolve(const std::filesystem::path& dir, const std::string& what,
                                const std::filesystem::path& base_encoder = {}) {
        namespace fs = std::filesystem;
        std::error_code ec;
        const std::string where = what + " '" + dir.string() + "'";
        if (!fs::exists(dir, ec)) glimpse::detail::fail(where, ": no such directory");
        if (!fs::is_directory(dir, ec)) glimpse::detail::fail(where, ": not a directory");
        model_source m;
        m.given = dir;
        if (fs::is_regular_file(dir / "config.json", ec)) {
            m.encoder_dir = dir;
            return m;
        }
        if (fs::is_regular_file(dir / "heatmap_head.safetensors", ec)) {
            glimpse::detail::check(!base_encoder.empty(), where,
                                   ": a head-only directory (heatmap_head.safetensors, no config.json) cannot be the "
                                   "base model; give the Hugging Face checkpoint it was trained on");
            m.encoder_dir = base_encoder;
            m.head_dir = dir;
            return m;
        }
        glimpse::detail::fail(where,
                              ": neither a Hugging Face checkpoint (no config.json) nor a glimpse-train head "
                              "directory (no heatmap_head.safetensors)");
    }
};

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

// ---- the comparer -------------------------------------------------------------------------

template <Backend B>
class comparer {
public:
    using encoder_t = models::qwen_encoder<B>;

    static comparer load(B& be, const model_source& base, const model_source& finetuned, std::uint64_t seed = 0,
                         stage_timings* t = nullptr) {
        comparer c;
        c.base_src_ = base;
        c.ft_src_ = finetuned;
        stopwatch w;
        c.base_ = encoder_t::load(be, base.encoder_dir, head_options(base, seed));
        if (t) t->add("load base model", w.ms());
        stopwatch w2;
        c.ft_ = encoder_t::load(be, finetuned.encoder_dir, head_options(finetuned, seed));
        if (t) t->add("load fine-tuned model", w2.ms());
        std::error_code ec;
        c.shared_tower_ = std::filesystem::equivalent(base.encoder_dir, finetuned.encoder_dir, ec) && !ec;
        glimpse::detail::check(c.base_.config().hidden_size == c.ft_.config().hidden_size &&
                                   c.base_.config().patch_size == c.ft_.config().patch_size &&
                                   c.base_.config().spatial_merge_size == c.ft_.config().spatial_merge_size,
                               "base and fine-tuned models have different vision towers (hidden ",
                               c.base_.config().hidden_size, " vs ", c.ft_.config().hidden_size, ", patch ",
                               c.base_.config().patch_size, " vs ", c.ft_.config().patch_size,
                               "): their maps would not be comparable");
        return c;
    }

    const encoder_t& base() const { return base_; }
    const encoder_t& finetuned() const { return ft_; }
    bool shared_tower() const { return shared_tower_; }

    // Everything but the files. `img` is the decoded original; boxes in `req`
    // must already be validated against its size (to_pixel_box).
    comparison_result run(B& be, const image_u8& img, const request& req) const {
        req.check();
        comparison_result r;
        r.req = req;
        r.image_w = img.width;
        r.image_h = img.height;
        r.boxes = req.boxes();
        stopwatch wp;
        const models::pixel_batch px = base_.preprocess(img);
        r.timings.add("preprocess", wp.ms());
        r.resized_h = px.resized_hw[0].first;
        r.resized_w = px.resized_hw[0].second;
        r.grid_h = px.grid_thw[0][1];
        r.grid_w = px.grid_thw[0][2];
        const analysis::grid_geometry geo{r.grid_h, r.grid_w, static_cast<double>(img.width),
                                          static_cast<double>(img.height)};
        for (const auto& b : r.boxes) r.uniform_mass[b.key] = analysis::area_fraction(b.b, geo);

        const bool grounding = req.task == task_type::grounding;
        std::optional<models::site_features<B>> base_site;
        r.base = run_model(be, base_, base_src_, "base", px, img, r, geo, grounding, nullptr, base_site);
        r.finetuned = run_model(be, ft_, ft_src_, "finetuned", px, img, r, geo, grounding,
                                shared_tower_ ? &*base_site : nullptr, base_site);
        if (shared_tower_ && r.base.own) {  // one tower: the same own attention for both
            own_attention c;
            c.map.block = r.base.own->map.block;
            c.map.grid_h = r.base.own->map.grid_h;
            c.map.grid_w = r.base.own->map.grid_w;
            c.map.per_head = r.base.own->map.per_head.clone();
            c.map.mean = r.base.own->map.mean.clone();
            c.stats = r.base.own->stats;
            c.mass_in = r.base.own->mass_in;
            r.finetuned.own = std::move(c);
        }
        r.image = img;
        return r;
    }

private:
    static models::qwen_head_options head_options(const model_source& m, std::uint64_t seed) {
        models::qwen_head_options o;
        o.seed = seed;
        o.head_dir = m.head_dir;
        o.prefix = m.head_prefix;
        o.names = m.head_names;
        o.require_trained = m.require_head;
        return o;
    }

    model_result run_model(B& be, const encoder_t& enc, const model_source& src, const std::string& role,
                           const models::pixel_batch& px, const image_u8& img, comparison_result& r,
                           const analysis::grid_geometry& geo, bool grounding, const models::site_features<B>* shared,
                           std::optional<models::site_features<B>>& keep) const {
        model_result m;
        m.role = role;
        m.source = src;
        m.family = std::string(models::name(enc.family()));
        m.head_source = enc.head_source();
        m.head_location = enc.head_location_info();
        m.head_trained = enc.head_trained();
        const std::string who = role == "base" ? "base" : "fine-tuned";

        // The tower, once (or not at all when the base's features are the same).
        std::optional<models::site_features<B>> own_site;
        const models::site_features<B>* f = shared;
        if (!f) {
            stopwatch w;
            if (grounding) {
                models::received_attention ra;
                own_site = enc.encode_site(be, px, ra);
                own_attention oa;
                oa.stats = analysis::stats_of(span_of(ra.mean), geo);
                for (const auto& b : r.boxes) oa.mass_in[b.key] = analysis::mass_in_box(span_of(ra.mean), b.b, geo);
                oa.map = std::move(ra);
                m.own = std::move(oa);
            } else {
                own_site = enc.encode_site(be, px);
            }
            r.timings.add("encoder tower (" + who + ")", w.ms());
            f = &*own_site;
        } else {
            m.shared_tower = true;
        }

        // The head's norm1 / K / V, once per model.
        stopwatch wk;
        const models::head_cache<B> cache = enc.prepare_head(be, *f);
        r.timings.add("head K/V (" + who + ")", wk.ms());
        m.head_path = std::string(heatmap::name(
            std::visit([](const auto& h) { return h.entries()[0].head.attn.choose_cached(); }, enc.head())));

        // One attend per heatmap.
        stopwatch wa;
        const std::int64_t S = r.grid_h * r.grid_w;
        std::vector<std::pair<std::string, heatmap::box>> queries;
        if (grounding)
            queries.push_back(
                {"uniform", heatmap::box{0, 0, static_cast<double>(img.width), static_cast<double>(img.height)}});
        else
            for (const auto& b : r.boxes) queries.push_back({b.key, b.b});
        for (const auto& [key, qb] : queries) {
            query_result q;
            q.key = key;
            q.query = qb;
            tensor h;
            if (key == "uniform") {
                h = tensor(shape{S});
                for (std::int64_t i = 0; i < S; ++i) h.ptr<float>()[i] = 1.0f;
            } else {
                h = models::box_to_heatmap(qb, geo.image_w, geo.image_h, models::grid_thw_t{1, r.grid_h, r.grid_w});
            }
            q.attention = enc.attend(be, *f, cache, h.cv());
            q.stats = analysis::stats_of(span_of(q.attention.mean), geo);
            for (const auto& b : r.boxes) q.mass_in[b.key] = analysis::mass_in_box(span_of(q.attention.mean), b.b, geo);
            m.queries.push_back(std::move(q));
        }
        r.timings.add("head attention x" + std::to_string(queries.size()) + " (" + who + ")", wa.ms());
        if (own_site && !keep) keep = std::move(own_site);
        return m;
    }

    static std::span<const float> span_of(const tensor& t) {
        return {t.ptr<float>(), static_cast<std::size_t>(t.numel())};
    }

    model_source base_src_, ft_src_;
    encoder_t base_, ft_;
    bool shared_tower_ = false;
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
