#pragma once
// The backend concept: the few primitives every layer is written against.
//
// A backend is a small value type (it may hold a thread pool, a CUDA stream, a
// workspace) that names its owning tensor type and implements the operations
// below on views. Layers are function templates over `B` constrained by
// `glimpse::Backend`; nothing above this header knows a backend's internals.
//
// Conventions shared by every op (the tests in tests/backend hold each backend
// to the reference backend on them):
//  * Activations and outputs are f32. Inputs to gemm may be f32, bf16 or f16
//    (weights stay in their storage dtype; math is f32 with f32 accumulation,
//    the reference backend accumulates in f64).
//  * 2-D operands are row-major with unit inner stride and any row stride, so
//    column slices of a wider matrix (one head of a [S, H*d] projection) are
//    views, not copies.
//  * "rows" are the last dimension: softmax_rows / norms / sum_rows reduce over
//    the last axis of a [M, N] view, per row.
//  * Outputs may alias inputs only where an op says "in place".

#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>

#include "glimpse/core/tensor.hpp"

namespace glimpse {

enum class activation : std::uint8_t { identity, silu, gelu_erf, gelu_tanh };

constexpr std::string_view name(activation a) noexcept {
    switch (a) {
        case activation::identity:
            return "identity";
        case activation::silu:
            return "silu";
        case activation::gelu_erf:
            return "gelu_erf";
        case activation::gelu_tanh:
            return "gelu_tanh";
    }
    return "?";
}

// What a backend's gemm may round its inputs to (the meaning of PyTorch's
// set_float32_matmul_precision "highest" / "medium"): f32 keeps them exact; bf16
// rounds both operands to bf16 (nearest even) and sums the products in f32, which
// is what bf16 matrix units (AMX, tensor cores) compute at several times the rate.
// Only gemm is affected: attention, norms, softmax and residuals stay f32. (The cpu
// backend's attention has a knob of its own, cpu::set_attention_precision, with the same
// meaning for its two products; the tools' --precision sets both.)
enum class matmul_precision : std::uint8_t { f32, bf16 };

constexpr std::string_view name(matmul_precision p) noexcept { return p == matmul_precision::f32 ? "f32" : "bf16"; }

// C = alpha * op(A) * op(B) + beta * C (+ bias broadcast over rows).
// A [M, K] (or [K, M] with trans_a), B [K, N] (or [N, K] with trans_b — the
// nn.Linear weight layout [out, in]), C [M, N]. Rank-3 operands are a batch:
// A [batch, ...], B [batch, ...] (or rank 2, shared), C [batch, M, N].
struct gemm_args {
    bool trans_a = false;
    bool trans_b = false;
    float alpha = 1.0f;
    float beta = 0.0f;
};

// What the attention op may return besides its output. Each field is optional
// (an empty view asks for nothing). Computed tile by tile inside the op, so no
// backend ever holds H x Sq x Sk probabilities unless `per_head` asks for them.
struct attention_maps {
    view per_head;        // [H, Sq, Sk]: softmax probabilities of every head
    view mean;            // [Sq, Sk]: the same averaged over heads
    cview query_weights;  // [R, Sq]: R weightings of the queries, e.g. "queries in the box"
    view pooled;          // [R, H, Sk]: sum_i query_weights[r, i] * P_h[i, :]
    bool wanted() const noexcept { return !per_head.empty() || !mean.empty() || !pooled.empty(); }
};

// Scaled dot-product attention over q [Sq, H, d], k [Sk, H, d], v [Sk, H, dv],
// out [Sq, H, dv] (each may be strided; inner stride 1):
//   out_h = softmax(scale * q_h k_h^T + mask) v_h
// `mask`, when given, is an additive [Sq, Sk] f32 matrix. `segments`, when
// given, are cumulative sequence boundaries [0, s1, ..., Sq] shared by queries
// and keys (Sq == Sk): tokens attend only inside their own segment (Qwen's
// cu_seqlens; each image, frame or window is a segment). Probabilities outside
// a token's segment are reported as 0.
struct attention_args {
    float scale = 1.0f;
    cview mask;
    std::span<const std::int64_t> segments;
    attention_maps maps;
};

// clang-format off
template <class B>
concept Backend =
    requires { typename B::tensor; { B::name() } -> std::convertible_to<std::string_view>; } &&
    std::default_initializable<typename B::tensor> && std::movable<typename B::tensor> &&
    requires(typename B::tensor& t, const typename B::tensor& ct) {
        { t.v() } -> std::same_as<view>;
        { ct.cv() } -> std::same_as<cview>;
        { ct.shape() } -> std::convertible_to<const shape&>;
        { ct.type() } -> std::same_as<dtype>;
    } &&
    requires(B& be, const shape& s, dtype t, view v, cview c, float f, activation act,
             std::span<const std::int64_t> idx, const gemm_args& g, const attention_args& a) {
        // memory
        { be.alloc(s, t) } -> std::same_as<typename B::tensor>;   // zero-filled
        { be.upload(c) } -> std::same_as<typename B::tensor>;     // host view -> backend tensor
        { be.download(c) } -> std::same_as<tensor>;               // backend view -> host tensor
        be.copy(c, v);                     // strided copy with dtype conversion
        be.fill(v, f);
        // linear algebra
        be.gemm(c, c, v, g, c);            // last argument: bias [N] or empty
        // elementwise; b broadcasts when it is [N] against [M, N]
        be.add(c, c, v, f);                // out = a + f * b
        be.mul(c, c, v);                   // out = a * b
        be.activate(act, c, v);            // out = act(x)
        be.swiglu(c, c, v);                // out = silu(gate) * up
        // row-wise
        be.softmax_rows(v, f);             // in place: x <- softmax(f * x) per row
        be.rms_norm(c, c, f, v);           // (x, weight, eps, out)
        be.layer_norm(c, c, c, f, v);      // (x, weight, bias, eps, out)
        be.sum_rows(c, v);                 // [M, N] -> [N] (column sums)
        // positional / permutation
        be.rotary(v, c, c);                // in place on [S, H, d] with cos, sin [S, d]
        be.gather_rows(c, idx, v);         // out[i] = src[idx[i]]
        // fused attention
        be.attention(c, c, c, v, a);
    };
// clang-format on

// The backward primitives a backend adds to train (grad/): a refinement, so a
// forward-only backend (CUDA, first) is still a `Backend`. Every other piece of
// the backward pass is written with the ops above (gemm with transposes and
// beta, add, mul, sum_rows, softmax_rows, rotary). Shapes as the forward ops;
// outputs are f32; `dx` may alias `dy` (or `dp`) where said.
// clang-format off
template <class B>
concept TrainingBackend =
    Backend<B> &&
    requires(B& be, view v, cview c, float f, activation act) {
        // dx = scale * p . (dp - sum_j p_j dp_j) per row: the gradient of
        // softmax_rows(x, scale) given its output p. dx may alias dp.
        be.softmax_rows_backward(c, c, f, v);         // (p, dp, scale, dx)
        // dx = act'(x) . dy elementwise. dx may alias dy.
        be.activate_backward(act, c, c, v);           // (act, x, dy, dx)
        // Norm backward over the last axis given the forward input x and dy:
        // dx, and dw = sum over rows of dy . x_hat (skipped when dw is empty).
        // layer_norm's bias gradient is sum_rows(dy).
        be.rms_norm_backward(c, c, f, c, v, v);       // (x, weight, eps, dy, dx, dw)
        be.layer_norm_backward(c, c, f, c, v, v);     // (x, weight, eps, dy, dx, dw)
    };
// clang-format on

}  // namespace glimpse
