#pragma once
// Qwen2.5-VL / Qwen3-VL image preprocessing, as transformers 5.23's default
// `Qwen2VLImageProcessor` (the torchvision backend) computes it, for both families:
//
//   smart_resize  ->  uint8 antialiased bicubic resize (torchvision/PyTorch, bit-exact)
//   ->  (x - 255·mean) / (255·std) in float32  ->  frame repeated T times  ->  patchify
//
// Output `pixel_values` is f32 [Σ N_i, C·T·p·p]: rows in merge-block order
// (gt, bh, bw, ih, iw), columns in (c, t, py, px) order, images stacked in input order;
// `grid_thw` per image is {1, h'/p, w'/p}. See qwen_vision_reference.md §3.
//
// The PIL backend (`backend="pil"`, 4.x's slow class) is NOT reproduced: it resizes with
// Pillow, which differs from torchvision by a few levels (many more when one axis shrinks
// while the other grows).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/io/json_file.hpp"

namespace glimpse::models {

// preprocessor_config.json, the parts that change the numbers.
struct preprocess_config {
    std::int64_t patch_size = 14;
    std::int64_t temporal_patch_size = 2;
    std::int64_t merge_size = 2;
    std::int64_t min_pixels = 56 * 56;
    std::int64_t max_pixels = 28 * 28 * 1280;
    std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};
    std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};

    std::int64_t factor() const noexcept { return patch_size * merge_size; }
    std::int64_t patch_dim() const noexcept { return 3 * temporal_patch_size * patch_size * patch_size; }

    // Qwen2.5-VL-7B-Instruct's preprocessor_config.json (min/max_pixels 3136 / 3584²;
    // note the class default above, used for a key a file lacks, is 28·28·1280).
    static preprocess_config qwen2_5_vl() {
        preprocess_config c;
        c.max_pixels = 12845056;
        return c;
    }

    // Qwen3-VL-8B-Instruct's (size.shortest_edge 256², longest_edge 4096², mean/std 0.5).
    static preprocess_config qwen3_vl() {
        preprocess_config c;
        c.patch_size = 16;
        c.min_pixels = 65536;
        c.max_pixels = 16777216;
        c.mean = {0.5f, 0.5f, 0.5f};
        c.std = {0.5f, 0.5f, 0.5f};
        return c;
    }

    // Reads a preprocessor_config.json. Missing keys keep Qwen2VLImageProcessor's class
    // defaults (the member initialisers above). Pixel bounds: `size.shortest_edge/longest_edge` (what
    // v5 saves) and top-level `min_pixels/max_pixels` (older files); the latter win, as in
    // transformers. Settings this port does not implement (no resize, no normalisation,
    // another resample or rescale factor) are refused rather than silently ignored.
    static preprocess_config from_json(const std::filesystem::path& file);

    void validate(const std::string& where) const {
        glimpse::detail::check(patch_size > 0 && temporal_patch_size > 0 && merge_size > 0, where,
                               ": patch_size, temporal_patch_size and merge_size must be positive (got ", patch_size,
                               ", ", temporal_patch_size, ", ", merge_size, ")");
        glimpse::detail::check(patch_size <= 4096 && merge_size <= 64 && temporal_patch_size <= 64, where,
                               ": implausible patch_size/merge_size/temporal_patch_size (", patch_size, ", ",
                               merge_size, ", ", temporal_patch_size, ")");
        glimpse::detail::check(min_pixels >= 0 && max_pixels > 0 && min_pixels <= max_pixels, where, ": pixel bounds [",
                               min_pixels, ", ", max_pixels, "] are not a valid range");
        for (int c = 0; c < 3; ++c)
            glimpse::detail::check(std::isfinite(mean[static_cast<std::size_t>(c)]) &&
                                       std::isfinite(std[static_cast<std::size_t>(c)]) &&
                                       std[static_cast<std::size_t>(c)] != 0.0f,
                                   where, ": image_mean/image_std channel ", c, " must be finite with a non-zero std");
    }
};

