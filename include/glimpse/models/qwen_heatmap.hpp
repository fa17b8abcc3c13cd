#pragma once
// qwen_encoder: the user-level glue between a Qwen2.5-VL / Qwen3-VL checkpoint
// directory and the heatmap head — what a program that "encodes an image with
// a box" needs, and nothing the towers do not already do.
//
//   auto enc = models::qwen_encoder<cpu>::load(be, "Qwen3-VL-8B-Instruct");
//   auto px  = enc.preprocess(load_image("cat.jpg"));
//   auto r   = enc.encode_box(be, px, {x1, y1, x2, y2}, image_w, image_h);
//   r.attention->mass_in_box;   r.features.merged;
//
// The family is only known at run time (config.json's model_type), so the
// encoder holds a std::variant of the two towers and of the two head block
// kinds, and dispatches once per call; everything below it stays compile-time.
//
// The head (one heatmap_head, the seed's setup): block kind of the tower
// (rms_swiglu for Qwen2.5, ln_gelu_tanh for Qwen3), placed before the merger,
// combined residually (x + delta). Its default config is the tower's own:
// D = hidden_size, H = num_heads, I = intermediate_size, 2-D RoPE ON with the
// tower's head dim (D / H) and rope_theta, eps 1e-6. Weights: `heatmap_head.*`
// tensors found in the checkpoint directory (in the model's safetensors or in
// a separate `heatmap_head.safetensors`) are loaded and must match that
// config; without them the head is seeded PyTorch-default init — UNTRAINED,
// which `head_trained()` / `head_source()` say so that tools can print it.
//
// Token orders (qwen_token_order.hpp): heatmaps are given in RASTER order
// over the pre-merge patch grid; the tower permutes them to its own order at
// the head's site (window order in Qwen2.5, merge-block order in Qwen3), and
// the maps the head returns come back here in that order and are permuted back
// to raster. `features.hidden` stays in MERGE-BLOCK order (the rows of
// pixel_values; every merged token is m^2 consecutive rows), `features.merged`
// in merged-raster order, as the towers return them.
//
// One image per call (grid_t = 1): the head attends over all tokens of the
// call, so a batch would let patches of one image attend to another's.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/random.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/heatmap/head_block.hpp"
#include "glimpse/heatmap/integration.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/io/safetensors.hpp"
#include "glimpse/models/head_locator.hpp"
#include "glimpse/models/qwen2_5_vl.hpp"
#include "glimpse/models/qwen3_vl.hpp"
#include "glimpse/models/qwen_config.hpp"
#include "glimpse/models/qwen_preprocess.hpp"
#include "glimpse/models/qwen_token_order.hpp"
#include "glimpse/models/qwen_vision_block.hpp"
#include "glimpse/models/site_features.hpp"

