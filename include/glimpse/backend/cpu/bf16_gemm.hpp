#pragma once
// The cpu backend's bf16 matmul precision (cpu::matmul_precision::bf16): C = alpha op(A) op(B) +
// beta C with both operands rounded to bf16 (round to nearest even) and the products summed in f32.
// It is torch.set_float32_matmul_precision("medium") for glimpse: weights stored in bf16 lose
// nothing, activations lose their low 16 bits at each GEMM input, norms, softmax and residuals
// stay f32.
//
// Two implementations with one meaning:
//   * bf16_gemm_amx: Intel AMX tiles (TDPBF16PS, Sapphire Rapids and later), picked at run time
//     when CPUID reports AMX-BF16 and Linux grants the tile state (arch_prctl XCOMP_PERM). It is
//     compiled with target attributes, so a build for any x86-64 level carries it.
//   * the emulation (cpu::gemm2d_bf16 on rounded_dense operands): both operands rounded to bf16
//     values held in f32, then sgemm. It runs everywhere, and it is the reference the AMX kernel
//     is held to (the two differ only in the order of the f32 additions).
//
// AMX shapes (Intel SDM vol. 1, ch. 3 "AMX"): a tile is up to 16 rows x 64 bytes. TDPBF16PS
// C[16 x 16 f32] += A[16 x 32 bf16] * B[16 x (16 x 2) bf16], where B is in the "VNNI" layout:
// tile row r holds, for each of 16 output columns n, the pair op(B)[2r, n], op(B)[2r + 1, n].
// So op(A) is converted to a row-major bf16 [Mp, Kp] buffer (tile loads read it with a stride),
// and op(B) is packed, 64 columns at a time, into VNNI tiles by the thread that uses them.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "glimpse/backend/cpu/gemm_operand.hpp"
#include "glimpse/core/dtype.hpp"

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define GLIMPSE_CPU_HAVE_AMX_CODE 1
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace glimpse::detail::cpu_impl {

// ---- run-time capability ------------------------------------------------------------------

// Whether the CPU has AMX-BF16 and Linux grants this process the tile state; decided once per
// process. (Whether the kernel runs is the backend's ISA level, cpu/isa.hpp: `amx`.)
inline bool amx_bf16_available() {
#if defined(GLIMPSE_CPU_HAVE_AMX_CODE)
    static const bool ok = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (__get_cpuid_max(0, nullptr) < 7) return false;
        __cpuid_count(7, 0, a, b, c, d);
        const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
        const bool avx512bw = (b >> 30) & 1u;
        if (!amx_bf16 || !amx_tile || !avx512bw) return false;
        // Linux keeps the 8 KiB tile state off until a process asks (since 5.16).
        constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
        return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    }();
    return ok;
#else
    return false;
#endif
}

// ---- the emulated reference ---------------------------------------------------------------

// op(X) rounded to bf16, as a dense row-major f32 [rows, cols] buffer.
inline std::vector<float> rounded_dense(const gemm_operand& x, std::int64_t rows, std::int64_t cols) {
    std::vector<float> out(static_cast<std::size_t>(rows * cols));
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
    for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t j = 0; j < cols; ++j)
            out[static_cast<std::size_t>(i * cols + j)] = round_bf16(operand_at(x, i, j));
    return out;
}

// ---- the AMX kernel -----------------------------------------------------------------------
#if defined(GLIMPSE_CPU_HAVE_AMX_CODE)
#define GLIMPSE_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,amx-tile,amx-bf16")))

