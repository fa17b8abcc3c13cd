// The full-size Qwen vision towers on the cpu backend, beside the machine's GEMM peak.
//
// Checkpoints: full-size random ones, generated here once and cached under
// $TMPDIR/glimpse_bench/ (never committed) in the real Hugging Face layout:
//   qwen2_5_vl_7b/  config.json (model_type qwen2_5_vl, vision_config of Qwen2.5-VL-7B-Instruct)
//                   model.safetensors: the `visual.` tensors only, BF16 (1.35 GB)
//   qwen3_vl_8b/    config.json (model_type qwen3_vl, vision_config of Qwen3-VL-8B-Instruct)
//                   model.safetensors: the `model.visual.` tensors only, BF16 (~1.2 GB)
// (vision_config values: shared/docs/qwen_vision_reference.md §1.) Weights and biases
// ~ U(+-1/sqrt(fan_in)), norm weights 1, LayerNorm biases 0, pos_embed ~ U(+-0.02).
//
// Rows, in the order they run (the encoder rows report their rate as a ratio to the Eigen
// SGEMM peak measured first, in the same process):
//   peak/eigen_sgemm_2048            Eigen's own product, 2048^3: the practical peak
//   peak/cpu_gemm_2048               the cpu backend's gemm on a Linear's layout (what the layers call)
//   encode/<family>/<side>/<prec>    qwen2_5_vision<cpu>::encode / qwen3_vision<cpu>::encode,
//                                    pixel_values ~ N(0,1) for the grid the processor gives
//                                    an image of that side (Qwen2.5: 448 -> 32x32, 1024 -> 74x74
//                                    via smart_resize to 1036; Qwen3: 28x28, 64x64); prec is the
//                                    cpu backend's matmul precision, f32 or bf16 (the label
//                                    names the GEMM kernel; x_peak and x_gemm stay relative to
//                                    the f32 peak)
//   gemm/<shape>/<path>              the towers' GEMM shape classes (bf16 weights [N, K]) on the
//                                    BLAS path, the packed f32 kernel and each bf16 kernel
//
// Each encoder row first runs one CLOCKED encode() (untimed for the row; it doubles as the
// warm-up) under a glimpse::stage_clock: the towers mark their stages with the names of the
// modules ../shared/bench/vision_bench.py hooks in transformers (--extras stages): patch_embed,
// attn (qkv, rotary, core, proj), mlp, norms, merger(s); plus residual, and other = the rest.
// Then the timed encode() calls (Iterations: GLIMPSE_ENC_REPS, default 2 at 448, 1 at 1024).
//
// FLOPs (2mnk of every matmul, the same formula as ../shared/bench/vision_bench.py's flops()):
// patch embed, qkv + proj, MLP (3 GEMMs SwiGLU / 2), attention 4 s^2 D per segment (window
// segments for Qwen2.5's windowed blocks), merger(s) (Qwen3: 3 deepstack + 1).
//
// Counters: GFLOP, GFLOP/s, x_peak (GFLOP/s / Eigen peak), gemm_s = FLOPs / Eigen peak (the
// time the GEMMs alone would take at the peak), x_gemm = encode time / gemm_s (goal <= 1.5),
// stage_* = ms of each stage in the clocked forward, weights_MiB = bytes of the tower's tensors
// as stored (bf16), peak_MiB = VmHWM during the row's encode calls (reset through
// /proc/self/clear_refs after loading; the checkpoint's mapping is dropped before), x_weights =
// peak / weights, act_SD = (peak - weights) / (S*D*4 bytes), others = cores used by other
// processes while the row ran (a row with others > 0.1 is suspect).

#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/core/stage_clock.hpp>
#include <glimpse/io/safetensors.hpp>
#include <glimpse/models/qwen2_5_vl.hpp>
#include <glimpse/models/qwen3_vl.hpp>

#include "bench_util.hpp"

