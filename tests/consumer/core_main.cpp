// find_package(glimpse COMPONENTS core reference): the heatmap head on the reference backend,
// built with none of Eigen, OpenMP, CBLAS, nlohmann_json, stb or libjpeg (CMakeLists.txt checks
// that the package never looked for them and that no header here included them).
//
// The head's execution paths must agree: without RoPE the generic attention, the deduplicated
// queries and the folded K/V path (heatmap/fast_path.hpp), and the delta on prepared features;
// a different box must move the output; the mean attention map's rows must each sum to one.
#include <cmath>
#include <cstdint>
#include <cstdio>

#include <glimpse/backend/reference.hpp>
#include <glimpse/heatmap/head_block.hpp>
#include <glimpse/heatmap/prepare.hpp>
#include <glimpse/nn/block_kind.hpp>
#include <glimpse/version.hpp>

namespace {

double max_abs_diff(const glimpse::tensor& a, const glimpse::tensor& b) {
    if (a.shape() != b.shape()) return INFINITY;
    double err = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) err = std::fmax(err, std::fabs(a.ptr<float>()[i] - b.ptr<float>()[i]));
    return err;
}

}  // namespace

int main() {
    namespace hm = glimpse::heatmap;
    glimpse::reference ref;
    glimpse::rng g(1);
    const hm::head_config cfg{16, 2, 24, false};  // D 16, 2 heads, MLP 24, no RoPE: every path applies
    const auto head = hm::heatmap_head<glimpse::reference, hm::ln_gelu_tanh>::init(ref, cfg, g);

    glimpse::tensor x(glimpse::shape{12, 16});  // a 3 x 4 patch grid
    for (std::int64_t i = 0; i < x.numel(); ++i) x.ptr<float>()[i] = static_cast<float>(i % 7) - 3.0f;
    const glimpse::tensor person = hm::box_heatmap({1, 1, 3, 2}, 4, 3, 3, 4);
    const glimpse::tensor corner = hm::box_heatmap({0, 0, 1, 1}, 4, 3, 3, 4);
    const hm::head_inputs in{x.cv(), person.cv(), {}, {}};

    hm::maps_request req;
    req.mean = true;
    hm::head_maps<glimpse::reference> maps;
    const auto generic = head.delta(ref, in, req, &maps, hm::head_path::generic);
    const auto dedup = head.delta(ref, in, {}, nullptr, hm::head_path::dedup);
    const auto folded = head.delta(ref, in, {}, nullptr, hm::head_path::folded);
    const auto kv = head.prepare(ref, in);
    const auto prepared = head.delta(ref, kv, person.cv());
    const auto elsewhere = head.delta(ref, kv, corner.cv());

    const double paths = std::fmax(std::fmax(max_abs_diff(generic, dedup), max_abs_diff(generic, folded)),
                                   max_abs_diff(generic, prepared));
    const double moved = max_abs_diff(generic, elsewhere);
    double row_sums = 0;  // max |sum_j P[i, j] - 1|
    const std::int64_t s = x.shape()[0];
    const bool maps_ok = maps.mean.shape() == glimpse::shape{s, s};
    for (std::int64_t i = 0; maps_ok && i < s; ++i) {
        double sum = 0;
        for (std::int64_t j = 0; j < s; ++j) sum += maps.mean.ptr<float>()[i * s + j];
        row_sums = std::fmax(row_sums, std::fabs(sum - 1));
    }
    std::printf(
        "glimpse %s core consumer (reference backend): paths agree to %.2e, another box moves delta by %.2e, "
        "mean map rows sum to 1 within %.2e\n",
        GLIMPSE_VERSION_STRING, paths, moved, row_sums);
    return paths < 1e-5 && moved > 1e-3 && maps_ok && row_sums < 1e-5 ? 0 : 1;
}
