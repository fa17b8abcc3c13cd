// What the op table (test_op_table.cpp) does not say: exact results the cpu kernels promise at
// every SIMD level beyond a tolerance, the tiling the attention cases rely on, and the errors a
// bad call gets. Every op's values against the reference are the table's.

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "backend/op_cases.hpp"
#include "test_util.hpp"

using namespace glimpse;
using test::randn;

TEST_CASE("cpu softmax rows at every level: masked keys are exactly 0, a dominant logit exactly 1", "[backend][ops]") {
    for (const std::int64_t n : {std::int64_t{5}, std::int64_t{1157}}) {
        INFO("row of " << n);
        const tensor logits = test::detail_cases::masked_logits(n);
        for (cpu_isa isa : supported_cpu_isas()) {
            cpu be;
            be.set_isa(isa);
            tensor o(logits.shape());
            be.copy(logits.cv(), o.v());
            be.softmax_rows(o.v(), 1.0f);
            INFO("cpu kernels " << name(isa));
            for (std::int64_t i = 0; i < n; i += 3) REQUIRE(o.at({0, i}) == 0.0f);
            REQUIRE(o.at({2, n - 1}) == 1.0f);
        }
    }
}

TEST_CASE("attention cases span several query tiles at every level, and segments do not attend across",
          "[backend][attention]") {
    // The table's attention cases have 150 queries: more than two tiles of every level's kernel.
    for (cpu_isa isa : supported_cpu_isas()) {
        cpu be;
        be.set_isa(isa);
        REQUIRE(150 > 2 * be.attention_tile_q());
    }
    const std::int64_t S = 150, H = 3, d = 8;
    tensor qkv = randn(shape{S, 3, H, d}, 17);
    const std::vector<std::int64_t> seg{0, 40, 40, 107, 150};
    for (cpu_isa isa : supported_cpu_isas()) {
        cpu be;
        be.set_isa(isa);
        tensor o(shape{S, H, d}), ph(shape{H, S, S});
        attention_args a{0.35f, {}, seg, {}};
        a.maps.per_head = ph.v();
        be.attention(qkv.cv().select(1, 0), qkv.cv().select(1, 1), qkv.cv().select(1, 2), o.v(), a);
        INFO("cpu kernels " << name(isa));
        REQUIRE(ph.at({0, 10, 45}) == 0.0f);    // query in [0, 40), key in [40, 107)
        REQUIRE(ph.at({2, 120, 100}) == 0.0f);  // query in [107, 150), key in [40, 107)
        REQUIRE(ph.at({1, 50, 100}) > 0.0f);
    }
}

TEST_CASE("gather_rows refuses an index outside the source", "[backend][ops][errors]") {
    tensor x = randn(shape{9, 3, 16}, 14);
    tensor o(shape{2, 3, 16});
    const std::vector<std::int64_t> bad{0, 9};
    cpu be;
    REQUIRE_THROWS_WITH(be.gather_rows(x.cv(), bad, o.v()), Catch::Contains("index 9 outside [0, 9)"));
    reference ref;
    REQUIRE_THROWS_WITH(ref.gather_rows(x.cv(), bad, o.v()), Catch::Contains("index 9 outside [0, 9)"));
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

TEST_CASE("views as rows: leading dims collapse, size-1 dims take any stride", "[backend][core]") {
    tensor t(shape{4, 3, 10});
    std::int64_t m = 0, n = 0, ld = 0;
    REQUIRE(t.cv().rows(m, n, ld));
    CHECK((m == 12 && n == 10 && ld == 10));
    REQUIRE(t.cv().slice(2, 2, 9).select(0, 1).rows(m, n, ld));  // [3, 7] rows 10 apart
    CHECK((m == 3 && n == 7 && ld == 10));
    REQUIRE(t.cv().slice(2, 2, 9).rows(m, n, ld));  // [4, 3, 7]: still rows 10 apart
    CHECK((m == 12 && n == 7 && ld == 10));
    CHECK_FALSE(t.cv().slice(1, 0, 2).rows(m, n, ld));   // [4, 2, 10]: 2 rows of 10, then a jump of 30
    CHECK_FALSE(t.cv().transpose(0, 2).rows(m, n, ld));  // inner stride 30
    // A size-1 dim with an odd stride (what select / slice leave) does not break the collapse.
    const cview one(t.data(), dtype::f32, shape{4, 1, 10}, strides_t{30, 7, 1});
    REQUIRE(one.rows(m, n, ld));
    CHECK((m == 4 && n == 10 && ld == 30));
    const cview vec(t.data(), dtype::f32, shape{10});
    REQUIRE(vec.rows(m, n, ld));
    CHECK((m == 1 && n == 10 && ld == 10));
}
