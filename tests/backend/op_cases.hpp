#pragma once
// The one table of op cases every backend is held to (ggml's test-backend-ops): each case names
// the op of core/backend.hpp it exercises, owns its host inputs, gives its output's shape and the
// f32 tolerance of a backend that computes in f32 (relative to the reference's max |value|), and
// a body written once against any backend. tests/backend/op_table.hpp runs a case on `reference`
// (the f64 oracle) and on the backend under test, with guard bands around the output;
// tests/backend/test_op_table.cpp runs the table for cpu at every SIMD level and checks that every
// op of the Backend and TrainingBackend concepts has a case; tests/cuda/test_cuda_ops.cpp runs it
// for cuda; bench/bench_ops.cpp times the same cases.
//
// A body is body(be, in, out): in[i] is input i as the backend holds it (uploaded), in.host(i)
// the host original (for the upload/download cases), out a zeroed f32 view of the case's shape.
// Strided operands are made inside the body by slicing what was uploaded, so every backend sees
// the same strides.

#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <glimpse/core/backend.hpp>

#include "test_util.hpp"

namespace glimpse::test {

struct op_case {
    std::string_view op;  // as core/backend.hpp's concepts spell it
    std::string label;    // unique within the table
    std::vector<std::shared_ptr<const tensor>> inputs;
    shape out;
    double tol = kF32Op;
    // The narrowest dtype a backend may round this case's operands to and still be right: the
    // weights' storage dtype for gemm (tensor cores round activations to it), bf16 for attention
    // (flash kernels run in half precision); f32 for exact ops.
    dtype rounds_to = dtype::f32;
};

// The inputs of one call as a body sees them.
class op_inputs {
public:
    op_inputs(std::span<const cview> dev, const op_case& c) : dev_(dev), case_(&c) {}
    const cview& operator[](std::size_t i) const { return dev_[i]; }
    cview host(std::size_t i) const { return case_->inputs[i]->cv(); }

private:
    std::span<const cview> dev_;
    const op_case* case_;
};

namespace detail_cases {

template <class... T>
std::vector<std::shared_ptr<const tensor>> inputs(T&&... t) {
    std::vector<std::shared_ptr<const tensor>> v;
    (v.push_back(std::make_shared<const tensor>(std::forward<T>(t))), ...);
    return v;
}

// Rows of logits with every third key masked (-inf: exactly 0 after softmax) and one row whose
// last logit is 200 above the rest (a one-hot).
inline tensor masked_logits(std::int64_t n) {
    tensor t = randn(shape{4, n}, 36, 3.0f);
    for (std::int64_t i = 0; i < n; i += 3) t.set({0, i}, -INFINITY);
    t.set({2, n - 1}, 200.0f);
    return t;
}

// Rows with a large common offset: a norm's mean and variance must not cancel it away.
inline tensor offset_rows(std::int64_t n) {
    tensor t = randn(shape{4, n}, 35, 0.01f);
    for (std::int64_t i = 0; i < n; ++i) t.set({1, i}, 1000.0f + t.at({1, i}));
    return t;
}

}  // namespace detail_cases

// The Backend concept's ops. visit(const op_case&, body) once per case.
template <class Visit>
void forward_op_cases(Visit&& visit) {
    using detail_cases::inputs;
    using std::int64_t;
    const auto str = [](auto... parts) {
        std::string s;
        ((s +=
          [&] {
              if constexpr (std::is_arithmetic_v<decltype(parts)>)
                  return std::to_string(parts);
              else
                  return std::string(parts);
          }()),
         ...);
        return s;
    };

    // ---- memory
    visit(op_case{"alloc", "alloc is zero-filled (bf16, added to ones)", {}, shape{7, 9}, 1e-12},
          [](auto& be, const op_inputs&, const view& o) {
              auto z = be.alloc(shape{7, 9}, dtype::bf16);
              be.fill(o, 1.0f);
              be.add(o, z.cv(), o, 1.0f);
          });
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16}) {
        visit(op_case{"upload", str("upload of a strided host view, ", name(t)), inputs(randn(shape{17, 33}, 20, 1, t)),
                      shape{17, 27}, 1e-12},
              [](auto& be, const op_inputs& in, const view& o) {
                  auto d = be.upload(in.host(0).slice(1, 3, 30));
                  be.copy(d.cv(), o);
              });
        visit(op_case{"download", str("download of a strided view, ", name(t)), inputs(randn(shape{17, 33}, 21, 1, t)),
                      shape{33, 7}, 1e-12},
              [](auto& be, const op_inputs& in, const view& o) {
                  const tensor h = be.download(in[0].slice(0, 2, 9).transpose(0, 1));
                  auto d = be.upload(h.cv());
                  be.copy(d.cv(), o);
              });
    }
    visit(op_case{"copy", "copy strided through bf16", inputs(randn(shape{13, 90}, 13)), shape{13, 70}, 1e-12,
                  dtype::bf16},
          [](auto& be, const op_inputs& in, const view& o) {
              auto t = be.alloc(shape{13, 70}, dtype::bf16);
              be.copy(in[0].slice(1, 10, 80), t.v());
              be.copy(t.cv(), o);
          });
    visit(op_case{"copy", "copy of a transposed (non-collapsible) view", inputs(randn(shape{13, 70}, 8)), shape{70, 13},
                  1e-12},
          [](auto& be, const op_inputs& in, const view& o) { be.copy(in[0].transpose(0, 1), o); });
    visit(op_case{"fill", "fill a column slice", {}, shape{4, 5}, 1e-12},
          [](auto& be, const op_inputs&, const view& o) { be.fill(o.slice(1, 1, 4), -2.5f); });

    // ---- gemm: every transpose, weight dtype, strided B rows, alpha, beta and a bias.
    // 37 x 300 x 29: n > the BLAS path's panel, the packed kernel's short-M column split;
    // 150 x 200 x 300: its row blocks on two threads, three K blocks, every tail;
    // 5 x 301 x 333 and 48 x 1031 x 200: the skinny f32 kernels (m <= 48, cpu/skinny_gemm.hpp):
    // row, column and K tails, several K blocks, one thread and then two at their row limit.
    const int64_t sizes[][3] = {{37, 300, 29}, {150, 200, 300}, {5, 301, 333}, {48, 1031, 200}};
    for (dtype wt : {dtype::f32, dtype::bf16, dtype::f16})
        for (const auto& [m, n, k] : sizes)
            for (bool ta : {false, true})
                for (bool tb : {false, true})
                    for (float beta : {0.0f, 0.5f}) {
                        const int64_t M = m, N = n, K = k;
                        visit(op_case{"gemm",
                                      str("gemm ", M, "x", N, "x", K, ta ? " ta" : "", tb ? " tb" : "", " beta ",
                                          beta == 0 ? "0" : "0.5", " ", name(wt)),
                                      inputs(randn(ta ? shape{K, M} : shape{M, K}, 1),
                                             randn(tb ? shape{N, K + 5} : shape{K, N + 5}, 2, 1.0f, wt),
                                             randn(shape{N}, 3, 1.0f, wt), randn(shape{M, N}, 4)),
                                      shape{M, N}, kF32Op, wt},
                              [=](auto& be, const op_inputs& in, const view& o) {
                                  const cview b = in[1].slice(1, 3, 3 + (tb ? K : N));  // strided rows
                                  be.copy(in[3], o);
                                  be.gemm(in[0], b, o, gemm_args{ta, tb, 1.5f, beta}, in[2]);
                              });
                    }
    visit(op_case{"gemm", "gemm batched A and B", inputs(randn(shape{3, 5, 7}, 5), randn(shape{3, 7, 4}, 6)),
                  shape{3, 5, 4}},
          [](auto& be, const op_inputs& in, const view& o) { be.gemm(in[0], in[1], o, gemm_args{}, cview{}); });
    visit(op_case{"gemm", "gemm batched A, shared B", inputs(randn(shape{3, 5, 7}, 5), randn(shape{4, 7}, 7)),
                  shape{3, 5, 4}},
          [](auto& be, const op_inputs& in, const view& o) {
              be.gemm(in[0], in[1], o, gemm_args{.trans_b = true}, cview{});
          });

    // ---- elementwise (13 x 70, and rank 1 / rank 3)
    visit(op_case{"add", "add", inputs(randn(shape{13, 70}, 8, 2.0f), randn(shape{13, 70}, 9)), shape{13, 70}},
          [](auto& be, const op_inputs& in, const view& o) { be.add(in[0], in[1], o, -0.75f); });
    visit(
        op_case{"add", "add broadcast row", inputs(randn(shape{13, 70}, 8, 2.0f), randn(shape{70}, 10)), shape{13, 70}},
        [](auto& be, const op_inputs& in, const view& o) { be.add(in[0], in[1], o, 1.0f); });
    visit(op_case{"add", "add in place", inputs(randn(shape{13, 70}, 8, 2.0f), randn(shape{13, 70}, 9)), shape{13, 70}},
          [](auto& be, const op_inputs& in, const view& o) {
              be.copy(in[0], o);
              be.add(o, in[1], o, 2.0f);
          });
    visit(op_case{"add", "add rank 1", inputs(randn(shape{40}, 1), randn(shape{40}, 2)), shape{40}},
          [](auto& be, const op_inputs& in, const view& o) { be.add(in[0], in[1], o, -0.5f); });
    visit(op_case{"add", "add rank 3", inputs(randn(shape{3, 5, 8}, 3), randn(shape{3, 5, 8}, 4)), shape{3, 5, 8}},
          [](auto& be, const op_inputs& in, const view& o) { be.add(in[0], in[1], o, 2.0f); });
    visit(
        op_case{"mul", "mul broadcast row", inputs(randn(shape{13, 70}, 8, 2.0f), randn(shape{70}, 10)), shape{13, 70}},
        [](auto& be, const op_inputs& in, const view& o) { be.mul(in[0], in[1], o); });
    visit(op_case{"mul", "mul rank 1", inputs(randn(shape{40}, 1), randn(shape{40}, 2)), shape{40}},
          [](auto& be, const op_inputs& in, const view& o) { be.mul(in[0], in[1], o); });
    visit(op_case{"mul", "mul rank 3 broadcast", inputs(randn(shape{3, 5, 8}, 3), randn(shape{8}, 5)), shape{3, 5, 8}},
          [](auto& be, const op_inputs& in, const view& o) { be.mul(in[0], in[1], o); });

    // ---- activations, SwiGLU and the row ops: rows of 70, and rows of 5 and 1157 (the SIMD row
    // kernels' lanes of 4, 8 or 16 and their tails: 5 is all tail at 8 and 16, 1157 is 72
    // vectors and a tail of 5 at 16) with |x| up to ~150 (e^-x saturates, erf is +-1).
    for (auto act : {activation::identity, activation::silu, activation::gelu_erf, activation::gelu_tanh}) {
        visit(op_case{"activate", str("activate ", name(act)), inputs(randn(shape{13, 70}, 8, 2.0f)), shape{13, 70}},
              [act](auto& be, const op_inputs& in, const view& o) { be.activate(act, in[0], o); });
        visit(op_case{"activate", str("activate ", name(act), " on a transposed input"),
                      inputs(randn(shape{13, 70}, 8, 2.0f)), shape{70, 13}},
              [act](auto& be, const op_inputs& in, const view& o) { be.activate(act, in[0].transpose(0, 1), o); });
    }
    for (const int64_t n : {int64_t{5}, int64_t{1157}}) {
        for (auto act : {activation::silu, activation::gelu_erf, activation::gelu_tanh})
            visit(op_case{"activate", str("activate ", name(act), " saturating, rows of ", n),
                          inputs(randn(shape{4, n}, 31, 40.0f)), shape{4, n}},
                  [act](auto& be, const op_inputs& in, const view& o) { be.activate(act, in[0], o); });
        visit(op_case{"swiglu", str("swiglu saturating, rows of ", n),
                      inputs(randn(shape{4, n}, 31, 40.0f), randn(shape{4, n}, 32)), shape{4, n}},
              [](auto& be, const op_inputs& in, const view& o) { be.swiglu(in[0], in[1], o); });
        visit(op_case{"rms_norm", str("rms_norm offset rows of ", n),
                      inputs(detail_cases::offset_rows(n), randn(shape{n}, 33, 0.3f)), shape{4, n}},
              [](auto& be, const op_inputs& in, const view& o) { be.rms_norm(in[0], in[1], 1e-6f, o); });
        visit(op_case{"layer_norm", str("layer_norm offset rows of ", n),
                      inputs(detail_cases::offset_rows(n), randn(shape{n}, 33, 0.3f), randn(shape{n}, 34, 0.1f)),
                      shape{4, n}},
              [](auto& be, const op_inputs& in, const view& o) { be.layer_norm(in[0], in[1], in[2], 1e-6f, o); });
        visit(op_case{"softmax_rows", str("softmax_rows masked and one-hot rows of ", n),
                      inputs(detail_cases::masked_logits(n)), shape{4, n}},
              [](auto& be, const op_inputs& in, const view& o) {
                  be.copy(in[0], o);
                  be.softmax_rows(o, 1.0f);
              });
    }
    visit(op_case{"swiglu", "swiglu", inputs(randn(shape{13, 70}, 8, 2.0f), randn(shape{13, 70}, 9)), shape{13, 70}},
          [](auto& be, const op_inputs& in, const view& o) { be.swiglu(in[0], in[1], o); });
    visit(op_case{"swiglu", "swiglu rank 1", inputs(randn(shape{40}, 1), randn(shape{40}, 2)), shape{40}},
          [](auto& be, const op_inputs& in, const view& o) { be.swiglu(in[0], in[1], o); });
    visit(op_case{"softmax_rows", "softmax_rows scaled", inputs(randn(shape{13, 70}, 8, 2.0f)), shape{13, 70}},
          [](auto& be, const op_inputs& in, const view& o) {
              be.copy(in[0], o);
              be.softmax_rows(o, 1.7f);
          });
    visit(op_case{"rms_norm", "rms_norm bf16 weight",
                  inputs(randn(shape{13, 70}, 8, 2.0f), randn(shape{70}, 11, 0.3f, dtype::bf16)), shape{13, 70}},
          [](auto& be, const op_inputs& in, const view& o) { be.rms_norm(in[0], in[1], 1e-6f, o); });
    visit(op_case{"rms_norm", "rms_norm in place on a strided view after an activation",
                  inputs(randn(shape{13, 90}, 13), randn(shape{70}, 11, 0.3f, dtype::bf16)), shape{13, 70}},
          [](auto& be, const op_inputs& in, const view& o) {
              auto big = be.alloc(shape{13, 90}, dtype::f32);
              const view ov = big.v().slice(1, 20, 90);
              be.activate(activation::silu, in[0].slice(1, 5, 75), ov);
              be.rms_norm(ov, in[1], 1e-6f, ov);
              be.copy(ov, o);
          });
    visit(op_case{"layer_norm", "layer_norm bf16 weight",
                  inputs(randn(shape{13, 70}, 8, 2.0f), randn(shape{70}, 11, 0.3f, dtype::bf16),
                         randn(shape{70}, 12, 0.1f)),
                  shape{13, 70}},
          [](auto& be, const op_inputs& in, const view& o) { be.layer_norm(in[0], in[1], in[2], 1e-6f, o); });
    visit(op_case{"sum_rows", "sum_rows", inputs(randn(shape{13, 70}, 8, 2.0f)), shape{70}},
          [](auto& be, const op_inputs& in, const view& o) { be.sum_rows(in[0], o); });

    // ---- rotary (head dims 16, Qwen3's 72 and Qwen2.5's 80) and gather
    for (const int64_t d : {int64_t{16}, int64_t{72}, int64_t{80}})
        visit(
            op_case{"rotary", str("rotary head dim ", d),
                    inputs(randn(shape{9, 3, d}, 14), randn(shape{9, d}, 15), randn(shape{9, d}, 16)), shape{9, 3, d}},
            [](auto& be, const op_inputs& in, const view& o) {
                be.copy(in[0], o);
                be.rotary(o, in[1], in[2]);
            });
    visit(op_case{"rotary", "rotary on the strided q of a fused qkv",
                  inputs(randn(shape{9, 3, 3, 16}, 17), randn(shape{9, 16}, 15), randn(shape{9, 16}, 16)),
                  shape{9, 3, 16}},
          [](auto& be, const op_inputs& in, const view& o) {
              auto t = be.alloc(shape{9, 3, 3, 16}, dtype::f32);
              be.copy(in[0], t.v());
              const view q = t.v().select(1, 0);
              be.rotary(q, in[1], in[2]);
              be.copy(q, o);
          });
    for (dtype t : {dtype::f32, dtype::bf16})
        visit(op_case{"gather_rows", str("gather_rows with repeats, ", name(t)),
                      inputs(randn(shape{9, 3, 16}, 14, 1.0f, t)), shape{6, 3, 16}, 1e-12},
              [](auto& be, const op_inputs& in, const view& o) {
                  static const std::vector<int64_t> idx{8, 0, 0, 3, 7, 8};
                  be.gather_rows(in[0], idx, o);
              });

    // ---- attention: q, k, v strided views of a fused [S, 3, H, d]; masks, segments (an empty
    // one), Sq != Sk, and each map as its own output. S = 150 spans several query tiles of the
    // cpu kernels at every level; d = 72 and 80 (bf16 storage) are the towers' heads, which
    // backends with half-precision kernels (cuda's flash) run on their fast path. kF32Rel: a
    // softmax over 72-80-channel scores (measured 1.2e-6 at d = 72).
    struct attn_shape {
        int64_t sq, sk, h, d;
        dtype t;
    };
    static const std::vector<int64_t> seg{0, 40, 40, 107, 150};
    for (const attn_shape& s : {attn_shape{150, 150, 3, 8, dtype::f32}, attn_shape{70, 90, 2, 40, dtype::f32},
                                attn_shape{150, 150, 2, 72, dtype::bf16}, attn_shape{150, 150, 2, 80, dtype::bf16}})
        for (int variant = 0; variant < 3; ++variant) {
            if (s.sq != s.sk && variant == 2) continue;  // segments are shared by queries and keys
            for (int output = 0; output < 4; ++output) {
                static constexpr const char* kVariant[] = {"", " mask", " segments"};
                static constexpr const char* kOut[] = {"out", "per_head map", "mean map", "pooled map"};
                const shape out = output == 0   ? shape{s.sq, s.h, s.d}
                                  : output == 1 ? shape{s.h, s.sq, s.sk}
                                  : output == 2 ? shape{s.sq, s.sk}
                                                : shape{2, s.h, s.sk};
                visit(op_case{"attention",
                              str("attention ", s.sq, "x", s.sk, " H", s.h, " d", s.d, " ", name(s.t),
                                  kVariant[variant], ": ", kOut[output]),
                              inputs(randn(shape{s.sq, 3, s.h, s.d}, 17, 1.0f, s.t),
                                     randn(shape{s.sk, 3, s.h, s.d}, 18, 1.0f, s.t), randn(shape{s.sq, s.sk}, 19, 2.0f),
                                     randn(shape{2, s.sq}, 20)),
                              out, kF32Rel, dtype::bf16},
                      [=](auto& be, const op_inputs& in, const view& o) {
                          attention_args a{0.35f, variant == 1 ? in[2] : cview{}, {}, {}};
                          if (variant == 2) a.segments = seg;
                          auto out_t = be.alloc(shape{s.sq, s.h, s.d}, dtype::f32);
                          auto ph = be.alloc(shape{s.h, s.sq, s.sk}, dtype::f32);
                          auto mean = be.alloc(shape{s.sq, s.sk}, dtype::f32);
                          auto pooled = be.alloc(shape{2, s.h, s.sk}, dtype::f32);
                          a.maps.per_head = output == 1 ? o : ph.v();
                          a.maps.mean = output == 2 ? o : mean.v();
                          a.maps.query_weights = in[3];
                          a.maps.pooled = output == 3 ? o : pooled.v();
                          be.attention(in[0].select(1, 0), in[1].select(1, 1), in[1].select(1, 2),
                                       output == 0 ? o : out_t.v(), a);
                      });
            }
        }
    visit(op_case{"attention", "attention without maps", inputs(randn(shape{150, 3, 3, 8}, 17)), shape{150, 3, 8}},
          [](auto& be, const op_inputs& in, const view& o) {
              be.attention(in[0].select(1, 0), in[0].select(1, 1), in[0].select(1, 2), o,
                           attention_args{0.35f, {}, {}, {}});
          });
}

