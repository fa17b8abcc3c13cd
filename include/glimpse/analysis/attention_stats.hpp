#pragma once
// Statistics of an attention map over the patch grid, and of a sample of them.
//
// A map is grid_h x grid_w non-negative values in raster order that sum to 1
// (the head's attention of a query set, averaged over heads). Boxes are in
// pixels of the original image_w x image_h image; patch (r, c) covers
// [c W/gw, (c+1) W/gw) x [r H/gh, (r+1) H/gh) of it (the resize to the grid is
// a uniform scaling, heatmap/prepare.hpp).
//
//   mass_in_box   sum_p a_p * coverage_p(box): the attention that falls inside
//                 the box, patches cut by the box edge counted by the fraction
//                 of their area inside (exact for a map constant per patch).
//                 THE mass in a box: every tool prints this one.
//   mass_on_patches
//                 sum_p a_p over the patches a mask marks, each whole: on the
//                 patches a box touches, >= mass_in_box (glimpse-train's
//                 objective m is this, on the box's patches)
//   area_fraction the box's share of the image: the mass a uniform map gives it
//   entropy       -sum_p a_p ln a_p (nats); normalised by ln(S): 1 = uniform
//   peak          the patch with the largest value (first in raster order on
//                 ties), and its centre in original-image pixels

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "glimpse/core/box.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/random.hpp"

