// The cpu backend's run-time choice of SIMD kernels (backend/cpu/isa.hpp): every level the CPU
// has is run by the op table (op_table.hpp); this file checks the choosing itself and
// says, visibly, which levels this machine cannot test.

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <glimpse/backend/cpu.hpp>

using namespace glimpse;

TEST_CASE("cpu ISA levels: the ones this CPU has are tested, the others are named as skipped", "[backend][isa]") {
    const auto levels = supported_cpu_isas();
    REQUIRE(!levels.empty());
    CHECK(levels.front() == cpu_isa::sse2);
    for (cpu_isa i : all_cpu_isas)
        if (!detail::cpu_impl::cpu_has(i))
            std::printf("cpu kernels %s: not on this CPU, its cases skipped (%s)\n", std::string(name(i)).c_str(),
                        describe_cpu_isa(detail::cpu_impl::best_isa()).c_str());
    // Levels contain the ones before them.
    for (std::size_t j = 1; j < levels.size(); ++j)
        CHECK(static_cast<int>(levels[j]) == static_cast<int>(levels[j - 1]) + 1);
    CHECK(detail::cpu_impl::best_isa() == levels.back());
}

TEST_CASE("cpu ISA: each level runs its own kernel width", "[backend][isa]") {
    // 4, 8, 16 lanes x 4 vectors of queries per attention tile: the three copies are distinct code
    // (avx512_bf16 and amx run the avx512 attention; they differ in gemm).
    const std::int64_t tile[] = {16, 32, 64, 64, 64};
    for (cpu_isa i : supported_cpu_isas()) {
        cpu be;
        be.set_isa(i);
        CHECK(be.isa() == i);
        CHECK(be.attention_tile_q() == tile[static_cast<int>(i)]);
        CHECK(be.bf16_gemm_native() == (i >= cpu_isa::avx512_bf16));
    }
}

TEST_CASE("cpu ISA: GLIMPSE_CPU_ISA names a level, and a wrong one is an error, not a step down", "[backend][isa]") {
    for (cpu_isa i : all_cpu_isas) {
        if (detail::cpu_impl::cpu_has(i)) {
            CHECK(detail::cpu_impl::parse_isa(name(i)) == i);
        } else {
            REQUIRE_THROWS_WITH(detail::cpu_impl::parse_isa(name(i)),
                                Catch::Contains("this CPU does not run the " + std::string(name(i)) + " kernels"));
            cpu be;
            REQUIRE_THROWS_WITH(be.set_isa(i), Catch::Contains("does not run the " + std::string(name(i))));
            CHECK(be.isa() == detail::cpu_impl::default_isa());  // unchanged
        }
    }
    REQUIRE_THROWS_WITH(detail::cpu_impl::parse_isa("AVX512"),
                        Catch::Contains("not a level (sse2, avx2, avx512, avx512_bf16, amx)"));
    REQUIRE_THROWS_WITH(detail::cpu_impl::parse_isa("avx-512"), Catch::Contains("not a level"));
    // What a default backend runs: the environment's level, else the best.
    const char* e = std::getenv("GLIMPSE_CPU_ISA");
    const cpu_isa expect = e && *e ? detail::cpu_impl::parse_isa(e) : detail::cpu_impl::best_isa();
    CHECK(cpu{}.isa() == expect);
    std::printf("cpu kernels for this run: %s\n", describe_cpu_isa(expect).c_str());
}
