// The cuda backend's memory-bound kernels (cuda/kernels.hpp): copies, elementwise ops,
// activations, row reductions (softmax, norms, column sums), RoPE, gathers and the GEMM
// bias epilogue. One thread per element (grid-stride) or one block per row; inputs are
// read in their storage dtype, arithmetic is f32 (column sums f64, as the cpu backend).

#include <cmath>

#include "device_util.cuh"
#include "glimpse/backend/cuda/error.hpp"
#include "glimpse/backend/cuda/kernels.hpp"

namespace glimpse::detail::cuda_impl {

namespace {

constexpr int kThreads = 256;

// Offset (in elements) of flat row-major index `flat` in a strided view of these sizes.
__device__ __forceinline__ std::int64_t offset_of(std::int64_t flat, int rank, const std::int64_t* size,
                                                  const std::int64_t* stride) {
    std::int64_t off = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const std::int64_t i = flat % size[d];
        flat /= size[d];
        off += i * stride[d];
    }
    return off;
}

__global__ void copy_kernel(strided src, strided dst, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
         i += std::int64_t{gridDim.x} * blockDim.x)
        store_f32(dst.p, dst.type, offset_of(i, dst.rank, dst.size, dst.stride),
                  load_f32(src.p, src.type, offset_of(i, src.rank, src.size, src.stride)));
}

__global__ void fill_kernel(strided dst, float value, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
         i += std::int64_t{gridDim.x} * blockDim.x)
        store_f32(dst.p, dst.type, offset_of(i, dst.rank, dst.size, dst.stride), value);
}

// Grid-stride over the m x n elements of a rows operand; f(i, j).
template <class F>
__device__ __forceinline__ void for_rows(std::int64_t m, std::int64_t n, F f) {
    const std::int64_t total = m * n;
    for (std::int64_t t = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; t < total;
         t += std::int64_t{gridDim.x} * blockDim.x)
        f(t / n, t % n);
}

__global__ void binary_kernel(binary_op op, rows_in a, rows_in b, float alpha, rows_out o) {
    for_rows(o.m, o.n, [&](std::int64_t i, std::int64_t j) {
        const float x = load_f32(a.p, a.type, i * a.ld + j), y = load_f32(b.p, b.type, i * b.ld + j);
        o.p[i * o.ld + j] = op == binary_op::add ? x + alpha * y : x * y;
    });
}

__device__ __forceinline__ float act_f(activation act, float x) {
    switch (act) {
        case activation::identity:
            return x;
        case activation::silu:
            return x / (1.0f + expf(-x));
        case activation::gelu_erf:
            return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case activation::gelu_tanh:
            return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    }
    return x;
}

__global__ void activate_kernel(activation act, rows_in x, rows_out o) {
    for_rows(o.m, o.n, [&](std::int64_t i, std::int64_t j) {
        o.p[i * o.ld + j] = act_f(act, load_f32(x.p, x.type, i * x.ld + j));
    });
}

__global__ void swiglu_kernel(rows_in g, rows_in u, rows_out o) {
    for_rows(o.m, o.n, [&](std::int64_t i, std::int64_t j) {
        const float x = load_f32(g.p, g.type, i * g.ld + j);
        o.p[i * o.ld + j] = x / (1.0f + expf(-x)) * load_f32(u.p, u.type, i * u.ld + j);
    });
}

__global__ void bias_rows_kernel(const void* bias, dtype bt, rows_out c, bool accumulate) {
    for_rows(c.m, c.n, [&](std::int64_t i, std::int64_t j) {
        float& e = c.p[i * c.ld + j];
        e = (accumulate ? e : 0.0f) + load_f32(bias, bt, j);
    });
}

// One block per row.
__global__ void softmax_kernel(rows_out x, float scale) {
    __shared__ float scratch[32];
    float* row = x.p + blockIdx.x * x.ld;
    float mx = -INFINITY;
    for (std::int64_t j = threadIdx.x; j < x.n; j += blockDim.x) mx = fmaxf(mx, scale * row[j]);
    mx = block_reduce<true>(mx, scratch);
    float sum = 0.0f;
    for (std::int64_t j = threadIdx.x; j < x.n; j += blockDim.x) {
        const float e = expf(scale * row[j] - mx);
        row[j] = e;
        sum += e;
    }
    sum = block_reduce<false>(sum, scratch);
    const float inv = 1.0f / sum;
    for (std::int64_t j = threadIdx.x; j < x.n; j += blockDim.x) row[j] *= inv;
}