namespace glimpse::models {

// Where the head's weights come from (head_locator.hpp says how a head is found).
struct qwen_head_options {
    std::uint64_t seed = 0;  // init seed when no head is loaded
    // The head's prefix in the checkpoint ("model.visual.heatmap_head"); empty: found by
    // structure under any prefix. A checkpoint with several heads needs one.
    std::string prefix;
    bool load_trained = true;  // false: always seeded init (ignore any head in the checkpoint)
    // Where the head is, when not in the model directory: a head-only directory (what
    // glimpse-train writes: heatmap_head.safetensors + glimpse_head.json), a checkpoint
    // directory, or a .safetensors file. The head must be there; the model directory's own
    // head is then ignored. Empty: look in the model directory.
    std::filesystem::path head_dir;
    head_name_map names;           // leaves spelt otherwise (head_name_map::from_json)
    bool require_trained = false;  // no head found: an error (else a seeded, UNTRAINED head)
};

template <Backend B>
struct qwen_encoding {
    vision_output<B> features;                  // hidden (merge-block order, head applied), merged, deepstack
    grid_thw_t grid{};                          // (1, grid_h, grid_w) pre-merge patches
    tensor heatmap;                             // [grid_h * grid_w] raster heatmap given to the head (empty: none)
    std::optional<raster_attention> attention;  // when a heatmap was given
};

// Box in pixels of the ORIGINAL image_w x image_h image -> raster heatmap
// [grid_h * grid_w] of per-patch coverage. smart_resize scales each axis to a
// multiple of the patch size and the patch grid tiles the resized image, so in
// original pixels each patch spans image_w / grid_w x image_h / grid_h: no
// need to know the resized size.
inline tensor box_to_heatmap(const heatmap::box& b, double image_w, double image_h, const grid_thw_t& grid,
                             heatmap::box_mode mode = heatmap::box_mode::coverage) {
    return heatmap::box_heatmap(b, image_w, image_h, grid[1], grid[2], mode);
}

// The tower's OWN attention, received per patch in one block: the mean over
// all queries and heads of the block's softmax probabilities, per key, in
// raster order (what the encoder itself looks at, with no heatmap involved).
struct received_attention {
    std::int64_t block = -1;  // 0-based index of the block
    std::int64_t grid_h = 0, grid_w = 0;
    tensor per_head;  // [H, grid_h, grid_w]; each head's map sums to 1
    tensor mean;      // [grid_h, grid_w], head-averaged; sums to 1
};

// The last block whose attention spans the whole image (Qwen3: every block;
// Qwen2.5: the last of fullatt_block_indexes, the others attend in windows).
inline std::int64_t last_full_attention_block(const qwen_vision_config& c) {
    if (c.family == qwen_family::qwen2_5_vl && !c.fullatt_block_indexes.empty())
        return *std::max_element(c.fullatt_block_indexes.begin(), c.fullatt_block_indexes.end());
    return c.depth - 1;
}

template <Backend B>
class qwen_encoder {
public:
    using tensor_t = typename B::tensor;
    using tower_t = std::variant<qwen2_5_vision<B>, qwen3_vision<B>>;
    using head_t = std::variant<heatmap::heatmap_integration<B, nn::rms_swiglu>,
                                heatmap::heatmap_integration<B, nn::ln_gelu_tanh>>;

    // Loads config.json, preprocessor_config.json (when present; else the
    // family's released defaults with the tower's patch and merge sizes), the
    // tower, and the head (see the top of this file).
    static qwen_encoder load(B& be, const std::filesystem::path& dir, const qwen_head_options& opt = {}) {
        std::error_code ec;
        if (!std::filesystem::is_directory(dir, ec))
            glimpse::detail::fail("model directory '", dir.string(),
                                  "': ", std::filesystem::exists(dir, ec) ? "not a directory" : "no such directory");
        qwen_encoder e;
        e.config_ = qwen_vision_config::load(dir);
        e.preprocess_ = preprocessing_of(dir, e.config_);
        const checkpoint ck(dir);
        if (e.config_.family == qwen_family::qwen2_5_vl)
            e.tower_.template emplace<0>(qwen2_5_vision<B>::load(be, ck, e.config_));
        else
            e.tower_.template emplace<1>(qwen3_vision<B>::load(be, ck, e.config_));
        e.load_head(be, dir, ck, opt);
        return e;
    }

    const qwen_vision_config& config() const noexcept { return config_; }
    qwen_family family() const noexcept { return config_.family; }
    const preprocess_config& preprocessing() const noexcept { return preprocess_; }
    const heatmap::head_config& head_config() const noexcept { return head_config_; }
    bool head_trained() const noexcept { return head_trained_; }
    // "'model.visual.heatmap_head.*' in <file> (found by structure, BF16)" or "seeded init
    // (seed N), untrained".
    const std::string& head_source() const noexcept { return head_source_; }
    // Where the loaded head came from (empty: seeded).
    const std::optional<head_location>& head_location_info() const noexcept { return head_loc_; }
    const tower_t& tower() const noexcept { return tower_; }
    const head_t& head() const noexcept { return head_; }

    // The head's default config for a tower (documented at the top).
    static heatmap::head_config default_head_config(const qwen_vision_config& c) {
        return heatmap::head_config{c.hidden_size, c.num_heads,  c.intermediate_size,
                                    /*rope=*/true, c.rope_theta, c.eps};
    }

    pixel_batch preprocess(const image_u8& image) const { return models::preprocess(image, preprocess_); }

