#pragma once
// One image through a Qwen tower, with the heatmap head when a box is given, and its features
// as a safetensors file (the library behind glimpse-encode):
//
//   const auto in  = models::read_image_box("photo.jpg", {20, 15, 362, 512});  // box checked here
//   const auto enc = models::qwen_encoder<cpu>::load(be, "Qwen3-VL-8B-Instruct");
//   const auto e   = models::encode_image(be, enc, in);
//   models::save_encoding("features.safetensors", be, enc, in, e);
//
// The box is in pixels of the ORIGINAL image (x right, y down, x1 < x2, y1 < y2). Saved tensors:
// hidden [N, D] (pre-merger, head applied, MERGE-BLOCK order: the rows of pixel_values), merged
// [N/m^2, out] (merged-raster order), deepstack.<j> (Qwen3), and with a box heatmap [gh, gw],
// attention.mean [gh, gw], attention.per_head [H, gh, gw] (raster order). Metadata: family,
// grid_thw, resized and original size, box, head source, the two box masses.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/box.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/image_u8.hpp"
#include "glimpse/core/stopwatch.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/io/safetensors_writer.hpp"
#include "glimpse/models/qwen_heatmap.hpp"

namespace glimpse::models {

// An image and the box to guide the head with (none: the tower alone).
struct image_box {
    image_u8 image;
    std::string path;
    std::optional<box> b;
    double decode_ms = 0;
};

// Decodes the image and checks the box against it: what the user typed is refused before the
// slow model load. `xyxy` is empty (no box) or X1 Y1 X2 Y2; `what` names it in errors.
inline image_box read_image_box(const std::string& path, std::span<const double> xyxy,
                                std::string_view what = "--heatmap-box") {
    const stopwatch t;
    image_box in{load_image(path), path, std::nullopt, 0};
    if (!xyxy.empty()) {
        glimpse::detail::check(xyxy.size() == 4, what, ": a box is 4 numbers X1 Y1 X2 Y2, got ", xyxy.size());
        in.b = box{xyxy[0], xyxy[1], xyxy[2], xyxy[3]};
        validate_box(*in.b, static_cast<double>(in.image.width), static_cast<double>(in.image.height), what);
    }
    in.decode_ms = t.ms();
    return in;
}

inline std::string grid_string(const grid_thw_t& g) {
    return "[" + std::to_string(g[0]) + ", " + std::to_string(g[1]) + ", " + std::to_string(g[2]) + "]";
}

// What preprocessing made of the image: the tower's input and its geometry.
struct image_grid {
    pixel_batch px;
    grid_thw_t grid{};
    std::int64_t resized_w = 0, resized_h = 0;
    std::int64_t patches = 0, merged_tokens = 0;
    double preprocess_ms = 0;  // decoding included
};

template <Backend B>
image_grid preprocess_image(const qwen_encoder<B>& enc, const image_box& in) {
    const stopwatch t;
    image_grid g;
    g.px = enc.preprocess(in.image);
    g.grid = g.px.grid_thw[0];
    g.resized_h = g.px.resized_hw[0].first;
    g.resized_w = g.px.resized_hw[0].second;
    g.patches = g.grid[0] * g.grid[1] * g.grid[2];
    g.merged_tokens = g.patches / enc.config().merge_group();
    g.preprocess_ms = t.ms() + in.decode_ms;
    return g;
}

template <Backend B>
struct image_encoding {
    std::optional<qwen_encoding<B>> boxed;  // with a box: features, heatmap, the head's attention
    vision_output<B> plain;                 // without
    double encode_ms = 0;
    // The box's share of the image: the mass in the box of a uniform map (attention.mass_in_box's
    // baseline); the in-box patches' share of all patches is mass_on_box_patches's.
    double box_area = 0, box_patch_share = 0;

    const vision_output<B>& features() const { return boxed ? boxed->features : plain; }
    const raster_attention* attention() const { return boxed ? &*boxed->attention : nullptr; }
};

// The tower (and the head, given a box) on the preprocessed image.
template <Backend B>
image_encoding<B> encode_image(B& be, const qwen_encoder<B>& enc, const image_box& in, const image_grid& g) {
    const stopwatch t;
    image_encoding<B> e;
    const auto W = static_cast<double>(in.image.width), H = static_cast<double>(in.image.height);
    if (in.b) {
        e.boxed = enc.encode_box(be, g.px, *in.b, W, H);
        e.box_area = analysis::area_fraction(*in.b, {g.grid[1], g.grid[2], W, H});
        e.box_patch_share = static_cast<double>(e.boxed->attention->in_box_count) / static_cast<double>(g.patches);
    } else {
        e.plain = enc.encode(be, g.px);
    }
    e.encode_ms = t.ms();
    return e;
}

// The features (and with a box the maps) as one safetensors file, written atomically; returns
// the milliseconds it took (downloads included).
template <Backend B>
double save_encoding(const std::filesystem::path& path, B& be, const qwen_encoder<B>& enc, const image_box& in,
                     const image_grid& g, const image_encoding<B>& e) {
    const stopwatch t;
    const auto& feats = e.features();
    const tensor hidden = be.download(feats.hidden.cv());
    const tensor merged = be.download(feats.merged.cv());
    std::vector<tensor> ds;
    for (const auto& d : feats.deepstack) ds.push_back(be.download(d.cv()));
    std::vector<std::pair<std::string, cview>> tensors = {{"hidden", hidden.cv()}, {"merged", merged.cv()}};
    for (std::size_t j = 0; j < ds.size(); ++j) tensors.emplace_back("deepstack." + std::to_string(j), ds[j].cv());
    std::map<std::string, std::string> meta = {
        {"format", "pt"},
        {"family", std::string(name(enc.config().family))},
        {"grid_thw", grid_string(g.grid)},
        {"resized_hw", "[" + std::to_string(g.resized_h) + ", " + std::to_string(g.resized_w) + "]"},
        {"image_wh", "[" + std::to_string(in.image.width) + ", " + std::to_string(in.image.height) + "]"},
        {"hidden_order", "merge-block (rows of pixel_values)"},
        {"merged_order", "merged raster"}};
    if (const raster_attention* a = e.attention()) {
        const box& b = *in.b;
        tensors.emplace_back("heatmap", e.boxed->heatmap.cv().reshape(shape{g.grid[1], g.grid[2]}));
        tensors.emplace_back("attention.mean", a->mean.cv());
        tensors.emplace_back("attention.per_head", a->per_head.cv());
        meta["box_xyxy"] = "[" + std::to_string(b.x1) + ", " + std::to_string(b.y1) + ", " + std::to_string(b.x2) +
                           ", " + std::to_string(b.y2) + "]";
        meta["head"] = enc.head_source();
        meta["attention_mass_in_box"] = std::to_string(a->mass_in_box);
        meta["attention_mass_on_box_patches"] = std::to_string(a->mass_on_box_patches);
        meta["maps_order"] = "raster";
    }
    save_safetensors(path, tensors, meta);
    return t.ms();
}

}  // namespace glimpse::models
