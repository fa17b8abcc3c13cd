#pragma once
// Block kinds: the norm + MLP pair a transformer block uses, as a traits type,
// shared by the Qwen vision blocks and the heatmap head block that follows its
// host encoder.
//   rms_swiglu   RMSNorm (weight only) + SwiGLU MLP   (Qwen2.5-VL)
//   ln_gelu_tanh LayerNorm (affine) + GELU-tanh MLP   (Qwen3-VL)

#include <concepts>
#include <string_view>

#include "glimpse/core/backend.hpp"
#include "glimpse/nn/mlp.hpp"
#include "glimpse/nn/norm.hpp"

namespace glimpse::nn {

struct rms_swiglu {
    static constexpr std::string_view name = "rms_swiglu";
    template <Backend B>
    using norm = rms_norm<B>;
    template <Backend B>
    using mlp = swiglu_mlp<B>;
};

struct ln_gelu_tanh {
    static constexpr std::string_view name = "ln_gelu_tanh";
    template <Backend B>
    using norm = layer_norm<B>;
    template <Backend B>
    using mlp = gelu_mlp<B>;
};

template <class K>
concept block_kind = requires {
    { K::name } -> std::convertible_to<std::string_view>;
};

}  // namespace glimpse::nn
