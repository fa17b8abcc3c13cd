#pragma once
// Backward of multi-head scaled dot-product attention (nn/attention.hpp) over
// q [Sq, H, d], k [Sk, H, d], v [Sk, H, dv], per head h:
//   P = softmax(scale q_h k_h^T + mask)   [Sq, Sk]     o_h = P v_h
//   pooled[r, h, :] = sum_i W[r, i] P[i, :]            (the forward's maps.pooled)
// given d_out = dL/do [Sq, H, dv] and d_pooled = dL/dpooled [R, H, Sk] (either may be empty):
//   dP = d_out_h v_h^T + W^T d_pooled[:, h, :]    dv_h = P^T d_out_h
//   dS = P . (dP - rowsum(P . dP))                 (softmax_rows_backward)
//   dq_h = scale dS k_h                            dk_h = scale dS^T q_h
//
// Memory: the forward kept no probabilities (the backend's attention is fused),
// so P is recomputed here from q and k, ONE HEAD AT A TIME: two Sq x Sk f32
// buffers (P and dP, reused across heads) are the peak, 128 MiB at S = 4096,
// never H x S x S. That is acceptable for the S a head is trained on (a few
// thousand tokens); a tiled (flash-style) backward would be the next step beyond.
// Segments are not supported here (the heatmap head attends over all tokens).

#include <cmath>
#include <cstdint>

#include "glimpse/core/backend.hpp"

namespace glimpse::grad {

struct sdpa_grad_options {
    float scale = 0.0f;   // 0: 1/sqrt(d), as nn::sdpa
    cview mask;           // additive [Sq, Sk] f32, as the forward's
    cview query_weights;  // [R, Sq], as the forward's maps.query_weights
    cview d_pooled;       // [R, H, Sk]: dL/d maps.pooled, or empty
};

// Writes dq [Sq, H, d], dk [Sk, H, d], dv [Sk, H, dv] (f32, unit inner stride).
template <TrainingBackend B>
void sdpa_backward(B& be, const cview& q, const cview& k, const cview& v, const cview& d_out, const view& dq,
                   const view& dk, const view& dv, const sdpa_grad_options& o = {}) {
    using glimpse::detail::check;
    check(q.rank() == 3 && k.rank() == 3 && v.rank() == 3, "sdpa backward: q, k, v must be [S, H, d]; got ", q.shape(),
          ", ", k.shape(), ", ", v.shape());
    const std::int64_t Sq = q.size(0), Sk = k.size(0), H = q.size(1), d = q.size(2), dvd = v.size(2);
    check(k.shape() == shape{Sk, H, d} && v.shape() == shape{Sk, H, dvd}, "sdpa backward: k ", k.shape(), " / v ",
          v.shape(), " do not match q ", q.shape());
    check(d_out.empty() || d_out.shape() == shape{Sq, H, dvd}, "sdpa backward: d_out must be [", Sq, ", ", H, ", ", dvd,
          "], got ", d_out.shape());
    check(dq.shape() == q.shape() && dk.shape() == k.shape() && dv.shape() == v.shape(), "sdpa backward: dq ",
          dq.shape(), ", dk ", dk.shape(), ", dv ", dv.shape(), " must match q, k, v");
    check(o.mask.empty() || o.mask.shape() == shape{Sq, Sk}, "sdpa backward: mask must be [", Sq, ", ", Sk, "], got ",
          o.mask.shape());
    std::int64_t R = 0;
    if (!o.d_pooled.empty()) {
        check(o.query_weights.rank() == 2 && o.query_weights.size(1) == Sq,
              "sdpa backward: d_pooled needs query_weights [R, ", Sq, "], got ", o.query_weights.shape());
        R = o.query_weights.size(0);
        check(o.d_pooled.shape() == shape{R, H, Sk}, "sdpa backward: d_pooled must be [", R, ", ", H, ", ", Sk,
              "], got ", o.d_pooled.shape());
    }
    const float scale = o.scale != 0.0f ? o.scale : 1.0f / std::sqrt(static_cast<float>(d));

    auto P = be.alloc(shape{Sq, Sk}, dtype::f32);
    auto dP = be.alloc(shape{Sq, Sk}, dtype::f32);
    for (std::int64_t h = 0; h < H; ++h) {
        const cview qh = q.select(1, h), kh = k.select(1, h), vh = v.select(1, h);
        const view dqh = dq.select(1, h), dkh = dk.select(1, h), dvh = dv.select(1, h);
        if (!o.mask.empty()) be.copy(o.mask, P.v());
        be.gemm(qh, kh, P.v(), gemm_args{.trans_b = true, .alpha = scale, .beta = o.mask.empty() ? 0.0f : 1.0f},
                cview{});
        be.softmax_rows(P.v(), 1.0f);
        if (!d_out.empty()) {
            const cview doh = d_out.select(1, h);
            be.gemm(P.cv(), doh, dvh, gemm_args{.trans_a = true}, cview{});
            be.gemm(doh, vh, dP.v(), gemm_args{.trans_b = true}, cview{});
        } else {
            be.fill(dvh, 0.0f);
            be.fill(dP.v(), 0.0f);
        }
        if (R > 0)
            be.gemm(o.query_weights, o.d_pooled.select(1, h), dP.v(), gemm_args{.trans_a = true, .beta = 1.0f},
                    cview{});
        be.softmax_rows_backward(P.cv(), dP.cv(), 1.0f, dP.v());  // dP <- dS
        be.gemm(dP.cv(), kh, dqh, gemm_args{.alpha = scale}, cview{});
        be.gemm(dP.cv(), qh, dkh, gemm_args{.trans_a = true, .alpha = scale}, cview{});
    }
}

}  // namespace glimpse::grad
