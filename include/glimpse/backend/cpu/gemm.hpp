#pragma once
// The cpu backend's gemm op (core/backend.hpp's contract: batches, transposes, alpha/beta, a
// bias [N], weights in their storage dtype) and the choice of kernel for each 2-D product:
//   amx       bf16 matmul precision on AMX tiles (cpu/bf16_gemm.hpp)
//   packed    our packed AVX-512 kernels (cpu/packed_gemm.hpp): every bf16-precision product at
//             level avx512 and above, and f32 products in a Linear's layout (rows of op(A) and
//             of op(B) contiguous in K), where the kernel beats the BLAS (docs/benchmarks.md)
//   skinny    f32 products with at most skinny::kMaxRows rows of f32 op(A) at level avx512 and
//             above, in a Linear's layout or with B [K, N] f32 rows: AVX-512 kernels that read
//             op(B) where it lies (cpu/skinny_gemm.hpp), where packing it would cost more than
//             the product
//   onednn    oneDNN's matmul (cpu/onednn_gemm.hpp), where the build found oneDNN and the backend's
//             gemm library is onednn: a Linear's layout with more rows than the skinny kernels
//             take, alpha 1, f32 x f32 weights (f32 precision, level avx512 and above) or
//             rounded A x bf16 weights (bf16 precision, level avx512_bf16), where it beats the
//             packed kernels (docs/benchmarks.md)
//   blas      f32 through sgemm (cpu/sgemm.hpp), narrow weights widened a panel at a time
//   emulated  bf16 matmul precision below AVX-512: rounded operands through sgemm
// The level (cpu_isa) and the precision are the backend object's; gemm_dispatch is a value.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "glimpse/backend/cpu/bf16_gemm.hpp"
#include "glimpse/backend/cpu/isa.hpp"
#include "glimpse/backend/cpu/onednn_gemm.hpp"
#include "glimpse/backend/cpu/packed_gemm.hpp"
#include "glimpse/backend/cpu/row_loops.hpp"
#include "glimpse/backend/cpu/sgemm.hpp"
#include "glimpse/backend/cpu/skinny_gemm.hpp"
#include "glimpse/backend/op_checks.hpp"
#include "glimpse/core/backend.hpp"

namespace glimpse {

// Whose kernels run the cpu backend's large Linear-layout GEMMs: glimpse's own (cpu/packed_gemm.hpp)
// or oneDNN's matmul (only where the build found oneDNN: cpu_gemm_onednn_built).
enum class cpu_gemm_library { own, onednn };
#if defined(GLIMPSE_CPU_ONEDNN)
inline constexpr bool cpu_gemm_onednn_built = true;
#else
inline constexpr bool cpu_gemm_onednn_built = false;
#endif
constexpr std::string_view name(cpu_gemm_library l) { return l == cpu_gemm_library::onednn ? "onednn" : "own"; }

namespace detail::cpu_impl {

// GLIMPSE_CPU_GEMM=own|onednn when set (an unknown name, or onednn in a build without it, is an
// error), else oneDNN where built in: what a default-constructed cpu backend runs. Decided once
// per process, like GLIMPSE_CPU_ISA.
inline cpu_gemm_library default_gemm_library() {
    static const cpu_gemm_library lib = [] {
        const char* e = std::getenv("GLIMPSE_CPU_GEMM");
        const std::string_view v = e ? e : "";
        if (v.empty()) return cpu_gemm_onednn_built ? cpu_gemm_library::onednn : cpu_gemm_library::own;
        if (v == "own") return cpu_gemm_library::own;
        check(v == "onednn", "GLIMPSE_CPU_GEMM=", v, ": not a gemm library (own, onednn)");
        check(cpu_gemm_onednn_built,
              "GLIMPSE_CPU_GEMM=onednn: this build has no oneDNN (configure with libdnnl-dev installed)");
        return cpu_gemm_library::onednn;
    }();
    return lib;
}

}  // namespace detail::cpu_impl
}  // namespace glimpse

namespace glimpse::detail::cpu_impl {

enum class gemm_route { amx, packed, skinny, onednn, blas, emulated };

struct gemm_dispatch {
    cpu_isa isa;
    matmul_precision precision;
    cpu_gemm_library library = cpu_gemm_library::own;