namespace {

using glimpse::cpu;
using glimpse::dtype;
using glimpse::shape;
using glimpse::models::grid_thw_t;
using glimpse::models::qwen_family;
using namespace glimpse::bench;  // NOLINT: a benchmark program, not a header
namespace fs = std::filesystem;

// ---- full-size random checkpoints -----------------------------------------------------------
struct family_spec {
    qwen_family family;
    const char* dir;
    const char* prefix;
};
const family_spec kQwen25{qwen_family::qwen2_5_vl, "qwen2_5_vl_7b", "visual."};
const family_spec kQwen3{qwen_family::qwen3_vl, "qwen3_vl_8b", "model.visual."};

fs::path cache_root() {
    const char* t = std::getenv("TMPDIR");
    return fs::path(t && *t ? t : "/tmp") / "glimpse_bench";
}

nlohmann::json config_json(qwen_family f) {
    nlohmann::json top;
    if (f == qwen_family::qwen2_5_vl) {
        top["model_type"] = "qwen2_5_vl";
        top["architectures"] = {"Qwen2_5_VLForConditionalGeneration"};
        top["vision_config"] = {{"depth", 32},
                                {"hidden_size", 1280},
                                {"num_heads", 16},
                                {"intermediate_size", 3420},
                                {"hidden_act", "silu"},
                                {"patch_size", 14},
                                {"temporal_patch_size", 2},
                                {"spatial_merge_size", 2},
                                {"in_channels", 3},
                                {"in_chans", 3},
                                {"window_size", 112},
                                {"fullatt_block_indexes", {7, 15, 23, 31}},
                                {"out_hidden_size", 3584},
                                {"tokens_per_second", 2},
                                {"spatial_patch_size", 14},
                                {"rope_parameters", {{"rope_theta", 10000.0}, {"rope_type", "axial"}}}};
    } else {
        top["model_type"] = "qwen3_vl";
        top["architectures"] = {"Qwen3VLForConditionalGeneration"};
        top["vision_config"] = {{"depth", 27},
                                {"hidden_size", 1152},
                                {"num_heads", 16},
                                {"intermediate_size", 4304},
                                {"hidden_act", "gelu_pytorch_tanh"},
                                {"patch_size", 16},
                                {"temporal_patch_size", 2},
                                {"spatial_merge_size", 2},
                                {"in_channels", 3},
                                {"out_hidden_size", 4096},
                                {"num_position_embeddings", 2304},
                                {"deepstack_visual_indexes", {8, 16, 24}},
                                {"initializer_range", 0.02}};
    }
    return top;
}

// What a tensor is filled with.
enum class fill { weight, one, zero, pos };

struct tensor_spec {
    std::string name;
    shape s;
    fill f;
};

std::vector<tensor_spec> tensor_specs(const glimpse::models::qwen_vision_config& c, const std::string& p) {
    const std::int64_t d = c.hidden_size, I = c.intermediate_size, g = c.merge_group(), o = c.out_hidden_size;
    std::vector<tensor_spec> t;
    const shape pe{d, c.in_channels, c.temporal_patch_size, c.patch_size, c.patch_size};
    t.push_back({p + "patch_embed.proj.weight", pe, fill::weight});
    const auto lin = [&](const std::string& n, std::int64_t in, std::int64_t out) {
        t.push_back({n + ".weight", shape{out, in}, fill::weight});
        t.push_back({n + ".bias", shape{out}, fill::weight});
    };
    if (c.family == qwen_family::qwen2_5_vl) {
        for (std::int64_t i = 0; i < c.depth; ++i) {
            const std::string b = p + "blocks." + std::to_string(i) + ".";
            t.push_back({b + "norm1.weight", shape{d}, fill::one});
            t.push_back({b + "norm2.weight", shape{d}, fill::one});
            lin(b + "attn.qkv", d, 3 * d);
            lin(b + "attn.proj", d, d);
            lin(b + "mlp.gate_proj", d, I);
            lin(b + "mlp.up_proj", d, I);
            lin(b + "mlp.down_proj", I, d);
        }
        t.push_back({p + "merger.ln_q.weight", shape{d}, fill::one});
        lin(p + "merger.mlp.0", g * d, g * d);
        lin(p + "merger.mlp.2", g * d, o);
    } else {
        t.push_back({p + "patch_embed.proj.bias", shape{d}, fill::weight});
        t.push_back({p + "pos_embed.weight", shape{c.num_position_embeddings, d}, fill::pos});
        const auto ln = [&](const std::string& n, std::int64_t w) {
            t.push_back({n + ".weight", shape{w}, fill::one});
            t.push_back({n + ".bias", shape{w}, fill::zero});
        };
        for (std::int64_t i = 0; i < c.depth; ++i) {
            const std::string b = p + "blocks." + std::to_string(i) + ".";
            ln(b + "norm1", d);
            ln(b + "norm2", d);
            lin(b + "attn.qkv", d, 3 * d);
            lin(b + "attn.proj", d, d);
            lin(b + "mlp.linear_fc1", d, I);
            lin(b + "mlp.linear_fc2", I, d);
        }
        const auto merger = [&](const std::string& m, bool post) {
            ln(m + ".norm", post ? g * d : d);
            lin(m + ".linear_fc1", g * d, g * d);
            lin(m + ".linear_fc2", g * d, o);
        };
        for (std::size_t j = 0; j < c.deepstack_visual_indexes.size(); ++j)
            merger(p + "deepstack_merger_list." + std::to_string(j), true);
        merger(p + "merger", false);
    }
    return t;
}

// Fan-in of a tensor: its elements per output row (a bias takes its weight's).
double bound_of(const tensor_spec& t, const std::vector<tensor_spec>& all) {
    if (t.s.rank() >= 2) return 1.0 / std::sqrt(static_cast<double>(t.s.numel() / t.s[0]));
    const std::string w = t.name.substr(0, t.name.size() - 4) + "weight";  // ".bias" -> ".weight"
    for (const auto& u : all)
        if (u.name == w && u.s.rank() >= 2) return 1.0 / std::sqrt(static_cast<double>(u.s.numel() / u.s[0]));
    return 1.0 / std::sqrt(static_cast<double>(t.s[0]));
}

// Generates (once) the checkpoint directory of a family; returns it.
fs::path ensure_checkpoint(const family_spec& fam) {
    const fs::path dir = cache_root() / fam.dir;
    if (fs::exists(dir / "config.json") && fs::exists(dir / "model.safetensors")) return dir;
    fs::create_directories(dir);
    const nlohmann::json cj = config_json(fam.family);
    const auto cfg = glimpse::models::qwen_vision_config::from_json(cj, "generated config");
    const auto specs = tensor_specs(cfg, fam.prefix);
    const auto t0 = clk::now();
    std::vector<glimpse::tensor> store;
    store.reserve(specs.size());
    for (std::size_t k = 0; k < specs.size(); ++k) {
        const auto& sp = specs[k];
        glimpse::tensor t(sp.s, dtype::bf16);
        auto* out = reinterpret_cast<glimpse::bf16_t*>(t.data());
        const std::int64_t n = t.numel();
        const double bound = sp.f == fill::pos ? 0.02 : bound_of(sp, specs);
        constexpr std::int64_t kChunk = 1 << 16;
        const std::int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
        for (std::int64_t ch = 0; ch < chunks; ++ch) {
            glimpse::rng g(0x5eed0000ull + 1000003ull * k + static_cast<std::uint64_t>(ch));
            for (std::int64_t i = ch * kChunk, e = std::min(n, (ch + 1) * kChunk); i < e; ++i) {
                float v = 0.0f;
                switch (sp.f) {
                    case fill::one:
                        v = 1.0f;
                        break;
                    case fill::zero:
                        v = 0.0f;
                        break;
                    default:
                        v = static_cast<float>(g.uniform(-bound, bound));
                }
                out[i] = glimpse::to_bf16(v);
            }
        }
        store.push_back(std::move(t));
    }
    std::vector<std::pair<std::string, glimpse::cview>> views;
    for (std::size_t k = 0; k < specs.size(); ++k) views.emplace_back(specs[k].name, store[k].cv());
    glimpse::save_safetensors(dir / "model.safetensors", views, {{"format", "pt"}});
    {
        const fs::path tmp = dir / ("config.json.tmp." + std::to_string(::getpid()));
        std::ofstream f(tmp);
        f << cj.dump(2) << "\n";
        f.close();
        fs::rename(tmp, dir / "config.json");
    }
    std::fprintf(stderr, "(generated %s: %zu tensors, %.2f GB, in %.1f s)\n", dir.c_str(), specs.size(),
                 static_cast<double>(fs::file_size(dir / "model.safetensors")) * 1e-9, seconds_since(t0));
    return dir;
}

// ---- FLOPs (vision_bench.py's formula) ------------------------------------------------------
struct flop_count {
    double patch = 0, linear = 0, mlp = 0, attn = 0, merger = 0;
    double blocks() const { return linear + mlp + attn; }
    double total() const { return patch + blocks() + merger; }
};

double seg_attn(const std::vector<std::int64_t>& cu, double d) {
    double f = 0;
    for (std::size_t i = 1; i < cu.size(); ++i) {
        const double s = static_cast<double>(cu[i] - cu[i - 1]);
        f += 4.0 * s * s * d;
    }
    return f;
}

flop_count count_flops(const glimpse::models::qwen_vision_config& c, const glimpse::models::qwen_layout& L) {
    const double N = static_cast<double>(L.tokens()), D = static_cast<double>(c.hidden_size),
                 I = static_cast<double>(c.intermediate_size), O = static_cast<double>(c.out_hidden_size),
                 K = static_cast<double>(c.patch_dim()), depth = static_cast<double>(c.depth);
    const bool q25 = c.family == qwen_family::qwen2_5_vl;
    flop_count f;
    f.patch = 2 * N * K * D;
    f.linear = depth * (2 * N * D * 3 * D + 2 * N * D * D);
    f.mlp = depth * (q25 ? 3 : 2) * 2 * N * D * I;
    const double full = seg_attn(L.cu_seqlens, D);
    if (q25) {
        const double nfull = static_cast<double>(c.fullatt_block_indexes.size());
        f.attn = nfull * full + (depth - nfull) * seg_attn(L.cu_window_seqlens, D);
    } else {
        f.attn = depth * full;
    }
    const double nm = q25 ? 1 : 1 + static_cast<double>(c.deepstack_visual_indexes.size());
    const double Nm = N / static_cast<double>(c.merge_group()), H4 = D * static_cast<double>(c.merge_group());
    f.merger = nm * (2 * Nm * H4 * H4 + 2 * Nm * H4 * O);
    return f;
}

// ---- the loaded tower (one family at a time, so a row's RSS is its own family's) ------------
struct loaded {
    const family_spec* fam = nullptr;
    glimpse::models::qwen_vision_config cfg;
    std::unique_ptr<glimpse::models::qwen2_5_vision<cpu>> q25;
    std::unique_ptr<glimpse::models::qwen3_vision<cpu>> q3;
    double weights_mib = 0, load_s = 0, rss_loaded_mib = 0;
};
std::unique_ptr<loaded> g_model;
cpu g_be;

loaded& model_of(const family_spec& fam) {
    if (g_model && g_model->fam == &fam) return *g_model;
    g_model.reset();  // drop the other family first
    const fs::path dir = ensure_checkpoint(fam);
    auto m = std::make_unique<loaded>();
    m->fam = &fam;
    m->cfg = glimpse::models::qwen_vision_config::load(dir);
    const auto t0 = clk::now();
    {
        const glimpse::checkpoint ck(dir);
        double bytes = 0;
        for (const auto& n : ck.names())
            bytes += static_cast<double>(ck.get(n).numel()) * glimpse::itemsize(ck.get(n).type());
        m->weights_mib = bytes / (1024.0 * 1024.0);
        if (fam.family == qwen_family::qwen2_5_vl)
            m->q25 = std::make_unique<glimpse::models::qwen2_5_vision<cpu>>(
                glimpse::models::qwen2_5_vision<cpu>::load(g_be, ck, m->cfg));
        else
            m->q3 = std::make_unique<glimpse::models::qwen3_vision<cpu>>(
                glimpse::models::qwen3_vision<cpu>::load(g_be, ck, m->cfg));
    }  // the mapping goes: the tower holds its own copies
    m->load_s = seconds_since(t0);
    m->rss_loaded_mib = status_mib("VmRSS");
    g_model = std::move(m);
    return *g_model;
}

// Grid (in pre-merge patches) the processor gives a side x side image: smart_resize with
// factor p*m (round half to even; no bound is hit at these sizes).
std::int64_t grid_side(std::int64_t side, const glimpse::models::qwen_vision_config& c) {
    const double f = static_cast<double>(c.patch_size * c.spatial_merge_size);
    return static_cast<std::int64_t>(std::nearbyint(static_cast<double>(side) / f)) * c.spatial_merge_size;
}

// ---- one clocked forward: encode() itself, timed per stage ---------------------------------
// The towers mark their stages (core/stage_clock.hpp) with transformers' module names; what no
// stage covers (RoPE tables, layouts, gathers) is "other".
struct stage_ms {
    std::vector<glimpse::stage_clock::stage> stages;
    double total = 0;
    double of(std::string_view name) const {
        for (const auto& s : stages)
            if (s.name == name) return s.ms;
        return 0.0;
    }
    double attn() const { return of("attn.qkv") + of("attn.rotary") + of("attn.core") + of("attn.proj"); }
    double blocks() const { return attn() + of("norms") + of("mlp") + of("residual"); }
};

stage_ms clocked_encode(const loaded& M, const glimpse::cview& pv, std::span<const grid_thw_t> grids) {
    stage_ms r;
    const glimpse::stage_clock clock;
    const auto t0 = clk::now();
    auto out = M.q25 ? M.q25->encode(g_be, pv, grids) : M.q3->encode(g_be, pv, grids);
    benchmark::DoNotOptimize(out.merged.data());
    r.total = 1e3 * seconds_since(t0);
    r.stages = clock.stages();
    return r;
}

// ---- encoder rows ---------------------------------------------------------------------------
void bm_encode(benchmark::State& st, const family_spec& fam, std::int64_t side, glimpse::matmul_precision prec) {
    ensure_peak();
    struct precision_scope {  // the row's precision, restored for the next row
        explicit precision_scope(glimpse::matmul_precision p) {
            g_be.set_matmul_precision(p);
            g_be.set_attention_precision(p);
        }
        ~precision_scope() {
            g_be.set_matmul_precision(glimpse::matmul_precision::f32);
            g_be.set_attention_precision(glimpse::matmul_precision::f32);
        }
    } const scope(prec);
    st.SetLabel(std::string(g_be.gemm_kernel()));
    loaded& M = model_of(fam);
    const auto& c = M.cfg;
    const std::int64_t gs = grid_side(side, c);
    const std::vector<grid_thw_t> grids = {grid_thw_t{1, gs, gs}};
    const auto L = glimpse::models::make_qwen_layout(grids, c.window_merged(), c.spatial_merge_size);
    const std::int64_t n = L.tokens();
    glimpse::tensor pv(shape{n, c.patch_dim()});
    {
        glimpse::rng g(7);
        float* p = pv.ptr<float>();
        for (std::int64_t i = 0; i < pv.numel(); ++i) p[i] = static_cast<float>(g.normal());
    }
    const flop_count F = count_flops(c, L);
    const double flop = F.total();

    const double load_before = loadavg1();
    // One clocked forward: the stage breakdown, and the warm-up.
    const stage_ms sm = clocked_encode(M, pv.cv(), grids);

    const bool hwm_ok = reset_peak_rss();
    const double rss0 = status_mib("VmRSS");
    const auto c0 = cpu_sample::now();
    std::vector<double> t;
    bool finite = true;
    for (auto _ : st) {
        const auto t0 = clk::now();
        auto out = M.q25 ? M.q25->encode(g_be, pv.cv(), grids) : M.q3->encode(g_be, pv.cv(), grids);
        t.push_back(seconds_since(t0));
        st.SetIterationTime(t.back());
        const float* o = out.merged.template ptr<float>();
        for (std::int64_t i = 0; i < out.merged.numel(); ++i) finite = finite && std::isfinite(o[i]);
        benchmark::DoNotOptimize(out.merged.data());
    }
    const double others = cpu_sample::others(c0, cpu_sample::now());
    const double peak = peak_rss_mib(hwm_ok);
    std::sort(t.begin(), t.end());
    const double sec = t[t.size() / 2];
    const double gflops = flop / sec * 1e-9;
    const double gemm_s = flop / (g_peak_gflops * 1e9);

    st.counters["N"] = static_cast<double>(n);
    st.counters["GFLOP"] = flop * 1e-9;
    st.counters["GFLOP/s"] = gflops;
    st.counters["x_peak"] = gflops / g_peak_gflops;
    st.counters["gemm_s"] = gemm_s;
    st.counters["x_gemm"] = sec / gemm_s;
    const double other_ms = sm.total - [&] {
        double t = 0;
        for (const auto& x : sm.stages) t += x.ms;
        return t;
    }();
    st.counters["stage_patch_embed_ms"] = sm.of("patch_embed") + sm.of("pos_embed");
    st.counters["stage_norms_ms"] = sm.of("norms");
    st.counters["stage_attn_ms"] = sm.attn();
    st.counters["stage_attn_core_ms"] = sm.of("attn.core");
    st.counters["stage_mlp_ms"] = sm.of("mlp");
    st.counters["stage_residual_ms"] = sm.of("residual");
    st.counters["stage_merger_ms"] = sm.of("merger(s)");
    st.counters["stage_other_ms"] = other_ms;
    st.counters["stage_total_ms"] = sm.total;
    st.counters["weights_MiB"] = M.weights_mib;
    st.counters["rss_loaded_MiB"] = M.rss_loaded_mib;
    st.counters["peak_MiB"] = peak;
    st.counters["dRSS_MiB"] = peak - rss0;
    st.counters["x_weights"] = peak / M.weights_mib;
    const double sd_mib = static_cast<double>(n) * static_cast<double>(c.hidden_size) * 4.0 / (1024.0 * 1024.0);
    st.counters["act_SD"] = (peak - M.weights_mib) / sd_mib;
    st.counters["others"] = others;
    st.counters["load1"] = load_before;
    if (!finite) st.SetLabel("NON-FINITE OUTPUT");
    const std::string prec_name(glimpse::name(prec));
    std::string runs;
    for (double x : t) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%.2f", runs.empty() ? "" : ",", x);
        runs += buf;
    }
    std::fprintf(
        stderr,
        "[%s %lld %s: grid %lldx%lld N=%lld | GFLOP %.1f (patch %.1f, qkv+proj %.1f, mlp %.1f, attn %.1f, "
        "merger %.1f) | stages ms: patch_embed %.0f, attn %.0f (qkv %.0f, rotary %.0f, core %.0f = %.0f GFLOP/s, "
        "proj %.0f), mlp %.0f, norms %.0f, residual %.0f, merger(s) %.0f, other %.0f; blocks %.0f (%.1f GFLOP/s), "
        "total %.0f | encode %s s (median %.2f) | peak %.0f MiB, weights %.0f MiB, load %.1f s, rss after load "
        "%.0f MiB | load1 %.2f -> %.2f]\n",
        fam.dir, static_cast<long long>(side), prec_name.c_str(), static_cast<long long>(gs),
        static_cast<long long>(gs), static_cast<long long>(n), flop * 1e-9, F.patch * 1e-9, F.linear * 1e-9,
        F.mlp * 1e-9, F.attn * 1e-9, F.merger * 1e-9, sm.of("patch_embed") + sm.of("pos_embed"), sm.attn(),
        sm.of("attn.qkv"), sm.of("attn.rotary"), sm.of("attn.core"), F.attn / sm.of("attn.core") * 1e-6,
        sm.of("attn.proj"), sm.of("mlp"), sm.of("norms"), sm.of("residual"), sm.of("merger(s)"), other_ms, sm.blocks(),
        F.blocks() / sm.blocks() * 1e-6, sm.total, runs.c_str(), sec, peak, M.weights_mib, M.load_s, M.rss_loaded_mib,
        load_before, loadavg1());
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    benchmark::AddCustomContext("cpu_kernels", glimpse::describe_cpu_isa(g_be.isa()));
    using benchmark::RegisterBenchmark;
    register_peak_rows(env_int("GLIMPSE_PEAK_ITERS", 7));
    register_gemm_shape_rows(env_int("GLIMPSE_PEAK_ITERS", 7));
    for (const family_spec* fam : {&kQwen25, &kQwen3})
        for (std::int64_t side : {448, 1024})
            for (auto prec : {glimpse::matmul_precision::f32, glimpse::matmul_precision::bf16}) {
                const std::string name = std::string("encode/") + fam->dir + "/" + std::to_string(side) + "/" +
                                         std::string(glimpse::name(prec));
                const int reps =
                    env_int(side >= 1024 ? "GLIMPSE_ENC_REPS_LARGE" : "GLIMPSE_ENC_REPS", side >= 1024 ? 1 : 2);
                RegisterBenchmark(name.c_str(),
                                  [fam, side, prec](benchmark::State& st) { bm_encode(st, *fam, side, prec); })
                    ->UseManualTime()
                    ->Unit(benchmark::kSecond)
                    ->Iterations(reps);
            }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
