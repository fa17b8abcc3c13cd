#pragma once
// The two MLP shapes of the Qwen vision blocks, over x [M, D]:
// swiglu_mlp (Qwen2.5-VL): down(silu(gate(x)) * up(x)), gate/up D->I, down I->D.
// gelu_mlp (Qwen3-VL, and every merger): fc2(gelu(fc1(x))), tanh or erf GELU.

#include <cstdint>
#include <string>

#include "glimpse/core/backend.hpp"
#include "glimpse/nn/linear.hpp"

namespace glimpse::nn {

template <Backend B>
struct swiglu_mlp : visits_parameters<swiglu_mlp<B>> {
    using tensor_t = typename B::tensor;
    linear<B> gate_proj, up_proj, down_proj;

    static swiglu_mlp init(B& be, std::int64_t d, std::int64_t inter, rng& g, dtype t = dtype::f32) {
        return {{},
                linear<B>::init(be, d, inter, true, g, t),
                linear<B>::init(be, d, inter, true, g, t),
                linear<B>::init(be, inter, d, true, g, t)};
    }
    template <param_source S>
    static swiglu_mlp load(B& be, const S& src, const std::string& p, std::int64_t d, std::int64_t inter) {
        return {{},
                linear<B>::load(be, src, join_name(p, "gate_proj"), d, inter, true),
                linear<B>::load(be, src, join_name(p, "up_proj"), d, inter, true),
                linear<B>::load(be, src, join_name(p, "down_proj"), inter, d, true)};
    }
    std::int64_t intermediate() const { return gate_proj.out_features(); }

    tensor_t operator()(B& be, const cview& x) const {
        tensor_t g = gate_proj(be, x);
        tensor_t u = up_proj(be, x);
        be.swiglu(g.cv(), u.cv(), g.v());  // in place: elementwise
        return down_proj(be, g.cv());
    }
    template <class Self, class F>
    static void parameters(Self& self, const std::string& p, F& f) {
        self.gate_proj.visit(join_name(p, "gate_proj"), f);
        self.up_proj.visit(join_name(p, "up_proj"), f);
        self.down_proj.visit(join_name(p, "down_proj"), f);
    }
};

template <Backend B>
struct gelu_mlp : visits_parameters<gelu_mlp<B>> {
    using tensor_t = typename B::tensor;
    linear<B> linear_fc1, linear_fc2;
    activation act = activation::gelu_tanh;

    static gelu_mlp init(B& be, std::int64_t d, std::int64_t inter, rng& g, dtype t = dtype::f32,
                         activation a = activation::gelu_tanh) {
        return {{}, linear<B>::init(be, d, inter, true, g, t), linear<B>::init(be, inter, d, true, g, t), a};
    }
    template <param_source S>
    static gelu_mlp load(B& be, const S& src, const std::string& p, std::int64_t d, std::int64_t inter,
                         activation a = activation::gelu_tanh) {
        return {{},
                linear<B>::load(be, src, join_name(p, "linear_fc1"), d, inter, true),
                linear<B>::load(be, src, join_name(p, "linear_fc2"), inter, d, true),
                a};
    }
    std::int64_t intermediate() const { return linear_fc1.out_features(); }

    tensor_t operator()(B& be, const cview& x) const {
        tensor_t h = linear_fc1(be, x);
        be.activate(act, h.cv(), h.v());
        return linear_fc2(be, h.cv());
    }
    template <class Self, class F>
    static void parameters(Self& self, const std::string& p, F& f) {
        self.linear_fc1.visit(join_name(p, "linear_fc1"), f);
        self.linear_fc2.visit(join_name(p, "linear_fc2"), f);
    }
};

}  // namespace glimpse::nn
