// Box -> patch heatmap preparation from arbitrary doubles: box corners, image size,
// a grid of 1..256 x 1..256, both box modes, then every normalisation. A map is
// either an error or finite everywhere.
#include <cmath>
#include <cstring>

#include <glimpse/heatmap/prepare.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 6 * sizeof(double) + 3) return 0;
    double v[6];
    std::memcpy(v, data, sizeof v);
    const std::int64_t gh = 1 + data[48], gw = 1 + data[49];
    const auto mode = data[50] & 1 ? glimpse::heatmap::box_mode::binary : glimpse::heatmap::box_mode::coverage;
    try {
        const glimpse::tensor h = glimpse::heatmap::box_heatmap({v[0], v[1], v[2], v[3]}, v[4], v[5], gh, gw, mode);
        for (std::int64_t i = 0; i < h.numel(); ++i)
            if (!std::isfinite(h.ptr<float>()[i])) __builtin_trap();  // a silent NaN is a finding
        for (const auto n : {glimpse::heatmap::normalization::none, glimpse::heatmap::normalization::max_one,
                             glimpse::heatmap::normalization::min_max, glimpse::heatmap::normalization::sum_one}) {
            try {
                (void)glimpse::heatmap::normalize(h.cv(), n);
            } catch (const glimpse::error&) {
            }
        }
    } catch (const glimpse::error&) {
    }
    return 0;
}