    // Any policy on the tower, for callers with their own heads (and tests).
    template <class Policy>
    requires heatmap::integration_policy<Policy, B> vision_output<B> encode_with(B& be, const pixel_batch& px,
                                                                                 const Policy& policy,
                                                                                 const encode_inputs<B>& extra = {})
    const {
        // The pixels live on the host (preprocess); a device backend needs them in its memory.
        const tensor_t pixels = be.upload(px.pixel_values.cv());
        return std::visit([&](const auto& t) { return t.encode(be, pixels.cv(), px.grid_thw, policy, extra); }, tower_);
    }

    // The plain tower: no heatmap, the head is not run.
    vision_output<B> encode(B& be, const pixel_batch& px) const { return encode_with(be, px, heatmap::no_heatmap{}); }

    // The tower with the head, fed `raster_heatmap` ([grid_h * grid_w], raster
    // order); the head's maps are those of the queries where `query_mask` is
    // non-zero (raster; empty: where the heatmap is non-zero), returned in
    // raster order.
    qwen_encoding<B> encode(B& be, const pixel_batch& px, const cview& raster_heatmap,
                            std::span<const std::uint8_t> query_mask = {}) const {
        const grid_thw_t grid = single_grid(px);
        const std::int64_t S = grid[1] * grid[2];
        raster_query q = raster_queries(raster_heatmap, query_mask, S, "qwen_encoder::encode");
        qwen_encoding<B> out;
        out.grid = grid;
        out.heatmap = std::move(q.heat);
        const std::vector<std::uint8_t>& in_box = q.in_box;
        const std::int64_t count = q.count;

        // Query weights in the token order at the head's site.
        const std::span<const grid_thw_t> grids(&out.grid, 1);
        const heatmap::token_order order = site_order(config_, grids);
        tensor qw(shape{1, S});
        for (std::int64_t t = 0; t < S; ++t)
            qw.ptr<float>()[t] = in_box[static_cast<std::size_t>(order.raster_of_token[static_cast<std::size_t>(t)])]
                                     ? 1.0f / static_cast<float>(count)
                                     : 0.0f;
        const tensor_t qw_dev = be.upload(qw.cv());

        std::vector<heatmap::head_maps<B>> maps;
        encode_inputs<B> extra;
        extra.heatmaps = {out.heatmap.cv()};
        extra.maps.query_weights = qw_dev.cv();
        extra.maps_out = &maps;
        out.features = std::visit([&](const auto& h) { return encode_with(be, px, h, extra); }, head_);
        glimpse::detail::check(maps.size() == 1, "qwen_encoder::encode: the head returned ", maps.size(),
                               " attention maps (expected 1)");
        const tensor pooled = be.download(maps[0].pooled.cv()).to(dtype::f32);
        out.attention =
            maps_to_raster(pooled.cv(), order, grid[1], grid[2], in_box,
                           std::span<const float>(out.heatmap.template ptr<float>(), static_cast<std::size_t>(S)));
        return out;
    }

    // The features at the head's site, before the head (see site_features).
    site_features<B> encode_site(B& be, const pixel_batch& px) const {
        site_features<B> f;
        f.grid = single_grid(px);
        f.order = site_order(config_, std::span<const grid_thw_t>(&f.grid, 1));
        (void)encode_with(be, px, detail::capture_site<B>{&f});
        glimpse::detail::check(f.x.shape().rank() == 2 && f.x.shape()[0] == f.grid[1] * f.grid[2],
                               "qwen_encoder::encode_site: the tower did not reach the head's site");
        return f;
    }

