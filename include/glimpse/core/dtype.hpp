#pragma once
// Storage dtypes. Compute on the CPU is always f32 (or f64 in the reference
// backend's accumulators); bf16/f16 exist to halve the memory of weights and
// are converted with round-to-nearest-even on store, like PyTorch's `.to()`.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "glimpse/core/error.hpp"

namespace glimpse {

enum class dtype : std::uint8_t { f32, bf16, f16 };

// Strong storage types: arithmetic happens after `to_f32`, never on these.
struct bf16_t {
    std::uint16_t bits;
};
struct f16_t {
    std::uint16_t bits;
};

constexpr std::size_t itemsize(dtype t) noexcept { return t == dtype::f32 ? 4 : 2; }

constexpr std::string_view name(dtype t) noexcept {
    switch (t) {
        case dtype::f32:
            return "f32";
        case dtype::bf16:
            return "bf16";
        case dtype::f16:
            return "f16";
    }
    return "?";
}

// The names used by safetensors headers.
constexpr std::string_view safetensors_name(dtype t) noexcept {
    switch (t) {
        case dtype::f32:
            return "F32";
        case dtype::bf16:
            return "BF16";
        case dtype::f16:
            return "F16";
    }
    return "?";
}

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
    static constexpr dtype value = dtype::f32;
};
template <>
struct dtype_of<bf16_t> {
    static constexpr dtype value = dtype::bf16;
};
template <>
struct dtype_of<f16_t> {
    static constexpr dtype value = dtype::f16;
};
template <class T>
inline constexpr dtype dtype_of_v = dtype_of<T>::value;

// ---- bf16 --------------------------------------------------------------------------
constexpr float to_f32(bf16_t v) noexcept { return std::bit_cast<float>(static_cast<std::uint32_t>(v.bits) << 16); }

constexpr bf16_t to_bf16(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)  // NaN: keep it a (quiet) NaN
        return bf16_t{static_cast<std::uint16_t>((u >> 16) | 0x40u)};
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // ties to even
    return bf16_t{static_cast<std::uint16_t>((u + rounding) >> 16)};
}

// ---- f16 (IEEE binary16), subnormals included ------------------------------------------
constexpr float to_f32(f16_t v) noexcept {
    const std::uint32_t h = v.bits;
    const std::uint32_t sign = (h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    std::uint32_t out;
    if (exp == 0x1f) {
        out = sign | 0x7f800000u | (mant << 13);
    } else if (exp == 0) {
        if (mant == 0) {
            out = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400u) == 0);
            out = sign | (static_cast<std::uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else {
        out = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return std::bit_cast<float>(out);
}

constexpr f16_t to_f16(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
    const std::uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return f16_t{static_cast<std::uint16_t>(sign | 0x7e00u)};   // NaN
    if (a >= 0x477ff000u) return f16_t{static_cast<std::uint16_t>(sign | 0x7c00u)};  // overflow -> inf
    if (a < 0x38800000u) {
        // Result is subnormal or zero: shift the full mantissa into place, round to nearest even.
        if (a < 0x33000000u) return f16_t{sign};  // below half the smallest subnormal
        const std::uint32_t e = a >> 23;
        const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
        const std::uint32_t shift = 126u - e;  // 14 + (113 - e), in [14, 24]
        std::uint32_t r = m >> shift;
        const std::uint32_t rem = m & ((1u << shift) - 1u);
        const std::uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return f16_t{static_cast<std::uint16_t>(sign | r)};
    }
    const std::uint32_t rounding = 0xfffu + ((a >> 13) & 1u);
    const std::uint32_t r = (a + rounding - (112u << 23)) >> 13;
    return f16_t{static_cast<std::uint16_t>(sign | r)};
}

constexpr float to_f32(float v) noexcept { return v; }

template <class T>
constexpr T from_f32(float f) noexcept {
    if constexpr (std::is_same_v<T, float>)
        return f;
    else if constexpr (std::is_same_v<T, bf16_t>)
        return to_bf16(f);
    else
        return to_f16(f);
}

// Load element i of a raw buffer of dtype t as f32.
inline float load_f32(const std::byte* base, dtype t, std::ptrdiff_t i) noexcept {
    switch (t) {
        case dtype::f32:
            return reinterpret_cast<const float*>(base)[i];
        case dtype::bf16:
            return to_f32(reinterpret_cast<const bf16_t*>(base)[i]);
        case dtype::f16:
            return to_f32(reinterpret_cast<const f16_t*>(base)[i]);
    }
    return 0.0f;
}

inline void store_f32(std::byte* base, dtype t, std::ptrdiff_t i, float v) noexcept {
    switch (t) {
        case dtype::f32:
            reinterpret_cast<float*>(base)[i] = v;
            return;
        case dtype::bf16:
            reinterpret_cast<bf16_t*>(base)[i] = to_bf16(v);
            return;
        case dtype::f16:
            reinterpret_cast<f16_t*>(base)[i] = to_f16(v);
            return;
    }
}

// Call f with a value of the storage type of t (float, bf16_t or f16_t).
template <class F>
decltype(auto) visit_dtype(dtype t, F&& f) {
    switch (t) {
        case dtype::f32:
            return f(float{});
        case dtype::bf16:
            return f(bf16_t{});
        case dtype::f16:
            return f(f16_t{});
    }
    detail::fail("unknown dtype");
}

}  // namespace glimpse
