#pragma once
// Argument validation shared by every backend, so that all of them reject the
// same bad calls with the same messages (and the fast ones never index past a
// view because of a shape the reference would have refused).

#include <cstdint>
#include <span>
#include <string_view>

#include "glimpse/core/backend.hpp"

namespace glimpse::detail {

inline void check_rows_contiguous(const cview& v, std::string_view op, std::string_view what) {
    check(!v.empty(), op, ": ", what, " is empty");
    check(v.rank() >= 1 && v.stride(-1) == 1, op, ": ", what, " ", v.shape(), " needs unit inner stride");
}

inline void check_f32(const cview& v, std::string_view op, std::string_view what) {
    check(v.type() == dtype::f32, op, ": ", what, " must be f32, got ", name(v.type()));
}

struct gemm_dims {
    std::int64_t batch, m, n, k;
    bool batched_a, batched_b;
};

inline gemm_dims check_gemm(const cview& a, const cview& b, const cview& c, const gemm_args& g, const cview& bias) {
    check_rows_contiguous(a, "gemm", "A");
    check_rows_contiguous(b, "gemm", "B");
    check_rows_contiguous(c, "gemm", "C");
    check_f32(c, "gemm", "C");
    check(c.rank() == 2 || c.rank() == 3, "gemm: C must be rank 2 or 3, got ", c.shape());
    const bool batched = c.rank() == 3;
    check(a.rank() == c.rank() && (b.rank() == c.rank() || (batched && b.rank() == 2)), "gemm: ranks of A ", a.shape(),
          ", B ", b.shape(), ", C ", c.shape(), " do not match");
    const std::int64_t batch = batched ? c.size(0) : 1;
    const std::int64_t am = g.trans_a ? a.size(-1) : a.size(-2);
    const std::int64_t ak = g.trans_a ? a.size(-2) : a.size(-1);
    const std::int64_t bk = g.trans_b ? b.size(-1) : b.size(-2);
    const std::int64_t bn = g.trans_b ? b.size(-2) : b.size(-1);
    check(ak == bk && am == c.size(-2) && bn == c.size(-1), "gemm: op(A) ", am, "x", ak, " * op(B) ", bk, "x", bn,
          " does not give C ", c.shape());
    if (batched) {
        check(a.size(0) == batch, "gemm: batch of A ", a.shape(), " != batch of C ", c.shape());
        check(b.rank() == 2 || b.size(0) == batch, "gemm: batch of B ", b.shape(), " != batch of C ", c.shape());
    }
    if (!bias.empty()) {
        check(bias.rank() == 1 && bias.size(0) == bn && bias.stride(0) == 1, "gemm: bias ", bias.shape(),
              " does not match N = ", bn);
    }
    return {batch, am, bn, ak, batched, batched && b.rank() == 3};
}

// a and out have the same shape; b equals it or is [N] broadcast over rows.
inline void check_binary(const cview& a, const cview& b, const cview& out, std::string_view op) {
    check(!a.empty() && !b.empty() && !out.empty(), op, ": empty operand");
    check_f32(out, op, "out");
    check(a.shape() == out.shape(), op, ": a ", a.shape(), " vs out ", out.shape());
    const bool bcast = b.rank() == 1 && a.rank() >= 1 && b.size(0) == a.size(-1);
    check(b.shape() == a.shape() || bcast, op, ": b ", b.shape(), " neither equals nor broadcasts to ", a.shape());
}

inline void check_same(const cview& x, const cview& out, std::string_view op) {
    check(!x.empty() && !out.empty(), op, ": empty operand");
    check_f32(out, op, "out");
    check(x.shape() == out.shape(), op, ": x ", x.shape(), " vs out ", out.shape());
}

inline void check_norm(const cview& x, const cview& w, const cview& b, const cview& out, std::string_view op) {
    check_same(x, out, op);
    check(x.rank() >= 1, op, ": x must have rank >= 1");
    check(w.rank() == 1 && w.size(0) == x.size(-1), op, ": weight ", w.shape(), " vs x ", x.shape());
    check(b.empty() || (b.rank() == 1 && b.size(0) == x.size(-1)), op, ": bias ", b.shape(), " vs x ", x.shape());
}

inline void check_rotary(const cview& x, const cview& cos, const cview& sin) {
    check(x.rank() == 3, "rotary: x must be [S, H, d], got ", x.shape());
    check_f32(x, "rotary", "x");
    const auto s = x.size(0), d = x.size(2);
    check(d % 2 == 0, "rotary: head dim ", d, " is odd");
    check(cos.shape() == shape{s, d} && sin.shape() == shape{s, d}, "rotary: cos ", cos.shape(), " / sin ", sin.shape(),
          " must be [", s, ", ", d, "]");
}

inline void check_gather(const cview& src, std::span<const std::int64_t> idx, const cview& out) {
    check(src.rank() >= 1 && out.rank() == src.rank(), "gather_rows: ranks of src ", src.shape(), " and out ",
          out.shape());
    check(out.size(0) == static_cast<std::int64_t>(idx.size()), "gather_rows: ", idx.size(), " indices for out ",
          out.shape());
    for (int i = 1; i < src.rank(); ++i)
        check(src.size(i) == out.size(i), "gather_rows: src ", src.shape(), " vs out ", out.shape());
    for (auto i : idx) check(0 <= i && i < src.size(0), "gather_rows: index ", i, " outside [0, ", src.size(0), ")");
}

struct attention_dims {
    std::int64_t sq, sk, h, d, dv;
};

inline attention_dims check_attention(const cview& q, const cview& k, const cview& v, const cview& out,
                                      const attention_args& a) {
    check(q.rank() == 3 && k.rank() == 3 && v.rank() == 3 && out.rank() == 3,
          "attention: q, k, v, out must be [S, H, d]; got ", q.shape(), ", ", k.shape(), ", ", v.shape(), ", ",
          out.shape());
    for (const cview* t : {&q, &k, &v, &out}) check_rows_contiguous(*t, "attention", "operand");
    check_f32(out, "attention", "out");
    const attention_dims d{q.size(0), k.size(0), q.size(1), q.size(2), v.size(2)};
    check(k.size(1) == d.h && v.size(1) == d.h && k.size(2) == d.d && v.size(0) == d.sk, "attention: k ", k.shape(),
          " / v ", v.shape(), " do not match q ", q.shape());
    check(out.shape() == shape{d.sq, d.h, d.dv}, "attention: out ", out.shape(), " must be [", d.sq, ", ", d.h, ", ",
          d.dv, "]");
    check(d.sk > 0, "attention: no keys");
    if (!a.mask.empty()) {
        check_f32(a.mask, "attention", "mask");
        check(a.mask.shape() == shape{d.sq, d.sk} && a.mask.stride(1) == 1, "attention: mask ", a.mask.shape(),
              " must be [", d.sq, ", ", d.sk, "]");
    }
    if (!a.segments.empty()) {
        check(d.sq == d.sk, "attention: segments need Sq == Sk");
        check(a.segments.size() >= 2 && a.segments.front() == 0 && a.segments.back() == d.sq,
              "attention: segments must run from 0 to ", d.sq);
        for (std::size_t i = 1; i < a.segments.size(); ++i)
            check(a.segments[i] >= a.segments[i - 1], "attention: segments must not decrease");
    }
    const auto& m = a.maps;
    if (!m.per_head.empty())
        check(m.per_head.shape() == shape{d.h, d.sq, d.sk} && m.per_head.type() == dtype::f32 &&
                  m.per_head.is_contiguous(),
              "attention: maps.per_head must be a contiguous f32 [", d.h, ", ", d.sq, ", ", d.sk, "]");
    if (!m.mean.empty())
        check(m.mean.shape() == shape{d.sq, d.sk} && m.mean.type() == dtype::f32 && m.mean.is_contiguous(),
              "attention: maps.mean must be a contiguous f32 [", d.sq, ", ", d.sk, "]");
    if (!m.pooled.empty()) {
        check(!m.query_weights.empty() && m.query_weights.rank() == 2 && m.query_weights.size(1) == d.sq &&
                  m.query_weights.type() == dtype::f32 && m.query_weights.stride(1) == 1,
              "attention: maps.pooled needs query_weights [R, ", d.sq, "]");
        const auto r = m.query_weights.size(0);
        check(m.pooled.shape() == shape{r, d.h, d.sk} && m.pooled.type() == dtype::f32 && m.pooled.is_contiguous(),
              "attention: maps.pooled must be a contiguous f32 [", r, ", ", d.h, ", ", d.sk, "]");
    }
    return d;
}

// ---- backward ops (TrainingBackend) ----

// p, dp and dx have the same [.., N] shape (rows = the last axis), dx f32 with unit inner stride.
inline void check_softmax_backward(const cview& p, const cview& dp, const cview& dx) {
    check_same(p, dx, "softmax_rows_backward");
    check(dp.shape() == p.shape(), "softmax_rows_backward: dp ", dp.shape(), " vs p ", p.shape());
    check(dx.stride(-1) == 1, "softmax_rows_backward: dx ", dx.shape(), " needs unit inner stride");
}

inline void check_activate_backward(const cview& x, const cview& dy, const cview& dx) {
    check_same(x, dx, "activate_backward");
    check(dy.shape() == x.shape(), "activate_backward: dy ", dy.shape(), " vs x ", x.shape());
}

// x, dy, dx: [.., D]; weight [D]; dw empty or f32 [D].
inline void check_norm_backward(const cview& x, const cview& w, const cview& dy, const cview& dx, const cview& dw,
                                std::string_view op) {
    check_norm(x, w, cview{}, dx, op);
    check(dy.shape() == x.shape(), op, ": dy ", dy.shape(), " vs x ", x.shape());
    if (!dw.empty()) {
        check_f32(dw, op, "dw");
        check(dw.rank() == 1 && dw.size(0) == x.size(-1), op, ": dw ", dw.shape(), " vs x ", x.shape());
    }
}

// The segment [lo, hi) containing token i (the whole range without segments).
inline std::pair<std::int64_t, std::int64_t> segment_of(std::span<const std::int64_t> seg, std::int64_t i,
                                                        std::int64_t n) {
    if (seg.empty()) return {0, n};
    std::size_t lo = 0, hi = seg.size() - 1;
    while (hi - lo > 1) {
        const std::size_t mid = (lo + hi) / 2;
        (seg[mid] <= i ? lo : hi) = mid;
    }
    return {seg[lo], seg[hi]};
}

}  // namespace glimpse::detail
