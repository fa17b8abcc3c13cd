#pragma once
// rng: a small, seeded, platform-independent generator (splitmix64). The
// standard distributions are implementation-defined, so weights initialised
// from a seed would differ between standard libraries; these do not.

#include <cmath>
#include <cstdint>

namespace glimpse {

class rng {
public:
    explicit rng(std::uint64_t seed = 0) : state_(seed) {}

    std::uint64_t next_u64() noexcept {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) noexcept { return lo + (hi - lo) * uniform(); }
    // Standard normal (Box-Muller; the second value is discarded for simplicity).
    double normal() noexcept {
        double u1 = uniform();
        while (u1 <= 0.0) u1 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * uniform());
    }

private:
    std::uint64_t state_;
};

}  // namespace glimpse
