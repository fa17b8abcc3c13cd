// Every op of every backend against the reference backend, on random inputs
// (the approach of ggml's test-backend-ops). Tolerance: the fast backend
// computes in f32 with a different summation order; the reference in f64. For
// sums of K products of O(1) values the f32 error grows like sqrt(K) * 2^-24,
// so 2e-5 relative to the largest output (scale-aware) covers K up to ~10^4 here.

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "backend/backend_check.hpp"
#include "test_util.hpp"

using namespace glimpse;
using test::compare;
using test::randn;

using test::check_op;
constexpr double kTol = test::kOpTol;

TEMPLATE_TEST_CASE("cpu gemm matches reference for every transpose, dtype and stride", "[backend][gemm]", float, bf16_t,
                   f16_t) {
    const dtype wt = dtype_of_v<TestType>;
    // 37 x 300 x 29: n > the BLAS path's panel (widening in panels), the packed kernel's short-M
    // column split; 150 x 200 x 300: its row blocks on two threads, three K blocks, every tail.
    const std::int64_t sizes[][3] = {{37, 300, 29}, {150, 200, 300}};
    for (const auto& [m, n, k] : sizes)
        for (bool ta : {false, true})
            for (bool tb : {false, true}) {
                tensor a = randn(ta ? shape{k, m} : shape{m, k}, 1);
                tensor wide = randn(tb ? shape{n, k + 5} : shape{k, n + 5}, 2, 1.0f, wt);
                const cview b = wide.cv().slice(1, 3, 3 + (tb ? k : n));  // strided rows
                tensor bias = randn(shape{n}, 3, 1.0f, wt);
                tensor c0 = randn(shape{m, n}, 4);
                for (float beta : {0.0f, 0.5f}) {
                    INFO(m << " x " << n << " x " << k << " ta=" << ta << " tb=" << tb << " beta=" << beta
                           << " dtype=" << name(wt));
                    check_op("gemm", shape{m, n}, [&](auto& be, const view& out) {
                        be.copy(c0.cv(), out);
                        be.gemm(a.cv(), b, out, gemm_args{ta, tb, 1.5f, beta}, bias.cv());
                    });
                }
            }
}

TEST_CASE("cpu batched gemm matches reference, shared and batched B", "[backend][gemm]") {
    tensor a = randn(shape{3, 5, 7}, 5), b3 = randn(shape{3, 7, 4}, 6), b2 = randn(shape{4, 7}, 7);
    check_op("batched", shape{3, 5, 4},
             [&](auto& be, const view& out) { be.gemm(a.cv(), b3.cv(), out, gemm_args{}, cview{}); });
    check_op("shared B", shape{3, 5, 4},
             [&](auto& be, const view& out) { be.gemm(a.cv(), b2.cv(), out, gemm_args{.trans_b = true}, cview{}); });
}

TEST_CASE("cpu elementwise, activations and row ops match reference", "[backend][ops]") {
    tensor x = randn(shape{13, 70}, 8, 2.0f), y = randn(shape{13, 70}, 9), r = randn(shape{70}, 10);
    tensor w = randn(shape{70}, 11, 0.3f, dtype::bf16), bb = randn(shape{70}, 12, 0.1f);
    const shape s = x.shape();
    check_op("add", s, [&](auto& be, const view& o) { be.add(x.cv(), y.cv(), o, -0.75f); });
    check_op("add broadcast", s, [&](auto& be, const view& o) { be.add(x.cv(), r.cv(), o, 1.0f); });
    check_op("mul broadcast", s, [&](auto& be, const view& o) { be.mul(x.cv(), r.cv(), o); });
    for (auto act : {activation::identity, activation::silu, activation::gelu_erf, activation::gelu_tanh}) {
        INFO(name(act));
        check_op(
            "activate", s, [&](auto& be, const view& o) { be.activate(act, x.cv(), o); }, 1e-6);
    }
    check_op(
        "swiglu", s, [&](auto& be, const view& o) { be.swiglu(x.cv(), y.cv(), o); }, 1e-6);
    check_op(
        "softmax", s,
        [&](auto& be, const view& o) {
            be.copy(x.cv(), o);
            be.softmax_rows(o, 1.7f);
        },
        1e-6);
    check_op(
        "rms_norm", s, [&](auto& be, const view& o) { be.rms_norm(x.cv(), w.cv(), 1e-6f, o); }, 1e-6);
    check_op(
        "layer_norm", s, [&](auto& be, const view& o) { be.layer_norm(x.cv(), w.cv(), bb.cv(), 1e-6f, o); }, 1e-6);
    check_op(
        "sum_rows", shape{70}, [&](auto& be, const view& o) { be.sum_rows(x.cv(), o); }, 1e-6);
    // strided input: a column slice
    tensor wide = randn(shape{13, 90}, 13);
    check_op(
        "copy strided + bf16", shape{13, 70},
        [&](auto& be, const view& o) {
            tensor t(shape{13, 70}, dtype::bf16);
            be.copy(wide.cv().slice(1, 10, 80), t.v());
            be.copy(t.cv(), o);
        },
        0.0 + 1e-12);
}

