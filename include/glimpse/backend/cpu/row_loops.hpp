#pragma once
// The cpu backend's loops over rows: OpenMP across rows when the work is worth waking the
// team, widening bf16/f16 rows to f32, and the strided copies with dtype conversion that every
// op falls back to for views whose rows do not collapse (basic_view::rows).

#include <cstdint>
#include <cstring>
#include <vector>

#include <Eigen/Core>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "glimpse/core/tensor.hpp"

namespace glimpse::detail::cpu_impl {

using ArrMap = Eigen::Map<Eigen::ArrayXf>;
using ArrMapC = Eigen::Map<const Eigen::ArrayXf>;

inline bool in_parallel() {
#if defined(_OPENMP)
    return omp_in_parallel() != 0;
#else
    return true;
#endif
}

template <class F>
void parallel_rows(std::int64_t n, std::int64_t work_per_row, F&& f) {
    // Small problems are not worth waking the team for.
    const bool par = n > 1 && n * work_per_row > 32768;
#pragma omp parallel for schedule(static) if (par)
    for (std::int64_t i = 0; i < n; ++i) f(i);
}

// Widen n elements of one contiguous row of dtype t to f32.
inline void widen_row(const std::byte* row, dtype t, std::int64_t n, float* o) {
    switch (t) {
        case dtype::f32:
            std::memcpy(o, row, static_cast<std::size_t>(n) * sizeof(float));
            return;
        case dtype::bf16: {
            const auto* p = reinterpret_cast<const bf16_t*>(row);
            for (std::int64_t j = 0; j < n; ++j) o[j] = to_f32(p[j]);
            return;
        }
        case dtype::f16: {
            const auto* p = reinterpret_cast<const f16_t*>(row);
            for (std::int64_t j = 0; j < n; ++j) o[j] = to_f32(p[j]);
            return;
        }
    }
}

// Widen rows [r0, r1) x cols [c0, c1) of a 2-D view (or a 1-D one, r1 = 1) to a dense f32 buffer.
inline void widen(const cview& v, std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1, float* out) {
    const std::int64_t ld = v.rank() == 1 ? 0 : v.stride(0);
    for (std::int64_t i = r0; i < r1; ++i)
        widen_row(v.data() + (i * ld + c0) * static_cast<std::int64_t>(itemsize(v.type())), v.type(), c1 - c0,
                  out + (i - r0) * (c1 - c0));
}

// Any strided copy with dtype conversion: offsets of src and dst differ only by their
// strides, so both are walked in step.
inline void generic_copy(const cview& src, const view& dst) {
    std::vector<std::int64_t> doffs;
    doffs.reserve(static_cast<std::size_t>(dst.numel()));
    detail::for_each_offset(dst, [&](std::int64_t, std::int64_t off) { doffs.push_back(off); });
    detail::for_each_offset(src, [&](std::int64_t flat, std::int64_t off) {
        store_f32(dst.data(), dst.type(), doffs[static_cast<std::size_t>(flat)], load_f32(src.data(), src.type(), off));
    });
}

// The backend's copy: memcpy when both are contiguous in one dtype, rows widened in parallel
// into f32, else element by element. `parallel` false keeps to the calling thread (a copy
// inside a parallel loop).
inline void copy_rows(const cview& src, const view& dst, bool parallel = true) {
    if (src.type() == dst.type() && src.is_contiguous() && dst.is_contiguous()) {
        if (src.numel())
            std::memcpy(dst.data(), src.data(), static_cast<std::size_t>(src.numel()) * itemsize(src.type()));
        return;
    }
    std::int64_t m, n, lds, ldd;
    if (dst.type() == dtype::f32 && src.rows(m, n, lds) && dst.rows(m, n, ldd)) {
        const auto isz = static_cast<std::int64_t>(itemsize(src.type()));
        const auto row = [&](std::int64_t i) {
            widen_row(src.data() + i * lds * isz, src.type(), n, dst.ptr<float>() + i * ldd);
        };
        if (parallel)
            parallel_rows(m, n, row);
        else
            for (std::int64_t i = 0; i < m; ++i) row(i);
        return;
    }
    generic_copy(src, dst);
}

// v as f32 with unit inner stride: v itself when it is, else widened into `holder`.
inline cview as_f32(const cview& v, tensor& holder) {
    if (v.type() == dtype::f32 && v.stride(-1) == 1) return v;
    holder = tensor(v.shape(), dtype::f32);
    copy_rows(v, holder.v());
    return holder.cv();
}

// An f32 view with collapsible rows: v itself when it is one, else a contiguous f32 copy in `holder`.
inline cview f32_rows(const cview& v, tensor& holder, std::int64_t& m, std::int64_t& n, std::int64_t& ld) {
    if (v.type() == dtype::f32 && v.rows(m, n, ld)) return v;
    holder = tensor(v.shape(), dtype::f32);
    copy_rows(v, holder.v());
    holder.cv().rows(m, n, ld);
    return holder.cv();
}

}  // namespace glimpse::detail::cpu_impl