namespace glimpse::analysis {

struct grid_geometry {
    std::int64_t grid_h = 0, grid_w = 0;
    double image_w = 0, image_h = 0;  // original image, pixels
    std::int64_t patches() const { return grid_h * grid_w; }
};

struct peak_location {
    std::int64_t row = 0, col = 0;  // patch grid
    double x = 0, y = 0;            // patch centre in original-image pixels
    double value = 0;
};

struct map_stats {
    double sum = 0;
    double entropy = 0;             // nats
    double normalized_entropy = 0;  // entropy / ln(S)
    peak_location peak;
};

inline void check_map(std::span<const float> map, const grid_geometry& g) {
    glimpse::detail::check(g.grid_h > 0 && g.grid_w > 0 && static_cast<std::int64_t>(map.size()) == g.patches(),
                           "attention map has ", map.size(), " values for a ", g.grid_h, "x", g.grid_w, " grid");
    glimpse::detail::check(g.image_w > 0 && g.image_h > 0, "attention map: empty image ", g.image_w, "x", g.image_h);
}

// Per-patch coverage of a box [S] (raster), in [0, 1].
inline std::vector<double> box_coverage(const box& b, const grid_geometry& g) {
    return patch_coverage(b, g.image_w, g.image_h, g.grid_h, g.grid_w, "box_heatmap");
}

// sum_p a_p w_p; for a box's coverage heatmap (heatmap::box_mode::coverage), mass_in_box.
inline double weighted_mass(std::span<const float> map, std::span<const float> weights) {
    glimpse::detail::check(map.size() == weights.size(), "weighted_mass: ", map.size(), " values, ", weights.size(),
                           " weights");
    double m = 0;
    for (std::size_t p = 0; p < map.size(); ++p) m += static_cast<double>(map[p]) * static_cast<double>(weights[p]);
    return m;
}

inline double mass_on_patches(std::span<const float> map, std::span<const std::uint8_t> mask) {
    glimpse::detail::check(map.size() == mask.size(), "mass_on_patches: ", map.size(), " values, a mask of ",
                           mask.size());
    double m = 0;
    for (std::size_t p = 0; p < map.size(); ++p)
        if (mask[p]) m += static_cast<double>(map[p]);
    return m;
}

inline double mass_in_box(std::span<const float> map, const box& b, const grid_geometry& g) {
    check_map(map, g);
    const box c{std::max(0.0, b.x1), std::max(0.0, b.y1), std::min(g.image_w, b.x2), std::min(g.image_h, b.y2)};
    const auto cov = box_coverage(c, g);
    double m = 0;
    for (std::size_t p = 0; p < cov.size(); ++p) m += static_cast<double>(map[p]) * cov[p];
    return m;
}

inline double area_fraction(const box& b, const grid_geometry& g) {
    const double w = std::max(0.0, std::min(g.image_w, b.x2) - std::max(0.0, b.x1));
    const double h = std::max(0.0, std::min(g.image_h, b.y2) - std::max(0.0, b.y1));
    return (w * h) / (g.image_w * g.image_h);
}

inline map_stats stats_of(std::span<const float> map, const grid_geometry& g) {
    check_map(map, g);
    map_stats s;
    std::size_t best = 0;
    for (std::size_t p = 0; p < map.size(); ++p) {
        const double a = map[p];
        s.sum += a;
        if (a > 0) s.entropy -= a * std::log(a);
        if (map[p] > map[best]) best = p;
    }
    const auto S = static_cast<double>(map.size());
    s.normalized_entropy = S > 1 ? s.entropy / std::log(S) : 0.0;
    s.peak.row = static_cast<std::int64_t>(best) / g.grid_w;
    s.peak.col = static_cast<std::int64_t>(best) % g.grid_w;
    s.peak.x = (static_cast<double>(s.peak.col) + 0.5) * g.image_w / static_cast<double>(g.grid_w);
    s.peak.y = (static_cast<double>(s.peak.row) + 0.5) * g.image_h / static_cast<double>(g.grid_h);
    s.peak.value = map[best];
    return s;
}

// Two-sided 95% quantile of Student's t with `df` degrees of freedom
// (t_{0.975, df}): exact table values for df <= 30, then the Cornish-Fisher
// expansion around the normal quantile (error < 1e-4 for df > 30).
inline double t_quantile_975(std::int64_t df) {
    static constexpr double table[] = {0,      12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646,
                                       2.3060, 2.2622,  2.2281, 2.2010, 2.1788, 2.1604, 2.1448, 2.1314,
                                       2.1199, 2.1098,  2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687,
                                       2.0639, 2.0595,  2.0555, 2.0518, 2.0484, 2.0452, 2.0423};
    glimpse::detail::check(df >= 1, "t quantile: need at least 1 degree of freedom, got ", df);
    if (df <= 30) return table[df];
    const double z = 1.959963984540054, n = static_cast<double>(df);
    const double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
    return z + (z3 + z) / (4 * n) + (5 * z5 + 16 * z3 + 3 * z) / (96 * n * n) +
           (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * n * n * n);
}

// Mean of a sample and its 95% confidence interval (Student's t on the sample
// standard deviation; half_width = t_{0.975, n-1} s / sqrt(n)). n = 1: no
// interval (half_width NaN). Symmetric, so for a quantity bounded to [0, 1]
// near a bound it leaves [0, 1]: use bootstrap_mean_ci there.
struct mean_ci {
    std::int64_t n = 0;
    double mean = 0, stddev = 0, half_width = 0;
    double lo() const { return mean - half_width; }
    double hi() const { return mean + half_width; }
};

inline mean_ci mean_with_ci(std::span<const double> x) {
    mean_ci r;
    r.n = static_cast<std::int64_t>(x.size());
    if (r.n == 0) {
        r.mean = r.stddev = r.half_width = std::nan("");
        return r;
    }
    double s = 0;
    for (double v : x) s += v;
    r.mean = s / static_cast<double>(r.n);
    if (r.n == 1) {
        r.stddev = r.half_width = std::nan("");
        return r;
    }
    double ss = 0;
    for (double v : x) ss += (v - r.mean) * (v - r.mean);
    r.stddev = std::sqrt(ss / static_cast<double>(r.n - 1));
    r.half_width = t_quantile_975(r.n - 1) * r.stddev / std::sqrt(static_cast<double>(r.n));
    return r;
}

// 95% percentile-bootstrap interval of the mean, for quantities bounded to an
// interval (masses and normalised entropies in [0, 1], their differences in
// [-1, 1]): every resampled mean lies within [min x, max x], so the interval
// does too — unlike mean +- t s / sqrt(n), which leaves [0, 1] for a sample
// near 0 or 1. `resamples` resamples of n draws with replacement, index
// floor(u * n) with u = next_u64() / 2^64 (Lemire's multiply-shift: exact, no
// modulo bias to speak of) from glimpse::rng(seed) — deterministic, so a
// summary is reproducible, and samples of the same size get the same
// resampling (paired base / fine-tuned / difference intervals agree). lo, hi:
// the 2.5% and 97.5% quantiles of the resampled means, linearly interpolated
// between order statistics (numpy.quantile's default, "linear"). n < 2: no
// interval (NaN). Checked against numpy: tools/make_bootstrap_fixture.py.
struct bootstrap_ci {
    std::int64_t n = 0;
    double mean = std::numeric_limits<double>::quiet_NaN();
    double lo = std::numeric_limits<double>::quiet_NaN(), hi = std::numeric_limits<double>::quiet_NaN();
};

inline constexpr std::int64_t bootstrap_resamples = 2000;
inline constexpr std::uint64_t bootstrap_seed = 0x676c696d707365ull;  // "glimpse"

// floor(a * b / 2^64), portably (no __int128 under -Wpedantic).
inline std::uint64_t mul_high_u64(std::uint64_t a, std::uint64_t b) noexcept {
    const std::uint64_t al = a & 0xffffffffull, ah = a >> 32, bl = b & 0xffffffffull, bh = b >> 32;
    const std::uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    const std::uint64_t mid = (ll >> 32) + (lh & 0xffffffffull) + (hl & 0xffffffffull);
    return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

// The p-quantile (0 <= p <= 1) of sorted values, numpy's "linear" method.
inline double quantile_sorted(std::span<const double> sorted, double p) {
    glimpse::detail::check(!sorted.empty(), "quantile of an empty sample");
    const double h = (static_cast<double>(sorted.size()) - 1) * p;
    const auto i = static_cast<std::size_t>(std::floor(h));
    if (i + 1 >= sorted.size()) return sorted.back();
    return sorted[i] + (h - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]);
}

inline bootstrap_ci bootstrap_mean_ci(std::span<const double> x, std::int64_t resamples = bootstrap_resamples,
                                      std::uint64_t seed = bootstrap_seed) {
    glimpse::detail::check(resamples >= 2, "bootstrap: need at least 2 resamples, got ", resamples);
    bootstrap_ci r;
    r.n = static_cast<std::int64_t>(x.size());
    if (r.n == 0) return r;
    double s = 0;
    for (double v : x) s += v;
    r.mean = s / static_cast<double>(r.n);
    if (r.n == 1) return r;
    rng g(seed);
    const auto n = static_cast<std::uint64_t>(r.n);
    std::vector<double> means(static_cast<std::size_t>(resamples));
    for (auto& m : means) {
        double t = 0;
        for (std::uint64_t k = 0; k < n; ++k) t += x[static_cast<std::size_t>(mul_high_u64(g.next_u64(), n))];
        m = t / static_cast<double>(r.n);
    }
    std::sort(means.begin(), means.end());
    r.lo = quantile_sorted(means, 0.025);
    r.hi = quantile_sorted(means, 0.975);
    return r;
}

}  // namespace glimpse::analysis
