// The GEMM libraries Debian ships beside our own kernels, on the towers' shape classes, in one
// process (issue 15: measure every candidate per shape class, route each shape to the fastest).
// Ratios between libraries only mean something within one session on this shared, noisy host,
// hence one program rather than one per library.
//
// Rows, gemm_peer/<shape>/<impl>, for every shape of kTowerGemms (bench_util.hpp) and 2048^3. The
// operation is a Linear's: C[M, N] = A[M, K] W[N, K]^T, A f32 activations, W stored bf16 as
// checkpoints hold it (every f32 row multiplies the same bf16 values widened to f32, so the f32
// rows agree to rounding):
//   glimpse_f32         the cpu backend's gemm, f32 matmul precision (label: the kernel that ran)
//   glimpse_bf16        the same under bf16 matmul precision: A rounded inside the call
//                       (both with glimpse's own kernels, whatever the build's default library)
//   glimpse_bf16_onednn the cpu backend's route to oneDNN (cpu/onednn_gemm.hpp), where built in:
//                       A rounded inside the call, then onednn_bf16's primitive
//   openblas_sgemm      cblas_sgemm on the f32 copy of W, OpenBLAS threading itself
//   openblas_sbgemm     cblas_sbgemm (bf16 x bf16 -> f32), only where the library exports it:
//                       Debian 12's 0.3.21 declares it in cblas.h but is built without it
//   eigen_f32           Eigen's product on maps of the same buffers; compiled with this build's
//                       flags (bench-dev: the SSE2 baseline, release: -march=native)
//   onednn_f32          dnnl::matmul, W read in place as [K, N] with format tag ba
//   onednn_f32_any      the same with the weights' format left to the primitive (any) and W
//                       reordered into it ONCE before the timed calls: prepacked weights
//   onednn_bf16         src bf16, weights bf16 (ba, in place), dst f32: PyTorch's CPU bf16
//                       Linear. A is converted to bf16 before the timed calls (a bf16 model's
//                       activations already are), which glimpse_bf16 instead pays inside
//   onednn_bf16_any     the same with prepacked weights (format any, reordered once)
//   blis_sgemm          BLIS's typed API bli_sgemm, W^T by strides (rs 1, cs K). BLIS picks its
//                       kernels per CPU at run time and the label names the pick: Debian 12's
//                       0.9.0 does not know Zen 5 (family 0x1a) and falls back to 'generic'
// The oneDNN rows' label is the implementation the primitive chose (what ONEDNN_VERBOSE prints),
// BLIS's the sub-configuration it picked for this CPU, OpenBLAS's its core.
//
// Which library a row calls. Debian's libblis also exports cblas_sgemm, sgemm_, xerbla_ ...; in
// one process with OpenBLAS the first loaded would serve both rows. So BLIS is never linked: it is
// dlopen'd with RTLD_LOCAL (its symbols stay out of the global scope, so the program's cblas_sgemm
// still binds to OpenBLAS) and RTLD_DEEPBIND (BLIS's own internal references bind inside BLIS, not
// to OpenBLAS's same-named BLAS symbols), and bli_sgemm is taken with dlsym from that handle. At
// start the program asks dladdr which file defines each entry point it calls and puts the answer
// in the benchmark context (lib_*); a row whose function lives in another library than the one it
// names is skipped with an error instead of timed.
//
// Every row: the same thread count (OMP_NUM_THREADS, default 2) set in each library's own way,
// one warm-up call (faults C in, lets oneDNN and BLIS pick and JIT their kernels), then
// Iterations(GLIMPSE_PEAK_ITERS, default 7) timed calls, manual time. Counters: GFLOP/s from the
// median call; x_limit = GFLOP/s / the machine's FMA limit on 2 threads (496 f32, 992 bf16 on
// VDPBF16PS, ../shared/bench/fma_peak.cpp; GLIMPSE_FMA_LIMIT_F32 / GLIMPSE_FMA_LIMIT_BF16 override);
// maxrel = max |C - R| / max |R| against R = glimpse_f32's result (elementwise relative error is
// meaningless where R crosses zero; a wrong result shows up as maxrel near 1, f32 rows sit near
// 1e-6, bf16 rows near 1e-3); and row_meter's peak_MiB, dRSS_MiB, others, load1.

#include <benchmark/benchmark.h>

#include <dlfcn.h>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <glimpse/backend/cpu.hpp>

#include "bench_util.hpp"

#include <oneapi/dnnl/dnnl.hpp>