namespace amx {

inline constexpr std::int64_t kTm = 16;          // tile rows (M) and output columns (N) per tile
inline constexpr std::int64_t kTk = 32;          // bf16 K elements per tile (64 bytes)
inline constexpr std::int64_t kBlockN = 64;      // op(B) columns one thread packs and sweeps M with
inline constexpr std::int64_t kTileElems = 512;  // bf16 elements in one 16 x 64-byte tile

struct alignas(64) tile_config {
    std::uint8_t palette = 1;
    std::uint8_t start_row = 0;
    std::uint8_t reserved[14] = {};
    std::uint16_t colsb[16] = {};
    std::uint8_t rows[16] = {};
};

// Tiles 0-3: C (2 x 2 of 16 x 16 f32); 4, 5: A (two 16-row slabs); 6, 7: B (two 16-column slabs).
GLIMPSE_AMX_TARGET inline void configure() {
    tile_config cfg;
    for (int t = 0; t < 8; ++t) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

// GCC 12 reports the intrinsics' own deliberately undefined operands (_mm512_undefined_*) as
// maybe-uninitialized when they are inlined into a target-attribute function.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)  // a GCC-only warning: Clang would warn of the unknown name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Row i of op(A) [m, k] as bf16 into dst[0, kp), zero beyond k.
GLIMPSE_AMX_TARGET inline void convert_a_row(const gemm_operand& a, std::int64_t i, std::int64_t k, std::int64_t kp,
                                             std::uint16_t* dst) {
    std::int64_t j = 0;
    if (!a.trans && a.type == dtype::f32) {
        const float* src = reinterpret_cast<const float*>(a.data) + i * a.ld;
        for (; j + 16 <= k; j += 16)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j), to_bf16x16(_mm512_loadu_ps(src + j)));
    } else if (!a.trans && a.type == dtype::bf16) {
        std::memcpy(dst, a.data + i * a.ld * 2, static_cast<std::size_t>(k) * 2);
        j = k;
    }
    for (; j < k; ++j) dst[j] = bf16_bits(a, i, j);
    std::fill(dst + k, dst + kp, std::uint16_t{0});
}

#pragma GCC diagnostic pop

// Columns [n0, n0 + kBlockN) of op(B) [k, n] into VNNI tiles: tile (t, kc) covers columns
// n0 + 16t .. + 16 and K chunk kc; it starts at dst + (t * kc_count + kc) * kTileElems and its
// row r, column c, pair p is op(B)[32 kc + 2 r + p, n0 + 16 t + c]. Zero outside [k) x [n).
GLIMPSE_AMX_TARGET inline void pack_b_block(const gemm_operand& b, std::int64_t n0, std::int64_t n, std::int64_t k,
                                            std::int64_t kc_count, std::uint16_t* dst) {
    for (std::int64_t t = 0; t < kBlockN / kTm; ++t) {
        std::uint16_t* tiles = dst + t * kc_count * kTileElems;
        for (std::int64_t c = 0; c < kTm; ++c) {
            const std::int64_t col = n0 + t * kTm + c;
            if (col >= n) {
                for (std::int64_t kc = 0; kc < kc_count; ++kc)
                    for (std::int64_t r = 0; r < 16; ++r) {
                        tiles[kc * kTileElems + r * 32 + c * 2] = 0;
                        tiles[kc * kTileElems + r * 32 + c * 2 + 1] = 0;
                    }
                continue;
            }
            // op(B)[:, col] is row `col` of the stored [N, K] matrix when trans: contiguous in K.
            if (b.trans && b.type == dtype::bf16) {
                const auto* src = reinterpret_cast<const std::uint16_t*>(b.data) + col * b.ld;
                for (std::int64_t kk = 0; kk < kc_count * kTk; kk += 2) {
                    std::uint16_t* o = tiles + (kk / kTk) * kTileElems + ((kk % kTk) / 2) * 32 + c * 2;
                    o[0] = kk < k ? src[kk] : std::uint16_t{0};
                    o[1] = kk + 1 < k ? src[kk + 1] : std::uint16_t{0};
                }
            } else {
                for (std::int64_t kk = 0; kk < kc_count * kTk; kk += 2) {
                    std::uint16_t* o = tiles + (kk / kTk) * kTileElems + ((kk % kTk) / 2) * 32 + c * 2;
                    o[0] = kk < k ? bf16_bits(b, kk, col) : std::uint16_t{0};
                    o[1] = kk + 1 < k ? bf16_bits(b, kk + 1, col) : std::uint16_t{0};
                }
            }
        }
    }
}

