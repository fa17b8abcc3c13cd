// Not a check (the fixture tests are): a printed table of the errors against
// PyTorch's float64 results, per fixture, backend and weight dtype, beside the
// error PyTorch itself makes in f32/bf16. Hidden; run it with
//   ./build/dev/tests/glimpse_tests "[.report]"

#include <catch2/catch.hpp>

#include <cstdio>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/heatmap/head_block.hpp>

#include "test_util.hpp"

using namespace glimpse;

namespace {
template <class B, class Kind>
test::error_stats block_error(const test::fixture& fx) {
    B be;
    const auto D = fx.i("D");
    const heatmap::head_config cfg{
        D, fx.i("H"), fx.i("I"), fx.i("rope") != 0, static_cast<float>(fx.f("theta")), static_cast<float>(fx.f("eps"))};
    auto block = heatmap::heatmap_head<B, Kind>::load(be, fx.file, "w", cfg);
    auto [c, s] = nn::vision_rotary{D / cfg.heads, cfg.rope_theta}.cos_sin(fx.positions());
    auto z = block.forward(be, {fx["in.x"], fx["in.h"], cfg.rope ? c.cv() : cview{}, cfg.rope ? s.cv() : cview{}});
    return test::compare(z.cv(), fx["out.z"]);
}
}  // namespace

TEST_CASE("parity report against PyTorch float64", "[.report]") {
    std::printf("%-44s %-9s %12s %12s %14s\n", "fixture (block output z)", "backend", "max abs err", "rel err",
                "torch same dtype");
    for (const char* file : {"block_rms_swiglu_rope_f32.safetensors", "block_ln_gelu_tanh_rope_f32.safetensors",
                             "block_rms_swiglu_norope_f32.safetensors", "block_rms_swiglu_rope_bf16.safetensors",
                             "block_ln_gelu_tanh_rope_bf16.safetensors"}) {
        const test::fixture fx(file);
        const bool rms = fx.s("kind") == "rms_swiglu";
        const bool bf16 = fx.s("weights_dtype") == "bf16";
        const double torch_err = fx.f(bf16 ? "torch_bf16_max_abs_err" : "torch_f32_max_abs_err");
        for (int b = 0; b < 2; ++b) {
            const auto e =
                b == 0 ? (rms ? block_error<cpu, heatmap::rms_swiglu>(fx) : block_error<cpu, heatmap::ln_gelu_tanh>(fx))
                       : (rms ? block_error<reference, heatmap::rms_swiglu>(fx)
                              : block_error<reference, heatmap::ln_gelu_tanh>(fx));
            std::printf("%-44s %-9s %12.2e %12.2e %14.2e\n", file, b == 0 ? "cpu" : "reference", e.max_abs, e.rel(),
                        torch_err);
        }
    }
    SUCCEED();
}