// Only for bli_sgemm's and bli_thread_set_num_threads's types and constants: nothing of BLIS is
// linked. Its BLAS/CBLAS declarations would collide with OpenBLAS's cblas.h, hence the DISABLEs.
#define BLIS_DISABLE_BLAS
#define BLIS_DISABLE_CBLAS
#include <blis.h>

namespace {

using glimpse::cpu;
using glimpse::tensor;
using namespace glimpse::bench;  // NOLINT: a benchmark program, not a header

int g_threads = 2;

double env_double(const char* name, double dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::atof(v) : dflt;
}

// The file that defines the code at `fn`, or "?".
std::string owner_of(const void* fn) {
    Dl_info info{};
    return fn && dladdr(fn, &info) && info.dli_fname ? info.dli_fname : "?";
}
bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

// ---- operands, one shape at a time ----------------------------------------------------------
struct operands {
    gemm_shape sh;
    tensor a;                 // [M, K] f32
    tensor w;                 // [N, K] bf16
    tensor a16;               // A rounded to bf16, for the rows that take bf16 activations
    std::vector<float> w32;   // W's bf16 values widened, [N, K]
    std::vector<float> ref;   // glimpse_f32's C, [M, N]
    double ref_absmax = 0.0;  // max |ref|
};

// The glimpse rows run glimpse's own kernels (packed, skinny) whatever the build's default library.
cpu make_cpu(glimpse::matmul_precision p, glimpse::cpu_gemm_library lib = glimpse::cpu_gemm_library::own) {
    cpu be(glimpse::cpu_options{.precision = p, .threads = g_threads});
    be.set_gemm_library(lib);
    return be;
}

void glimpse_gemm(cpu& be, const operands& op, float* c) {
    const glimpse::view cv(reinterpret_cast<std::byte*>(c), glimpse::dtype::f32, glimpse::shape{op.sh.m, op.sh.n});
    be.gemm(op.a.cv(), op.w.cv(), cv, glimpse::gemm_args{.trans_b = true}, glimpse::cview{});
}

// The rows run shape by shape, so one set of operands is alive at a time (the largest, with its
// reference, is about 150 MiB).
const operands& get_operands(const gemm_shape& sh) {
    static std::unique_ptr<operands> cur;
    if (cur && std::string(cur->sh.what) == sh.what) return *cur;
    cur.reset();
    auto op = std::make_unique<operands>();
    op->sh = sh;
    op->a = tensor(glimpse::shape{sh.m, sh.k});
    fill_uniform(op->a.ptr<float>(), op->a.numel(), 1);
    tensor w32(glimpse::shape{sh.n, sh.k});
    fill_uniform(w32.ptr<float>(), w32.numel(), 2);
    op->w = w32.to(glimpse::dtype::bf16);
    const tensor widened = op->w.to(glimpse::dtype::f32);
    op->w32.assign(widened.ptr<float>(), widened.ptr<float>() + widened.numel());
    op->a16 = op->a.to(glimpse::dtype::bf16);
    op->ref.resize(static_cast<std::size_t>(sh.m * sh.n));
    cpu be = make_cpu(glimpse::matmul_precision::f32);
    glimpse_gemm(be, *op, op->ref.data());
    for (float x : op->ref) op->ref_absmax = std::max(op->ref_absmax, static_cast<double>(std::fabs(x)));
    cur = std::move(op);
    return *cur;
}

double maxrel(const float* c, const operands& op) {
    double e = 0.0;
    for (std::size_t i = 0; i < op.ref.size(); ++i)
        e = std::max(e, std::fabs(static_cast<double>(c[i]) - static_cast<double>(op.ref[i])));
    return op.ref_absmax > 0 ? e / op.ref_absmax : e;
}

// Warm-up, the timed calls, the counters every row shares.
template <class F>
void time_row(benchmark::State& st, const operands& op, F&& run, const std::vector<float>& c, const std::string& label,
              bool bf16) {
    run();
    row_meter m;
    for (auto _ : st) m.time(run, &st);
    benchmark::DoNotOptimize(c.data());
    const double flop =
        2.0 * static_cast<double>(op.sh.m) * static_cast<double>(op.sh.n) * static_cast<double>(op.sh.k);
    m.finish(st, flop);
    const double limit = bf16 ? env_double("GLIMPSE_FMA_LIMIT_BF16", 992) : env_double("GLIMPSE_FMA_LIMIT_F32", 496);
    st.counters["x_limit"] = flop / m.median_s() * 1e-9 / limit;
    st.counters["maxrel"] = maxrel(c.data(), op);
    st.SetLabel(label);
}

std::vector<float> c_buffer(const operands& op) {
    return std::vector<float>(static_cast<std::size_t>(op.sh.m * op.sh.n));
}

// ---- glimpse --------------------------------------------------------------------------------
void bm_glimpse(benchmark::State& st, const gemm_shape& sh, glimpse::matmul_precision p,
                glimpse::cpu_gemm_library lib = glimpse::cpu_gemm_library::own) {
    const operands& op = get_operands(sh);
    cpu be = make_cpu(p, lib);
    auto c = c_buffer(op);
    time_row(
        st, op, [&] { glimpse_gemm(be, op, c.data()); }, c, std::string(be.gemm_kernel()),
        p == glimpse::matmul_precision::bf16);
}

// ---- OpenBLAS -------------------------------------------------------------------------------
#if defined(GLIMPSE_HAVE_CBLAS) && defined(OPENBLAS_VERSION)
#define GLIMPSE_PEERS_OPENBLAS 1
std::string g_openblas_lib;  // the file cblas_sgemm binds to

std::string openblas_label() { return std::string(openblas_get_corename()) + " (" + g_openblas_lib + ")"; }

void bm_openblas_sgemm(benchmark::State& st, const gemm_shape& sh) {
    if (!contains(g_openblas_lib, "openblas")) {
        st.SkipWithError(("cblas_sgemm is defined in " + g_openblas_lib + ", not OpenBLAS").c_str());
        return;
    }
    const operands& op = get_operands(sh);
    auto c = c_buffer(op);
    // The cpu backend's BLAS route restores the setting it found, so this sticks for the row.
    openblas_set_num_threads(g_threads);
    const auto M = static_cast<blasint>(sh.m), N = static_cast<blasint>(sh.n), K = static_cast<blasint>(sh.k);
    time_row(
        st, op,
        [&] {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, op.a.ptr<float>(), K, op.w32.data(), K,
                        0.0f, c.data(), N);
        },
        c, openblas_label(), false);
}