    // encode_site, and the tower's own attention received per patch in its last
    // full-attention block (`own`, see received_attention). The pooled map costs
    // O(H S) memory: the [S, S] matrix is never formed.
    site_features<B> encode_site(B& be, const pixel_batch& px, received_attention& own) const {
        site_features<B> f;
        f.grid = single_grid(px);
        f.order = site_order(config_, std::span<const grid_thw_t>(&f.grid, 1));
        const std::int64_t S = f.grid[1] * f.grid[2], H = config_.num_heads;
        const std::int64_t block = last_full_attention_block(config_);
        tensor qw(shape{1, S});
        for (std::int64_t t = 0; t < S; ++t) qw.template ptr<float>()[t] = 1.0f / static_cast<float>(S);
        const tensor_t qw_dev = be.upload(qw.cv());
        tensor_t pooled = be.alloc(shape{1, H, S}, dtype::f32);
        encode_inputs<B> extra;
        extra.block_maps.resize(static_cast<std::size_t>(block + 1));
        extra.block_maps[static_cast<std::size_t>(block)].query_weights = qw_dev.cv();
        extra.block_maps[static_cast<std::size_t>(block)].pooled = pooled.v();
        (void)encode_with(be, px, detail::capture_site<B>{&f}, extra);
        glimpse::detail::check(f.x.shape().rank() == 2 && f.x.shape()[0] == S,
                               "qwen_encoder::encode_site: the tower did not reach the head's site");
        const tensor host = be.download(pooled.cv()).to(dtype::f32);
        const std::vector<std::uint8_t> none(static_cast<std::size_t>(S), 0);
        raster_attention r = maps_to_raster(host.cv(), f.order, f.grid[1], f.grid[2], none, {});
        own.block = block;
        own.grid_h = f.grid[1];
        own.grid_w = f.grid[2];
        own.per_head = std::move(r.per_head);
        own.mean = std::move(r.mean);
        return f;
    }

    // The head's K/V (and norm1) of cached site features, for attend(be, f, cache, ...).
    head_cache<B> prepare_head(B& be, const site_features<B>& f) const {
        head_cache<B> c;
        std::visit(
            [&](const auto& h) {
                c.kv = h.entries()[0].head.prepare(be, heatmap::head_inputs{f.x.cv(), cview{}, f.cos.cv(), f.sin.cv()});
            },
            head_);
        return c;
    }

    // attend() with the head's K/V from `cache` (prepare_head of the same f):
    // the same maps up to f32 rounding, only the heatmap-dependent work done
    // (without delta_out, not even the output projection and the MLP).
    raster_attention attend(B& be, const site_features<B>& f, const head_cache<B>& cache, const cview& raster_heatmap,
                            std::span<const std::uint8_t> query_mask = {}, tensor_t* delta_out = nullptr) const {
        return attend_impl(be, f, &cache, raster_heatmap, query_mask, delta_out);
    }

    // The head on cached site features: the attention of encode(be, px,
    // raster_heatmap, query_mask) without running the tower again. `delta_out`
    // (optional) receives the head's delta [S, D] in the site's token order.
    raster_attention attend(B& be, const site_features<B>& f, const cview& raster_heatmap,
                            std::span<const std::uint8_t> query_mask = {}, tensor_t* delta_out = nullptr) const {
        return attend_impl(be, f, nullptr, raster_heatmap, query_mask, delta_out);
    }

    // attend() with a heatmap that carries its order (site_features::box_heatmap,
    // ordered_heatmap::raster, ...): converted, whatever the order.
    raster_attention attend(B& be, const site_features<B>& f, const heatmap::ordered_heatmap& h,
                            std::span<const std::uint8_t> query_mask = {}, tensor_t* delta_out = nullptr) const {
        const tensor raster = h.to_raster();
        return attend_impl(be, f, nullptr, raster.cv(), query_mask, delta_out);
    }
    raster_attention attend(B& be, const site_features<B>& f, const head_cache<B>& cache,
                            const heatmap::ordered_heatmap& h, std::span<const std::uint8_t> query_mask = {},
                            tensor_t* delta_out = nullptr) const {
        const tensor raster = h.to_raster();
        return attend_impl(be, f, &cache, raster.cv(), query_mask, delta_out);
    }

