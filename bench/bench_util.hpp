#pragma once
// What every glimpse benchmark shares: probes of the machine while a row runs (the
// host is shared and noisy, so every row says how busy the other processes kept it
// and how much memory it took) and the GEMM peak rows that the other rows are
// reported against (ratios are only meaningful within one process, one session).
//
// Counters a row_meter adds: GFLOP/s (from the MEDIAN timed call), x_peak =
// GFLOP/s / the Eigen peak row, peak_MiB = the process's peak RSS while the row ran
// (VmHWM after resetting it through /proc/self/clear_refs; ru_maxrss where that is
// not allowed), dRSS_MiB = that peak minus the RSS before the row, others = cores
// used by other processes while the row ran (a row with others > 0.1 is suspect),
// load1 = the 1-minute load average at the end.

#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/core/random.hpp>

namespace glimpse::bench {

using clk = std::chrono::steady_clock;

inline double seconds_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

inline int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : dflt;
}

// A field of /proc/self/status ("VmRSS", "VmHWM"), in MiB.
inline double status_mib(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    const std::string k = std::string(key) + ":";
    while (std::getline(f, line))
        if (line.rfind(k, 0) == 0) return std::stod(line.substr(k.size())) / 1024.0;  // kB
    return NAN;
}

inline double maxrss_mib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so a later VmHWM is this row's own peak.
inline bool reset_peak_rss() {
    std::ofstream f("/proc/self/clear_refs");
    if (!f) return false;
    f << "5";
    f.flush();
    return static_cast<bool>(f);
}

inline double peak_rss_mib(bool hwm_ok) { return hwm_ok ? status_mib("VmHWM") : maxrss_mib(); }

inline double loadavg1() {
    std::ifstream f("/proc/loadavg");
    double l = NAN;
    f >> l;
    return l;
}

// Machine-wide busy time and this process's own CPU time: their difference over a
// row's wall time is what other processes took from it.
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
    static double others(const cpu_sample& a, const cpu_sample& b) {
        const double wall = std::chrono::duration<double>(b.t - a.t).count();
        return std::max(0.0, ((b.busy_s - a.busy_s) - (b.own_s - a.own_s)) / wall);
    }
};

inline double g_peak_gflops = 0.0;  // Eigen SGEMM 2048^3, set by the first row (or ensure_peak)

// Times the calls of one row and records the counters every row shares.
struct row_meter {
    bool hwm_ok = reset_peak_rss();
    double rss0 = status_mib("VmRSS");
    cpu_sample c0 = cpu_sample::now();
    std::vector<double> seconds;

    // Runs f once and records its wall time; with `st`, also as the iteration's manual time.
    template <class F>
    void time(F&& f, benchmark::State* st = nullptr) {
        const auto t0 = clk::now();
        f();
        seconds.push_back(seconds_since(t0));
        if (st) st->SetIterationTime(seconds.back());
    }
    double median_s() const {
        if (seconds.empty()) return NAN;
        std::vector<double> s = seconds;
        std::sort(s.begin(), s.end());
        return s[s.size() / 2];
    }
    double mean_s() const {
        double s = 0;
        for (double x : seconds) s += x;
        return seconds.empty() ? NAN : s / static_cast<double>(seconds.size());
    }
    // `flop` per call; 0: no rate counters.
    void finish(benchmark::State& st, double flop) const {
        if (flop > 0) {
            const double gflops = flop / median_s() * 1e-9;
            st.counters["GFLOP/s"] = gflops;
            if (g_peak_gflops > 0) st.counters["x_peak"] = gflops / g_peak_gflops;
        }
        const double peak = peak_rss_mib(hwm_ok);
        st.counters["peak_MiB"] = peak;
        st.counters["dRSS_MiB"] = peak - rss0;
        st.counters["others"] = cpu_sample::others(c0, cpu_sample::now());
        st.counters["load1"] = loadavg1();
    }
};

