#pragma once
// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ (norm type 2):
//   n = sqrt(sum over every gradient element of g^2),  c = min(1, max_norm / (n + 1e-6)),  g <- c g.
// On host f32 gradients (the optimiser's side of the trainer). Returns n, before
// clipping. max_norm <= 0 or infinite: no clipping, only the norm. A non-finite
// norm is returned as is and nothing is scaled (the caller decides what to do).

#include <cmath>
#include <cstdint>
#include <span>

#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"

namespace glimpse::train {

inline double global_grad_norm(std::span<const tensor> grads) {
    double s = 0;
    for (const auto& g : grads) {
        detail::check(g.type() == dtype::f32, "global_grad_norm: gradients must be f32");
        const float* p = g.ptr<float>();
        for (std::int64_t i = 0; i < g.numel(); ++i) s += static_cast<double>(p[i]) * p[i];
    }
    return std::sqrt(s);
}

inline double clip_grad_norm(std::span<tensor> grads, double max_norm) {
    const double n = global_grad_norm(grads);
    if (!(max_norm > 0) || std::isinf(max_norm) || !std::isfinite(n)) return n;
    const double c = max_norm / (n + 1e-6);
    if (c >= 1.0) return n;
    const auto cf = static_cast<float>(c);
    for (auto& g : grads) {
        float* p = g.ptr<float>();
        for (std::int64_t i = 0; i < g.numel(); ++i) p[i] *= cf;
    }
    return n;
}

}  // namespace glimpse::train
