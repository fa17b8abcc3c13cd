// The op table (tests/backend/op_cases.hpp) for the cuda backend, against `reference` case by
// case with guard bands around every output (device memory: ASan cannot see a write past it),
// twice: with its default options (tensor cores: activations rounded to bf16/f16 weights, the
// flash attention in bf16) and with the plain f32 kernels only (every case at f32 tolerance).
// Then what the table does not say: TF32, the errors, and memory round trips.
// Tolerances: cuda_test_util.hpp.

#include <cmath>
#include <cstdio>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "backend/op_table.hpp"
#include "cuda/cuda_test_util.hpp"

using namespace glimpse;
using test::compare;
using test::randn;

TEST_CASE("op table: cuda against reference, tensor-core defaults and plain f32 kernels", "[cuda][ops][table]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    // Default options: gemm with narrow weights rounds the activations to their dtype; the flash
    // kernel rounds f32 q and k to bf16, moving the scores by ~|s| 2^-8: twice the bf16 bound.
    const auto fast_tol = [](const test::op_case& c) {
        if (c.op == "attention") return 2 * test::kBf16;
        return std::max(c.tol, c.op == "gemm" ? test::tol_for(c.rounds_to) : test::kF32);
    };
    const auto f32_tol = [](const test::op_case& c) { return std::max(c.tol, test::kF32); };
    const std::vector<test::backend_under_test<cuda>> backends{
        {"cuda (tensor cores)", [] { return cuda(); }, fast_tol},
        {"cuda (plain f32 kernels)",
         [] { return cuda(cuda_options{.narrow_activations = false, .attention_reference = true}); }, f32_tol}};
    const auto stats = test::run_op_table(backends);
    std::printf("op table: %lld cases over %zu ops on cuda (forward-only: no TrainingBackend cases)\n",
                static_cast<long long>(stats.cases), stats.ops.size());
}

TEST_CASE("cuda says when attention falls back to the plain kernel, and why", "[cuda][attention]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    cuda g;
    const tensor qkv = randn(shape{70, 3, 2, 40}, 1);
    const auto d = g.upload(qkv.cv());
    auto o = g.alloc(shape{70, 2, 40}, dtype::f32);
    REQUIRE(g.fallbacks().empty());
    g.attention(d.cv().select(1, 0), d.cv().select(1, 1), d.cv().select(1, 2), o.v(), attention_args{0.2f, {}, {}, {}});
    REQUIRE(g.fallbacks().size() == 1);
    CHECK_THAT(g.fallbacks().begin()->first, Catch::Contains("head dim 40 has no tensor-core kernel"));
    CHECK(g.fallbacks().begin()->second == 1);
    // Asked for explicitly, the plain kernel is not a fallback.
    cuda plain(cuda_options{.attention_reference = true});
    const auto d2 = plain.upload(qkv.cv());
    auto o2 = plain.alloc(shape{70, 2, 40}, dtype::f32);
    plain.attention(d2.cv().select(1, 0), d2.cv().select(1, 1), d2.cv().select(1, 2), o2.v(),
                    attention_args{0.2f, {}, {}, {}});
    CHECK(plain.fallbacks().empty());
}

TEST_CASE("cuda TF32 gemm (opt-in) against cpu", "[cuda][gemm]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    tensor x = randn(shape{64, 256}, 8), w = randn(shape{96, 256}, 9);
    cpu c;
    tensor ref(shape{64, 96});
    c.gemm(x.cv(), w.cv(), ref.v(), gemm_args{.trans_b = true}, cview{});
    cuda g(cuda_options{.tf32 = true});
    const auto dx = g.upload(x.cv()), dw = g.upload(w.cv());
    auto out = g.alloc(shape{64, 96}, dtype::f32);
    g.gemm(dx.cv(), dw.cv(), out.v(), gemm_args{.trans_b = true}, cview{});
    const auto e = compare(g.download(out.cv()).cv(), ref.cv());
    INFO("tf32: rel " << e.rel());
    REQUIRE(e.max_ref > 0);
    REQUIRE(e.rel() < test::kF16);
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