namespace detail {

inline std::int64_t pp_int(const nlohmann::json& obj, const char* key, const std::string& where,
                           const char* scope = "") {
    const auto& v = obj.at(key);
    if (!v.is_number_integer())
        glimpse::detail::fail(where, ": key \"", scope, key, "\" must be an integer, got ", v.type_name());
    return v.get<std::int64_t>();
}

inline std::array<float, 3> pp_triple(const nlohmann::json& obj, const char* key, const std::string& where) {
    const auto& v = obj.at(key);
    if (v.is_number()) {  // transformers accepts one value for all channels
        const float x = static_cast<float>(v.get<double>());
        return {x, x, x};
    }
    if (!v.is_array() || v.size() != 3)
        glimpse::detail::fail(where, ": key \"", key, "\" must be a list of 3 numbers, got ", v.dump());
    std::array<float, 3> out{};
    for (std::size_t i = 0; i < 3; ++i) {
        if (!v[i].is_number())
            glimpse::detail::fail(where, ": key \"", key, "\" holds ", v[i].dump(), ", not a number");
        out[i] = static_cast<float>(v[i].get<double>());  // as torch.tensor(list) -> float32
    }
    return out;
}

}  // namespace detail

inline preprocess_config preprocess_config::from_json(const std::filesystem::path& file) {
    const std::string where = "preprocessor config '" + file.string() + "'";
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) glimpse::detail::fail(where, ": no such file");
    const nlohmann::json j = glimpse::parse_json_file(file, where);
    if (!j.is_object()) glimpse::detail::fail(where, ": not a JSON object");

    preprocess_config c;
    if (j.contains("patch_size")) c.patch_size = detail::pp_int(j, "patch_size", where);
    if (j.contains("temporal_patch_size")) c.temporal_patch_size = detail::pp_int(j, "temporal_patch_size", where);
    if (j.contains("merge_size")) c.merge_size = detail::pp_int(j, "merge_size", where);
    if (j.contains("size") && !j.at("size").is_null()) {
        const auto& s = j.at("size");
        if (!s.is_object()) glimpse::detail::fail(where, ": key \"size\" must be an object, got ", s.type_name());
        if (s.contains("shortest_edge")) c.min_pixels = detail::pp_int(s, "shortest_edge", where, "size.");
        if (s.contains("longest_edge")) c.max_pixels = detail::pp_int(s, "longest_edge", where, "size.");
        if (s.contains("min_pixels")) c.min_pixels = detail::pp_int(s, "min_pixels", where, "size.");
        if (s.contains("max_pixels")) c.max_pixels = detail::pp_int(s, "max_pixels", where, "size.");
    }
    // Top-level min/max_pixels override `size` (transformers copies them into it at load).
    if (j.contains("min_pixels") && !j.at("min_pixels").is_null())
        c.min_pixels = detail::pp_int(j, "min_pixels", where);
    if (j.contains("max_pixels") && !j.at("max_pixels").is_null())
        c.max_pixels = detail::pp_int(j, "max_pixels", where);
    if (j.contains("image_mean")) c.mean = detail::pp_triple(j, "image_mean", where);
    if (j.contains("image_std")) c.std = detail::pp_triple(j, "image_std", where);

    for (const char* flag : {"do_resize", "do_rescale", "do_normalize"})
        if (j.contains(flag) && j.at(flag).is_boolean() && !j.at(flag).get<bool>())
            glimpse::detail::fail(where, ": \"", flag, "\": false is not supported (the port always resizes, ",
                                  "rescales and normalises)");
    if (j.contains("resample") && j.at("resample").is_number_integer() && j.at("resample").get<int>() != 3)
        glimpse::detail::fail(where, ": resample ", j.at("resample").get<int>(), " is not supported (only 3, bicubic)");
    if (j.contains("rescale_factor") && j.at("rescale_factor").is_number()) {
        // The normalisation folds 1/rescale_factor into mean and std as exactly 255.
        const double r = j.at("rescale_factor").get<double>();
        if (1.0 / r != 255.0) glimpse::detail::fail(where, ": rescale_factor ", r, " is not supported (only 1/255)");
    }
    c.validate(where);
    return c;
}

