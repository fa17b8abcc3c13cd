#pragma once
// linear: y = x W^T + b, the nn.Linear of PyTorch. x [M, in], W [out, in] in its
// storage dtype (bf16 checkpoints stay bf16), b [out], y [M, out] f32.

#include <cmath>
#include <cstdint>
#include <string>

#include "glimpse/core/backend.hpp"
#include "glimpse/nn/parameters.hpp"

namespace glimpse::nn {

template <Backend B>
struct linear : visits_parameters<linear<B>> {
    using tensor_t = typename B::tensor;
    tensor_t weight;  // [out, in]
    tensor_t bias;    // [out], or empty without bias
    bool has_bias = false;

    std::int64_t in_features() const { return weight.shape()[1]; }
    std::int64_t out_features() const { return weight.shape()[0]; }

    // PyTorch's default initialisation: W, b ~ U(-1/sqrt(in), 1/sqrt(in)).
    static linear init(B& be, std::int64_t in, std::int64_t out, bool with_bias, rng& g, dtype t = dtype::f32) {
        const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
        linear l;
        l.weight = be.upload(uniform_tensor(shape{out, in}, bound, g, t).cv());
        l.has_bias = with_bias;
        if (with_bias) l.bias = be.upload(uniform_tensor(shape{out}, bound, g, t).cv());
        return l;
    }

    template <param_source S>
    static linear load(B& be, const S& src, const std::string& prefix, std::int64_t in, std::int64_t out,
                       bool with_bias) {
        linear l;
        l.weight = load_param(be, src, join_name(prefix, "weight"), shape{out, in});
        l.has_bias = with_bias;
        if (with_bias) l.bias = load_param(be, src, join_name(prefix, "bias"), shape{out});
        return l;
    }

    void forward(B& be, const cview& x, const view& y) const {
        be.gemm(x, weight.cv(), y, gemm_args{.trans_b = true}, has_bias ? bias.cv() : cview{});
    }

    tensor_t operator()(B& be, const cview& x) const {
        detail::check(x.rank() == 2, "linear: input must be [M, in], got ", x.shape());
        tensor_t y = be.alloc(shape{x.size(0), out_features()}, dtype::f32);
        forward(be, x, y.v());
        return y;
    }

    template <class Self, class F>
    static void parameters(Self& self, const std::string& prefix, F& f) {
        f(join_name(prefix, "weight"), self.weight);
        if (self.has_bias) f(join_name(prefix, "bias"), self.bias);
    }
};

}  // namespace glimpse::nn