// Looked up rather than called: the header declares it whether or not the library has it.
using sbgemm_fn = decltype(&cblas_sbgemm);
sbgemm_fn g_sbgemm = nullptr;

void bm_openblas_sbgemm(benchmark::State& st, const gemm_shape& sh) {
    const operands& op = get_operands(sh);
    auto c = c_buffer(op);
    openblas_set_num_threads(g_threads);
    const auto M = static_cast<blasint>(sh.m), N = static_cast<blasint>(sh.n), K = static_cast<blasint>(sh.k);
    const auto* A = reinterpret_cast<const bfloat16*>(op.a16.data());
    const auto* W = reinterpret_cast<const bfloat16*>(op.w.data());
    time_row(
        st, op,
        [&] { g_sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, W, K, 0.0f, c.data(), N); }, c,
        openblas_label(), true);
}
#endif

// ---- Eigen ----------------------------------------------------------------------------------
void bm_eigen(benchmark::State& st, const gemm_shape& sh) {
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const operands& op = get_operands(sh);
    auto c = c_buffer(op);
    Eigen::setNbThreads(g_threads);
    const Eigen::Map<const RowMat> A(op.a.ptr<float>(), sh.m, sh.k), W(op.w32.data(), sh.n, sh.k);
    Eigen::Map<RowMat> C(c.data(), sh.m, sh.n);
    time_row(
        st, op, [&] { C.noalias() = A * W.transpose(); }, c,
        "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
            std::to_string(EIGEN_MINOR_VERSION) + ", " + std::to_string(Eigen::nbThreads()) + " threads",
        false);
}