// The TrainingBackend refinement's ops.
template <class Visit>
void training_op_cases(Visit&& visit) {
    using detail_cases::inputs;
    for (float scale : {1.0f, 0.35f}) {
        const std::string sc = scale == 1.0f ? " scale 1" : " scale 0.35";
        // p is the forward's softmax of x, computed on the backend under test.
        const auto with_p = [scale](auto& be, const cview& x) {
            auto p = be.alloc(x.shape(), dtype::f32);
            be.copy(x, p.v());
            be.softmax_rows(p.v(), scale);
            return p;
        };
        visit(op_case{"softmax_rows_backward", "softmax_rows_backward" + sc,
                      inputs(randn(shape{37, 90}, 1, 2.0f), randn(shape{37, 90}, 2)), shape{37, 90}},
              [=](auto& be, const op_inputs& in, const view& o) {
                  auto p = with_p(be, in[0]);
                  be.softmax_rows_backward(p.cv(), in[1], scale, o);
              });
        visit(op_case{"softmax_rows_backward", "softmax_rows_backward strided dp" + sc,
                      inputs(randn(shape{37, 90}, 1, 2.0f), randn(shape{37, 100}, 3)), shape{37, 90}},
              [=](auto& be, const op_inputs& in, const view& o) {
                  auto p = with_p(be, in[0]);
                  be.softmax_rows_backward(p.cv(), in[1].slice(1, 5, 95), scale, o);
              });
        visit(op_case{"softmax_rows_backward", "softmax_rows_backward in place" + sc,
                      inputs(randn(shape{37, 90}, 1, 2.0f), randn(shape{37, 90}, 2)), shape{37, 90}},
              [=](auto& be, const op_inputs& in, const view& o) {
                  auto p = with_p(be, in[0]);
                  be.copy(in[1], o);
                  be.softmax_rows_backward(p.cv(), o, scale, o);
              });
    }
    // f32 derivatives: gelu_tanh's 1 - tanh^2 cancels for |x| of a few (x ~ N(0, 9) here),
    // measured 1.2e-6 relative: 5e-6.
    for (auto act : {activation::identity, activation::silu, activation::gelu_erf, activation::gelu_tanh}) {
        const std::string a(name(act));
        visit(op_case{"activate_backward", "activate_backward " + a,
                      inputs(randn(shape{13, 70}, 4, 3.0f), randn(shape{13, 70}, 5)), shape{13, 70}, 5e-6},
              [act](auto& be, const op_inputs& in, const view& o) { be.activate_backward(act, in[0], in[1], o); });
        visit(op_case{"activate_backward", "activate_backward bf16 x " + a,
                      inputs(randn(shape{13, 70}, 4, 3.0f, dtype::bf16), randn(shape{13, 70}, 5)), shape{13, 70}, 5e-6},
              [act](auto& be, const op_inputs& in, const view& o) { be.activate_backward(act, in[0], in[1], o); });
        visit(op_case{"activate_backward", "activate_backward in place " + a,
                      inputs(randn(shape{13, 70}, 4, 3.0f), randn(shape{13, 70}, 5)), shape{13, 70}, 5e-6},
              [act](auto& be, const op_inputs& in, const view& o) {
                  be.copy(in[1], o);
                  be.activate_backward(act, in[0], o, o);
              });
    }
    visit(op_case{"activate_backward", "activate_backward rank 1", inputs(randn(shape{40}, 1), randn(shape{40}, 2)),
                  shape{40}},
          [](auto& be, const op_inputs& in, const view& o) {
              be.activate_backward(activation::gelu_erf, in[0], in[1], o);
          });
    // 150 rows: more than one of the cpu backend's 64-row dw blocks; x plain and strided.
    for (dtype wt : {dtype::f32, dtype::bf16})
        for (bool strided : {false, true}) {
            const std::string tag = std::string(strided ? " strided x" : "") + ", " + std::string(name(wt)) + " weight";
            auto ins = [&] {
                return inputs(strided ? randn(shape{150, 80}, 8, 2.0f) : randn(shape{150, 72}, 6, 2.0f),
                              randn(shape{72}, 9, 0.5f, wt), randn(shape{150, 72}, 7));
            };
            const auto x_of = [strided](const cview& x) { return strided ? x.slice(1, 4, 76) : x; };
            for (bool rms : {true, false}) {
                const std::string_view op = rms ? "rms_norm_backward" : "layer_norm_backward";
                visit(op_case{op, std::string(op) + " dx" + tag, ins(), shape{150, 72}},
                      [=](auto& be, const op_inputs& in, const view& o) {
                          if (rms)
                              be.rms_norm_backward(x_of(in[0]), in[1], 1e-6f, in[2], o, view{});
                          else
                              be.layer_norm_backward(x_of(in[0]), in[1], 1e-6f, in[2], o, view{});
                      });
                visit(op_case{op, std::string(op) + " dw" + tag, ins(), shape{72}},
                      [=](auto& be, const op_inputs& in, const view& o) {
                          auto dx = be.alloc(shape{150, 72}, dtype::f32);
                          if (rms)
                              be.rms_norm_backward(x_of(in[0]), in[1], 1e-6f, in[2], dx.v(), o);
                          else
                              be.layer_norm_backward(x_of(in[0]), in[1], 1e-6f, in[2], dx.v(), o);
                      });
            }
        }
}

}  // namespace glimpse::test
