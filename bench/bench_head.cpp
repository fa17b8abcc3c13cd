// The heatmap attention head on the cpu backend, beside the machine's GEMM peak.
//
// Rows, in the order they run (the order matters: the head rows report their rate
// as a ratio to the Eigen SGEMM peak measured first, in the same process):
//   peak/eigen_sgemm_2048        Eigen's own product, 2048^3: the practical peak
//   peak/cblas_sgemm_2048        cblas_sgemm (OpenBLAS), when GLIMPSE_HAVE_CBLAS
//   peak/cpu_gemm_2048           the cpu backend's gemm (what the layers call)
//   head/<path>/<S>              heatmap_attention_head<cpu>, D=1280, H=16, no RoPE
//     generic                    every query attends (6SD^2 + 4S^2D + 2SD FLOPs)
//     generic+pooled             + head-mean map pooled over the in-box queries [1, H, S]
//     generic+mean               + the full [S, S] head-mean map (S <= 4096)
//     dedup, folded              the exact fast paths (U = 2 distinct heatmap values)
//   attention/<isa>/<S>          the cpu attention op alone at each SIMD level this CPU has
//                                (cpu/isa.hpp), H=16, d=80 (Qwen2.5's heads), 4 S^2 H d FLOPs
//
// The context line cpu_kernels says which level the head rows ran (GLIMPSE_CPU_ISA or the best).
//
// The workload is the one of ../shared/bench/head_bench.py (the PyTorch peer): X ~ N(0,1),
// q_proj weight and bias scaled by 8, a binary box heatmap (1 inside the central box of half
// the grid side). bench/run_head_vs_torch.sh runs both in one session.
//
// Counters: GFLOP/s from our own wall-clock timing (FLOPs from heatmap::path_flops),
// x_peak = GFLOP/s / the Eigen peak row, peak_MiB = the process's peak RSS while the row ran
// (VmHWM after resetting it through /proc/self/clear_refs; ru_maxrss where that is not
// allowed), dRSS_MiB = that peak minus the RSS before the row (the head call's own memory,
// output included), others = cores used by other processes while the row ran (the host is
// shared: a row with others > 0.1 is suspect).

#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/heatmap/attention_head.hpp>

#include "bench_util.hpp"

namespace {

using glimpse::cpu;
using glimpse::heatmap::head_path;
using namespace glimpse::bench;  // NOLINT: a benchmark program, not a header

constexpr std::int64_t kDim = 1280, kHeads = 16;
constexpr float kQScale = 8.0f;  // as the peer: a sharp softmax, so the paths' agreement means something

// ---- the head -------------------------------------------------------------------------------
// One workload per S, built once (X at S = 16384 is 80 MiB and takes a while to draw).
struct workload {
    std::int64_t S = 0, n_in = 0;
    cpu be;
    glimpse::heatmap::heatmap_attention_head<cpu> head;
    glimpse::tensor x, h, in_box;  // [S, D], [S], [1, S] (1/n_in inside the box)
    glimpse::tensor ref;           // the generic path's output, for the fast paths' check
};

workload& get_workload(std::int64_t S) {
    static std::map<std::int64_t, std::unique_ptr<workload>> all;
    auto& w = all[S];
    if (w) return *w;
    w = std::make_unique<workload>();
    w->S = S;
    glimpse::rng g(static_cast<std::uint64_t>(S));
    w->head = glimpse::heatmap::heatmap_attention_head<cpu>::init(w->be, kDim, kHeads, false, g);
    for (auto* t : {&w->head.q_proj.weight, &w->head.q_proj.bias}) {
        float* p = t->ptr<float>();
        for (std::int64_t i = 0; i < t->numel(); ++i) p[i] *= kQScale;
    }
    w->x = glimpse::tensor(glimpse::shape{S, kDim});
    for (std::int64_t i = 0; i < S * kDim; ++i) w->x.ptr<float>()[i] = static_cast<float>(g.normal());
    const auto side = static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(S))));
    glimpse::detail::check(side * side == S, "bench: S must be a square grid");
    w->h = glimpse::tensor(glimpse::shape{S});
    w->in_box = glimpse::tensor(glimpse::shape{1, S});
    for (std::int64_t r = 0; r < side; ++r)
        for (std::int64_t c = 0; c < side; ++c) {
            const bool in = r >= side / 4 && r < 3 * side / 4 && c >= side / 4 && c < 3 * side / 4;
            w->h.ptr<float>()[r * side + c] = in ? 1.0f : 0.0f;
            w->n_in += in;
        }
    for (std::int64_t i = 0; i < S; ++i) w->in_box.ptr<float>()[i] = w->h.ptr<float>()[i] / static_cast<float>(w->n_in);
    return *w;
}

enum class variant { generic, generic_pooled, generic_mean, dedup, folded };

