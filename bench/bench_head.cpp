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

namespace {

using glimpse::cpu;
using glimpse::heatmap::head_path;
using clk = std::chrono::steady_clock;

constexpr std::int64_t kDim = 1280, kHeads = 16;
constexpr float kQScale = 8.0f;  // as the peer: a sharp softmax, so the paths' agreement means something

double g_peak_gflops = 0.0;  // Eigen SGEMM 2048^3, set by the first row

// ---- the machine while a row runs --------------------------------------------------------
double status_mib(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    const std::string k = std::string(key) + ":";
    while (std::getline(f, line))
        if (line.rfind(k, 0) == 0) return std::stod(line.substr(k.size())) / 1024.0;  // kB
    return NAN;
}

double maxrss_mib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so a later VmHWM is this row's own peak.
bool reset_peak_rss() {
    std::ofstream f("/proc/self/clear_refs");
    if (!f) return false;
    f << "5";
    f.flush();
    return static_cast<bool>(f);
}

struct cpu_sample {
    double busy_s = 0, own_s = 0;
    clk::time_point t;
    static cpu_sample now() {
        cpu_sample s;
        s.t = clk::now();
        std::ifstream f("/proc/stat");
        std::string cpu;
        long long v[8] = {};
        f >> cpu;
        for (auto& x : v) f >> x;
        // user nice system (idle iowait) irq softirq
        s.busy_s = static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6]) / static_cast<double>(sysconf(_SC_CLK_TCK));
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        s.own_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                  1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        return s;
    }
};

// Records the counters every row shares. `seconds` are the timed calls' wall times.
struct row_meter {
    bool hwm_ok = reset_peak_rss();
    double rss0 = status_mib("VmRSS");
    cpu_sample c0 = cpu_sample::now();
    std::vector<double> seconds;

    template <class F>
    void time(F&& f) {
        const auto t0 = clk::now();
        f();
        seconds.push_back(std::chrono::duration<double>(clk::now() - t0).count());
    }
    double mean_s() const {
        double s = 0;
        for (double x : seconds) s += x;
        return seconds.empty() ? NAN : s / static_cast<double>(seconds.size());
    }
    void finish(benchmark::State& st, double flop) const {
        const cpu_sample c1 = cpu_sample::now();
        const double wall = std::chrono::duration<double>(c1.t - c0.t).count();
        const double gflops = flop / mean_s() * 1e-9;
        st.counters["GFLOP/s"] = gflops;
        if (g_peak_gflops > 0) st.counters["x_peak"] = gflops / g_peak_gflops;
        const double peak = hwm_ok ? status_mib("VmHWM") : maxrss_mib();
        st.counters["peak_MiB"] = peak;
        st.counters["dRSS_MiB"] = peak - rss0;
        st.counters["others"] = std::max(0.0, ((c1.busy_s - c0.busy_s) - (c1.own_s - c0.own_s)) / wall);
    }
};

// ---- GEMM peak rows -------------------------------------------------------------------------
constexpr std::int64_t kN = 2048;
constexpr double kGemmFlop = 2.0 * kN * kN * kN;

void bm_eigen_sgemm(benchmark::State& st) {
    const Eigen::MatrixXf A = Eigen::MatrixXf::Random(kN, kN), B = Eigen::MatrixXf::Random(kN, kN);
    Eigen::MatrixXf C(kN, kN);
    C.noalias() = A * B;  // warm-up, faults the pages in
    row_meter m;
    for (auto _ : st) m.time([&] { C.noalias() = A * B; });
    benchmark::DoNotOptimize(C.data());
    g_peak_gflops = kGemmFlop / m.mean_s() * 1e-9;
    m.finish(st, kGemmFlop);
}

