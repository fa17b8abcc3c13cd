// The cuda backend on a GPU: the fused attention against the device's dense bf16 peak, the
// heatmap head's execution paths, and the full-size Qwen vision towers.
//
// Rows (run by bench/run_cuda.sh, beside bench/torch_cuda_peer.py on the same GPU):
//   peak/cublas_bf16_8192          be.gemm, bf16 x bf16 -> f32, 8192^3: the measured peak
//   attn/S/d                       be.attention, bf16 q/k/v [S, 16, d], non-causal, one segment;
//                                  S in {1k, 4k, 16k}, d in {72, 80, 128}
//   attn_window/16384/80           the same with 64-token segments (Qwen2.5-VL window blocks)
//   attn_ref/4096/80               the plain reference kernel, for scale
//   head/<path>/S[/maps]           heatmap_attention_head<cuda> (D 1280, 16 heads, box heatmap):
//                                  generic vs folded fast path, and with the head-mean map
//   encode/<family>/<side>         qwen2_5_vision<cuda> / qwen3_vision<cuda>::encode of a
//                                  side x side image (random full-size bf16 weights: the
//                                  checkpoints glimpse_bench_encoders caches in
//                                  $TMPDIR/glimpse_bench; run it first, run_cuda.sh does)
//
// Timing: CUDA events around each call on the backend's stream (warm-up first), median of
// the iterations. Counters: TFLOP/s; x_peak = TFLOP/s / the device's datasheet dense bf16
// peak (table below; 0 for an unknown device); x_cublas = TFLOP/s / the cuBLAS row.
// FLOPs: attention 4 S^2 H d per segment (QK^T and PV), GEMM 2mnk.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include <glimpse/backend/cuda.hpp>
#include <glimpse/core/random.hpp>
#include <glimpse/heatmap/attention_head.hpp>
#include <glimpse/io/safetensors.hpp>
#include <glimpse/models/qwen2_5_vl.hpp>
#include <glimpse/models/qwen3_vl.hpp>