// ---- GEMM peak rows -------------------------------------------------------------------------
inline constexpr std::int64_t kPeakN = 2048;
inline constexpr double kPeakFlop = 2.0 * kPeakN * kPeakN * kPeakN;

inline void fill_uniform(float* p, std::int64_t n, std::uint64_t seed) {
    rng g(seed);
    for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(g.uniform(-1, 1));
}

// Eigen's own product, 2048^3: the practical peak the other rows are a ratio of.
inline void bm_eigen_sgemm(benchmark::State& st) {
    const Eigen::MatrixXf A = Eigen::MatrixXf::Random(kPeakN, kPeakN), B = Eigen::MatrixXf::Random(kPeakN, kPeakN);
    Eigen::MatrixXf C(kPeakN, kPeakN);
    C.noalias() = A * B;  // warm-up, faults the pages in
    row_meter m;
    for (auto _ : st) m.time([&] { C.noalias() = A * B; }, &st);
    benchmark::DoNotOptimize(C.data());
    g_peak_gflops = kPeakFlop / m.median_s() * 1e-9;
    m.finish(st, kPeakFlop);
}

// The peak, measured off the table when a filter skipped its row.
inline void ensure_peak() {
    if (g_peak_gflops > 0) return;
    const Eigen::MatrixXf A = Eigen::MatrixXf::Random(kPeakN, kPeakN), B = Eigen::MatrixXf::Random(kPeakN, kPeakN);
    Eigen::MatrixXf C(kPeakN, kPeakN);
    C.noalias() = A * B;
    row_meter m;
    for (int r = 0; r < 5; ++r) m.time([&] { C.noalias() = A * B; });
    g_peak_gflops = kPeakFlop / m.median_s() * 1e-9;
    std::fprintf(stderr, "(Eigen SGEMM 2048^3 peak measured off the table: %.1f GFLOP/s)\n", g_peak_gflops);
}

#if defined(GLIMPSE_HAVE_CBLAS)
inline void bm_cblas_sgemm(benchmark::State& st) {
    std::vector<float> a(kPeakN * kPeakN), b(kPeakN * kPeakN), c(kPeakN * kPeakN);
    fill_uniform(a.data(), kPeakN * kPeakN, 1);
    fill_uniform(b.data(), kPeakN * kPeakN, 2);
    auto run = [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kPeakN, kPeakN, kPeakN, 1.0f, a.data(), kPeakN, b.data(),
                    kPeakN, 0.0f, c.data(), kPeakN);
    };
    run();
    row_meter m;
    for (auto _ : st) m.time(run, &st);
    benchmark::DoNotOptimize(c.data());
    m.finish(st, kPeakFlop);
}
#endif

// The cpu backend's gemm on a Linear's operands (f32 activations x f32 weights stored [N, K]):
// what the layers call.
inline void bm_cpu_gemm(benchmark::State& st) {
    cpu be;
    tensor a(shape{kPeakN, kPeakN}), b(shape{kPeakN, kPeakN}), c(shape{kPeakN, kPeakN});
    fill_uniform(a.ptr<float>(), a.numel(), 1);
    fill_uniform(b.ptr<float>(), b.numel(), 2);
    auto run = [&] { be.gemm(a.cv(), b.cv(), c.v(), gemm_args{.trans_b = true}, cview{}); };
    run();
    row_meter m;
    for (auto _ : st) m.time(run, &st);
    benchmark::DoNotOptimize(c.data());
    m.finish(st, kPeakFlop);
    st.SetLabel(std::string(be.gemm_kernel()));
}

// One GEMM shape class of the towers, [M, K] x [N, K]^T with bf16 weights as checkpoints store
// them, on one path: the cpu backend at a SIMD level and precision. The BLAS row is the backend
// at avx2, the path every level below avx512 takes (bf16 -> f32 panels, OpenBLAS on one slab
// per thread).
struct gemm_shape {
    const char* what;
    std::int64_t m, n, k;
};
inline constexpr gemm_shape kTowerGemms[] = {
    {"qwen3_448_qkv", 784, 3456, 1152},     {"qwen3_448_fc1", 784, 4304, 1152},
    {"qwen3_448_fc2", 784, 1152, 4304},     {"qwen2_5_448_gate", 1024, 3420, 1280},
    {"qwen2_5_448_down", 1024, 1280, 3420}, {"qwen3_1024_proj", 4096, 1152, 1152},
    {"qwen2_5_1024_qkv", 5476, 3840, 1280},
};

