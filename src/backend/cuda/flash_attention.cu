// The tensor-core attention forward (flash-attention 2's schedule, hand-written mma.sync):
// a block of 4 warps owns 64 queries of one head (16 per warp) and walks the keys of their
// segment 64 at a time. K and V tiles stream through shared memory with cp.async, two stages
// deep; Q stays in registers as mma A fragments; scores S = Q K^T and the output O = P V
// accumulate in f32 registers; the softmax is online (running max and sum per query row,
// base 2), so no Sq x Sk score matrix exists anywhere.
//
// Fragment layouts are PTX's for mma.m16n8k16 (and m16n8k8 for the d % 16 == 8 tail):
// lane = 4 r + c/2 holds rows r and r + 8, columns c and c + 1 (c even). The score
// accumulators of two adjacent 8-key tiles are exactly the A fragment of P for one 16-key
// step, so P never leaves registers; V's B fragments come from ldmatrix.trans.
//
// Traits (tile sizes, step counts, shared pitch) are in cuda/flash_attention.hpp.

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "glimpse/backend/cuda/error.hpp"
#include "glimpse/backend/cuda/flash_attention.hpp"

namespace glimpse::detail::cuda_impl {

namespace {

constexpr float kLog2e = 1.4426950408889634f;

template <class T>
struct mma_type;
template <>
struct mma_type<__nv_bfloat16> {
    static __device__ __forceinline__ std::uint32_t pack(float lo, float hi) {
        const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<const std::uint32_t*>(&v);
    }
    static __device__ __forceinline__ void m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                                    std::uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ void m16n8k8(float (&d)[4], const std::uint32_t (&a)[2], std::uint32_t b0) {
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(b0));
    }
};
template <>
struct mma_type<__half> {
    static __device__ __forceinline__ std::uint32_t pack(float lo, float hi) {
        const __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<const std::uint32_t*>(&v);
    }
    static __device__ __forceinline__ void m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                                    std::uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ void m16n8k8(float (&d)[4], const std::uint32_t (&a)[2], std::uint32_t b0) {
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(b0));
    }
};

// 16 bytes global -> shared, asynchronously; `ok` false zero-fills (keys past the segment).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool ok) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Two 8x8 b16 matrices, transposed: rows given by lanes 0-7 and 8-15.
__device__ __forceinline__ void ldmatrix_x2_trans(std::uint32_t& b0, std::uint32_t& b1, const void* smem) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(b0), "=r"(b1) : "r"(s));
}

template <class T>
__device__ __forceinline__ std::uint32_t ld32(const T* p) {
    return *reinterpret_cast<const std::uint32_t*>(p);
}

