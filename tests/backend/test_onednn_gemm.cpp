// The cpu backend's oneDNN route (cpu/onednn_gemm.hpp), where the build has oneDNN: a Linear's
// gemm with more rows than the skinny kernels take goes to oneDNN's matmul, and gives the
// reference's product (f32 precision, f32 weights) or the f32 sum of bf16-rounded products (bf16
// precision, bf16 weights), with a bias, beta 0, 0.5 and 1, and strided A, B and C. Each case
// also checks that the route was taken (the primitives' call count moved) or, for the products
// it must not take, that it was not.

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "test_util.hpp"

using namespace glimpse;
using test::compare;
using test::randn;

#if defined(GLIMPSE_CPU_ONEDNN)

namespace {

struct route_case {
    std::int64_t m, n, k;
    float alpha, beta;
    bool bias;
};

// C (a column slice of a wider buffer) after gemm(A [m, k] strided, W [n, k] strided rows).
template <class B>
tensor run(B& be, const route_case& c, dtype wt, bool round_inputs) {
    tensor a = randn(shape{c.m, c.k + 7}, 31);
    tensor w = randn(shape{c.n, c.k + 3}, 32, 0.5f, wt);
    tensor bias = randn(shape{c.n}, 33);
    tensor out = randn(shape{c.m, c.n + 5}, 34);
    if (round_inputs) {
        a = a.to(dtype::bf16);
        w = w.to(dtype::bf16);
    }
    be.gemm(a.cv().slice(1, 2, 2 + c.k), w.cv().slice(1, 1, 1 + c.k), out.v().slice(1, 3, 3 + c.n),
            gemm_args{.trans_b = true, .alpha = c.alpha, .beta = c.beta}, c.bias ? bias.cv() : cview{});
    return out;
}

std::int64_t onednn_calls() { return detail::cpu_impl::onednn::matmuls::get().calls(); }

bool cpu_has(cpu_isa i) {
    const auto all = supported_cpu_isas();
    return std::find(all.begin(), all.end(), i) != all.end();
}

}  // namespace

TEST_CASE("cpu gemm on oneDNN: f32 and bf16 products match their oracles, and the route is taken",
          "[backend][gemm][onednn]") {
    const std::vector<route_case> taken = {
        {49, 70, 33, 1.0f, 0.0f, true}, {200, 129, 300, 1.0f, 0.5f, false}, {64, 300, 17, 1.0f, 1.0f, true}};
    reference oracle;
    for (const auto& c : taken) {
        INFO("m=" << c.m << " n=" << c.n << " k=" << c.k << " beta=" << c.beta << " bias=" << c.bias);
        if (cpu_has(cpu_isa::avx512)) {
            cpu be;
            be.set_isa(cpu_isa::avx512);
            be.set_gemm_library(cpu_gemm_library::onednn);
            const auto before = onednn_calls();
            const tensor got = run(be, c, dtype::f32, false);
            CHECK(onednn_calls() == before + 1);
            const tensor want = run(oracle, c, dtype::f32, false);
            const auto e = compare(got.cv(), want.cv());
            test::record_bound(__FILE__, __LINE__, "oneDNN f32 gemm vs reference", e.rel(), test::kF32Op);
            CHECK(e.rel() < test::kF32Op);
            // The columns around the view are untouched.
            for (std::int64_t i = 0; i < c.m; ++i) {
                CHECK(got.at({i, 0}) == want.at({i, 0}));
                CHECK(got.at({i, c.n + 4}) == want.at({i, c.n + 4}));
            }
        }
        if (cpu_has(cpu_isa::avx512_bf16)) {
            cpu be(matmul_precision::bf16);
            be.set_isa(cpu_isa::avx512_bf16);
            be.set_gemm_library(cpu_gemm_library::onednn);
            const auto before = onednn_calls();
            const tensor got = run(be, c, dtype::bf16, false);
            CHECK(onednn_calls() == before + 1);
            const tensor want = run(oracle, c, dtype::bf16, true);  // the f64 product of rounded operands
            const auto e = compare(got.cv(), want.cv());
            test::record_bound(__FILE__, __LINE__, "oneDNN bf16 gemm vs rounded oracle", e.rel(), test::kF32Op);
            CHECK(e.rel() < test::kF32Op);
            // and our own kernels agree with it at the same bound
            be.set_gemm_library(cpu_gemm_library::own);
            const tensor own = run(be, c, dtype::bf16, false);
            CHECK(compare(own.cv(), want.cv()).rel() < test::kF32Op);
        }
    }
    if (!cpu_has(cpu_isa::avx512)) WARN("this CPU has no AVX-512: the oneDNN route is not taken here: test skipped");
}

TEST_CASE("cpu gemm on oneDNN: the products it must leave to glimpse's kernels stay there", "[backend][gemm][onednn]") {
    if (!cpu_has(cpu_isa::avx512)) {
        WARN("this CPU has no AVX-512: test skipped");
        return;
    }
    cpu be;
    be.set_isa(cpu_isa::avx512);
    be.set_gemm_library(cpu_gemm_library::onednn);
    const auto before = onednn_calls();
    (void)run(be, {48, 70, 33, 1.0f, 0.0f, true}, dtype::f32, false);    // the skinny kernels' rows
    (void)run(be, {100, 70, 33, 1.5f, 0.0f, true}, dtype::f32, false);   // alpha != 1
    (void)run(be, {100, 70, 33, 1.0f, 0.0f, true}, dtype::bf16, false);  // bf16 weights, f32 precision
    be.set_gemm_library(cpu_gemm_library::own);
    (void)run(be, {100, 70, 33, 1.0f, 0.0f, true}, dtype::f32, false);  // the library is own
    CHECK(onednn_calls() == before);
    CHECK(std::string(name(cpu_gemm_library::onednn)) == "onednn");
}

#else

TEST_CASE("cpu gemm on oneDNN: not in this build", "[backend][gemm][onednn]") {
    cpu be;
    CHECK(be.gemm_library() == cpu_gemm_library::own);
    CHECK_THROWS_WITH(be.set_gemm_library(cpu_gemm_library::onednn), Catch::Contains("no oneDNN"));
    WARN("this build has no oneDNN (libdnnl-dev): the route's tests are skipped: test skipped");
}

#endif