// transformers' smart_resize: the (height, width) both divisible by `factor`, with
// height·width in [min_pixels, max_pixels], closest to the original aspect ratio.
// Float maths as Python does it (doubles; `round` is half-to-even, hence nearbyint in
// the default rounding mode); the shrink/grow branches scale the ORIGINAL h, w.
inline std::pair<std::int64_t, std::int64_t> smart_resize(std::int64_t height, std::int64_t width, std::int64_t factor,
                                                          std::int64_t min_pixels, std::int64_t max_pixels) {
    glimpse::detail::check(height > 0 && width > 0, "smart_resize: image size ", height, "x", width,
                           " must be positive");
    glimpse::detail::check(factor > 0, "smart_resize: factor ", factor, " must be positive");
    glimpse::detail::check(height <= (std::int64_t{1} << 31) && width <= (std::int64_t{1} << 31),
                           "smart_resize: image size ", height, "x", width, " is too large");
    const double h = static_cast<double>(height), w = static_cast<double>(width), f = static_cast<double>(factor);
    const double aspect = std::max(h, w) / std::min(h, w);
    glimpse::detail::check(!(aspect > 200.0), "smart_resize: image ", height, "x", width, " has an aspect ratio of ",
                           aspect, "; it must be at most 200");

    std::int64_t hb = static_cast<std::int64_t>(std::nearbyint(h / f)) * factor;
    std::int64_t wb = static_cast<std::int64_t>(std::nearbyint(w / f)) * factor;
    if (hb * wb > max_pixels) {
        const double beta = std::sqrt((h * w) / static_cast<double>(max_pixels));
        hb = std::max(factor, static_cast<std::int64_t>(std::floor(h / beta / f)) * factor);
        wb = std::max(factor, static_cast<std::int64_t>(std::floor(w / beta / f)) * factor);
    } else if (hb * wb < min_pixels) {
        const double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
        hb = static_cast<std::int64_t>(std::ceil(h * beta / f)) * factor;
        wb = static_cast<std::int64_t>(std::ceil(w * beta / f)) * factor;
    }
    // Only reachable with min_pixels 0 and a side shorter than factor/2 (round to 0).
    glimpse::detail::check(hb > 0 && wb > 0, "smart_resize: image ", height, "x", width, " resizes to ", hb, "x", wb,
                           " with factor ", factor, " and pixel bounds [", min_pixels, ", ", max_pixels, "]");
    glimpse::detail::check(hb <= max_image_pixels / wb, "smart_resize: image ", height, "x", width, " resizes to ", hb,
                           "x", wb, ", more than 2^28 pixels");
    return {hb, wb};
}

namespace detail {

// Keeps the compiler from fusing a product into a following addition (FMA): the
// weights must be the doubles PyTorch computes, or the int16 rounding below can flip.
inline double no_fuse(double v) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    __asm__("" : "+m"(v));
    return v;
#else
    volatile double x = v;
    return x;
#endif
}

// Keys' cubic convolution kernel with a = -0.5 (Pillow's; PyTorch uses it for
// antialiased bicubic, also when upscaling).
inline double bicubic_aa_filter(double x) noexcept {
    constexpr double a = -0.5;
    x = std::abs(x);
    // ((a + 2)·x - (a + 3))·x·x + 1 and ((a·x - 5a)·x + 8a)·x - 4a, evaluated as written.
    if (x < 1.0) return no_fuse(no_fuse(no_fuse((a + 2.0) * x) - (a + 3.0)) * x * x) + 1.0;
    if (x < 2.0) return no_fuse(no_fuse(no_fuse(no_fuse(no_fuse(a * x) - 5.0 * a) * x) + 8.0 * a) * x) - 4.0 * a;
    return 0.0;
}

// One axis of the separable resize: for output i, `count[i]` taps starting at input
// `first[i]` with integer weights w[i * max_taps + j], in fixed point with `precision`
// fractional bits. This is PyTorch's uint8 antialias scheme (itself Pillow-SIMD's):
// float64 weights normalised to sum 1, then scaled by the largest power of two that
// keeps the largest weight below 2^15, rounded half away from zero.
struct aa_axis {
    std::int64_t max_taps = 0;
    std::vector<std::int64_t> first, count;
    std::vector<std::int32_t> w;
    int precision = 0;
};

