#pragma once
// Launch wrappers of the cuda backend's own kernels (everything but GEMM, which is
// cuBLAS, and attention, flash_attention.hpp). Declared here, defined in
// src/backend/cuda/*.cu; the backend (src/backend/cuda/backend.cpp) validates the
// views with op_checks.hpp and hands these plain descriptors over.
//
// Every kernel reads its inputs in their storage dtype (f32, bf16, f16) and does f32
// arithmetic; outputs are f32 unless said. "rows" operands are [m, n] with unit inner
// stride and rows `ld` elements apart; the backend makes other layouts contiguous first.
// Each launch is checked (GLIMPSE_CUDA_CHECK_LAUNCH).

#include <cstdint>

#include "glimpse/backend/cuda/arena.hpp"
#include "glimpse/core/backend.hpp"

namespace glimpse::detail::cuda_impl {

// Any strided view of rank <= 6 (rank 0: one element).
struct strided {
    void* p = nullptr;
    dtype type = dtype::f32;
    int rank = 0;
    std::int64_t size[6] = {};
    std::int64_t stride[6] = {};
};

// An input [m, n] (ld between rows; ld = 0 repeats one row: a broadcast).
struct rows_in {
    const void* p = nullptr;
    dtype type = dtype::f32;
    std::int64_t m = 0, n = 0, ld = 0;
};

// An f32 output [m, n].
struct rows_out {
    float* p = nullptr;
    std::int64_t m = 0, n = 0, ld = 0;
};

// dst = src elementwise, with dtype conversion (round to nearest even), any strides.
void launch_copy(const strided& src, const strided& dst, stream_t s);
void launch_fill(const strided& dst, float value, stream_t s);

enum class binary_op : std::uint8_t { add, mul };
// out = a + alpha b (add) or a * b (mul); b.ld = 0 broadcasts one row.
void launch_binary(binary_op op, const rows_in& a, const rows_in& b, float alpha, const rows_out& out, stream_t s);
void launch_activate(activation act, const rows_in& x, const rows_out& out, stream_t s);
// out = silu(gate) * up
void launch_swiglu(const rows_in& gate, const rows_in& up, const rows_out& out, stream_t s);
// x <- softmax(scale x) per row, in place.
void launch_softmax_rows(const rows_out& x, float scale, stream_t s);
// out = x / sqrt(mean(x^2) + eps) * w (w: [n] of dtype wt).
void launch_rms_norm(const rows_in& x, const void* w, dtype wt, float eps, const rows_out& out, stream_t s);
// out = (x - mean) / sqrt(var + eps) * w + b (biased var; b may be null).
void launch_layer_norm(const rows_in& x, const void* w, dtype wt, const void* b, dtype bt, float eps,
                       const rows_out& out, stream_t s);
// out[j] = sum_i x[i, j] (f64 accumulation, as the cpu backend).
void launch_sum_rows(const rows_in& x, float* out, stream_t s);
// In place on f32 x [S, H, d] (row stride ld_s, head stride ld_h): rotate-half RoPE with
// cos, sin [S, d].
void launch_rotary(float* x, std::int64_t S, std::int64_t H, std::int64_t d, std::int64_t ld_s, std::int64_t ld_h,
                   const rows_in& cos, const rows_in& sin, stream_t s);
// dst[i] = src[idx[i]] along dim 0 (idx: device int64 [n]); src and dst of equal rank and
// trailing sizes, any strides and dtypes.
void launch_gather_rows(const strided& src, const std::int64_t* idx, const strided& dst, stream_t s);
// C[i, :] = bias (accumulate = false) or C[i, :] += bias: the GEMM bias epilogue.
void launch_bias_rows(const void* bias, dtype bt, const rows_out& c, bool accumulate, stream_t s);

}  // namespace glimpse::detail::cuda_impl