// ---- oneDNN ---------------------------------------------------------------------------------
void bm_onednn(benchmark::State& st, const gemm_shape& sh, bool bf16, bool prepacked) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const operands& op = get_operands(sh);
    auto c = c_buffer(op);
    try {
        const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
        dnnl::stream strm(eng);
        const dt in = bf16 ? dt::bf16 : dt::f32;
        const dnnl::memory::desc src_md({sh.m, sh.k}, in, tag::ab);
        // W [N, K] row-major is W^T [K, N] with strides (1, K): tag ba.
        const dnnl::memory::desc wei_user_md({sh.k, sh.n}, in, tag::ba);
        const dnnl::memory::desc wei_md = prepacked ? dnnl::memory::desc({sh.k, sh.n}, in, tag::any) : wei_user_md;
        const dnnl::memory::desc dst_md({sh.m, sh.n}, dt::f32, tag::ab);
#if DNNL_VERSION_MAJOR >= 3
        const dnnl::matmul::primitive_desc pd(eng, src_md, wei_md, dst_md);
#else
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, dst_md), eng);
#endif
        const dnnl::matmul prim(pd);
        void* a_ptr = const_cast<void*>(bf16 ? static_cast<const void*>(op.a16.data()) : op.a.ptr<float>());
        void* w_ptr = const_cast<void*>(bf16 ? static_cast<const void*>(op.w.data()) : op.w32.data());
        dnnl::memory src(src_md, eng, a_ptr), dst(dst_md, eng, c.data());
        dnnl::memory wei_user(wei_user_md, eng, w_ptr);
        dnnl::memory wei = wei_user;
        if (pd.weights_desc() != wei_user_md) {
            wei = dnnl::memory(pd.weights_desc(), eng);
            dnnl::reorder(wei_user, wei).execute(strm, wei_user, wei);
            strm.wait();
        }
        const std::string label = std::string(pd.impl_info_str()) + (wei == wei_user ? "" : ", weights reordered");
        time_row(
            st, op,
            [&] {
                prim.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
                strm.wait();
            },
            c, label, bf16);
    } catch (const dnnl::error& e) {
        st.SkipWithError((std::string("oneDNN: ") + e.what()).c_str());
    }
}

// ---- BLIS -----------------------------------------------------------------------------------
struct blis_lib {
    decltype(&bli_sgemm) sgemm = nullptr;
    decltype(&bli_thread_set_num_threads) set_threads = nullptr;
    std::string file, label, error;
};
blis_lib g_blis;

void load_blis() {
    const char* env = std::getenv("GLIMPSE_BLIS_LIB");
    const std::string path = env && *env ? env : GLIMPSE_BLIS_LIBRARY;
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
        g_blis.error = std::string("dlopen ") + path + ": " + dlerror();
        return;
    }
    g_blis.sgemm = reinterpret_cast<decltype(&bli_sgemm)>(dlsym(h, "bli_sgemm"));
    g_blis.set_threads =
        reinterpret_cast<decltype(&bli_thread_set_num_threads)>(dlsym(h, "bli_thread_set_num_threads"));
    const auto version = reinterpret_cast<decltype(&bli_info_get_version_str)>(dlsym(h, "bli_info_get_version_str"));
    const auto arch_id = reinterpret_cast<decltype(&bli_arch_query_id)>(dlsym(h, "bli_arch_query_id"));
    const auto arch_name = reinterpret_cast<decltype(&bli_arch_string)>(dlsym(h, "bli_arch_string"));
    if (!g_blis.sgemm || !g_blis.set_threads) {
        g_blis.error = path + " lacks bli_sgemm or bli_thread_set_num_threads";
        return;
    }
    g_blis.file = owner_of(reinterpret_cast<const void*>(g_blis.sgemm));
    g_blis.label = std::string("BLIS ") + (version ? version() : "?") + ", config " +
                   (arch_id && arch_name ? arch_name(arch_id()) : "?") + " (" + g_blis.file + ")";
    if (!contains(g_blis.file, "blis")) g_blis.error = "bli_sgemm is defined in " + g_blis.file + ", not BLIS";
}

void bm_blis(benchmark::State& st, const gemm_shape& sh) {
    if (!g_blis.error.empty()) {
        st.SkipWithError(g_blis.error.c_str());
        return;
    }
    const operands& op = get_operands(sh);
    auto c = c_buffer(op);
    g_blis.set_threads(g_threads);
    float one = 1.0f, zero = 0.0f;
    auto* A = const_cast<float*>(op.a.ptr<float>());
    auto* W = const_cast<float*>(op.w32.data());
    time_row(
        st, op,
        [&] {
            // A row-major (rs K, cs 1); W^T [K, N] read from W [N, K] as rs 1, cs K; C row-major.
            g_blis.sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, sh.m, sh.n, sh.k, &one, A, sh.k, 1, W, 1, sh.k, &zero,
                         c.data(), sh.n, 1);
        },
        c, g_blis.label, false);
}

