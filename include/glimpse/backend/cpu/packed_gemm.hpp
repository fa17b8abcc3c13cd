#pragma once
// The cpu backend's own GEMM on AVX-512: C [m, n] = alpha op(A) op(B) + beta C, after BLIS (op(B)
// packed into column micro-panels, op(A) packed per block of rows, 6 x 64 register tiles swept
// over them; the loop order is gemm()'s comment) with one driver and two micro-kernels:
//   * f32 (VFMADD231PS): op(A) broadcast one value at a time against 4 zmm of op(B). It runs the
//     f32 GEMMs, and bf16 matmul precision on CPUs without bf16 dot products, on operands
//     rounded to bf16 as they are packed (slots::bf16_rounded): the emulation at f32 speed.
//   * bf16 dot (VDPBF16PS, avx512_bf16: Cooper Lake, Sapphire Rapids, Zen 4 and later): a zmm of
//     op(B) holds 16 columns x one K pair, op(A) is broadcast a K pair at a time. A product of
//     two bf16 is exact in f32, so the result is the f32 sum of the rounded products, as the
//     emulation's, in another order. VDPBF16PS treats denormal inputs as zero and flushes
//     denormal results (Intel SDM, "VDPBF16PS"): values below 2^-126 differ from the emulation.
//
// Packed layouts, in 32-bit "slots" (one f32, or a bf16 K pair with the even K in the low half):
//   op(B), all of it:          micro-panels of kNr columns, each [K slots][kNr]
//   op(A), a block of mc rows: [mc][lda] rows of slots (the kernel broadcasts from kMr of them)
// zero past m, n and k. A K block (kKcSlots) of one op(B) micro-panel is 32 KiB and stays in L1
// while the kernel sweeps the rows of op(A) (L2). op(A) and op(B) of any dtype and transposition
// are packed; row-contiguous f32 and bf16 (the Linear layers' activations and [N, K] weights)
// take the vector paths. The micro-kernels alone run at 99 % of the FMA (or VDPBF16PS) limit of
// one core; the rest of the gap to it is packing, C traffic and the two threads' balance.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "glimpse/backend/cpu/gemm_operand.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
#define GLIMPSE_AVX512_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

