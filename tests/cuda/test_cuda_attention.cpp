// The cuda backend's attention against the cpu backend: the plain reference kernel (any
// head dim; f32 throughout) and the tensor-core flash kernel (d = 64, 72, 80, 128; bf16 /
// f16), with masks, segments (empty, one-token, multi-tile, Sq != Sk without segments),
// strided heads of a fused qkv, and every attention map. Tolerances: cuda_test_util.hpp.

#include <cmath>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/cuda/flash_attention.hpp>

#include "cuda/cuda_test_util.hpp"

using namespace glimpse;
using test::compare;
using test::randn;

namespace {

struct maps_out {
    tensor per_head, mean, pooled;
};

// One attention call on the cpu (host tensors) and on the cuda backend (uploaded copies),
// q/k/v as strided [S, H, d] views of fused [S, 3, H, d] tensors of dtype t.
struct attention_case {
    std::int64_t sq, sk, h, d;
    dtype t = dtype::f32;
    bool mask = false;
    std::vector<std::int64_t> segments;
    bool maps = true;
    float scale = 0.0f;  // 0: 1 / sqrt(d)
};

void run_case(const attention_case& c, const cuda_options& opt, double tol_out, double tol_maps) {
    INFO("Sq=" << c.sq << " Sk=" << c.sk << " H=" << c.h << " d=" << c.d << " dtype=" << name(c.t) << " mask=" << c.mask
               << " segments=" << c.segments.size() << " reference=" << opt.attention_reference);
    const tensor qf = randn(shape{c.sq, 3, c.h, c.d}, 31, 1.0f, c.t),
                 kvf = randn(shape{c.sk, 3, c.h, c.d}, 32, 1.0f, c.t);
    const tensor mask = randn(shape{c.sq, c.sk}, 33, 2.0f), qw = randn(shape{2, c.sq}, 34);
    const float scale = c.scale != 0.0f ? c.scale : 1.0f / std::sqrt(static_cast<float>(c.d));
    auto args = [&](const cview& m, const cview& w, maps_out* mo, auto&& as_view) {
        attention_args a{scale, c.mask ? m : cview{}, {}, {}};
        if (!c.segments.empty()) a.segments = c.segments;
        if (mo) {
            a.maps.per_head = as_view(mo->per_head);
            a.maps.mean = as_view(mo->mean);
            a.maps.query_weights = w;
            a.maps.pooled = as_view(mo->pooled);
        }
        return a;
    };
    // cpu
    cpu cb;
    tensor o_ref(shape{c.sq, c.h, c.d});
    maps_out m_ref{tensor(shape{c.h, c.sq, c.sk}), tensor(shape{c.sq, c.sk}), tensor(shape{2, c.h, c.sk})};
    cb.attention(qf.cv().select(1, 0), kvf.cv().select(1, 1), kvf.cv().select(1, 2), o_ref.v(),
                 args(mask.cv(), qw.cv(), c.maps ? &m_ref : nullptr, [](tensor& t) { return t.v(); }));
    // cuda
    cuda g(opt);
    const auto dq = g.upload(qf.cv()), dkv = g.upload(kvf.cv()), dm = g.upload(mask.cv()), dw = g.upload(qw.cv());
    auto o = g.alloc(o_ref.shape(), dtype::f32);
    g.fill(o.v(), NAN);  // poisoned: every element must be written
    device_tensor ph = g.alloc(shape{c.h, c.sq, c.sk}, dtype::f32), mn = g.alloc(shape{c.sq, c.sk}, dtype::f32),
                  pl = g.alloc(shape{2, c.h, c.sk}, dtype::f32);
    g.fill(ph.v(), NAN);
    g.fill(mn.v(), NAN);
    g.fill(pl.v(), NAN);
    attention_args a{scale, c.mask ? dm.cv() : cview{}, {}, {}};
    if (!c.segments.empty()) a.segments = c.segments;
    if (c.maps) {
        a.maps.per_head = ph.v();
        a.maps.mean = mn.v();
        a.maps.query_weights = dw.cv();
        a.maps.pooled = pl.v();
    }
    g.attention(dq.cv().select(1, 0), dkv.cv().select(1, 1), dkv.cv().select(1, 2), o.v(), a);
    const tensor got = g.download(o.cv());
    const auto e = compare(got.cv(), o_ref.cv());
    INFO("out: max abs " << e.max_abs << ", max ref " << e.max_ref << ", rel " << e.rel() << " (tolerance " << tol_out
                         << ")");
    REQUIRE(e.rel() < tol_out);
    if (!c.maps) return;
    const auto ep = compare(g.download(ph.cv()).cv(), m_ref.per_head.cv());
    const auto em = compare(g.download(mn.cv()).cv(), m_ref.mean.cv());
    const auto eq = compare(g.download(pl.cv()).cv(), m_ref.pooled.cv());
    INFO("maps: per_head max abs " << ep.max_abs << ", mean " << em.max_abs << ", pooled rel " << eq.rel()
                                   << " (tolerance " << tol_maps << ")");
    REQUIRE(ep.max_abs < tol_maps);
    REQUIRE(em.max_abs < tol_maps);
    REQUIRE(eq.rel() < tol_maps);
}

}  // namespace