template <int D, class T>
__global__ void __launch_bounds__(flash_traits<D>::threads) flash_forward_kernel(attention_params p) {
    using Tr = flash_traits<D>;
    using M = mma_type<T>;
    constexpr int BK = Tr::block_k, P = Tr::pitch, CH = D / 8;  // 16-byte chunks per row
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* ks = reinterpret_cast<T*>(smem_raw);  // [stages][BK][P]
    T* vs = ks + Tr::stages * BK * P;        // [stages][BK][P]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int r = lane >> 2, c = (lane & 3) * 2;
    const int* tile = p.tiles + 4 * blockIdx.x;
    const int q0 = tile[0], q1 = tile[1], k0 = tile[2], k1 = tile[3];
    const std::int64_t h = blockIdx.y;
    const T* Q = static_cast<const T*>(p.q) + h * p.q_head;
    const T* K = static_cast<const T*>(p.k) + h * p.k_head;
    const T* V = static_cast<const T*>(p.v) + h * p.v_head;

    // This thread's two query rows (r and r + 8 of the warp's 16).
    const int qa = q0 + warp * 16 + r, qb = qa + 8;
    const bool va = qa < q1, vb = qb < q1;

    // Q as A fragments, for all of d (rows past the tile are zeros).
    std::uint32_t qf[Tr::k16_steps][4];
    std::uint32_t qt[2] = {0u, 0u};
    {
        const T* ra = Q + static_cast<std::int64_t>(va ? qa : q0) * p.q_row;
        const T* rb = Q + static_cast<std::int64_t>(vb ? qb : q0) * p.q_row;
#pragma unroll
        for (int kk = 0; kk < Tr::k16_steps; ++kk) {
            qf[kk][0] = va ? ld32(ra + kk * 16 + c) : 0u;
            qf[kk][1] = vb ? ld32(rb + kk * 16 + c) : 0u;
            qf[kk][2] = va ? ld32(ra + kk * 16 + 8 + c) : 0u;
            qf[kk][3] = vb ? ld32(rb + kk * 16 + 8 + c) : 0u;
        }
        if constexpr (Tr::k8_steps) {
            qt[0] = va ? ld32(ra + Tr::k16_steps * 16 + c) : 0u;
            qt[1] = vb ? ld32(rb + Tr::k16_steps * 16 + c) : 0u;
        }
    }

    float o[Tr::n_tiles_d][4];
#pragma unroll
    for (int t = 0; t < Tr::n_tiles_d; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;

    const int ntiles = (k1 - k0 + BK - 1) / BK;
    auto load_tile = [&](int kt, int stage) {
        const int kbase = k0 + kt * BK;
        T* kd = ks + stage * BK * P;
        T* vd = vs + stage * BK * P;
        for (int idx = tid; idx < BK * CH; idx += Tr::threads) {
            const int row = idx / CH, ch = idx % CH;
            const int key = kbase + row;
            const bool ok = key < k1;
            const std::int64_t src = static_cast<std::int64_t>(ok ? key : k0);
            cp_async16(kd + row * P + ch * 8, K + src * p.k_row + ch * 8, ok);
            cp_async16(vd + row * P + ch * 8, V + src * p.v_row + ch * 8, ok);
        }
    };

    load_tile(0, 0);
    cp_async_commit();
    for (int kt = 0; kt < ntiles; ++kt) {
        const int st = kt & 1;
        if (kt + 1 < ntiles) {
            load_tile(kt + 1, st ^ 1);  // its buffer was released by the barrier ending tile kt - 1
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T* Ks = ks + st * BK * P;
        const T* Vs = vs + st * BK * P;

        // S = Q K^T for 64 keys: 8 tiles of 8 keys.
        float s[Tr::n_tiles_k][4];
#pragma unroll
        for (int nt = 0; nt < Tr::n_tiles_k; ++nt) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            const T* krow = Ks + (nt * 8 + r) * P;
#pragma unroll
            for (int kk = 0; kk < Tr::k16_steps; ++kk)
                M::m16n8k16(s[nt], qf[kk], ld32(krow + kk * 16 + c), ld32(krow + kk * 16 + 8 + c));
            if constexpr (Tr::k8_steps) M::m16n8k8(s[nt], qt, ld32(krow + Tr::k16_steps * 16 + c));
        }

        // Scale to base 2, add the mask, drop keys past the segment; the running max.
        const int kbase = k0 + kt * BK;
        float mx_a = m_a, mx_b = m_b;
#pragma unroll
        for (int nt = 0; nt < Tr::n_tiles_k; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = kbase + nt * 8 + c + (e & 1);
                const int row = e < 2 ? qa : qb;
                const bool rv = e < 2 ? va : vb;
                float x = s[nt][e] * p.scale_log2;
                if (key >= k1)
                    x = -INFINITY;
                else if (p.mask && rv)
                    x += p.mask[static_cast<std::int64_t>(row) * p.mask_ld + key] * kLog2e;
                s[nt][e] = x;
                if (e < 2)
                    mx_a = fmaxf(mx_a, x);
                else
                    mx_b = fmaxf(mx_b, x);
            }
        // A row's 64 scores are spread over the 4 lanes of a quad.
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
        // A row masked out so far (max -inf) exponentiates against 0: its terms are 0.
        const float ms_a = mx_a == -INFINITY ? 0.0f : mx_a, ms_b = mx_b == -INFINITY ? 0.0f : mx_b;
        const float al_a = exp2f(m_a - ms_a), al_b = exp2f(m_b - ms_b);
        m_a = mx_a;
        m_b = mx_b;
        float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
        for (int nt = 0; nt < Tr::n_tiles_k; ++nt) {
            s[nt][0] = exp2f(s[nt][0] - ms_a);
            s[nt][1] = exp2f(s[nt][1] - ms_a);
            s[nt][2] = exp2f(s[nt][2] - ms_b);
            s[nt][3] = exp2f(s[nt][3] - ms_b);
            sum_a += s[nt][0] + s[nt][1];
            sum_b += s[nt][2] + s[nt][3];
        }
        // Per-lane partial sums: the quad's lanes share the max, so they add up at the end.
        l_a = l_a * al_a + sum_a;
        l_b = l_b * al_b + sum_b;
#pragma unroll
        for (int t = 0; t < Tr::n_tiles_d; ++t) {
            o[t][0] *= al_a;
            o[t][1] *= al_a;
            o[t][2] *= al_b;
            o[t][3] *= al_b;
        }

        // O += P V: 4 steps of 16 keys, d / 8 output tiles each.
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            const std::uint32_t a[4] = {M::pack(s[2 * kk][0], s[2 * kk][1]), M::pack(s[2 * kk][2], s[2 * kk][3]),
                                        M::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                        M::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            const T* vrow = Vs + (kk * 16 + (lane & 15)) * P;
#pragma unroll
            for (int t = 0; t < Tr::n_tiles_d; ++t) {
                std::uint32_t b0, b1;
                ldmatrix_x2_trans(b0, b1, vrow + t * 8);
                M::m16n8k16(o[t], a, b0, b1);
            }
        }
        __syncthreads();  // this stage's buffers may now be overwritten
    }

    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const float inv_a = 1.0f / l_a, inv_b = 1.0f / l_b;
    float* oa = p.o + static_cast<std::int64_t>(qa) * p.o_row + h * p.o_head;
    float* ob = p.o + static_cast<std::int64_t>(qb) * p.o_row + h * p.o_head;
#pragma unroll
    for (int t = 0; t < Tr::n_tiles_d; ++t) {
        if (va) *reinterpret_cast<float2*>(oa + t * 8 + c) = make_float2(o[t][0] * inv_a, o[t][1] * inv_a);
        if (vb) *reinterpret_cast<float2*>(ob + t * 8 + c) = make_float2(o[t][2] * inv_b, o[t][3] * inv_b);
    }
    if (p.lse2 && (lane & 3) == 0) {
        if (va) p.lse2[h * p.sq + qa] = (m_a == -INFINITY ? 0.0f : m_a) + log2f(l_a);
        if (vb) p.lse2[h * p.sq + qb] = (m_b == -INFINITY ? 0.0f : m_b) + log2f(l_b);
    }
}

template <int D, class T>
void launch(const attention_params& p, stream_t s) {
    using Tr = flash_traits<D>;
    auto* kernel = flash_forward_kernel<D, T>;
    if constexpr (Tr::smem_bytes > 48 * 1024)
        GLIMPSE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::smem_bytes));
    kernel<<<dim3(static_cast<unsigned>(p.num_tiles), static_cast<unsigned>(p.heads)), Tr::threads, Tr::smem_bytes,
             s>>>(p);
    GLIMPSE_CUDA_CHECK_LAUNCH("flash_attention_forward");
}

}  // namespace

void launch_flash_attention(const attention_params& p, stream_t s) {
    check(p.q_type == p.k_type && p.k_type == p.v_type && p.q_type != dtype::f32,
          "cuda flash attention: q, k, v must all be bf16 or all f16");
    check(p.d == p.dv && flash_head_dim_supported(p.d), "cuda flash attention: head dims ", p.d, "/", p.dv);
    check(p.tile_q == flash_traits<64>::block_q, "cuda flash attention: tiles cut for ", p.tile_q, " queries");
    check(p.q_row % 8 == 0 && p.q_head % 8 == 0 && p.k_row % 8 == 0 && p.k_head % 8 == 0 && p.v_row % 8 == 0 &&
              p.v_head % 8 == 0 && p.o_row % 2 == 0 && p.o_head % 2 == 0,
          "cuda flash attention: strides must be multiples of 8 (16-byte rows)");
    check(p.heads <= 65535, "cuda flash attention: ", p.heads, " heads");
    if (p.num_tiles == 0) return;
    head_dim_switch(p.d, [&]<int D>() {
        if (p.q_type == dtype::bf16)
            launch<D, __nv_bfloat16>(p, s);
        else
            launch<D, __half>(p, s);
    });
}

}  // namespace glimpse::detail::cuda_impl