inline aa_axis bicubic_aa_axis(std::int64_t in, std::int64_t out) {
    aa_axis ax;
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    // Shrinking widens the kernel by the scale (that is the antialiasing).
    const double support = scale >= 1.0 ? (4 * 0.5) * scale : 4 * 0.5;
    const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    ax.max_taps = static_cast<std::int64_t>(std::ceil(support)) * 2 + 1;
    ax.first.resize(static_cast<std::size_t>(out));
    ax.count.resize(static_cast<std::size_t>(out));
    std::vector<double> wf(static_cast<std::size_t>(out * ax.max_taps), 0.0);
    double wt_max = 0.0;
    for (std::int64_t i = 0; i < out; ++i) {
        const double center = scale * (static_cast<double>(i) + 0.5);
        // Truncation toward zero, as PyTorch's static_cast<int64_t>.
        const std::int64_t xmin = std::max(static_cast<std::int64_t>(center - support + 0.5), std::int64_t{0});
        std::int64_t xsize = std::min(static_cast<std::int64_t>(center + support + 0.5), in) - xmin;
        xsize = std::clamp(xsize, std::int64_t{0}, ax.max_taps);
        double* wi = wf.data() + i * ax.max_taps;
        double total = 0.0;
        for (std::int64_t j = 0; j < xsize; ++j) {
            const double wj = bicubic_aa_filter((static_cast<double>(j + xmin) - center + 0.5) * invscale);
            wi[j] = wj;
            total += wj;
        }
        if (total != 0.0)
            for (std::int64_t j = 0; j < xsize; ++j) {
                wi[j] /= total;
                wt_max = std::max(wt_max, wi[j]);
            }
        ax.first[static_cast<std::size_t>(i)] = xmin;
        ax.count[static_cast<std::size_t>(i)] = xsize;
    }
    int p = 0;
    for (; p < 22; ++p)
        if (static_cast<int>(0.5 + wt_max * static_cast<double>(1 << (p + 1))) >= (1 << 15)) break;
    ax.precision = p;
    ax.w.resize(wf.size());
    for (std::size_t k = 0; k < wf.size(); ++k) {
        const double v = wf[k] * static_cast<double>(1 << p);
        ax.w[k] = static_cast<std::int32_t>(v < 0 ? -0.5 + v : 0.5 + v);  // int16 range by construction
    }
    return ax;
}

// Fixed-point dot product of taps with uint8 samples, rounded and clamped to uint8.
inline std::uint8_t aa_sample(const aa_axis& ax, std::int64_t i, const std::uint8_t* src, std::int64_t stride) {
    const std::int32_t* w = ax.w.data() + i * ax.max_taps;
    const std::int64_t n = ax.count[static_cast<std::size_t>(i)];
    std::int64_t acc = std::int64_t{1} << (ax.precision - 1);  // precision >= 14: weights <= 1
    for (std::int64_t j = 0; j < n; ++j) acc += static_cast<std::int64_t>(src[j * stride]) * w[j];
    acc >>= ax.precision;  // arithmetic shift: floor, as the SIMD _mm_srai_epi32
    return static_cast<std::uint8_t>(std::clamp<std::int64_t>(acc, 0, 255));
}

}  // namespace detail

// torchvision `resize(bicubic, antialias=True)` on a uint8 image, bit-exactly: the
// horizontal pass first (input rows -> width w2), rounded and clamped to uint8, then
// the vertical pass (-> height h2). An axis whose size does not change is skipped,
// as PyTorch does (its weights would be the identity anyway).
inline image_u8 resize_bicubic_antialias(const image_u8& img, std::int64_t h2, std::int64_t w2) {
    const std::int64_t h = img.height, w = img.width;
    glimpse::detail::check(h > 0 && w > 0 && static_cast<std::int64_t>(img.rgb.size()) == h * w * 3,
                           "resize_bicubic_antialias: image ", h, "x", w, " holds ", img.rgb.size(),
                           " bytes, expected ", h * w * 3);
    glimpse::detail::check(h2 > 0 && w2 > 0 && h2 <= max_image_pixels / w2, "resize_bicubic_antialias: target size ",
                           h2, "x", w2, " must be positive and at most 2^28 pixels");

    image_u8 mid = img;
    if (w2 != w) {
        const auto ax = detail::bicubic_aa_axis(w, w2);
        image_u8 out{w2, h, std::vector<std::uint8_t>(static_cast<std::size_t>(h * w2 * 3))};
        for (std::int64_t y = 0; y < h; ++y) {
            const std::uint8_t* row = img.rgb.data() + y * w * 3;
            std::uint8_t* dst = out.rgb.data() + y * w2 * 3;
            for (std::int64_t x = 0; x < w2; ++x)
                for (int c = 0; c < 3; ++c)
                    dst[x * 3 + c] = detail::aa_sample(ax, x, row + ax.first[static_cast<std::size_t>(x)] * 3 + c, 3);
        }
        mid = std::move(out);
    }
    if (h2 == h) return mid;
    const auto ay = detail::bicubic_aa_axis(h, h2);
    image_u8 out{w2, h2, std::vector<std::uint8_t>(static_cast<std::size_t>(h2 * w2 * 3))};
    const std::int64_t row = w2 * 3;
    for (std::int64_t y = 0; y < h2; ++y) {
        const std::uint8_t* src = mid.rgb.data() + ay.first[static_cast<std::size_t>(y)] * row;
        std::uint8_t* dst = out.rgb.data() + y * row;
        for (std::int64_t k = 0; k < row; ++k) dst[k] = detail::aa_sample(ay, y, src + k, row);
    }
    return out;
}