TEST_CASE("cpu row kernels at every level: whole vectors, tails, saturation, masked softmax", "[backend][ops]") {
    // The row kernels (cpu/row_kernels.inc) run lanes of 4, 8 or 16 and a tail: rows of 5 are
    // all tail at 8 and 16, rows of 1157 are 72 vectors and a tail of 5 at 16.
    for (const std::int64_t n : {std::int64_t{5}, std::int64_t{1157}}) {
        INFO("row of " << n);
        // |x| up to ~150: e^-x saturates (SiLU, tanh-GELU ~ x or ~0), erf is +-1.
        tensor x = randn(shape{4, n}, 31, 40.0f), y = randn(shape{4, n}, 32);
        tensor w = randn(shape{n}, 33, 0.3f), bb = randn(shape{n}, 34, 0.1f);
        // A large common offset: the norms' mean and variance must not cancel it away.
        tensor off = randn(shape{4, n}, 35, 0.01f);
        for (std::int64_t i = 0; i < n; ++i) off.set({1, i}, 1000.0f + off.at({1, i}));
        const shape s = x.shape();
        for (auto act : {activation::silu, activation::gelu_erf, activation::gelu_tanh}) {
            INFO(name(act));
            check_op(
                "activate, saturating", s, [&](auto& be, const view& o) { be.activate(act, x.cv(), o); }, 1e-6);
        }
        check_op(
            "swiglu, saturating", s, [&](auto& be, const view& o) { be.swiglu(x.cv(), y.cv(), o); }, 1e-6);
        check_op(
            "rms_norm, offset rows", s, [&](auto& be, const view& o) { be.rms_norm(off.cv(), w.cv(), 1e-6f, o); },
            1e-6);
        check_op(
            "layer_norm, offset rows", s,
            [&](auto& be, const view& o) { be.layer_norm(off.cv(), w.cv(), bb.cv(), 1e-6f, o); }, 1e-6);
        // -inf logits (masked keys) give exactly 0; a row of logits 200 apart gives a one-hot.
        tensor logits = randn(shape{4, n}, 36, 3.0f);
        for (std::int64_t i = 0; i < n; i += 3) logits.set({0, i}, -INFINITY);
        logits.set({2, n - 1}, 200.0f);
        check_op(
            "softmax, masked", s,
            [&](auto& be, const view& o) {
                be.copy(logits.cv(), o);
                be.softmax_rows(o, 1.0f);
            },
            1e-6);
        for (cpu_isa isa : supported_cpu_isas()) {
            cpu be;
            be.set_isa(isa);
            tensor o(s);
            be.copy(logits.cv(), o.v());
            be.softmax_rows(o.v(), 1.0f);
            INFO("cpu kernels " << name(isa));
            for (std::int64_t i = 0; i < n; i += 3) REQUIRE(o.at({0, i}) == 0.0f);
            REQUIRE(o.at({2, n - 1}) == 1.0f);
        }
    }
    // Qwen3's head dim 72 (36 rotated pairs: two vectors of 16 and a tail) and Qwen2.5's 80.
    for (const std::int64_t d : {std::int64_t{72}, std::int64_t{80}}) {
        INFO("head dim " << d);
        tensor x = randn(shape{7, 2, d}, 37), c = randn(shape{7, d}, 38), s = randn(shape{7, d}, 39);
        check_op(
            "rotary", x.shape(),
            [&](auto& be, const view& o) {
                be.copy(x.cv(), o);
                be.rotary(o, c.cv(), s.cv());
            },
            1e-6);
    }
}