    // Panel height of weight widening on the blas and emulated routes: memory stays at the
    // weights' storage size while the math is f32.
    static constexpr std::int64_t kPanel = 256;

    gemm_route route_for(bool linear_layout, std::int64_t k) const {
        const bool bf16 = precision == matmul_precision::bf16;
#if defined(GLIMPSE_CPU_HAVE_AMX_CODE)
        if (bf16 && k > 0 && isa == cpu_isa::amx) return gemm_route::amx;
#endif
#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
        if (bf16 && k > 0 && isa >= cpu_isa::avx512) return gemm_route::packed;
        if (!bf16 && isa >= cpu_isa::avx512 && k > 0 && linear_layout) return gemm_route::packed;
#else
        (void)linear_layout;
#endif
        return bf16 ? gemm_route::emulated : gemm_route::blas;
    }

    // The route of one 2-D product with m rows of op(A) and k of K.
    gemm_route route(const cview& A, const cview& B, const gemm_args& g, std::int64_t m, std::int64_t k) const {
        // A Linear's layout: rows of op(A) and columns of op(B) contiguous in K, f32 or bf16.
        const auto row_major = [](const cview& x, bool trans_is_rows) {
            return trans_is_rows && x.stride(-1) == 1 && (x.type() == dtype::f32 || x.type() == dtype::bf16);
        };
        const bool a_rows = row_major(A, !g.trans_a), linear = a_rows && row_major(B, g.trans_b);
        const gemm_route r = route_for(linear, k);
#if defined(GLIMPSE_CPU_ONEDNN)
        if (library == cpu_gemm_library::onednn && linear && A.type() == dtype::f32 && g.alpha == 1.0f && k > 0 &&
            m > skinny::kMaxRows && !in_parallel() &&
            ((precision == matmul_precision::f32 && isa >= cpu_isa::avx512 && B.type() == dtype::f32) ||
             (precision == matmul_precision::bf16 && isa == cpu_isa::avx512_bf16 && B.type() == dtype::bf16)))
            return gemm_route::onednn;
#endif
#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
        if (precision == matmul_precision::f32 && isa >= cpu_isa::avx512 && k > 0 && m <= skinny::kMaxRows && a_rows &&
            A.type() == dtype::f32 && (linear || (!g.trans_b && B.type() == dtype::f32 && B.stride(-1) == 1)))
            return gemm_route::skinny;
#else
        (void)m;
#endif
        return r;
    }

    // The kernel a Linear's gemm runs on, named (for --verbose and benchmark labels): a large
    // one with weights in the dtype the precision multiplies (f32, or bf16 under bf16).
    std::string_view kernel_name() const {
#if defined(GLIMPSE_CPU_ONEDNN)
        if (library == cpu_gemm_library::onednn) {
            if (precision == matmul_precision::f32 && isa >= cpu_isa::avx512)
                return "f32 packed FMA (avx512); f32 weights: oneDNN matmul";
            if (precision == matmul_precision::bf16 && isa == cpu_isa::avx512_bf16)
                return "bf16 on oneDNN matmul (avx512_bf16); f32 weights: VDPBF16PS";
        }
#endif
        switch (route_for(true, 1)) {
            case gemm_route::amx:
                return "bf16 on AMX tiles";
            case gemm_route::packed:
                if (precision == matmul_precision::f32) return "f32 packed FMA (avx512)";
                return isa >= cpu_isa::avx512_bf16 ? "bf16 on VDPBF16PS (avx512_bf16)"
                                                   : "bf16 emulated: packed f32 FMA on rounded operands";
            case gemm_route::emulated:
                return "bf16 emulated: sgemm on rounded operands";
            case gemm_route::skinny:  // never route_for's answer: a matter of m
            case gemm_route::onednn:  // nor this: named above
                break;
            case gemm_route::blas:
                break;
        }
        return "f32 BLAS sgemm";
    }