TEST_CASE("cuda reference attention matches cpu: masks, segments, maps, strided heads", "[cuda][attention]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    const std::vector<std::int64_t> seg{0, 40, 40, 107, 150};
    for (int variant = 0; variant < 3; ++variant)
        run_case({150, 150, 3, 8, dtype::f32, variant == 1, variant == 2 ? seg : std::vector<std::int64_t>{}},
                 cuda_options{}, test::kF32, 1e-5);
    run_case({70, 90, 2, 40, dtype::f32, true, {}}, cuda_options{}, test::kF32,
             1e-5);  // Sq != Sk, d = 40 (no fast kernel)
    run_case({96, 96, 2, 80, dtype::bf16, true, {0, 50, 96}}, cuda_options{.attention_reference = true}, test::kF32,
             1e-5);
}

TEST_CASE("cuda flash attention matches cpu for d = 64, 72, 80, 128 in bf16 and f16", "[cuda][attention][flash]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    // Segments: one token, an empty one, one spanning several 64-query tiles and key tiles.
    const std::vector<std::int64_t> seg{0, 1, 65, 65, 200, 300};
    for (std::int64_t d : {64, 72, 80, 128})
        for (dtype t : {dtype::bf16, dtype::f16}) {
            // Inputs stored in t: the cpu widens them exactly, so the difference is the kernel's
            // own rounding (P to t for the P V product) and summation order.
            run_case({300, 300, 3, d, t, false, seg}, cuda_options{}, test::tol_for(t), 1e-4);
            run_case({150, 200, 2, d, t, true, {}}, cuda_options{}, test::tol_for(t), 1e-4);
            run_case({129, 129, 2, d, t, false, {}, false}, cuda_options{}, test::tol_for(t), 0.0);
        }
}

TEST_CASE("cuda flash attention on f32 inputs rounds them to the compute dtype", "[cuda][attention][flash]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    // q and k rounded to bf16 move the scores by ~|s| 2^-8: twice the bf16 bound.
    run_case({200, 200, 4, 80, dtype::f32, false, {0, 64, 128, 200}}, cuda_options{}, 2 * test::kBf16, 2e-2);
    run_case({200, 200, 4, 72, dtype::f32, true, {}}, cuda_options{.attention_compute = dtype::f16}, 2 * test::kF16,
             4e-3);
}

TEST_CASE("cuda flash and reference kernels agree on windowed attention at Qwen sizes", "[cuda][attention][flash]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    // Qwen2.5-VL-like: 16 heads of 80, 64-token windows with ragged ones at the image edge.
    const std::int64_t S = 1100, H = 16, d = 80;
    std::vector<std::int64_t> seg{0};
    while (seg.back() < S) seg.push_back(std::min<std::int64_t>(S, seg.back() + (seg.size() % 5 == 0 ? 24 : 64)));
    const tensor qkv = randn(shape{S, 3, H, d}, 40, 1.0f, dtype::bf16);
    auto run = [&](bool reference) {
        cuda g(cuda_options{.attention_reference = reference});
        const auto dq = g.upload(qkv.cv());
        auto o = g.alloc(shape{S, H, d}, dtype::f32);
        attention_args a{0.1118f, {}, seg, {}};
        g.attention(dq.cv().select(1, 0), dq.cv().select(1, 1), dq.cv().select(1, 2), o.v(), a);
        return g.download(o.cv());
    };
    const tensor fast = run(false), ref = run(true);
    const auto e = compare(fast.cv(), ref.cv());
    INFO("flash vs reference kernel: rel " << e.rel());
    REQUIRE(e.rel() < test::kBf16);
}

TEST_CASE("flash traits: d = 72 and 80 execute the problem's FLOPs, no padding to 96/128", "[cuda][flash][traits]") {
    // Proven without a device: the step counts the kernel is instantiated with.
    using glimpse::detail::cuda_impl::flash_traits;
    auto mma_flops_per_tile = []<int D>() {
        using T = flash_traits<D>;
        // Q K^T: 64 x 64 scores over k16 steps of 16 and k8 steps of 8; P V: d/8 tiles of 8 columns over 64 keys.
        return 2.0 * T::block_q * T::block_k * (T::k16_steps * 16 + T::k8_steps * 8) +
               2.0 * T::block_q * T::block_k * (T::n_tiles_d * 8);
    };
    CHECK(mma_flops_per_tile.operator()<64>() == 4.0 * 64 * 64 * 64);
    CHECK(mma_flops_per_tile.operator()<72>() == 4.0 * 64 * 64 * 72);
    CHECK(mma_flops_per_tile.operator()<80>() == 4.0 * 64 * 64 * 80);
    CHECK(mma_flops_per_tile.operator()<128>() == 4.0 * 64 * 64 * 128);
    CHECK((flash_traits<72>::k16_steps == 4 && flash_traits<72>::k8_steps == 1 && flash_traits<72>::n_tiles_d == 9));
    CHECK((flash_traits<80>::k16_steps == 5 && flash_traits<80>::k8_steps == 0 && flash_traits<80>::n_tiles_d == 10));
    // Shared memory per block: two stages of K and V tiles, 64 rows of `pitch` halves.
    CHECK(flash_traits<72>::smem_bytes == 2 * 2 * 64 * 72 * 2);
    CHECK(flash_traits<80>::smem_bytes == 2 * 2 * 64 * 88 * 2);
    CHECK(flash_traits<128>::smem_bytes == 2 * 2 * 64 * 136 * 2);
    CHECK(glimpse::detail::cuda_impl::head_dim_switch(80, []<int D>() { return D; }) == 80);
    CHECK_THROWS_WITH(glimpse::detail::cuda_impl::head_dim_switch(96, []<int D>() { return D; }),
                      Catch::Contains("no tensor-core kernel for head dim 96"));
}