namespace glimpse::detail::cpu_impl::packed {

// What a slot holds.
enum class slots { f32, bf16_rounded, bf16_pairs };

inline constexpr std::int64_t kMr = 6;                                // rows of C per register tile
inline constexpr std::int64_t kNr = 64;                               // columns of C per register tile (4 zmm)
inline constexpr std::int64_t kKcSlots = 128;                         // K block, in slots
inline constexpr std::int64_t kMcMax = 240;                           // rows of op(A) one thread packs at a time
inline constexpr std::int64_t kNc = 256;                              // columns of C swept across all K blocks
inline constexpr std::int64_t kMaxPackSlots = std::int64_t{4} << 20;  // packed op(B) kept: 16 MiB

inline constexpr std::int64_t k_per_slot(slots s) { return s == slots::bf16_pairs ? 2 : 1; }
inline constexpr std::int64_t round_up(std::int64_t x, std::int64_t to) { return (x + to - 1) / to * to; }

// 64-byte aligned scratch of n slots.
class scratch {
public:
    explicit scratch(std::int64_t n)
        : p_(static_cast<std::uint32_t*>(
              ::operator new[](static_cast<std::size_t>(std::max<std::int64_t>(n, 16)) * 4, std::align_val_t{64}))) {}
    ~scratch() { ::operator delete[](p_, std::align_val_t{64}); }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;
    std::uint32_t* get() const { return p_; }

private:
    std::uint32_t* p_;
};

// Slot holding op(X)[row, kk] (and kk + 1 for pairs); zero past k.
inline std::uint32_t slot_at(const gemm_operand& x, std::int64_t row, std::int64_t k, std::int64_t kk, slots kind) {
    switch (kind) {
        case slots::f32:
            return kk < k ? std::bit_cast<std::uint32_t>(operand_at(x, row, kk)) : 0u;
        case slots::bf16_rounded:
            return kk < k ? std::bit_cast<std::uint32_t>(round_bf16(operand_at(x, row, kk))) : 0u;
        case slots::bf16_pairs: {
            const std::uint32_t lo = kk < k ? bf16_bits(x, row, kk) : 0u;
            const std::uint32_t hi = kk + 1 < k ? bf16_bits(x, row, kk + 1) : 0u;
            return lo | (hi << 16);
        }
    }
    return 0;
}

// GCC 12 reports the intrinsics' own deliberately undefined operands as maybe-uninitialized.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)  // a GCC-only warning: Clang would warn of the unknown name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"

// The first ns slots of row `row` of op(X) (K runs along the row, k elements in all; slots past
// k are zero) into out.
GLIMPSE_AVX512_TARGET inline void row_slots(const gemm_operand& x, std::int64_t row, std::int64_t k, std::int64_t ns,
                                            slots kind, std::uint32_t* out) {
    const std::int64_t kps = k_per_slot(kind);
    const std::int64_t whole = std::min(k / kps, ns);  // slots wholly inside k
    std::int64_t s = 0;
    if (!x.trans && x.type == dtype::f32) {
        const float* src = reinterpret_cast<const float*>(x.data) + row * x.ld;
        float* of = reinterpret_cast<float*>(out);
        if (kind == slots::f32) {
            std::memcpy(out, src, static_cast<std::size_t>(whole) * 4);
            s = whole;
        } else if (kind == slots::bf16_rounded) {
            for (; s + 16 <= whole; s += 16) {
                const __m512i h = _mm512_cvtepu16_epi32(to_bf16x16(_mm512_loadu_ps(src + s)));
                _mm512_storeu_ps(of + s, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
            }
        } else {  // 32 values round to 32 bf16 in K order: 16 pairs, even K low
            for (; s + 16 <= whole; s += 16) {
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + s), to_bf16x16(_mm512_loadu_ps(src + 2 * s)));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + s + 8),
                                    to_bf16x16(_mm512_loadu_ps(src + 2 * s + 16)));
            }
        }
    } else if (!x.trans && x.type == dtype::bf16) {
        const auto* src = reinterpret_cast<const std::uint16_t*>(x.data) + row * x.ld;
        if (kind == slots::bf16_pairs) {
            std::memcpy(out, src, static_cast<std::size_t>(whole) * 4);
            s = whole;
        } else {  // bf16 widens exactly: rounding it again is the identity
            for (; s + 16 <= whole; s += 16) {
                const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + s)));
                _mm512_storeu_si512(out + s, _mm512_slli_epi32(w, 16));
            }
        }
    }
    for (; s < ns; ++s) out[s] = slot_at(x, row, k, s * kps, kind);
}