__global__ void rms_norm_kernel(rows_in x, const void* w, dtype wt, float eps, rows_out o) {
    __shared__ float scratch[32];
    const std::int64_t i = blockIdx.x;
    float ss = 0.0f;
    for (std::int64_t j = threadIdx.x; j < x.n; j += blockDim.x) {
        const float v = load_f32(x.p, x.type, i * x.ld + j);
        ss += v * v;
    }
    ss = block_reduce<false>(ss, scratch);
    const float inv = rsqrtf(ss / static_cast<float>(x.n) + eps);
    for (std::int64_t j = threadIdx.x; j < x.n; j += blockDim.x)
        o.p[i * o.ld + j] = load_f32(x.p, x.type, i * x.ld + j) * inv * load_f32(w, wt, j);
}

__global__ void layer_norm_kernel(rows_in x, const void* w, dtype wt, const void* b, dtype bt, float eps, rows_out o) {
    __shared__ float scratch[32];
    const std::int64_t i = blockIdx.x;
    const float n = static_cast<float>(x.n);
    float s = 0.0f;
    for (std::int64_t j = threadIdx.x; j < x.n; j += blockDim.x) s += load_f32(x.p, x.type, i * x.ld + j);
    const float mu = block_reduce<false>(s, scratch) / n;
    // Two passes (the row is in L1/L2 by now): no cancellation in E[x^2] - mu^2.
    float v = 0.0f;
    for (std::int64_t j = threadIdx.x; j < x.n; j += blockDim.x) {
        const float c = load_f32(x.p, x.type, i * x.ld + j) - mu;
        v += c * c;
    }
    const float inv = rsqrtf(block_reduce<false>(v, scratch) / n + eps);
    for (std::int64_t j = threadIdx.x; j < x.n; j += blockDim.x) {
        const float y = (load_f32(x.p, x.type, i * x.ld + j) - mu) * inv * load_f32(w, wt, j);
        o.p[i * o.ld + j] = b ? y + load_f32(b, bt, j) : y;
    }
}

// One thread per column; consecutive threads read consecutive columns (coalesced).
__global__ void sum_rows_kernel(rows_in x, float* out) {
    const std::int64_t j = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
    if (j >= x.n) return;
    double acc = 0.0;
    for (std::int64_t i = 0; i < x.m; ++i) acc += load_f32(x.p, x.type, i * x.ld + j);
    out[j] = static_cast<float>(acc);
}

__global__ void rotary_kernel(float* x, std::int64_t S, std::int64_t H, std::int64_t half, std::int64_t ld_s,
                              std::int64_t ld_h, rows_in c, rows_in sn) {
    const std::int64_t total = S * H * half;
    for (std::int64_t t = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; t < total;
         t += std::int64_t{gridDim.x} * blockDim.x) {
        const std::int64_t i = t % half, h = (t / half) % H, s = t / (half * H);
        float* p = x + s * ld_s + h * ld_h;
        const float x1 = p[i], x2 = p[i + half];
        const std::int64_t r = s * c.ld, rs = s * sn.ld;
        p[i] = x1 * load_f32(c.p, c.type, r + i) - x2 * load_f32(sn.p, sn.type, rs + i);
        p[i + half] = x2 * load_f32(c.p, c.type, r + i + half) + x1 * load_f32(sn.p, sn.type, rs + i + half);
    }
}

__global__ void gather_kernel(strided src, const std::int64_t* idx, strided dst, std::int64_t n) {
    std::int64_t row_n = 1;
    for (int d = 1; d < dst.rank; ++d) row_n *= dst.size[d];
    for (std::int64_t t = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; t < n;
         t += std::int64_t{gridDim.x} * blockDim.x) {
        const std::int64_t r = t / row_n, rest = t % row_n;
        const std::int64_t so = idx[r] * src.stride[0] + offset_of(rest, src.rank - 1, src.size + 1, src.stride + 1);
        const std::int64_t dof = r * dst.stride[0] + offset_of(rest, dst.rank - 1, dst.size + 1, dst.stride + 1);
        store_f32(dst.p, dst.type, dof, load_f32(src.p, src.type, so));
    }
}

std::int64_t numel(const strided& v) {
    std::int64_t n = 1;
    for (int d = 0; d < v.rank; ++d) n *= v.size[d];
    return n;
}

// Threads per row-block: enough to cover short rows without idle warps.
int row_threads(std::int64_t n) { return n >= 1024 ? 512 : n >= 256 ? 256 : n >= 64 ? 128 : 32; }

}  // namespace

