#include <catch2/catch.hpp>

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