// dst row c (c < rows, stride ldd) = column c of the 16 x 16 slot block at src (stride lds).
GLIMPSE_AVX512_TARGET inline void transpose16(const std::uint32_t* src, std::int64_t lds, std::uint32_t* dst,
                                              std::int64_t ldd, std::int64_t rows) {
    // Every loop unrolled by name: at -O2 (the README's build) GCC kept r and t on the stack,
    // and transposes took twice as long as at -O3.
    __m512i r[16], t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(src + i * lds);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {  // per 128-bit lane: 2 x 2 blocks of rows 2i, 2i + 1
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {  // per lane: rows 4g .. 4g + 3 of columns 4L + j in r[4g + j]
        r[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        r[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        r[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        r[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {  // gather lane L of r[j], r[4 + j], r[8 + j], r[12 + j]: column 4L + j
        const __m512i v0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88), v1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xdd);
        const __m512i w0 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
        const __m512i w1 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xdd);
        const __m512i col[4] = {_mm512_shuffle_i32x4(v0, w0, 0x88), _mm512_shuffle_i32x4(v1, w1, 0x88),
                                _mm512_shuffle_i32x4(v0, w0, 0xdd), _mm512_shuffle_i32x4(v1, w1, 0xdd)};
#pragma GCC unroll 4
        for (int l = 0; l < 4; ++l)
            if (4 * l + j < rows) _mm512_storeu_si512(dst + (4 * l + j) * ldd, col[l]);
    }
}

// Rows [i0, i0 + mc) of op(A), all K, as rows of `lda` slots (zero-padded to a whole tile).
GLIMPSE_AVX512_TARGET inline void pack_a(const gemm_operand& a, std::int64_t i0, std::int64_t mc, std::int64_t k,
                                         std::int64_t lda, slots kind, std::uint32_t* dst) {
    for (std::int64_t r = 0; r < round_up(mc, kMr); ++r) {
        if (r < mc)
            row_slots(a, i0 + r, k, lda, kind, dst + r * lda);
        else
            std::fill(dst + r * lda, dst + (r + 1) * lda, 0u);
    }
}

// Columns [j0, j0 + kNr) of op(B) (bt = op(B)^T, so a column is a row of bt), all `total` slots
// of K, into one micro-panel [total][kNr]. A column is read whole first (16 at a time, into tmp:
// 16 x round_up(total, 16) slots), so the source is read in long runs, then transposed.
GLIMPSE_AVX512_TARGET inline void pack_b(const gemm_operand& bt, std::int64_t j0, std::int64_t n, std::int64_t k,
                                         std::int64_t total, slots kind, std::uint32_t* tmp, std::uint32_t* dst) {
    const std::int64_t ld = round_up(total, 16);
    for (std::int64_t q = 0; q < kNr / 16; ++q) {
        for (std::int64_t r = 0; r < 16; ++r) {
            std::uint32_t* t = tmp + r * ld;
            const std::int64_t j = j0 + q * 16 + r;
            if (j < n)
                row_slots(bt, j, k, total, kind, t);
            else
                std::fill(t, t + total, 0u);
            std::fill(t + total, t + ld, 0u);
        }
        for (std::int64_t sb = 0; sb < total; sb += 16)
            transpose16(tmp + sb, ld, dst + sb * kNr + q * 16, kNr, std::min<std::int64_t>(16, total - sb));
    }
}

// The valid mr x nr part of the tile at c = alpha acc + beta c (+ bias[column] when bias is not
// null; beta 0: c is not read).
GLIMPSE_AVX512_TARGET inline __attribute__((always_inline)) void store_tile(const __m512 (&acc)[kMr][4], float* c,
                                                                            std::int64_t ldc, std::int64_t mr,
                                                                            std::int64_t nr, float alpha, float beta,
                                                                            const float* bias) {
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    // Unrolled with constant indices, so that acc stays in registers (a loop bounded by mr would
    // index it at run time and put all 24 accumulators on the stack).
#pragma GCC unroll 6
    for (int r = 0; r < kMr; ++r)
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
            const std::int64_t cols = nr - 16 * q;
            if (r >= mr || cols <= 0) continue;
            const __mmask16 mask = cols >= 16 ? __mmask16(0xffff) : __mmask16((1u << cols) - 1u);
            float* p = c + r * ldc + 16 * q;
            __m512 v = alpha == 1.0f ? acc[r][q] : _mm512_mul_ps(va, acc[r][q]);
            if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, p), v);
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias + 16 * q));
            _mm512_mask_storeu_ps(p, mask, v);
        }
}

GLIMPSE_AVX512_TARGET inline __attribute__((always_inline)) void zero_tile(__m512 (&acc)[kMr][4]) {
#pragma GCC unroll 6
    for (int r = 0; r < kMr; ++r)
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_setzero_ps();
}