// The head rows' ratio needs the peak: measured here when the filter skipped its row.
void ensure_peak() {
    if (g_peak_gflops > 0) return;
    const Eigen::MatrixXf A = Eigen::MatrixXf::Random(kN, kN), B = Eigen::MatrixXf::Random(kN, kN);
    Eigen::MatrixXf C(kN, kN);
    C.noalias() = A * B;
    std::vector<double> t;
    for (int r = 0; r < 5; ++r) {
        const auto t0 = clk::now();
        C.noalias() = A * B;
        t.push_back(std::chrono::duration<double>(clk::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    g_peak_gflops = kGemmFlop / t[t.size() / 2] * 1e-9;
    std::fprintf(stderr, "(Eigen SGEMM 2048^3 peak measured off the table: %.1f GFLOP/s)\n", g_peak_gflops);
}

#if defined(GLIMPSE_HAVE_CBLAS)
void bm_cblas_sgemm(benchmark::State& st) {
    glimpse::rng g(1);
    std::vector<float> a(kN * kN), b(kN * kN), c(kN * kN);
    for (auto& x : a) x = static_cast<float>(g.uniform(-1, 1));
    for (auto& x : b) x = static_cast<float>(g.uniform(-1, 1));
    auto run = [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kN, kN, kN, 1.0f, a.data(), kN, b.data(), kN, 0.0f,
                    c.data(), kN);
    };
    run();
    row_meter m;
    for (auto _ : st) m.time(run);
    benchmark::DoNotOptimize(c.data());
    m.finish(st, kGemmFlop);
}
#endif

void bm_cpu_gemm(benchmark::State& st) {
    cpu be;
    glimpse::rng g(2);
    glimpse::tensor a(glimpse::shape{kN, kN}), b(glimpse::shape{kN, kN}), c(glimpse::shape{kN, kN});
    for (std::int64_t i = 0; i < kN * kN; ++i) {
        a.ptr<float>()[i] = static_cast<float>(g.uniform(-1, 1));
        b.ptr<float>()[i] = static_cast<float>(g.uniform(-1, 1));
    }
    auto run = [&] { be.gemm(a.cv(), b.cv(), c.v(), glimpse::gemm_args{}, glimpse::cview{}); };
    run();
    row_meter m;
    for (auto _ : st) m.time(run);
    benchmark::DoNotOptimize(c.data());
    m.finish(st, kGemmFlop);
}

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
    for (std::int64_t i = 0; i < S; ++i)
        w->in_box.ptr<float>()[i] = w->h.ptr<float>()[i] / static_cast<float>(w->n_in);
    return *w;
}

enum class variant { generic, generic_pooled, generic_mean, dedup, folded };

const char* variant_name(variant v) {
    switch (v) {
        case variant::generic: return "generic";
        case variant::generic_pooled: return "generic+pooled";
        case variant::generic_mean: return "generic+mean";
        case variant::dedup: return "dedup";
        case variant::folded: return "folded";
    }
    return "?";
}

void bm_head(benchmark::State& st, std::int64_t S, variant v) {
    ensure_peak();
    workload& w = get_workload(S);
    const head_path path = v == variant::dedup ? head_path::dedup
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
    if (v == variant::generic && w.ref.empty()) w.ref = std::move(last);
    else if ((v == variant::dedup || v == variant::folded) && !w.ref.empty()) {
        double d = 0;
        for (std::int64_t i = 0; i < w.ref.numel(); ++i)
            d = std::max(d, static_cast<double>(std::abs(last.ptr<float>()[i] - w.ref.ptr<float>()[i])));
        st.counters["maxdiff_vs_generic"] = d;
    }
}

void register_all() {
    using benchmark::RegisterBenchmark;
    RegisterBenchmark("peak/eigen_sgemm_2048", bm_eigen_sgemm)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(10);
#if defined(GLIMPSE_HAVE_CBLAS)
    RegisterBenchmark("peak/cblas_sgemm_2048", bm_cblas_sgemm)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(10);
#endif
    RegisterBenchmark("peak/cpu_gemm_2048", bm_cpu_gemm)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(10);
    for (std::int64_t S : {1024, 4096, 16384}) {
        for (variant v : {variant::generic, variant::generic_pooled, variant::generic_mean, variant::dedup, variant::folded}) {
            if (v == variant::generic_mean && S > 4096) continue;  // [S, S] = 1 GiB at 16384: not what a visualiser asks for
            const std::string name = std::string("head/") + variant_name(v) + "/" + std::to_string(S);
            auto* b = RegisterBenchmark(name.c_str(), [S, v](benchmark::State& st) { bm_head(st, S, v); });
            b->UseRealTime()->Unit(benchmark::kMillisecond);
            const bool slow = (v == variant::generic || v == variant::generic_pooled) && S >= 16384;
            const bool fast = v == variant::dedup || v == variant::folded;
            // Seconds per call at S = 16384 generic: one call per repetition, three repetitions.
            if (slow) b->Iterations(1)->Repetitions(3)->DisplayAggregatesOnly(true);
            else if (fast) b->Iterations(S >= 16384 ? 5 : 20);
            else b->Iterations(S >= 4096 ? 3 : 10);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