// ---- registration ---------------------------------------------------------------------------
template <class F>
void add_row(const gemm_shape& sh, const char* impl, F&& f) {
    const std::string name = std::string("gemm_peer/") + sh.what + "/" + impl;
    benchmark::RegisterBenchmark(name.c_str(), [sh, f](benchmark::State& st) { f(st, sh); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(env_int("GLIMPSE_PEAK_ITERS", 7));
}

const char* onednn_isa_name(dnnl::cpu_isa isa) {
    switch (isa) {
        case dnnl::cpu_isa::avx2:
            return "avx2";
        case dnnl::cpu_isa::avx512_core:
            return "avx512_core";
        case dnnl::cpu_isa::avx512_core_vnni:
            return "avx512_core_vnni";
        case dnnl::cpu_isa::avx512_core_bf16:
            return "avx512_core_bf16";
        case dnnl::cpu_isa::avx512_core_amx:
            return "avx512_core_amx";
        default:
            return "other";
    }
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    g_threads = env_int("OMP_NUM_THREADS", 2);
#if defined(_OPENMP)
    // oneDNN (OpenMP runtime), Eigen and BLIS's OpenMP build read the OpenMP team size.
    omp_set_num_threads(g_threads);
#endif
    load_blis();
    benchmark::AddCustomContext("threads", std::to_string(g_threads));
    benchmark::AddCustomContext("cpu_kernels", glimpse::describe_cpu_isa(cpu().isa()));
    const dnnl::version_t* dv = dnnl::version();
    benchmark::AddCustomContext("onednn", std::to_string(dv->major) + "." + std::to_string(dv->minor) + "." +
                                              std::to_string(dv->patch) + ", max isa " +
                                              onednn_isa_name(dnnl::get_effective_cpu_isa()));
    benchmark::AddCustomContext("lib_onednn", owner_of(reinterpret_cast<const void*>(&dnnl_primitive_execute)));
    benchmark::AddCustomContext("lib_blis", g_blis.error.empty() ? g_blis.label : g_blis.error);
#if defined(GLIMPSE_PEERS_OPENBLAS)
    // dlsym with RTLD_DEFAULT answers what the program's own references bind to.
    g_openblas_lib = owner_of(dlsym(RTLD_DEFAULT, "cblas_sgemm"));
    g_sbgemm = reinterpret_cast<sbgemm_fn>(dlsym(RTLD_DEFAULT, "cblas_sbgemm"));
    benchmark::AddCustomContext("lib_openblas", std::string(openblas_get_config()) + " (" + g_openblas_lib + ")");
    benchmark::AddCustomContext("openblas_sbgemm", g_sbgemm ? "in " + owner_of(reinterpret_cast<const void*>(g_sbgemm))
                                                            : "not exported by this OpenBLAS: no rows");
#else
    benchmark::AddCustomContext("lib_openblas", "not built with OpenBLAS: no rows");
#endif

    std::vector<gemm_shape> shapes(std::begin(kTowerGemms), std::end(kTowerGemms));
    shapes.push_back(gemm_shape{"2048", kPeakN, kPeakN, kPeakN});
    for (const gemm_shape& sh : shapes) {
        using glimpse::matmul_precision;
        add_row(sh, "glimpse_f32",
                [](benchmark::State& st, const gemm_shape& s) { bm_glimpse(st, s, matmul_precision::f32); });
        add_row(sh, "glimpse_bf16",
                [](benchmark::State& st, const gemm_shape& s) { bm_glimpse(st, s, matmul_precision::bf16); });
        if (glimpse::cpu_gemm_onednn_built)  // the backend's own route to oneDNN (cpu/onednn_gemm.hpp)
            add_row(sh, "glimpse_bf16_onednn", [](benchmark::State& st, const gemm_shape& s) {
                bm_glimpse(st, s, matmul_precision::bf16, glimpse::cpu_gemm_library::onednn);
            });
#if defined(GLIMPSE_PEERS_OPENBLAS)
        add_row(sh, "openblas_sgemm", bm_openblas_sgemm);
        if (g_sbgemm) add_row(sh, "openblas_sbgemm", bm_openblas_sbgemm);
#endif
        add_row(sh, "eigen_f32", bm_eigen);
        add_row(sh, "onednn_f32", [](benchmark::State& st, const gemm_shape& s) { bm_onednn(st, s, false, false); });
        add_row(sh, "onednn_f32_any", [](benchmark::State& st, const gemm_shape& s) { bm_onednn(st, s, false, true); });
        add_row(sh, "onednn_bf16", [](benchmark::State& st, const gemm_shape& s) { bm_onednn(st, s, true, false); });
        add_row(sh, "onednn_bf16_any", [](benchmark::State& st, const gemm_shape& s) { bm_onednn(st, s, true, true); });
        add_row(sh, "blis_sgemm", bm_blis);
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