void launch_copy(const strided& src, const strided& dst, stream_t s) {
    const std::int64_t n = numel(dst);
    if (n == 0) return;
    copy_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(src, dst, n);
    GLIMPSE_CUDA_CHECK_LAUNCH("copy");
}

void launch_fill(const strided& dst, float value, stream_t s) {
    const std::int64_t n = numel(dst);
    if (n == 0) return;
    fill_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(dst, value, n);
    GLIMPSE_CUDA_CHECK_LAUNCH("fill");
}

void launch_binary(binary_op op, const rows_in& a, const rows_in& b, float alpha, const rows_out& out, stream_t s) {
    if (out.m * out.n == 0) return;
    binary_kernel<<<grid_for(out.m * out.n, kThreads), kThreads, 0, s>>>(op, a, b, alpha, out);
    GLIMPSE_CUDA_CHECK_LAUNCH(op == binary_op::add ? "add" : "mul");
}

void launch_activate(activation act, const rows_in& x, const rows_out& out, stream_t s) {
    if (out.m * out.n == 0) return;
    activate_kernel<<<grid_for(out.m * out.n, kThreads), kThreads, 0, s>>>(act, x, out);
    GLIMPSE_CUDA_CHECK_LAUNCH("activate");
}

void launch_swiglu(const rows_in& gate, const rows_in& up, const rows_out& out, stream_t s) {
    if (out.m * out.n == 0) return;
    swiglu_kernel<<<grid_for(out.m * out.n, kThreads), kThreads, 0, s>>>(gate, up, out);
    GLIMPSE_CUDA_CHECK_LAUNCH("swiglu");
}

void launch_softmax_rows(const rows_out& x, float scale, stream_t s) {
    if (x.m * x.n == 0) return;
    check(x.m <= 0x7fffffff, "softmax_rows: ", x.m, " rows");
    softmax_kernel<<<static_cast<unsigned>(x.m), row_threads(x.n), 0, s>>>(x, scale);
    GLIMPSE_CUDA_CHECK_LAUNCH("softmax_rows");
}

void launch_rms_norm(const rows_in& x, const void* w, dtype wt, float eps, const rows_out& out, stream_t s) {
    if (x.m * x.n == 0) return;
    rms_norm_kernel<<<static_cast<unsigned>(x.m), row_threads(x.n), 0, s>>>(x, w, wt, eps, out);
    GLIMPSE_CUDA_CHECK_LAUNCH("rms_norm");
}

void launch_layer_norm(const rows_in& x, const void* w, dtype wt, const void* b, dtype bt, float eps,
                       const rows_out& out, stream_t s) {
    if (x.m * x.n == 0) return;
    layer_norm_kernel<<<static_cast<unsigned>(x.m), row_threads(x.n), 0, s>>>(x, w, wt, b, bt, eps, out);
    GLIMPSE_CUDA_CHECK_LAUNCH("layer_norm");
}

void launch_sum_rows(const rows_in& x, float* out, stream_t s) {
    if (x.n == 0) return;
    sum_rows_kernel<<<static_cast<unsigned>((x.n + kThreads - 1) / kThreads), kThreads, 0, s>>>(x, out);
    GLIMPSE_CUDA_CHECK_LAUNCH("sum_rows");
}

void launch_rotary(float* x, std::int64_t S, std::int64_t H, std::int64_t d, std::int64_t ld_s, std::int64_t ld_h,
                   const rows_in& cos, const rows_in& sin, stream_t s) {
    const std::int64_t n = S * H * (d / 2);
    if (n == 0) return;
    rotary_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(x, S, H, d / 2, ld_s, ld_h, cos, sin);
    GLIMPSE_CUDA_CHECK_LAUNCH("rotary");
}

void launch_gather_rows(const strided& src, const std::int64_t* idx, const strided& dst, stream_t s) {
    const std::int64_t n = numel(dst);
    if (n == 0) return;
    gather_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(src, idx, dst, n);
    GLIMPSE_CUDA_CHECK_LAUNCH("gather_rows");
}

void launch_bias_rows(const void* bias, dtype bt, const rows_out& c, bool accumulate, stream_t s) {
    if (c.m * c.n == 0) return;
    bias_rows_kernel<<<grid_for(c.m * c.n, kThreads), kThreads, 0, s>>>(bias, bt, c, accumulate);
    GLIMPSE_CUDA_CHECK_LAUNCH("bias_rows");
}

}  // namespace glimpse::detail::cuda_impl
