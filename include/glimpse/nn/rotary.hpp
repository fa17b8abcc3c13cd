#pragma once
// 2-D vision rotary embedding, Qwen convention (rotate-half, not interleaved).
//
// For head dim d: dr = d/2 rotary frequencies split between the two axes,
// inv_freq[j] = theta^(-2j/dr) for j < d/4. A token at patch (row, col) gets
// angles [row * inv_freq, col * inv_freq] (length d/2), repeated twice (length
// d); q <- q cos + rotate_half(q) sin with rotate_half(x) = [-x[d/2:], x[:d/2]].
// So dims [0, d/4) turn with the row, [d/4, d/2) with the column, and dim i
// pairs with i + d/2. Computed in f32 like transformers (float32 inv_freq,
// float32 outer product, float32 cos/sin).

#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "glimpse/core/backend.hpp"

namespace glimpse::nn {

struct patch_pos {
    std::int64_t row, col;
};

struct vision_rotary {
    std::int64_t head_dim = 0;
    float theta = 10000.0f;

    // cos, sin: host f32 [S, head_dim] for the given positions (in token order).
    std::pair<tensor, tensor> cos_sin(std::span<const patch_pos> pos) const {
        detail::check(head_dim > 0 && head_dim % 4 == 0, "vision_rotary: head dim ", head_dim,
                      " must be a positive multiple of 4");
        const std::int64_t q = head_dim / 4, half = head_dim / 2, s = static_cast<std::int64_t>(pos.size());
        std::vector<float> inv(static_cast<std::size_t>(q));
        for (std::int64_t j = 0; j < q; ++j) {
            const float expo = static_cast<float>(2 * j) / static_cast<float>(half);
            inv[static_cast<std::size_t>(j)] = 1.0f / std::pow(theta, expo);
        }
        tensor c(shape{s, head_dim}), sn(shape{s, head_dim});
        float* cp = c.ptr<float>();
        float* sp = sn.ptr<float>();
        for (std::int64_t t = 0; t < s; ++t) {
            for (std::int64_t j = 0; j < half; ++j) {
                const auto axis = j < q ? pos[static_cast<std::size_t>(t)].row : pos[static_cast<std::size_t>(t)].col;
                const float angle = static_cast<float>(axis) * inv[static_cast<std::size_t>(j % q)];
                cp[t * head_dim + j] = cp[t * head_dim + j + half] = std::cos(angle);
                sp[t * head_dim + j] = sp[t * head_dim + j + half] = std::sin(angle);
            }
        }
        return {std::move(c), std::move(sn)};
    }
};

// Raster positions of a grid_h x grid_w patch grid: token i is (i / w, i % w).
inline std::vector<patch_pos> raster_positions(std::int64_t grid_h, std::int64_t grid_w) {
    std::vector<patch_pos> p;
    p.reserve(static_cast<std::size_t>(grid_h * grid_w));
    for (std::int64_t r = 0; r < grid_h; ++r)
        for (std::int64_t c = 0; c < grid_w; ++c) p.push_back({r, c});
    return p;
}

// Rotate q or k [S, H, d] in place.
template <Backend B>
void apply_rotary(B& be, const view& x, const cview& cos, const cview& sin) {
    be.rotary(x, cos, sin);
}

}  // namespace glimpse::nn