// Times be.gemm on [m, k] f32 activations x bf16 weights [n, k]; the label names the kernel.
inline void time_linear_gemm(benchmark::State& st, cpu& be, const gemm_shape& sh) {
    tensor a(shape{sh.m, sh.k}), w32(shape{sh.n, sh.k}), c(shape{sh.m, sh.n});
    fill_uniform(a.ptr<float>(), a.numel(), 1);
    fill_uniform(w32.ptr<float>(), w32.numel(), 2);
    const tensor w = w32.to(glimpse::dtype::bf16);
    auto run = [&] { be.gemm(a.cv(), w.cv(), c.v(), gemm_args{.trans_b = true}, cview{}); };
    run();
    row_meter m;
    for (auto _ : st) m.time(run, &st);
    benchmark::DoNotOptimize(c.data());
    m.finish(st, 2.0 * static_cast<double>(sh.m) * static_cast<double>(sh.n) * static_cast<double>(sh.k));
    st.SetLabel(std::string(be.gemm_kernel()));
}

inline void bm_gemm_shape(benchmark::State& st, gemm_shape sh, glimpse::cpu_isa isa, glimpse::matmul_precision prec) {
    cpu be(prec);
    be.set_isa(isa);
    time_linear_gemm(st, be, sh);
}

// gemm/<shape>/{blas, f32_<level>, bf16_<level>} for every level from avx512 this CPU has.
inline void register_gemm_shape_rows(int iterations) {
    using glimpse::cpu_isa;
    for (const gemm_shape& sh : kTowerGemms) {
        const std::string base = std::string("gemm/") + sh.what + "/";
        const auto add = [&](const std::string& row, cpu_isa isa, glimpse::matmul_precision p) {
            benchmark::RegisterBenchmark(row.c_str(), bm_gemm_shape, sh, isa, p)
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond)
                ->Iterations(iterations);
        };
        if (glimpse::detail::cpu_impl::cpu_has(cpu_isa::avx2))
            add(base + "blas", cpu_isa::avx2, glimpse::matmul_precision::f32);
        for (cpu_isa i : glimpse::supported_cpu_isas()) {
            if (i < cpu_isa::avx512) continue;
            if (i == cpu_isa::avx512) add(base + "f32_" + std::string(name(i)), i, glimpse::matmul_precision::f32);
            add(base + "bf16_" + std::string(name(i)), i, glimpse::matmul_precision::bf16);
        }
    }
}

// The cpu backend's gemm under bf16 matmul precision, on a Linear's operands: f32 activations
// times bf16 weights stored [N, K] (the row's label names the kernel).
inline void bm_cpu_gemm_bf16(benchmark::State& st) {
    cpu be(glimpse::matmul_precision::bf16);
    time_linear_gemm(st, be, gemm_shape{"2048", kPeakN, kPeakN, kPeakN});
}

// Registers the peak rows (first: the other rows read g_peak_gflops).
inline void register_peak_rows(int iterations) {
    using benchmark::RegisterBenchmark;
    RegisterBenchmark("peak/eigen_sgemm_2048", bm_eigen_sgemm)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(iterations);
#if defined(GLIMPSE_HAVE_CBLAS)
    RegisterBenchmark("peak/cblas_sgemm_2048", bm_cblas_sgemm)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(iterations);
#endif
    RegisterBenchmark("peak/cpu_gemm_2048", bm_cpu_gemm)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(iterations);
    RegisterBenchmark("peak/cpu_gemm_bf16_2048", bm_cpu_gemm_bf16)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(iterations);
}

}  // namespace glimpse::bench