// C tile (i, j) of the 2 x 2 register block: C[m0 + 16 i .., n0 + 16 j ..], direct when whole and
// the epilogue is plain (alpha 1, beta 0 or 1), else through a 16 x 16 scratch.
struct c_tile {
    float* c;
    std::int64_t ldc, rows, cols;  // the valid part: rows <= 16, cols <= 16
    bool direct;
    alignas(64) float scratch[16 * 16];

    float* ptr() { return direct ? c : scratch; }
    std::int64_t stride_bytes() const { return direct ? ldc * 4 : 64; }
};

// The tile instructions take their register as an immediate (the intrinsics are macros that
// paste it into the mnemonic), hence a switch over the four C tiles.
#define GLIMPSE_AMX_ON_C_TILE(i, STMT) \
    switch (i) {                       \
        case 0:                        \
            STMT(0);                   \
            break;                     \
        case 1:                        \
            STMT(1);                   \
            break;                     \
        case 2:                        \
            STMT(2);                   \
            break;                     \
        default:                       \
            STMT(3);                   \
            break;                     \
    }

GLIMPSE_AMX_TARGET inline void c_begin(int tmm, c_tile& t, float beta, bool plain) {
#define GLIMPSE_AMX_ZERO(T) _tile_zero(T)
#define GLIMPSE_AMX_LOAD(T) _tile_loadd(T, t.ptr(), t.stride_bytes())
#define GLIMPSE_AMX_STORE(T) _tile_stored(T, t.ptr(), t.stride_bytes())
    if (beta == 0.0f || !plain) {
        GLIMPSE_AMX_ON_C_TILE(tmm, GLIMPSE_AMX_ZERO)
        return;
    }
    if (!t.direct) {  // beta == 1 on a partial tile: stage the valid part
        std::fill(t.scratch, t.scratch + 256, 0.0f);
        for (std::int64_t r = 0; r < t.rows; ++r)
            std::memcpy(t.scratch + r * 16, t.c + r * t.ldc, static_cast<std::size_t>(t.cols) * 4);
    }
    GLIMPSE_AMX_ON_C_TILE(tmm, GLIMPSE_AMX_LOAD)
}

GLIMPSE_AMX_TARGET inline void c_end(int tmm, c_tile& t, float alpha, float beta, bool plain) {
    GLIMPSE_AMX_ON_C_TILE(tmm, GLIMPSE_AMX_STORE)
    if (t.direct) return;
    for (std::int64_t r = 0; r < t.rows; ++r) {
        float* crow = t.c + r * t.ldc;
        const float* s = t.scratch + r * 16;
        if (plain)
            std::memcpy(crow, s, static_cast<std::size_t>(t.cols) * 4);
        else
            for (std::int64_t j = 0; j < t.cols; ++j) crow[j] = alpha * s[j] + (beta == 0.0f ? 0.0f : beta * crow[j]);
    }
}

#undef GLIMPSE_AMX_ZERO
#undef GLIMPSE_AMX_LOAD
#undef GLIMPSE_AMX_STORE
#undef GLIMPSE_AMX_ON_C_TILE

}  // namespace amx

