#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include <glimpse/core/tensor.hpp>

using namespace glimpse;

TEST_CASE("tensor owns zeroed aligned storage and views slice without copying", "[core][tensor]") {
    tensor t(shape{4, 6});
    REQUIRE(t.numel() == 24);
    REQUIRE(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
    for (std::int64_t i = 0; i < 24; ++i) REQUIRE(t.ptr<float>()[i] == 0.0f);
    for (std::int64_t i = 0; i < 24; ++i) t.ptr<float>()[i] = static_cast<float>(i);

    view cols = t.v().slice(1, 2, 5);  // [4, 3], row stride 6
    REQUIRE(cols.shape() == shape{4, 3});
    REQUIRE(cols.stride(0) == 6);
    REQUIRE_FALSE(cols.is_contiguous());
    REQUIRE(cols.at({1, 0}) == 8.0f);

    view row = t.v().select(0, 2);
    REQUIRE(row.shape() == shape{6});
    REQUIRE(row.at({5}) == 17.0f);

    view tr = t.v().transpose(0, 1);
    REQUIRE(tr.shape() == shape{6, 4});
    REQUIRE(tr.at({5, 1}) == 11.0f);

    REQUIRE(t.v().reshape(shape{2, 3, 4}).at({1, 0, 0}) == 12.0f);
    REQUIRE_THROWS_AS(cols.reshape(shape{12}), error);
    REQUIRE_THROWS_WITH(t.v().slice(1, 4, 7), Catch::Contains("outside shape [4, 6]"));
    REQUIRE_THROWS_AS(t.at({4, 0}), error);
    REQUIRE_THROWS_WITH(t.v().ptr<bf16_t>(), Catch::Contains("accessed as bf16"));
}

TEST_CASE("tensor dtype conversion and shape validation", "[core][tensor]") {
    tensor t = tensor::from(shape{3}, std::vector<float>{1.0f, 1.00390625f, -2.5f});
    tensor b = t.to(dtype::bf16);
    REQUIRE(b.nbytes() == 6);
    REQUIRE(b.at({1}) == 1.0f);  // 1 + 2^-8 is a tie: rounds to even
    REQUIRE(b.at({2}) == -2.5f);
    tensor h = t.to(dtype::f16);
    REQUIRE(h.at({1}) == 1.00390625f);  // representable in f16
    REQUIRE_THROWS_WITH(shape({1, -2}), Catch::Contains("negative extent"));
    REQUIRE_THROWS_WITH((shape{1ll << 40, 1ll << 40}.numel()), Catch::Contains("64 bits"));
    REQUIRE_THROWS_AS(shape({1, 2, 3, 4, 5, 6, 7}), error);
    tensor c = t.clone();
    c.set({0}, 5.0f);
    REQUIRE(t.at({0}) == 1.0f);
}

TEST_CASE("large tensors reuse kept blocks, zeroed again, and the idle memory is capped", "[core][tensor]") {
    using detail::host_blocks;
    if (host_blocks::kMinBytes == SIZE_MAX) {
        std::printf("AddressSanitizer build: no block is kept (test skipped)\n");
        return;
    }
    trim_host_blocks();
    REQUIRE(kept_host_block_bytes() == 0);
    const std::int64_t n = 1 << 20;  // 4 MiB of f32
    const std::byte* first = nullptr;
    {
        tensor a(shape{n});
        first = a.data();
        a.ptr<float>()[n - 1] = 3.0f;
    }
    CHECK(kept_host_block_bytes() == static_cast<std::size_t>(n) * 4);
    {
        tensor b(shape{n});
        CHECK(b.data() == first);              // the kept block, taken again
        CHECK(b.ptr<float>()[n - 1] == 0.0f);  // and zeroed like a new one
        CHECK(kept_host_block_bytes() == 0);
        tensor c(shape{n / 2});  // half the size: not a fit for a kept 4 MiB block, and nothing is kept
        CHECK(c.data() != first);
    }
    // Small blocks are malloc's business; blocks past the cap are freed oldest first.
    { tensor small(shape{1000}); }
    CHECK(kept_host_block_bytes() == static_cast<std::size_t>(n) * 4 + static_cast<std::size_t>(n) * 2);
    auto& hb = host_blocks::instance();
    for (int i = 0; i < 3; ++i)
        hb.give(std::aligned_alloc(64, host_blocks::kKeptBytesMax / 2), host_blocks::kKeptBytesMax / 2);
    CHECK(kept_host_block_bytes() <= host_blocks::kKeptBytesMax);
    trim_host_blocks();
    CHECK(kept_host_block_bytes() == 0);
}