// One register tile, f32 slots: acc[r][q] += a[r][s] * b[s][16 q ..] (a: kMr rows, stride lda).
GLIMPSE_AVX512_TARGET inline void micro_f32(std::int64_t ks, const std::uint32_t* a, std::int64_t lda,
                                            const std::uint32_t* b, float* c, std::int64_t ldc, std::int64_t mr,
                                            std::int64_t nr, float alpha, float beta, const float* bias) {
    __m512 acc[kMr][4];
    zero_tile(acc);
    const float* af = reinterpret_cast<const float*>(a);
    const float* bf = reinterpret_cast<const float*>(b);
    for (std::int64_t s = 0; s < ks; ++s, ++af, bf += kNr) {
        const __m512 b0 = _mm512_load_ps(bf), b1 = _mm512_load_ps(bf + 16);
        const __m512 b2 = _mm512_load_ps(bf + 32), b3 = _mm512_load_ps(bf + 48);
#pragma GCC unroll 6
        for (int r = 0; r < kMr; ++r) {
            const __m512 x = _mm512_set1_ps(af[r * lda]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(x, b2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(x, b3, acc[r][3]);
        }
    }
    store_tile(acc, c, ldc, mr, nr, alpha, beta, bias);
}

// One register tile, bf16 pair slots: acc[r][q] += the two products of pair a[r][s] and b[s][16 q ..].
GLIMPSE_AVX512_BF16_TARGET inline void micro_bf16(std::int64_t ks, const std::uint32_t* a, std::int64_t lda,
                                                  const std::uint32_t* b, float* c, std::int64_t ldc, std::int64_t mr,
                                                  std::int64_t nr, float alpha, float beta, const float* bias) {
    __m512 acc[kMr][4];
    zero_tile(acc);
    for (std::int64_t s = 0; s < ks; ++s, ++a, b += kNr) {
        const auto b0 = reinterpret_cast<__m512bh>(_mm512_load_si512(b));
        const auto b1 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + 16));
        const auto b2 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + 32));
        const auto b3 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + 48));
#pragma GCC unroll 6
        for (int r = 0; r < kMr; ++r) {
            const auto x = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[r * lda])));
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], x, b2);
            acc[r][3] = _mm512_dpbf16_ps(acc[r][3], x, b3);
        }
    }
    store_tile(acc, c, ldc, mr, nr, alpha, beta, bias);
}

#pragma GCC diagnostic pop

// Scratch that outlives a call: a fresh multi-MiB buffer per GEMM costs its page faults every
// time (measured: 40 % of packing a 2048 x 2048 f32 operand). One per thread, grown to the
// largest request and kept, as oneDNN's scratchpad is: at most kMaxPackSlots of packed op(B)
// plus one row block of op(A) per thread.
inline std::uint32_t* thread_scratch(int which, std::int64_t n) {
    struct kept {
        std::unique_ptr<scratch> buf[2];
        std::int64_t size[2] = {0, 0};
    };
    static thread_local kept k;
    if (k.size[which] < n) {
        k.buf[which].reset();  // before the new one: never both at once
        k.buf[which] = std::make_unique<scratch>(n);
        k.size[which] = n;
    }
    return k.buf[which]->get();
}