    // The op: C = alpha op(A) op(B) + beta C (+ bias) for every batch.
    void run(const cview& a, const cview& b, const view& c, const gemm_args& g, const cview& bias) const {
        const auto d = detail::check_gemm(a, b, c, g, bias);
        std::vector<float> bias_f32(static_cast<std::size_t>(bias.empty() ? 0 : d.n));
        if (!bias.empty()) widen(bias.reshape(shape{1, d.n}), 0, 1, 0, d.n, bias_f32.data());
        for (std::int64_t p = 0; p < d.batch; ++p) {
            const cview A = d.batched_a ? a.select(0, p) : a;
            const cview B = d.batched_b ? b.select(0, p) : b;
            const view C = c.rank() == 3 ? c.select(0, p) : c;
            // The packed kernels add the bias as they store C. Elsewhere, with beta = 0, it goes
            // in first and the product adds onto it (beta = 1): one pass over C instead of a
            // second full read-modify-write after the GEMM.
            gemm_args gb = g;
            const float* epilogue = nullptr;
            const gemm_route r = route(A, B, g, d.m, d.k);
            if (!bias.empty()) {
                if (r == gemm_route::packed || r == gemm_route::skinny || r == gemm_route::onednn)
                    epilogue = bias_f32.data();
                else if (g.beta == 0.0f) {
                    bias_rows(C, bias_f32);
                    gb.beta = 1.0f;
                }
            }
            gemm2d(A, B, C, gb, r, d.m, d.n, d.k, epilogue);
            if (!bias.empty() && !epilogue && g.beta != 0.0f) add_bias(C, bias_f32);
#ifdef GLIMPSE_PLANT_GEMM_ERROR
            // Test-suite audit only (never in a normal build): every GEMM result off by
            // this relative amount, as a less accurate kernel would be. The suite must
            // fail at 1e-5 (see docs/design.md, "Builds and tests").
            detail::for_each_offset(C, [&](std::int64_t, std::int64_t off) {
                const float v = load_f32(C.data(), C.type(), off);
                store_f32(C.data(), C.type(), off, v * (1.0f + static_cast<float>(GLIMPSE_PLANT_GEMM_ERROR)));
            });
#endif
        }
    }

private:
    // C = alpha op(A) op(B) + beta C on route r (route()'s), + bias_epilogue [n] on the packed,
    // skinny and onednn routes (else null).
    void gemm2d(const cview& A, const cview& B, const view& C, const gemm_args& g, gemm_route r, std::int64_t m,
                std::int64_t n, std::int64_t k, const float* bias_epilogue) const {
#if defined(GLIMPSE_CPU_ONEDNN)
        if (r == gemm_route::onednn) {
            onednn_gemm(A, B, C, g, m, n, k, bias_epilogue);
            return;
        }
#endif
        if (precision == matmul_precision::bf16) {
            gemm2d_bf16(A, B, C, g, m, n, k, r, bias_epilogue);
            return;
        }
#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
        if (r == gemm_route::skinny) {
            if (g.trans_b)
                skinny::dot(A.ptr<float>(), A.stride(0), B.data(), B.type(), B.stride(0), m, n, k, g.alpha, g.beta,
                            C.ptr<float>(), C.stride(0), bias_epilogue);
            else
                skinny::axpy(A.ptr<float>(), A.stride(0), B.ptr<float>(), B.stride(0), m, n, k, g.alpha, g.beta,
                             C.ptr<float>(), C.stride(0), bias_epilogue);
            return;
        }
        if (r == gemm_route::packed) {
            packed::gemm({A.data(), A.type(), A.stride(0), false}, {B.data(), B.type(), B.stride(0), true}, m, n, k,
                         g.alpha, g.beta, C.ptr<float>(), C.stride(0), packed::slots::f32, bias_epilogue);
            return;
        }
#endif
        tensor af;
        const cview Af = as_f32(A, af);
        float* c = C.ptr<float>();
        if (B.type() == dtype::f32) {
            sgemm(g.trans_a, g.trans_b, m, n, k, g.alpha, Af.ptr<float>(), Af.stride(0), B.ptr<float>(), B.stride(0),
                  g.beta, c, C.stride(0));
            return;
        }
        // Narrow weights: widen one panel of output columns at a time.
        std::vector<float> panel(static_cast<std::size_t>(std::min(kPanel, n) * k));
        for (std::int64_t n0 = 0; n0 < n; n0 += kPanel) {
            const std::int64_t n1 = std::min(n, n0 + kPanel), nb = n1 - n0;
            if (g.trans_b)
                widen(B, n0, n1, 0, k, panel.data());  // rows of [N, K]
            else
                widen(B, 0, k, n0, n1, panel.data());  // columns of [K, N]
            sgemm(g.trans_a, g.trans_b, m, nb, k, g.alpha, Af.ptr<float>(), Af.stride(0), panel.data(),
                  g.trans_b ? k : nb, g.beta, c + n0, C.stride(0));
        }
    }