    // A box in pixels of the ORIGINAL image (image_w x image_h, before resizing):
    // heatmap = per-patch coverage of the box; queries = the patches it touches.
    qwen_encoding<B> encode_box(B& be, const pixel_batch& px, const heatmap::box& b, double image_w,
                                double image_h) const {
        const tensor h = box_to_heatmap(b, image_w, image_h, single_grid(px));
        return encode(be, px, h.cv());
    }

private:
    raster_attention attend_impl(B& be, const site_features<B>& f, const head_cache<B>* cache,
                                 const cview& raster_heatmap, std::span<const std::uint8_t> query_mask,
                                 tensor_t* delta_out) const {
        const std::int64_t S = f.grid[1] * f.grid[2];
        const raster_query q = raster_queries(raster_heatmap, query_mask, S, "qwen_encoder::attend");
        tensor site_heat(shape{S});
        tensor qw(shape{1, S});
        for (std::int64_t t = 0; t < S; ++t) {
            const auto r = static_cast<std::size_t>(f.order.raster_of_token[static_cast<std::size_t>(t)]);
            site_heat.template ptr<float>()[t] = q.heat.template ptr<float>()[r];
            qw.template ptr<float>()[t] = q.in_box[r] ? 1.0f / static_cast<float>(q.count) : 0.0f;
        }
        const tensor_t heat_dev = be.upload(site_heat.cv());
        const tensor_t qw_dev = be.upload(qw.cv());
        heatmap::head_maps<B> maps;
        heatmap::maps_request req;
        req.query_weights = qw_dev.cv();
        std::visit(
            [&](const auto& h) {
                const auto& e = h.entries()[0];
                if (cache && !delta_out) {  // maps only: no output projection, no MLP
                    e.head.attn.attention_maps_only(be, cache->kv.attn, heat_dev.cv(), cache->kv.cos.cv(),
                                                    cache->kv.sin.cv(), req, maps);
                    return;
                }
                auto d = cache ? e.head.delta(be, cache->kv, heat_dev.cv(), req, &maps)
                               : e.head.delta(be, heatmap::head_inputs{f.x.cv(), heat_dev.cv(), f.cos.cv(), f.sin.cv()},
                                              req, &maps);
                if (delta_out) *delta_out = std::move(d);
            },
            head_);
        const tensor pooled = be.download(maps.pooled.cv()).to(dtype::f32);
        return maps_to_raster(pooled.cv(), f.order, f.grid[1], f.grid[2], q.in_box,
                              std::span<const float>(q.heat.template ptr<float>(), static_cast<std::size_t>(S)));
    }

    // A raster heatmap as f32 and its query set (raster indicator, count).
    struct raster_query {
        tensor heat;
        std::vector<std::uint8_t> in_box;
        std::int64_t count = 0;
    };
    static raster_query raster_queries(const cview& raster_heatmap, std::span<const std::uint8_t> query_mask,
                                       std::int64_t S, const char* who) {
        glimpse::detail::check(raster_heatmap.numel() == S, who, ": heatmap has ", raster_heatmap.numel(),
                               " values for ", S, " patches");
        glimpse::detail::check(static_cast<std::int64_t>(query_mask.size()) == S || query_mask.empty(), who,
                               ": query mask has ", query_mask.size(), " values for ", S, " patches");
        raster_query q;
        q.heat = tensor(shape{S});
        float* hv = q.heat.template ptr<float>();
        glimpse::detail::for_each_offset(raster_heatmap, [&](std::int64_t i, std::int64_t o) {
            hv[i] = load_f32(raster_heatmap.data(), raster_heatmap.type(), o);
        });
        for (std::int64_t r = 0; r < S; ++r)
            glimpse::detail::check(std::isfinite(hv[r]), who, ": heatmap value ", r, " is not finite (", hv[r], ")");
        q.in_box.resize(static_cast<std::size_t>(S));
        for (std::int64_t r = 0; r < S; ++r) {
            const bool in = query_mask.empty() ? hv[r] != 0.0f : query_mask[static_cast<std::size_t>(r)] != 0;
            q.in_box[static_cast<std::size_t>(r)] = in ? 1 : 0;
            q.count += in ? 1 : 0;
        }
        glimpse::detail::check(q.count > 0, who, ": no query patch (the heatmap is all zero)");
        return q;
    }

    static grid_thw_t single_grid(const pixel_batch& px) {
        glimpse::detail::check(px.grid_thw.size() == 1 && px.grid_thw[0][0] == 1,
                               "qwen_encoder: one image per call (got ", px.grid_thw.size(), " grids)");
        return px.grid_thw[0];
    }