// C [m, n] (row-major, ldc) = alpha op(A) op(B) + beta C, on AMX. Call only when
// amx_bf16_available(). Scratch: op(A) in bf16 (m x k x 2 bytes) plus 64 x k x 2 bytes per thread.
GLIMPSE_AMX_TARGET inline void bf16_gemm_amx(const gemm_operand& a, const gemm_operand& b, std::int64_t m,
                                             std::int64_t n, std::int64_t k, float alpha, float beta, float* c,
                                             std::int64_t ldc) {
    using namespace amx;  // NOLINT: local to this function
    const std::int64_t kp = (k + kTk - 1) / kTk * kTk, kc_count = kp / kTk;
    const std::int64_t mp = (m + 2 * kTm - 1) / (2 * kTm) * (2 * kTm);
    const bool plain = alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    const std::int64_t nblocks = (n + kBlockN - 1) / kBlockN;

    std::vector<std::uint16_t> abuf(static_cast<std::size_t>(mp * kp));
    bool par = false;
#if defined(_OPENMP)
    par = omp_in_parallel() == 0 && omp_get_max_threads() > 1 && static_cast<double>(m) * n * k > 4.0e6;
#endif
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static)
        for (std::int64_t i = 0; i < mp; ++i) {
            std::uint16_t* row = abuf.data() + i * kp;
            if (i < m)
                convert_a_row(a, i, k, kp, row);
            else
                std::fill(row, row + kp, std::uint16_t{0});
        }
        // (implicit barrier: every thread reads all of abuf below)
        std::vector<std::uint16_t> bbuf(static_cast<std::size_t>((kBlockN / kTm) * kc_count * kTileElems));
        configure();
        c_tile ct[4];
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t nb = 0; nb < nblocks; ++nb) {
            const std::int64_t n0 = nb * kBlockN;
            pack_b_block(b, n0, n, k, kc_count, bbuf.data());
            for (std::int64_t m0 = 0; m0 < m; m0 += 2 * kTm) {
                for (std::int64_t jp = 0; jp < kBlockN / kTm; jp += 2) {
                    const std::int64_t nj = n0 + jp * kTm;
                    if (nj >= n) break;
                    for (int t = 0; t < 4; ++t) {
                        const std::int64_t r0 = m0 + (t / 2) * kTm, c0 = nj + (t % 2) * kTm;
                        c_tile& x = ct[t];
                        x.c = c + r0 * ldc + c0;
                        x.ldc = ldc;
                        x.rows = std::clamp<std::int64_t>(m - r0, 0, kTm);
                        x.cols = std::clamp<std::int64_t>(n - c0, 0, kTm);
                        x.direct = plain && x.rows == kTm && x.cols == kTm;
                        if (x.rows == 0 || x.cols == 0) x.c = c;  // never written back (see c_end)
                    }
                    c_begin(0, ct[0], beta, plain);
                    c_begin(1, ct[1], beta, plain);
                    c_begin(2, ct[2], beta, plain);
                    c_begin(3, ct[3], beta, plain);
                    const std::uint16_t* a0 = abuf.data() + m0 * kp;
                    const std::uint16_t* a1 = a0 + kTm * kp;
                    const std::uint16_t* b0 = bbuf.data() + jp * kc_count * kTileElems;
                    const std::uint16_t* b1 = b0 + kc_count * kTileElems;
                    for (std::int64_t kc = 0; kc < kc_count; ++kc) {
                        _tile_loadd(4, a0 + kc * kTk, kp * 2);
                        _tile_loadd(5, a1 + kc * kTk, kp * 2);
                        _tile_loadd(6, b0 + kc * kTileElems, 64);
                        _tile_loadd(7, b1 + kc * kTileElems, 64);
                        _tile_dpbf16ps(0, 4, 6);
                        _tile_dpbf16ps(1, 4, 7);
                        _tile_dpbf16ps(2, 5, 6);
                        _tile_dpbf16ps(3, 5, 7);
                    }
                    c_end(0, ct[0], alpha, beta, plain);
                    c_end(1, ct[1], alpha, beta, plain);
                    c_end(2, ct[2], alpha, beta, plain);
                    c_end(3, ct[3], alpha, beta, plain);
                }
            }
        }
        _tile_release();
    }
}
#undef GLIMPSE_AMX_TARGET
#endif

}  // namespace glimpse::detail::cpu_impl