    void gemm2d_bf16(const cview& A, const cview& B, const view& C, const gemm_args& g, std::int64_t m, std::int64_t n,
                     std::int64_t k, gemm_route r, const float* bias_epilogue) const {
        const gemm_operand a{A.data(), A.type(), A.stride(0), g.trans_a};
        const gemm_operand b{B.data(), B.type(), B.stride(0), g.trans_b};
        float* c = C.ptr<float>();
#if defined(GLIMPSE_CPU_HAVE_AMX_CODE)
        if (r == gemm_route::amx) {
            bf16_gemm_amx(a, b, m, n, k, g.alpha, g.beta, c, C.stride(0));
            return;
        }
#endif
#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
        if (r == gemm_route::packed) {
            packed::gemm(a, b, m, n, k, g.alpha, g.beta, c, C.stride(0),
                         isa >= cpu_isa::avx512_bf16 ? packed::slots::bf16_pairs : packed::slots::bf16_rounded,
                         bias_epilogue);
            return;
        }
#else
        (void)r;
        (void)bias_epilogue;
#endif
        // The emulation: the same rounded operands through sgemm, op(B) a panel of columns at a time.
        const std::vector<float> ar = rounded_dense(a, m, k);
        std::vector<float> panel(static_cast<std::size_t>(std::min(kPanel, n) * k));
        for (std::int64_t n0 = 0; n0 < n; n0 += kPanel) {
            const std::int64_t nb = std::min(kPanel, n - n0);
            parallel_rows(nb, k, [&](std::int64_t j) {
                for (std::int64_t kk = 0; kk < k; ++kk)
                    panel[static_cast<std::size_t>(j * k + kk)] = round_bf16(operand_at(b, kk, n0 + j));
            });
            sgemm(false, true, m, nb, k, g.alpha, ar.data(), k, panel.data(), k, g.beta, c + n0, C.stride(0));
        }
    }

#if defined(GLIMPSE_CPU_ONEDNN)
    // The onednn route (route() has checked the layout, dtypes, alpha and level): under bf16
    // precision A is rounded to bf16 rows first, as the packed kernels round it while packing.
    void onednn_gemm(const cview& A, const cview& B, const view& C, const gemm_args& g, std::int64_t m, std::int64_t n,
                     std::int64_t k, const float* bias) const {
        auto& mm = onednn::matmuls::get();
        if (precision == matmul_precision::f32) {
            mm.run(A.data(), A.stride(0), B.data(), B.stride(0), false, m, n, k, g.beta, C.ptr<float>(), C.stride(0),
                   bias);
            return;
        }
        static thread_local std::vector<std::uint16_t> abf;  // kept: the towers call this per Linear
        abf.resize(static_cast<std::size_t>(m * k));
        const float* a = A.ptr<float>();
        const std::int64_t lda = A.stride(0);
        std::uint16_t* const dst = abf.data();  // not abf in the loop: the team's threads have their own
        parallel_rows(m, k, [&](std::int64_t i) { onednn::round_row_bf16(a + i * lda, k, dst + i * k); });
        mm.run(dst, k, B.data(), B.stride(0), true, m, n, k, g.beta, C.ptr<float>(), C.stride(0), bias);
    }
#endif

    // C[i, :] = b for every row.
    static void bias_rows(const view& C, const std::vector<float>& b) {
        const std::int64_t m = C.size(0), n = C.size(1);
        float* c = C.ptr<float>();
        parallel_rows(m, n, [&](std::int64_t i) {
            std::memcpy(c + i * C.stride(0), b.data(), static_cast<std::size_t>(n) * sizeof(float));
        });
    }

    static void add_bias(const view& C, const std::vector<float>& b) {
        const std::int64_t m = C.size(0), n = C.size(1);
        float* c = C.ptr<float>();
        parallel_rows(m, n, [&](std::int64_t i) { ArrMap(c + i * C.stride(0), n) += ArrMapC(b.data(), n); });
    }
};

}  // namespace glimpse::detail::cpu_impl