// C [m, n] (row-major, ldc) = alpha op(A) op(B) + beta C (+ bias [n], f32, when not null: added
// as the first K block is stored, not in a pass of its own) with op(A), op(B) packed as `kind`;
// m, n, k > 0. bf16_pairs only where the CPU has avx512_bf16, the others where it has avx512
// (the caller's ISA level). Threads: the caller's OpenMP team size, unless already inside one.
//
// op(B) is packed once (N x K slots: the weight's own size in bf16 pairs; in chunks of column
// panels past kMaxPackSlots), and each thread packs all of K for its block of rows; then C is
// swept kNc columns at a time with the K blocks innermost, so that a C block stays in L2 across
// K instead of streaming through memory once per K block (which cost a third of the time at the
// towers' 1024^2 sizes).
// (max_pack_slots: tests make it small to reach the chunked path with small operands.)
inline void gemm(const gemm_operand& a, const gemm_operand& b, std::int64_t m, std::int64_t n, std::int64_t k,
                 float alpha, float beta, float* c, std::int64_t ldc, slots kind, const float* bias = nullptr,
                 std::int64_t max_pack_slots = kMaxPackSlots) {
    const std::int64_t total = (k + k_per_slot(kind) - 1) / k_per_slot(kind);
    const std::int64_t panels = (n + kNr - 1) / kNr;
    const gemm_operand bt{b.data, b.type, b.ld, !b.trans};
    const std::int64_t nth = gemm_threads(m, n, k);
    // Work items: row blocks (a multiple of the thread count, each at most kMcMax rows); when m
    // is too short to share, every thread takes all rows and a slice of the column panels.
    const bool split_n = m < nth * kMr * 8;
    const std::int64_t nparts = split_n ? nth : 1;
    const std::int64_t blocks = split_n ? 1 : nth * ((m + nth * kMcMax - 1) / (nth * kMcMax));
    const std::int64_t mc = split_n ? m : round_up((m + blocks - 1) / blocks, kMr);
    const std::int64_t items = (m + mc - 1) / mc * nparts;
    const std::int64_t lda = round_up(total, 16);  // op(A) row stride in slots
    // op(B) is packed a chunk of column panels at a time, at most kMaxPackSlots (64 MiB would
    // otherwise be kept for a merger's 5120 x 5120 f32 product); op(A) is packed again per chunk.
    const std::int64_t chunk = std::clamp<std::int64_t>(max_pack_slots / (total * kNr), 1, panels);
    std::uint32_t* const bpack = thread_scratch(0, chunk * total * kNr);
    const bool dot = kind == slots::bf16_pairs;
#pragma omp parallel num_threads(static_cast <int>(nth)) if (nth > 1)
    {
        // One buffer a thread: op(A)'s row block, then (disjoint use) the column staging of pack_b.
        std::uint32_t* const apack = thread_scratch(1, std::max(round_up(mc, kMr), std::int64_t{16}) * lda);
        for (std::int64_t c0 = 0; c0 < panels; c0 += chunk) {
            const std::int64_t c1 = std::min(panels, c0 + chunk), cn = c1 - c0;
#pragma omp for schedule(static)
            for (std::int64_t p = c0; p < c1; ++p)
                pack_b(bt, p * kNr, n, k, total, kind, apack, bpack + (p - c0) * total * kNr);
                // (implicit barrier: every thread reads all of bpack below)
#pragma omp for schedule(static)
            for (std::int64_t it = 0; it < items; ++it) {
                const std::int64_t i0 = (it / nparts) * mc, rows = std::min(mc, m - i0), part = it % nparts;
                const std::int64_t p0 = c0 + cn * part / nparts, p1 = c0 + cn * (part + 1) / nparts;
                if (p0 == p1) continue;
                pack_a(a, i0, rows, k, lda, kind, apack);
                for (std::int64_t q0 = p0; q0 < p1; q0 += kNc / kNr) {
                    const std::int64_t q1 = std::min(p1, q0 + kNc / kNr);
                    for (std::int64_t s0 = 0; s0 < total; s0 += kKcSlots) {
                        const std::int64_t ks = std::min(kKcSlots, total - s0);
                        const float beta_here = s0 == 0 ? beta : 1.0f;  // later K blocks add onto C
                        for (std::int64_t p = q0; p < q1; ++p) {
                            const std::int64_t j0 = p * kNr, cols = std::min(kNr, n - j0);
                            const std::uint32_t* bp = bpack + ((p - c0) * total + s0) * kNr;
                            for (std::int64_t r0 = 0; r0 < rows; r0 += kMr) {
                                const std::uint32_t* ap = apack + r0 * lda + s0;
                                float* cc = c + (i0 + r0) * ldc + j0;
                                const std::int64_t mr = std::min(kMr, rows - r0);
                                const float* bias_here = s0 == 0 && bias ? bias + j0 : nullptr;
                                if (dot)
                                    micro_bf16(ks, ap, lda, bp, cc, ldc, mr, cols, alpha, beta_here, bias_here);
                                else
                                    micro_f32(ks, ap, lda, bp, cc, ldc, mr, cols, alpha, beta_here, bias_here);
                            }
                        }
                    }
                }
            }
        }
    }
}

}  // namespace glimpse::detail::cpu_impl::packed

#undef GLIMPSE_AVX512_BF16_TARGET
#endif
