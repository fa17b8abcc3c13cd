// The caching arena: a second forward of the same shapes makes no cudaMalloc; blocks come
// back on release; trim returns them to the driver.

#include <glimpse/nn/linear.hpp>

#include "cuda/cuda_test_util.hpp"

using namespace glimpse;

TEST_CASE("cuda arena: the steady state makes no cudaMalloc", "[cuda][arena]") {
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    cuda be;
    rng g(1);
    const auto lin = nn::linear<cuda>::init(be, 256, 512, true, g);
    const tensor xh = test::randn(shape{300, 256}, 2);
    auto step = [&] {
        const auto x = be.upload(xh.cv());
        auto y = lin(be, x.cv());
        be.activate(activation::silu, y.cv(), y.v());
        return be.download(y.cv());
    };
    const tensor first = step();
    const auto s1 = be.arena().stats();
    const tensor second = step();
    const auto s2 = be.arena().stats();
    CHECK(s2.device_mallocs == s1.device_mallocs);
    CHECK(s2.reuses > s1.reuses);
    CHECK(test::compare(second.cv(), first.cv()).max_abs == 0.0);
    be.synchronize();
    be.arena().trim();
    CHECK(be.arena().stats().cached == 0);
}

TEST_CASE("cuda arena: rounding and reuse across sizes", "[cuda][arena]") {
    using detail::cuda_impl::device_arena;
    CHECK(device_arena::rounded(1) == 512);
    CHECK(device_arena::rounded(513) == 1024);
    CHECK(device_arena::rounded((1 << 20) + 1) == (2u << 20));
    GLIMPSE_REQUIRE_CUDA_DEVICE();
    cuda be;
    auto& a = be.arena();
    void* p = a.allocate(1000, be.stream());
    a.release(p, 1000, be.stream());
    void* q = a.allocate(900, be.stream());  // same 1024-byte bin: the same block
    CHECK(q == p);
    a.release(q, 900, be.stream());
    CHECK(a.stats().in_use == 0);
}
