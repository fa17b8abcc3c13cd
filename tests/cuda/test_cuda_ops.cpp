// Every op of the cuda backend against the cpu backend (itself held to the reference
// backend op by op in tests/backend), on random inputs, strided device views and every
// dtype. Tolerances: cuda_test_util.hpp.

#include <cmath>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "cuda/cuda_test_util.hpp"

using namespace glimpse;
using test::compare;
using test::randn;

namespace {

// op(be, up, out): `up` makes a host view usable by `be` (identity on the cpu, an upload
// kept alive for the call on the cuda backend); out is a zeroed f32 view of out_shape.
template <class Op>
void check_vs_cpu(const char* what, const shape& out_shape, Op op, double tol, const cuda_options& opt = {}) {
    cpu c;
    tensor ref(out_shape);
    op(
        c, [](const cview& v) { return v; }, ref.v());
    cuda g(opt);
    std::vector<device_tensor> keep;
    device_tensor out = g.alloc(out_shape, dtype::f32);
    op(
        g,
        [&](const cview& v) {
            keep.push_back(g.upload(v));
            return keep.back().cv();
        },
        out.v());
    const tensor got = g.download(out.cv());
    const auto e = compare(got.cv(), ref.cv());
    INFO(what << ": max abs " << e.max_abs << ", max ref " << e.max_ref << ", rel " << e.rel() << " (tolerance " << tol
              << ")");
    REQUIRE(e.max_ref > 0);
    REQUIRE(e.rel() < tol);
}

}  // namespace

TEMPLATE_TEST_CASE("cuda gemm matches cpu for every transpose, dtype, stride, alpha/beta and bias", "[cuda][gemm]",
                   float, bf16_t, f16_t) {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    const dtype wt = dtype_of_v<TestType>;
    for (bool narrow : {true, false})
        for (bool ta : {false, true})
            for (bool tb : {false, true}) {
                const std::int64_t m = 37, n = 300, k = 29;
                tensor a = randn(ta ? shape{k, m} : shape{m, k}, 1);
                tensor wide = randn(tb ? shape{n, k + 5} : shape{k, n + 5}, 2, 1.0f, wt);
                tensor bias = randn(shape{n}, 3, 1.0f, wt);
                tensor c0 = randn(shape{m, n}, 4);
                for (float beta : {0.0f, 0.5f}) {
                    INFO("ta=" << ta << " tb=" << tb << " beta=" << beta << " dtype=" << name(wt)
                               << " narrow=" << narrow);
                    check_vs_cpu(
                        "gemm", shape{m, n},
                        [&](auto& be, auto up, const view& out) {
                            const cview b = up(wide.cv()).slice(1, 3, 3 + (tb ? k : n));  // strided rows on the device
                            be.copy(up(c0.cv()), out);
                            be.gemm(up(a.cv()), b, out, gemm_args{ta, tb, 1.5f, beta}, up(bias.cv()));
                        },
                        narrow ? test::tol_for(wt) : test::kF32, cuda_options{.narrow_activations = narrow});
                }
            }
}

TEST_CASE("cuda batched gemm (batched and shared B), TF32 opt-in", "[cuda][gemm]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    tensor a = randn(shape{3, 5, 7}, 5), b3 = randn(shape{3, 7, 4}, 6), b2 = randn(shape{4, 7}, 7);
    check_vs_cpu(
        "batched", shape{3, 5, 4},
        [&](auto& be, auto up, const view& out) { be.gemm(up(a.cv()), up(b3.cv()), out, gemm_args{}, cview{}); },
        test::kF32);
    check_vs_cpu(
        "shared B", shape{3, 5, 4},
        [&](auto& be, auto up, const view& out) {
            be.gemm(up(a.cv()), up(b2.cv()), out, gemm_args{.trans_b = true}, cview{});
        },
        test::kF32);
    tensor x = randn(shape{64, 256}, 8), w = randn(shape{96, 256}, 9);
    check_vs_cpu(
        "tf32", shape{64, 96},
        [&](auto& be, auto up, const view& out) {
            be.gemm(up(x.cv()), up(w.cv()), out, gemm_args{.trans_b = true}, cview{});
        },
        test::kF16, cuda_options{.tf32 = true});
}

