// bf16 attention precision (cpu::set_attention_precision(matmul_precision::bf16)): q, k, v and
// the probabilities that weight v are rounded to bf16 for the two products, sums, softmax and
// maps in f32 (cpu/attention_kernel.inc). Held, at every SIMD level this CPU runs (VDPBF16PS at
// avx512_bf16 and above, the f32 kernel on rounded values below), to the reference backend run
// on the rounded q, k, v:
//  * the maps are f32 softmaxes of exact-product scores: within kF32Op of the oracle's;
//  * the output differs from the oracle's only by the probabilities' rounding (2^-9 relative
//    each, averaged over the keys): 4e-3 of max |out| (measured below, see the INFO);
//  * and it did round: the output is further than 1e-4 from the f32 kernel's.
// The VDPBF16PS kernel and the emulation round the same operands; their scores differ in the
// last f32 bits (pairs summed in another order; the emulation scales q before the product, the
// VDPBF16PS kernel the score after it), so now and then a probability lands on the other side of
// a bf16 rounding boundary and moves by 2^-8: measured up to 5.8e-4 apart (d = 7, segments),
// bound 2e-3.

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "test_util.hpp"

using namespace glimpse;
using test::compare;
using test::randn;

namespace {

struct attn_out {
    tensor out, per_head, pooled;
};

template <class B>
attn_out run(B& be, const tensor& qkv, const tensor& mask, const tensor& qw, int variant) {
    const std::int64_t S = qkv.size(0), H = qkv.size(2), d = qkv.size(3);
    static const std::vector<std::int64_t> seg{0, 40, 40, 107, 150};
    attn_out o{tensor(shape{S, H, d}), tensor(shape{H, S, S}), tensor(shape{2, H, S})};
    attention_args a{1.0f / std::sqrt(static_cast<float>(d)), variant == 1 ? mask.cv() : cview{}, {}, {}};
    if (variant == 2) a.segments = seg;
    a.maps.per_head = o.per_head.v();
    a.maps.query_weights = qw.cv();
    a.maps.pooled = o.pooled.v();
    be.attention(qkv.cv().select(1, 0), qkv.cv().select(1, 1), qkv.cv().select(1, 2), o.out.v(), a);
    return o;
}

}  // namespace

TEST_CASE("bf16 attention precision: rounded operands, f32 sums, at every level", "[backend][attention][bf16]") {
    // 150 queries and keys: several query tiles, two key blocks of 128 (odd tails of 22 keys);
    // d = 72 and 80 (the towers') and 7 (an odd channel count: a half pair).
    for (const std::int64_t d : {std::int64_t{72}, std::int64_t{80}, std::int64_t{7}}) {
        const std::int64_t S = 150, H = 2;
        const tensor qkv = randn(shape{S, 3, H, d}, 41, 1.5f), mask = randn(shape{S, S}, 42, 2.0f),
                     qw = randn(shape{2, S}, 43);
        const tensor qkv_r = qkv.to(dtype::bf16).to(dtype::f32);
        for (int variant = 0; variant < 3; ++variant) {
            INFO("d " << d << ", variant " << variant << " (0 plain, 1 mask, 2 segments)");
            reference ref;
            const attn_out want = run(ref, qkv_r, mask, qw, variant);
            std::vector<attn_out> by_level;
            for (cpu_isa isa : supported_cpu_isas()) {
                INFO("cpu kernels " << name(isa));
                cpu be;
                be.set_isa(isa);
                const attn_out exact = run(be, qkv, mask, qw, variant);
                be.set_attention_precision(matmul_precision::bf16);
                REQUIRE(be.attention_precision() == matmul_precision::bf16);
                attn_out got = run(be, qkv, mask, qw, variant);
                const auto eo = compare(got.out.cv(), want.out.cv());
                const auto em = compare(got.per_head.cv(), want.per_head.cv());
                const auto ep = compare(got.pooled.cv(), want.pooled.cv());
                const auto moved = compare(got.out.cv(), exact.out.cv());
                INFO("out vs oracle on rounded q, k, v: rel " << eo.rel() << "; maps: per_head " << em.rel()
                                                              << ", pooled " << ep.rel() << "; out vs f32 kernel "
                                                              << moved.rel());
                test::record_bound(__FILE__, __LINE__, "bf16 attention out", eo.rel(), 4e-3);
                test::record_bound(__FILE__, __LINE__, "bf16 attention per_head map", em.rel(), test::kF32Op);
                REQUIRE(eo.rel() < 4e-3);
                REQUIRE(em.rel() < test::kF32Op);
                REQUIRE(ep.rel() < test::kF32Op);
                REQUIRE(moved.rel() > 1e-4);
                by_level.push_back(std::move(got));
            }
            // Every level against the first (sse2: the emulation).
            for (std::size_t i = 1; i < by_level.size(); ++i) {
                const auto e = compare(by_level[i].out.cv(), by_level[0].out.cv());
                INFO("level " << name(supported_cpu_isas()[i]) << " vs sse2: rel " << e.rel());
                test::record_bound(__FILE__, __LINE__, "bf16 attention level vs emulation", e.rel(), 2e-3);
                REQUIRE(e.rel() < 2e-3);
            }
        }
    }
}

TEST_CASE("bf16 attention precision is the backend's: f32 by default, and apart from matmul precision",
          "[backend][attention][bf16]") {
    cpu be;
    CHECK(be.attention_precision() == matmul_precision::f32);
    cpu b2(matmul_precision::bf16);
    CHECK(b2.attention_precision() == matmul_precision::f32);
    b2.set_attention_precision(matmul_precision::bf16);
    CHECK(b2.matmul_precision() == matmul_precision::bf16);
    CHECK(b2.attention_precision() == matmul_precision::bf16);
}