struct pixel_batch {
    tensor pixel_values;                                // f32 [Σ N_i, C·T·p·p], N_i = grid_h·grid_w (grid_t = 1)
    std::vector<std::array<std::int64_t, 3>> grid_thw;  // per image {1, h'/p, w'/p}
    std::vector<std::pair<std::int64_t, std::int64_t>> resized_hw;  // per image (h', w')
};

namespace detail {

// Normalises an already resized image and writes its N = (h'/p)·(w'/p) patch rows
// into `dst` (row stride C·T·p·p). The normalisation is torchvision's fused one:
// m = f32(mean)·255, s = f32(std)·255 in float32, then (x - m) / s in float32.
inline void normalize_patchify(const image_u8& r, const preprocess_config& cfg, float* dst) {
    const std::int64_t p = cfg.patch_size, m = cfg.merge_size, T = cfg.temporal_patch_size;
    const std::int64_t gh = r.height / p, gw = r.width / p, hm = gh / m, wm = gw / m;
    const std::int64_t cols = cfg.patch_dim();
    std::array<float, 3> mm{}, ss{};
    for (std::size_t c = 0; c < 3; ++c) {
        mm[c] = cfg.mean[c] * 255.0f;
        ss[c] = cfg.std[c] * 255.0f;
    }
    // A lookup per channel: 256 possible inputs, the same float32 operations.
    std::array<std::array<float, 256>, 3> lut{};
    for (std::size_t c = 0; c < 3; ++c)
        for (int v = 0; v < 256; ++v) lut[c][static_cast<std::size_t>(v)] = (static_cast<float>(v) - mm[c]) / ss[c];

    for (std::int64_t bh = 0; bh < hm; ++bh)
        for (std::int64_t bw = 0; bw < wm; ++bw)
            for (std::int64_t ih = 0; ih < m; ++ih)
                for (std::int64_t iw = 0; iw < m; ++iw) {
                    const std::int64_t rowi = ((bh * wm + bw) * m + ih) * m + iw;
                    float* o = dst + rowi * cols;
                    const std::int64_t y0 = (bh * m + ih) * p, x0 = (bw * m + iw) * p;
                    for (std::int64_t c = 0; c < 3; ++c)
                        for (std::int64_t t = 0; t < T; ++t)
                            for (std::int64_t py = 0; py < p; ++py)
                                for (std::int64_t px = 0; px < p; ++px)
                                    o[((c * T + t) * p + py) * p + px] =
                                        lut[static_cast<std::size_t>(c)][r.at(y0 + py, x0 + px, static_cast<int>(c))];
                }
}

}  // namespace detail

// The whole processor on a batch of RGB images (see the top of this file).
inline pixel_batch preprocess(std::span<const image_u8> images, const preprocess_config& cfg) {
    cfg.validate("preprocess");
    glimpse::detail::check(!images.empty(), "preprocess: no images");
    pixel_batch out;
    std::vector<image_u8> resized;
    resized.reserve(images.size());
    std::int64_t rows = 0;
    for (std::size_t k = 0; k < images.size(); ++k) {
        const image_u8& im = images[k];
        glimpse::detail::check(
            im.height > 0 && im.width > 0 && static_cast<std::int64_t>(im.rgb.size()) == im.height * im.width * 3,
            "preprocess: image ", k, " (", im.height, "x", im.width, ") holds ", im.rgb.size(), " bytes, expected ",
            im.height * im.width * 3);
        const auto [h2, w2] = smart_resize(im.height, im.width, cfg.factor(), cfg.min_pixels, cfg.max_pixels);
        resized.push_back(resize_bicubic_antialias(im, h2, w2));
        out.resized_hw.emplace_back(h2, w2);
        out.grid_thw.push_back({1, h2 / cfg.patch_size, w2 / cfg.patch_size});
        rows += (h2 / cfg.patch_size) * (w2 / cfg.patch_size);
    }
    out.pixel_values = tensor(shape{rows, cfg.patch_dim()});
    float* dst = out.pixel_values.ptr<float>();
    for (std::size_t k = 0; k < resized.size(); ++k) {
        detail::normalize_patchify(resized[k], cfg, dst);
        dst += out.grid_thw[k][1] * out.grid_thw[k][2] * cfg.patch_dim();
    }
    return out;
}

inline pixel_batch preprocess(const image_u8& image, const preprocess_config& cfg) {
    return preprocess(std::span<const image_u8>(&image, 1), cfg);
}

}  // namespace glimpse::models