namespace {

using glimpse::cuda;
using glimpse::dtype;
using glimpse::shape;
namespace fs = std::filesystem;

// Datasheet dense (no sparsity) bf16 tensor-core peaks, TFLOP/s.
double datasheet_bf16_peak(const std::string& name) {
    auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
    if (has("H200")) return 989.4;
    if (has("H100") && has("PCIe")) return 756.0;
    if (has("H100") && has("NVL")) return 835.0;
    if (has("H100") || has("H800")) return 989.4;
    if (has("A100")) return 312.0;
    if (has("L40S")) return 362.0;
    return 0.0;
}

cuda& backend() {
    static cuda be;
    return be;
}
double g_cublas_tflops = 0.0;

glimpse::tensor random_host(const shape& s, std::uint64_t seed, dtype t, float scale = 1.0f) {
    glimpse::rng g(seed);
    glimpse::tensor out(s, t);
    for (std::int64_t i = 0; i < out.numel(); ++i)
        glimpse::store_f32(out.data(), t, i, static_cast<float>(g.normal()) * scale);
    return out;
}

// Times f() on the backend's stream with events: warm-up, then the benchmark's iterations.
template <class F>
void time_device(benchmark::State& st, double flop, F&& f) {
    cuda& be = backend();
    for (int i = 0; i < 2; ++i) f();
    be.synchronize();
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    std::vector<double> t;
    for (auto _ : st) {
        cudaEventRecord(e0, be.stream());
        f();
        cudaEventRecord(e1, be.stream());
        cudaEventSynchronize(e1);
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, e0, e1);
        t.push_back(ms * 1e-3);
        st.SetIterationTime(t.back());
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    std::sort(t.begin(), t.end());
    const double sec = t[t.size() / 2];
    const double tflops = flop / sec * 1e-12;
    const auto info = cuda::info(be.options().device);
    const double peak = datasheet_bf16_peak(info.name);
    st.counters["ms"] = sec * 1e3;
    st.counters["TFLOP/s"] = tflops;
    st.counters["x_peak"] = peak > 0 ? tflops / peak : 0.0;
    if (g_cublas_tflops > 0) st.counters["x_cublas"] = tflops / g_cublas_tflops;
    st.SetLabel(info.name);
}

void bm_cublas_peak(benchmark::State& st) {
    const std::int64_t n = 8192;
    cuda& be = backend();
    const auto a = be.upload(random_host(shape{n, n}, 1, dtype::bf16).cv());
    const auto b = be.upload(random_host(shape{n, n}, 2, dtype::bf16).cv());
    auto c = be.alloc(shape{n, n}, dtype::f32);
    time_device(st, 2.0 * n * n * n, [&] { be.gemm(a.cv(), b.cv(), c.v(), glimpse::gemm_args{.trans_b = true}, {}); });
    g_cublas_tflops = st.counters["TFLOP/s"];
}

void bm_attention(benchmark::State& st, std::int64_t S, std::int64_t d, std::int64_t window, bool reference) {
    const std::int64_t H = 16;
    cuda& be = backend();
    static std::unique_ptr<cuda> ref_be;
    if (reference && !ref_be) ref_be = std::make_unique<cuda>(glimpse::cuda_options{.attention_reference = true});
    cuda& run_be = reference ? *ref_be : be;
    const auto qkv = run_be.upload(random_host(shape{S, 3, H, d}, 3, dtype::bf16).cv());
    auto o = run_be.alloc(shape{S, H, d}, dtype::f32);
    std::vector<std::int64_t> seg;
    double flop = 4.0 * static_cast<double>(S) * static_cast<double>(S) * static_cast<double>(H * d);
    if (window > 0) {
        for (std::int64_t s = 0; s <= S; s += window) seg.push_back(s);
        if (seg.back() != S) seg.push_back(S);
        flop = 0;
        for (std::size_t i = 1; i < seg.size(); ++i)
            flop += 4.0 * static_cast<double>(seg[i] - seg[i - 1]) * static_cast<double>(seg[i] - seg[i - 1]) *
                    static_cast<double>(H * d);
    }
    const glimpse::attention_args a{1.0f / std::sqrt(static_cast<float>(d)), {}, seg, {}};
    if (reference) {
        // Events on the reference backend's own stream: time with host sync instead.
        for (auto _ : st) {
            const auto t0 = std::chrono::steady_clock::now();
            run_be.attention(qkv.cv().select(1, 0), qkv.cv().select(1, 1), qkv.cv().select(1, 2), o.v(), a);
            run_be.synchronize();
            st.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        return;
    }
    time_device(st, flop,
                [&] { be.attention(qkv.cv().select(1, 0), qkv.cv().select(1, 1), qkv.cv().select(1, 2), o.v(), a); });
}

void bm_head(benchmark::State& st, glimpse::heatmap::head_path path, std::int64_t S, bool maps) {
    const std::int64_t D = 1280, H = 16;
    cuda& be = backend();
    glimpse::rng g(5);
    static std::unique_ptr<glimpse::heatmap::heatmap_attention_head<cuda>> head;
    if (!head)
        head = std::make_unique<glimpse::heatmap::heatmap_attention_head<cuda>>(
            glimpse::heatmap::heatmap_attention_head<cuda>::init(be, D, H, false, g, dtype::bf16));
    const auto x = be.upload(random_host(shape{S, D}, 6, dtype::f32).cv());
    glimpse::tensor hh(shape{S});
    const auto side = static_cast<std::int64_t>(std::sqrt(static_cast<double>(S)));
    for (std::int64_t i = 0; i < S; ++i)
        hh.set({i}, (i / side) >= side / 4 && (i / side) < side / 2 && (i % side) < side / 3 ? 1.0f : 0.0f);
    const auto h = be.upload(hh.cv());
    const double Sd = static_cast<double>(S), Dd = static_cast<double>(D);
    const double flop = 2 * Sd * Dd + 6 * Sd * Dd * Dd + 4 * Sd * Sd * Dd;  // the generic path's, for every row
    glimpse::heatmap::head_maps<cuda> m;
    time_device(st, flop, [&] {
        auto y = head->forward(be, {x.cv(), h.cv(), {}, {}}, {.mean = maps}, maps ? &m : nullptr, path);
        benchmark::DoNotOptimize(y.data());
    });
    st.counters["GFLOP_generic"] = flop * 1e-9;
}

// ---- encoders --------------------------------------------------------------------------------
fs::path cache_dir(const char* name) {
    const char* t = std::getenv("TMPDIR");
    return fs::path(t && *t ? t : "/tmp") / "glimpse_bench" / name;
}

template <template <class> class Tower>
void bm_encode(benchmark::State& st, const char* dir_name, std::int64_t side) {
    const fs::path dir = cache_dir(dir_name);
    if (!fs::exists(dir / "config.json")) {
        st.SkipWithError("no checkpoint: run glimpse_bench_encoders first (it caches them in $TMPDIR/glimpse_bench)");
        return;
    }
    cuda& be = backend();
    const auto cfg = glimpse::models::qwen_vision_config::load(dir);
    static std::unique_ptr<Tower<cuda>> tower;
    static std::string loaded;
    if (loaded != dir_name) {
        tower.reset();
        const glimpse::checkpoint ck(dir);
        tower = std::make_unique<Tower<cuda>>(Tower<cuda>::load(be, ck, cfg));
        loaded = dir_name;
    }
    const double f = static_cast<double>(cfg.patch_size * cfg.spatial_merge_size);
    const std::int64_t gs =
        static_cast<std::int64_t>(std::nearbyint(static_cast<double>(side) / f)) * cfg.spatial_merge_size;
    const std::vector<glimpse::models::grid_thw_t> grids{{1, gs, gs}};
    const std::int64_t n = gs * gs;
    const auto pv = be.upload(random_host(shape{n, cfg.patch_dim()}, 7, dtype::f32).cv());
    // FLOPs as bench_encoders.cpp counts them (GEMMs and attention per segment).
    const auto L = glimpse::models::make_qwen_layout(grids, cfg.window_merged(), cfg.spatial_merge_size);
    auto seg_attn = [](const std::vector<std::int64_t>& cu, double d) {
        double r = 0;
        for (std::size_t i = 1; i < cu.size(); ++i)
            r += 4.0 * double(cu[i] - cu[i - 1]) * double(cu[i] - cu[i - 1]) * d;
        return r;
    };
    const double N = double(n), D = double(cfg.hidden_size), I = double(cfg.intermediate_size),
                 depth = double(cfg.depth);
    const bool q25 = cfg.family == glimpse::models::qwen_family::qwen2_5_vl;
    double flop = 2 * N * double(cfg.patch_dim()) * D + depth * (8 * N * D * D + (q25 ? 3 : 2) * 2 * N * D * I);
    if (q25) {
        const double nf = double(cfg.fullatt_block_indexes.size());
        flop += nf * seg_attn(L.cu_seqlens, D) + (depth - nf) * seg_attn(L.cu_window_seqlens, D);
    } else {
        flop += depth * seg_attn(L.cu_seqlens, D);
    }
    time_device(st, flop, [&] {
        auto out = tower->encode(be, pv.cv(), grids);
        benchmark::DoNotOptimize(out.merged.data());
    });
    st.counters["N"] = N;
    st.counters["GFLOP"] = flop * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (cuda::device_count() == 0) {
        std::printf("glimpse_bench_cuda: no CUDA device\n");
        return 0;
    }
    const auto info = cuda::info(0);
    std::printf("device 0: %s, sm_%d%d, %d SMs, %.1f GiB; datasheet dense bf16 peak %.1f TFLOP/s\n", info.name.c_str(),
                info.major, info.minor, info.sms, static_cast<double>(info.memory) / (1 << 30),
                datasheet_bf16_peak(info.name));
    using benchmark::RegisterBenchmark;
    auto reg = [](const std::string& name, auto f) {
        return RegisterBenchmark(name.c_str(), f)->UseManualTime()->Unit(benchmark::kMillisecond);
    };
    reg("peak/cublas_bf16_8192", bm_cublas_peak)->Iterations(20);
    for (std::int64_t S : {1024, 4096, 16384})
        for (std::int64_t d : {72, 80, 128})
            reg("attn/" + std::to_string(S) + "/" + std::to_string(d), [S, d](benchmark::State& st) {
                bm_attention(st, S, d, 0, false);
            })->Iterations(S >= 16384 ? 10 : 50);
    reg("attn_window/16384/80", [](benchmark::State& st) { bm_attention(st, 16384, 80, 64, false); })->Iterations(50);
    reg("attn_ref/4096/80", [](benchmark::State& st) { bm_attention(st, 4096, 80, 0, true); })->Iterations(3);
    using glimpse::heatmap::head_path;
    for (std::int64_t S : {1024, 4096}) {
        reg("head/generic/" + std::to_string(S), [S](benchmark::State& st) {
            bm_head(st, head_path::generic, S, false);
        })->Iterations(20);
        reg("head/folded/" + std::to_string(S), [S](benchmark::State& st) {
            bm_head(st, head_path::folded, S, false);
        })->Iterations(20);
        reg("head/generic/" + std::to_string(S) + "/maps", [S](benchmark::State& st) {
            bm_head(st, head_path::generic, S, true);
        })->Iterations(20);
        reg("head/folded/" + std::to_string(S) + "/maps", [S](benchmark::State& st) {
            bm_head(st, head_path::folded, S, true);
        })->Iterations(20);
    }
    for (std::int64_t side : {448, 1024}) {
        reg("encode/qwen2_5_vl_7b/" + std::to_string(side), [side](benchmark::State& st) {
            bm_encode<glimpse::models::qwen2_5_vision>(st, "qwen2_5_vl_7b", side);
        })->Iterations(5);
        reg("encode/qwen3_vl_8b/" + std::to_string(side), [side](benchmark::State& st) {
            bm_encode<glimpse::models::qwen3_vision>(st, "qwen3_vl_8b", side);
        })->Iterations(5);
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