    static preprocess_config preprocessing_of(const std::filesystem::path& dir, const qwen_vision_config& c) {
        const auto file = dir / "preprocessor_config.json";
        std::error_code ec;
        preprocess_config p;
        if (std::filesystem::exists(file, ec)) {
            p = preprocess_config::from_json(file);
        } else {
            p = c.family == qwen_family::qwen2_5_vl ? preprocess_config::qwen2_5_vl() : preprocess_config::qwen3_vl();
            p.patch_size = c.patch_size;
            p.temporal_patch_size = c.temporal_patch_size;
            p.merge_size = c.spatial_merge_size;
        }
        glimpse::detail::check(
            p.patch_size == c.patch_size && p.temporal_patch_size == c.temporal_patch_size &&
                p.merge_size == c.spatial_merge_size && c.in_channels == 3,
            "model directory '", dir.string(), "': preprocessing (patch ", p.patch_size, ", temporal ",
            p.temporal_patch_size, ", merge ", p.merge_size, ") does not match the vision config (patch ", c.patch_size,
            ", temporal ", c.temporal_patch_size, ", merge ", c.spatial_merge_size, ", ", c.in_channels, " channels)");
        return p;
    }

    // The head-only directory's record (glimpse_head.json), when there is one: a head trained
    // on another family or width is refused as such, and its config (heads, RoPE) is used.
    void apply_head_record(const std::filesystem::path& dir) {
        const auto file = dir / "glimpse_head.json";
        std::error_code ec;
        if (!std::filesystem::is_regular_file(file, ec)) return;
        const std::string where = "head directory '" + dir.string() + "'";
        const nlohmann::json j = glimpse::parse_json_file(file, where);
        if (!j.is_object()) return;
        const auto str_at = [&](const char* a, const char* b) -> std::optional<std::string> {
            if (!j.contains(a) || !j[a].is_object() || !j[a].contains(b) || !j[a][b].is_string()) return std::nullopt;
            return j[a][b].get<std::string>();
        };
        const auto int_at = [&](const char* a, const char* b) -> std::optional<std::int64_t> {
            if (!j.contains(a) || !j[a].is_object() || !j[a].contains(b) || !j[a][b].is_number_integer())
                return std::nullopt;
            return j[a][b].get<std::int64_t>();
        };
        const std::string fam(name(config_.family));
        if (const auto f = str_at("encoder", "family"); f && *f != fam)
            glimpse::detail::fail(where, ": the head was trained on a ", *f,
                                  " encoder (glimpse_head.json), this model is ", fam);
        for (const auto& [a, b, want] : {std::tuple{"encoder", "hidden_size", config_.hidden_size},
                                         std::tuple{"head", "dim", config_.hidden_size}})
            if (const auto v = int_at(a, b); v && *v != want)
                glimpse::detail::fail(where, ": the head is ", *v, " wide (glimpse_head.json ", a, ".", b,
                                      "), this encoder's hidden_size is ", want);
        if (const auto h = int_at("head", "heads"); h) {
            glimpse::detail::check(*h > 0 && config_.hidden_size % *h == 0, where, ": glimpse_head.json head.heads ",
                                   *h, " does not divide the width ", config_.hidden_size);
            head_config_.heads = *h;
        }
        if (j.contains("head") && j["head"].is_object() && j["head"].contains("rope") && j["head"]["rope"].is_boolean())
            head_config_.rope = j["head"]["rope"].get<bool>();
    }