TEST_CASE("cpu rotary and gather match reference", "[backend][ops]") {
    tensor x = randn(shape{9, 3, 16}, 14), c = randn(shape{9, 16}, 15), s = randn(shape{9, 16}, 16);
    check_op(
        "rotary", x.shape(),
        [&](auto& be, const view& o) {
            be.copy(x.cv(), o);
            be.rotary(o, c.cv(), s.cv());
        },
        1e-6);
    const std::vector<std::int64_t> idx{8, 0, 0, 3, 7, 8};
    check_op(
        "gather", shape{6, 3, 16}, [&](auto& be, const view& o) { be.gather_rows(x.cv(), idx, o); }, 0.0 + 1e-12);
    cpu be;
    tensor o(shape{2, 3, 16});
    const std::vector<std::int64_t> bad{0, 9};
    REQUIRE_THROWS_WITH(be.gather_rows(x.cv(), bad, o.v()), Catch::Contains("index 9 outside [0, 9)"));
}

TEST_CASE("cpu attention matches reference: masks, segments, maps, strided heads", "[backend][attention]") {
    // Sq spans several query tiles of the cpu backend at every SIMD level (16 to 64 queries).
    const std::int64_t S = 150, H = 3, d = 8;
    tensor qkv = randn(shape{S, 3, H, d}, 17);  // interleaved like a fused qkv projection: strided views
    const cview q = qkv.cv().select(1, 0), k = qkv.cv().select(1, 1), v = qkv.cv().select(1, 2);
    tensor mask = randn(shape{S, S}, 18, 2.0f);
    tensor qw = randn(shape{2, S}, 19);
    const std::vector<std::int64_t> seg{0, 40, 40, 107, 150};
    for (int variant = 0; variant < 3; ++variant) {
        INFO("variant " << variant);
        auto args = [&](tensor& ph, tensor& mean, tensor& pooled) {
            attention_args a{0.35f, variant == 1 ? mask.cv() : cview{}, {}, {}};
            if (variant == 2) a.segments = seg;
            a.maps.per_head = ph.v();
            a.maps.mean = mean.v();
            a.maps.query_weights = qw.cv();
            a.maps.pooled = pooled.v();
            return a;
        };
        reference ref;
        tensor o1(shape{S, H, d}), ph1(shape{H, S, S}), m1(shape{S, S}), p1(shape{2, H, S});
        ref.attention(q, k, v, o1.v(), args(ph1, m1, p1));
        for (cpu_isa isa : supported_cpu_isas()) {
            INFO("cpu kernels " << name(isa));
            cpu fast;
            fast.set_isa(isa);
            REQUIRE(S > 2 * fast.attention_tile_q());
            tensor o2(shape{S, H, d}), ph2(shape{H, S, S}), m2(shape{S, S}), p2(shape{2, H, S});
            fast.attention(q, k, v, o2.v(), args(ph2, m2, p2));
            REQUIRE(compare(o2.cv(), o1.cv()).rel() < kTol);
            REQUIRE(compare(ph2.cv(), ph1.cv()).max_abs < 1e-6);
            REQUIRE(compare(m2.cv(), m1.cv()).max_abs < 1e-6);
            REQUIRE(compare(p2.cv(), p1.cv()).rel() < kTol);
        }
        if (variant == 2) REQUIRE(ph1.at({0, 10, 45}) == 0.0f);  // across segments: no attention
    }
}

TEST_CASE("backends reject mis-shaped arguments with a message naming the shapes", "[backend][errors]") {
    cpu be;
    tensor a(shape{3, 4}), b(shape{5, 4}), c(shape{3, 6});
    REQUIRE_THROWS_WITH(be.gemm(a.cv(), b.cv(), c.v(), gemm_args{.trans_b = true}, cview{}),
                        Catch::Contains("does not give C [3, 6]"));
    reference ref;
    REQUIRE_THROWS_WITH(ref.gemm(a.cv(), b.cv(), c.v(), gemm_args{.trans_b = true}, cview{}),
                        Catch::Contains("does not give C [3, 6]"));
    tensor w(shape{5});
    REQUIRE_THROWS_WITH(be.rms_norm(a.cv(), w.cv(), 1e-6f, a.v()), Catch::Contains("weight [5]"));
}
