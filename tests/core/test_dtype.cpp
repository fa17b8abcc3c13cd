#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <glimpse/core/dtype.hpp>
#include <glimpse/core/random.hpp>

using glimpse::bf16_t;
using glimpse::f16_t;

namespace {
// Independent oracle: round x to the nearest value representable with `mant` mantissa
// bits and the given exponent range, ties to even, by exhaustive neighbour search in double.
double round_to_format(double x, int mant, int emin, int emax) {
    if (x == 0) return x;
    const double a = std::abs(x);
    int e = std::ilogb(a);
    if (e < emin) e = emin;  // subnormal range: fixed quantum
    const double q = std::ldexp(1.0, e - mant);
    double lo = std::floor(a / q) * q, hi = lo + q;
    double r = (a - lo < hi - a) ? lo : (a - lo > hi - a) ? hi : (std::fmod(lo / q, 2.0) == 0 ? lo : hi);
    if (r >= std::ldexp(2.0, emax)) r = INFINITY;
    return std::copysign(r, x);
}
}  // namespace

TEST_CASE("bf16 conversion rounds to nearest even and keeps NaN/inf", "[core][dtype]") {
    glimpse::rng g(7);
    for (int i = 0; i < 200000; ++i) {
        const float x = static_cast<float>(g.normal() * std::pow(10.0, g.uniform(-30, 30)));
        const double want = round_to_format(x, 7, -126, 127);
        REQUIRE(glimpse::to_f32(glimpse::to_bf16(x)) == static_cast<float>(want));
    }
    REQUIRE(std::isnan(glimpse::to_f32(glimpse::to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    REQUIRE(glimpse::to_f32(glimpse::to_bf16(INFINITY)) == INFINITY);
    REQUIRE(glimpse::to_bf16(1.0f).bits == 0x3f80);
    // exact tie 1 + 2^-8 rounds down to even (1.0), 1 + 3*2^-8 rounds up
    REQUIRE(glimpse::to_f32(glimpse::to_bf16(1.0f + 0x1p-8f)) == 1.0f);
    REQUIRE(glimpse::to_f32(glimpse::to_bf16(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);
}

TEST_CASE("f16 conversion is exact on every f16 value and rounds like IEEE", "[core][dtype]") {
    for (std::uint32_t b = 0; b < 0x10000; ++b) {
        const f16_t h{static_cast<std::uint16_t>(b)};
        const float f = glimpse::to_f32(h);
        if (std::isnan(f)) {
            REQUIRE(std::isnan(glimpse::to_f32(glimpse::to_f16(f))));
            continue;
        }
        REQUIRE(glimpse::to_f16(f).bits == h.bits);  // round trip of every finite value and inf
    }
    glimpse::rng g(11);
    for (int i = 0; i < 200000; ++i) {
        const float x = static_cast<float>(g.normal() * std::pow(2.0, g.uniform(-28, 17)));
        const double want = round_to_format(x, 10, -14, 15);
        REQUIRE(glimpse::to_f32(glimpse::to_f16(x)) == static_cast<float>(want));
    }
    REQUIRE(glimpse::to_f32(glimpse::to_f16(65520.0f)) == INFINITY);  // rounds past max -> inf
    REQUIRE(glimpse::to_f32(glimpse::to_f16(65519.0f)) == 65504.0f);
}