    template <class Kind>
    void load_head_kind(B& be, const std::filesystem::path& dir, const checkpoint& ck, const qwen_head_options& opt) {
        constexpr head_kind kind =
            std::is_same_v<Kind, nn::rms_swiglu> ? head_kind::rms_swiglu : head_kind::ln_gelu_tanh;
        heatmap::heatmap_integration<B, Kind> h("heatmap_head");
        const heatmap::binding bind{heatmap::site::before_merger(), heatmap::combine_mode::residual, 0};
        const head_search search{opt.prefix, false, opt.names};
        const std::int64_t D = config_.hidden_size, I = config_.intermediate_size;
        const auto load_from = [&](const checkpoint& src, const head_location& loc) {
            h.add_loaded(be, located_head_source(src, loc, "heatmap_head"), bind, head_config_, 0, 1);
            head_trained_ = true;
            head_loc_ = loc;
            head_source_ = loc.str();
        };
        std::error_code ec;
        if (!opt.head_dir.empty()) {
            // A glimpse-train directory holds heatmap_head.safetensors; anything else is read as
            // a checkpoint (directory or file).
            const auto own = opt.head_dir / head_file_name;
            const bool head_only = std::filesystem::is_directory(opt.head_dir, ec) &&
                                   std::filesystem::is_regular_file(own, ec) &&
                                   !std::filesystem::exists(opt.head_dir / "config.json", ec);
            if (std::filesystem::is_directory(opt.head_dir, ec)) {
                const bool any = std::any_of(std::filesystem::directory_iterator(opt.head_dir, ec),
                                             std::filesystem::directory_iterator(),
                                             [](const auto& e) { return e.path().extension() == ".safetensors"; });
                glimpse::detail::check(any, "head directory '", opt.head_dir.string(), "': no ", head_file_name,
                                       " (what glimpse-train writes) and no other .safetensors in it");
                apply_head_record(opt.head_dir);
            }
            const checkpoint src(head_only ? own : opt.head_dir);
            const std::string where =
                "head " + std::string(head_only ? "directory '" : "source '") + opt.head_dir.string() + "'";
            auto r = locate_head(src, kind, D, I, search, where);
            if (!r.found) glimpse::detail::fail(where, ": ", r.looked_for);
            load_from(src, *r.found);
        } else if (opt.load_trained) {
            auto r = locate_head(ck, kind, D, I, search, "model directory '" + dir.string() + "'");
            // A head file beside a sharded model (open_all would have read it already).
            const auto own = dir / head_file_name;
            if (!r.found && std::filesystem::is_regular_file(own, ec) &&
                std::none_of(ck.files().begin(), ck.files().end(), [&](const safetensors_file& f) {
                    std::error_code e2;
                    return std::filesystem::equivalent(f.path(), own, e2);
                })) {
                const checkpoint side(own);
                auto r2 = locate_head(side, kind, D, I, search, "head file '" + own.string() + "'");
                if (r2.found) {
                    load_from(side, *r2.found);
                    return emplace_head(std::move(h));
                }
            }
            if (r.found) {
                load_from(ck, *r.found);
            } else {
                glimpse::detail::check(!opt.require_trained, "model directory '", dir.string(),
                                       "': no heatmap head found (", r.looked_for,
                                       ").\n  Pass --allow_untrained to use a seeded, UNTRAINED head instead");
                seeded(be, h, bind, opt.seed);
            }
        } else {
            seeded(be, h, bind, opt.seed);
        }
        emplace_head(std::move(h));
    }

    template <class Kind>
    void seeded(B& be, heatmap::heatmap_integration<B, Kind>& h, const heatmap::binding& bind, std::uint64_t seed) {
        rng g(seed);
        h.add(be, bind, head_config_, g);
        head_trained_ = false;
        head_loc_.reset();
        head_source_ = "seeded init (seed " + std::to_string(seed) + "), untrained";
    }

    template <class Kind>
    void emplace_head(heatmap::heatmap_integration<B, Kind>&& h) {
        head_.template emplace<heatmap::heatmap_integration<B, Kind>>(std::move(h));
    }

    void load_head(B& be, const std::filesystem::path& dir, const checkpoint& ck, const qwen_head_options& opt) {
        head_config_ = default_head_config(config_);
        if (config_.family == qwen_family::qwen2_5_vl)
            load_head_kind<nn::rms_swiglu>(be, dir, ck, opt);
        else
            load_head_kind<nn::ln_gelu_tanh>(be, dir, ck, opt);
    }

    qwen_vision_config config_;
    preprocess_config preprocess_;
    tower_t tower_;
    head_t head_;
    heatmap::head_config head_config_;
    bool head_trained_ = false;
    std::string head_source_;
    std::optional<head_location> head_loc_;
};

}  // namespace glimpse::models