const char* variant_name(variant v) {
    switch (v) {
        case variant::generic:
            return "generic";
        case variant::generic_pooled:
            return "generic+pooled";
        case variant::generic_mean:
            return "generic+mean";
        case variant::dedup:
            return "dedup";
        case variant::folded:
            return "folded";
    }
    return "?";
}

void bm_head(benchmark::State& st, std::int64_t S, variant v) {
    ensure_peak();
    workload& w = get_workload(S);
    const head_path path = v == variant::dedup    ? head_path::dedup
                           : v == variant::folded ? head_path::folded
                                                  : head_path::generic;
    glimpse::heatmap::maps_request req;
    if (v == variant::generic_pooled) req.query_weights = w.in_box.cv();
    if (v == variant::generic_mean) req.mean = true;
    const glimpse::heatmap::head_inputs in{w.x.cv(), w.h.cv(), {}, {}};
    auto call = [&] {
        glimpse::heatmap::head_maps<cpu> maps;
        auto y = w.head.forward(w.be, in, req, req.any() ? &maps : nullptr, path);
        benchmark::DoNotOptimize(y.data());
        return y;
    };
    // A warm-up call where it is cheap; at S = 16384 the repetitions' median does that job.
    if (S <= 4096) (void)call();
    row_meter m;
    glimpse::tensor last;
    for (auto _ : st) m.time([&] { last = call(); });
    m.finish(st, glimpse::heatmap::path_flops(path, double(S), double(kDim), double(kHeads), 2.0));
    // Every path computes the same function: report the fast paths' distance to the generic
    // one (kept from the generic row, computed where that is cheap).
    if (v == variant::generic && w.ref.empty())
        w.ref = std::move(last);
    else if ((v == variant::dedup || v == variant::folded) && !w.ref.empty()) {
        double d = 0;
        for (std::int64_t i = 0; i < w.ref.numel(); ++i)
            d = std::max(d, static_cast<double>(std::abs(last.ptr<float>()[i] - w.ref.ptr<float>()[i])));
        st.counters["maxdiff_vs_generic"] = d;
    }
}

void bm_attention(benchmark::State& st, glimpse::cpu_isa isa, std::int64_t S) {
    ensure_peak();
    constexpr std::int64_t H = 16, d = 80;
    cpu be;
    be.set_isa(isa);
    glimpse::tensor q(glimpse::shape{S, H, d}), k(glimpse::shape{S, H, d}), v(glimpse::shape{S, H, d}),
        o(glimpse::shape{S, H, d});
    fill_uniform(q.ptr<float>(), q.numel(), 11);
    fill_uniform(k.ptr<float>(), k.numel(), 12);
    fill_uniform(v.ptr<float>(), v.numel(), 13);
    const glimpse::attention_args a{1.0f / std::sqrt(float(d)), {}, {}, {}};
    auto call = [&] { be.attention(q.cv(), k.cv(), v.cv(), o.v(), a); };
    call();
    row_meter m;
    for (auto _ : st) m.time(call);
    benchmark::DoNotOptimize(o.data());
    m.finish(st, 4.0 * double(S) * double(S) * double(H) * double(d));
    st.SetLabel(std::string(glimpse::name(isa)));
}

void register_all() {
    using benchmark::RegisterBenchmark;
    register_peak_rows(10);
    for (std::int64_t S : {1024, 4096, 16384}) {
        for (variant v :
             {variant::generic, variant::generic_pooled, variant::generic_mean, variant::dedup, variant::folded}) {
            if (v == variant::generic_mean && S > 4096)
                continue;  // [S, S] = 1 GiB at 16384: not what a visualiser asks for
            const std::string name = std::string("head/") + variant_name(v) + "/" + std::to_string(S);
            auto* b = RegisterBenchmark(name.c_str(), [S, v](benchmark::State& st) { bm_head(st, S, v); });
            b->UseRealTime()->Unit(benchmark::kMillisecond);
            const bool slow = (v == variant::generic || v == variant::generic_pooled) && S >= 16384;
            const bool fast = v == variant::dedup || v == variant::folded;
            // Seconds per call at S = 16384 generic: one call per repetition, three repetitions.
            if (slow)
                b->Iterations(1)->Repetitions(3)->DisplayAggregatesOnly(true);
            else if (fast)
                b->Iterations(S >= 16384 ? 5 : 20);
            else
                b->Iterations(S >= 4096 ? 3 : 10);
        }
    }
    for (glimpse::cpu_isa isa : glimpse::supported_cpu_isas()) {
        const std::string name = "attention/" + std::string(glimpse::name(isa)) + "/4096";
        RegisterBenchmark(name.c_str(), [isa](benchmark::State& st) { bm_attention(st, isa, 4096); })
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond)
            ->Iterations(3);
    }
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("cpu_kernels", glimpse::describe_cpu_isa(glimpse::detail::cpu_impl::default_isa()));
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