TEST_CASE("cuda elementwise, activations and row ops match cpu", "[cuda][ops]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    tensor x = randn(shape{13, 70}, 8, 2.0f), y = randn(shape{13, 70}, 9), r = randn(shape{70}, 10);
    tensor w = randn(shape{70}, 11, 0.3f, dtype::bf16), bb = randn(shape{70}, 12, 0.1f);
    const shape s = x.shape();
    constexpr double tol = 1e-5;
    check_vs_cpu(
        "add", s, [&](auto& be, auto up, const view& o) { be.add(up(x.cv()), up(y.cv()), o, -0.75f); }, tol);
    check_vs_cpu(
        "add broadcast", s, [&](auto& be, auto up, const view& o) { be.add(up(x.cv()), up(r.cv()), o, 1.0f); }, tol);
    check_vs_cpu(
        "mul broadcast", s, [&](auto& be, auto up, const view& o) { be.mul(up(x.cv()), up(r.cv()), o); }, tol);
    check_vs_cpu(
        "add in place", s,
        [&](auto& be, auto up, const view& o) {
            be.copy(up(x.cv()), o);
            be.add(o, up(y.cv()), o, 2.0f);
        },
        tol);
    for (auto act : {activation::identity, activation::silu, activation::gelu_erf, activation::gelu_tanh}) {
        INFO(name(act));
        check_vs_cpu(
            "activate", s, [&](auto& be, auto up, const view& o) { be.activate(act, up(x.cv()), o); }, tol);
    }
    check_vs_cpu(
        "swiglu", s, [&](auto& be, auto up, const view& o) { be.swiglu(up(x.cv()), up(y.cv()), o); }, tol);
    check_vs_cpu(
        "softmax", s,
        [&](auto& be, auto up, const view& o) {
            be.copy(up(x.cv()), o);
            be.softmax_rows(o, 1.7f);
        },
        tol);
    check_vs_cpu(
        "rms_norm", s, [&](auto& be, auto up, const view& o) { be.rms_norm(up(x.cv()), up(w.cv()), 1e-6f, o); }, tol);
    check_vs_cpu(
        "layer_norm", s,
        [&](auto& be, auto up, const view& o) { be.layer_norm(up(x.cv()), up(w.cv()), up(bb.cv()), 1e-6f, o); }, tol);
    check_vs_cpu(
        "sum_rows", shape{70}, [&](auto& be, auto up, const view& o) { be.sum_rows(up(x.cv()), o); }, tol);
    tensor wide = randn(shape{13, 90}, 13);
    check_vs_cpu(
        "copy strided + bf16 round trip", shape{13, 70},
        [&](auto& be, auto up, const view& o) {
            auto t = be.alloc(shape{13, 70}, dtype::bf16);
            be.copy(up(wide.cv()).slice(1, 10, 80), t.v());
            be.copy(t.cv(), o);
        },
        1e-12);
    check_vs_cpu(
        "strided inputs and outputs", shape{13, 70},
        [&](auto& be, auto up, const view& o) {
            auto big = be.alloc(shape{13, 90}, dtype::f32);
            const view ov = big.v().slice(1, 20, 90);
            be.activate(activation::silu, up(wide.cv()).slice(1, 5, 75), ov);
            be.rms_norm(ov, up(w.cv()), 1e-6f, ov);
            be.copy(ov, o);
        },
        tol);
    check_vs_cpu(
        "transposed (non-collapsible) input", shape{70, 13},
        [&](auto& be, auto up, const view& o) {
            auto t = be.alloc(shape{70, 13}, dtype::f32);
            be.copy(up(x.cv()).transpose(0, 1), t.v());
            be.activate(activation::gelu_tanh, t.cv(), o);
        },
        tol);
    check_vs_cpu(
        "fill", shape{4, 5}, [&](auto& be, auto, const view& o) { be.fill(o.slice(1, 1, 4), -2.5f); }, 0.0 + 1e-12);
}

