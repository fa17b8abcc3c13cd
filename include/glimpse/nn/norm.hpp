#pragma once
// Normalisations over the last axis of [M, D] activations.
// rms_norm: Qwen2.5-VL's RMSNorm (weight only): y = x / sqrt(mean(x^2) + eps) * w.
// layer_norm: torch.nn.LayerNorm with affine weight and bias (Qwen3-VL).

#include <cstdint>
#include <string>

#include "glimpse/core/backend.hpp"
#include "glimpse/nn/parameters.hpp"

namespace glimpse::nn {

template <Backend B>
struct rms_norm : visits_parameters<rms_norm<B>> {
    using tensor_t = typename B::tensor;
    tensor_t weight;  // [D]
    float eps = 1e-6f;

    static rms_norm init(B& be, std::int64_t d, float eps = 1e-6f) {
        rms_norm n;
        n.weight = be.upload(constant_tensor(shape{d}, 1.0f).cv());
        n.eps = eps;
        return n;
    }
    template <param_source S>
    static rms_norm load(B& be, const S& src, const std::string& prefix, std::int64_t d, float eps = 1e-6f) {
        rms_norm n;
        n.weight = load_param(be, src, join_name(prefix, "weight"), shape{d});
        n.eps = eps;
        return n;
    }
    void forward(B& be, const cview& x, const view& y) const { be.rms_norm(x, weight.cv(), eps, y); }
    tensor_t operator()(B& be, const cview& x) const {
        tensor_t y = be.alloc(x.shape(), dtype::f32);
        forward(be, x, y.v());
        return y;
    }
    template <class Self, class F>
    static void parameters(Self& self, const std::string& prefix, F& f) {
        f(join_name(prefix, "weight"), self.weight);
    }
};

template <Backend B>
struct layer_norm : visits_parameters<layer_norm<B>> {
    using tensor_t = typename B::tensor;
    tensor_t weight;  // [D]
    tensor_t bias;    // [D]
    float eps = 1e-6f;

    static layer_norm init(B& be, std::int64_t d, float eps = 1e-6f) {
        layer_norm n;
        n.weight = be.upload(constant_tensor(shape{d}, 1.0f).cv());
        n.bias = be.upload(constant_tensor(shape{d}, 0.0f).cv());
        n.eps = eps;
        return n;
    }
    template <param_source S>
    static layer_norm load(B& be, const S& src, const std::string& prefix, std::int64_t d, float eps = 1e-6f) {
        layer_norm n;
        n.weight = load_param(be, src, join_name(prefix, "weight"), shape{d});
        n.bias = load_param(be, src, join_name(prefix, "bias"), shape{d});
        n.eps = eps;
        return n;
    }
    void forward(B& be, const cview& x, const view& y) const { be.layer_norm(x, weight.cv(), bias.cv(), eps, y); }
    tensor_t operator()(B& be, const cview& x) const {
        tensor_t y = be.alloc(x.shape(), dtype::f32);
        forward(be, x, y.v());
        return y;
    }
    template <class Self, class F>
    static void parameters(Self& self, const std::string& prefix, F& f) {
        f(join_name(prefix, "weight"), self.weight);
        f(join_name(prefix, "bias"), self.bias);
    }
};

}  // namespace glimpse::nn
