#pragma once
// Backward of the rotate-half rotary embedding (nn/rotary.hpp, backend `rotary`)
// on x [S, H, d] with cos, sin [S, d], i < d/2 paired with i + d/2:
//   y1 = x1 c1 - x2 s1,   y2 = x2 c2 + x1 s2        (c1 = cos[:, :d/2], s2 = sin[:, d/2:], ...)
// is linear in x; its transpose is
//   dx1 = dy1 c1 + dy2 s2,   dx2 = dy2 c2 - dy1 s1,
// which is the same `rotary` op with the sin table replaced by
// sin_t = -[sin[:, d/2:], sin[:, :d/2]]. For Qwen's tables (both halves equal)
// that is a rotation by -angle; the swap keeps it exact for any table.

#include <cstdint>

#include "glimpse/core/backend.hpp"

namespace glimpse::grad {

// sin_t [S, d] = -[sin[:, d/2:], sin[:, :d/2]]: built once, used for every backward through the same table.
template <Backend B>
typename B::tensor rotary_transpose_sin(B& be, const cview& sin) {
    glimpse::detail::check(sin.rank() == 2 && sin.size(1) % 2 == 0,
                           "rotary backward: sin must be [S, d] with even d, got ", sin.shape());
    const std::int64_t half = sin.size(1) / 2;
    auto st = be.alloc(sin.shape(), dtype::f32);
    const view lo = st.v().slice(1, 0, half), hi = st.v().slice(1, half, 2 * half);
    be.add(lo, sin.slice(1, half, 2 * half), lo, -1.0f);  // 0 - sin2
    be.add(hi, sin.slice(1, 0, half), hi, -1.0f);         // 0 - sin1
    return st;
}

// dy [S, H, d] -> dx in place, with the sin_t of rotary_transpose_sin.
template <Backend B>
void rotary_backward(B& be, const view& dy, const cview& cos, const cview& sin_t) {
    be.rotary(dy, cos, sin_t);
}

}  // namespace glimpse::grad