TEST_CASE("cuda rotary and gather match cpu", "[cuda][ops]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    tensor x = randn(shape{9, 3, 16}, 14), c = randn(shape{9, 16}, 15), s = randn(shape{9, 16}, 16);
    check_vs_cpu(
        "rotary", x.shape(),
        [&](auto& be, auto up, const view& o) {
            be.copy(up(x.cv()), o);
            be.rotary(o, up(c.cv()), up(s.cv()));
        },
        1e-6);
    tensor qkv = randn(shape{9, 3, 3, 16}, 17);  // rotary on a strided q of a fused qkv
    check_vs_cpu(
        "rotary strided", shape{9, 3, 16},
        [&](auto& be, auto up, const view& o) {
            auto t = be.alloc(qkv.shape(), dtype::f32);
            be.copy(up(qkv.cv()), t.v());
            const view q = t.v().select(1, 0);
            be.rotary(q, up(c.cv()), up(s.cv()));
            be.copy(q, o);
        },
        1e-6);
    const std::vector<std::int64_t> idx{8, 0, 0, 3, 7, 8};
    check_vs_cpu(
        "gather", shape{6, 3, 16}, [&](auto& be, auto up, const view& o) { be.gather_rows(up(x.cv()), idx, o); },
        1e-12);
    tensor xb = x.to(dtype::bf16);
    check_vs_cpu(
        "gather bf16 -> f32", shape{6, 3, 16},
        [&](auto& be, auto up, const view& o) { be.gather_rows(up(xb.cv()), idx, o); }, 1e-12);
    cuda be;
    auto dx = be.upload(x.cv());
    auto o = be.alloc(shape{2, 3, 16}, dtype::f32);
    const std::vector<std::int64_t> bad{0, 9};
    REQUIRE_THROWS_WITH(be.gather_rows(dx.cv(), bad, o.v()), Catch::Contains("index 9 outside [0, 9)"));
}

TEST_CASE("cuda backend rejects bad calls with the cpu backend's messages, and host pointers", "[cuda][errors]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    cuda be;
    auto a = be.alloc(shape{3, 4}, dtype::f32), b = be.alloc(shape{5, 4}, dtype::f32),
         c = be.alloc(shape{3, 6}, dtype::f32);
    REQUIRE_THROWS_WITH(be.gemm(a.cv(), b.cv(), c.v(), gemm_args{.trans_b = true}, cview{}),
                        Catch::Contains("does not give C [3, 6]"));
    auto w = be.alloc(shape{5}, dtype::f32);
    REQUIRE_THROWS_WITH(be.rms_norm(a.cv(), w.cv(), 1e-6f, a.v()), Catch::Contains("weight [5]"));
    tensor host(shape{3, 4});
    REQUIRE_THROWS_WITH(be.add(host.cv(), a.cv(), a.v(), 1.0f), Catch::Contains("points to host memory"));
    REQUIRE_THROWS_WITH(cuda(cuda_options{.device = 1 << 20}), Catch::Contains("no CUDA device"));
}

TEST_CASE("cuda alloc is zero-filled, upload and download round-trip every dtype and strides", "[cuda][memory]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    cuda be;
    auto z = be.alloc(shape{1000, 3}, dtype::bf16);
    const tensor zh = be.download(z.cv());
    for (std::int64_t i = 0; i < zh.numel(); ++i) REQUIRE(load_f32(zh.data(), zh.type(), i) == 0.0f);
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16}) {
        tensor x = randn(shape{17, 33}, 20, 1.0f, t);
        auto d = be.upload(x.cv().slice(1, 3, 30));  // strided host view
        const tensor back = be.download(d.cv());
        REQUIRE(compare(back.cv(), x.cv().slice(1, 3, 30)).max_abs == 0.0);
        auto full = be.upload(x.cv());
        const tensor back2 = be.download(full.cv().slice(0, 2, 9).transpose(0, 1));  // strided device view
        REQUIRE(compare(back2.cv(), x.cv().slice(0, 2, 9).transpose(0, 1)).max_abs == 0.0);
    }
}
