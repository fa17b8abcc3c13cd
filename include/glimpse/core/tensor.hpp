#pragma once
// tensor: an owning, contiguous, 64-byte aligned block of host memory with a
// dtype and a shape. view / cview: non-owning (pointer, dtype, shape, strides)
// windows into any tensor — host or device alike; which memory a view points to
// is the business of the backend that receives it.
//
// Strides are in elements (not bytes), as in PyTorch. A view never owns memory
// and never outlives what it looks at; slicing, selecting and transposing are
// O(1) and produce strided views, and `copy` in a backend makes them contiguous.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "glimpse/core/dtype.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/host_blocks.hpp"
#include "glimpse/core/shape.hpp"

namespace glimpse {

using strides_t = std::array<std::int64_t, max_rank>;

inline strides_t contiguous_strides(const shape& s) noexcept {
    strides_t st{};
    std::int64_t acc = 1;
    for (int i = s.rank() - 1; i >= 0; --i) {
        st[static_cast<std::size_t>(i)] = acc;
        acc *= s[i];
    }
    return st;
}

template <bool Const>
class basic_view {
public:
    using byte_ptr = std::conditional_t<Const, const std::byte*, std::byte*>;

    basic_view() = default;
    basic_view(byte_ptr data, dtype t, const shape& s)
        : data_(data), dt_(t), shape_(s), strides_(contiguous_strides(s)) {}
    basic_view(byte_ptr data, dtype t, const shape& s, const strides_t& st)
        : data_(data), dt_(t), shape_(s), strides_(st) {}

    template <class T>
    requires(!std::is_same_v<std::remove_const_t<T>, std::byte>) basic_view(T* data, const shape& s)
        : basic_view(reinterpret_cast<byte_ptr>(data), dtype_of_v<std::remove_const_t<T>>, s) {}

    // A mutable view converts to a const one, never the reverse.
    operator basic_view<true>() const requires(!Const) { return basic_view<true>(data_, dt_, shape_, strides_); }

    bool empty() const noexcept { return data_ == nullptr; }
    explicit operator bool() const noexcept { return data_ != nullptr; }
    byte_ptr data() const noexcept { return data_; }
    dtype type() const noexcept { return dt_; }
    const glimpse::shape& shape() const noexcept { return shape_; }
    const strides_t& strides() const noexcept { return strides_; }
    int rank() const noexcept { return shape_.rank(); }
    std::int64_t size(int i) const noexcept { return shape_[i < 0 ? i + rank() : i]; }
    std::int64_t stride(int i) const noexcept { return strides_[static_cast<std::size_t>(i < 0 ? i + rank() : i)]; }
    std::int64_t numel() const { return shape_.numel(); }

    bool is_contiguous() const noexcept {
        std::int64_t acc = 1;
        for (int i = rank() - 1; i >= 0; --i) {
            if (shape_[i] != 1 && strides_[static_cast<std::size_t>(i)] != acc) return false;
            acc *= shape_[i];
        }
        return true;
    }

    // The view as [m, n] rows, n its last dim (unit stride), the leading dims collapsed into one
    // row index with the single stride `ld` between rows; false when they do not collapse (then
    // m, n, ld are unspecified). Dims of size 1 may carry any stride. The layout every row-wise
    // op of a backend (norms, softmax, elementwise) runs on in one pass.
    bool rows(std::int64_t& m, std::int64_t& n, std::int64_t& ld) const noexcept {
        if (rank() == 0 || stride(-1) != 1) return false;
        n = size(-1);
        m = n == 0 ? 0 : numel() / n;
        ld = n;
        // Walk the leading dims inwards-out; `inner` is the extent a row index covers so far.
        std::int64_t inner = 0;
        for (int i = rank() - 2; i >= 0; --i) {
            const std::int64_t s = shape_[i], st = strides_[static_cast<std::size_t>(i)];
            if (s == 1) continue;
            if (inner == 0)
                ld = st;
            else if (st != inner)
                return false;
            inner = st * s;
        }
        return true;
    }

    // Typed element pointer; the dtype must match.
    template <class T>
    auto ptr() const {
        using U = std::remove_const_t<T>;
        detail::check(dtype_of_v<U> == dt_, "view of dtype ", name(dt_), " accessed as ", name(dtype_of_v<U>));
        if constexpr (Const)
            return reinterpret_cast<const U*>(data_);
        else
            return reinterpret_cast<U*>(data_);
    }

    // Element offset (in elements) of a multi-index.
    std::int64_t offset(std::span<const std::int64_t> idx) const noexcept {
        std::int64_t o = 0;
        for (std::size_t i = 0; i < idx.size(); ++i) o += idx[i] * strides_[i];
        return o;
    }

    // Scalar access through f32, for tests and slow paths (bounds-checked).
    float at(std::initializer_list<std::int64_t> idx) const { return load_f32(data_, dt_, checked_offset(idx)); }
    void set(std::initializer_list<std::int64_t> idx, float v) const requires(!Const) {
        store_f32(data_, dt_, checked_offset(idx), v);
    }

    // Sub-range [begin, end) along `dim`.
    basic_view slice(int dim, std::int64_t begin, std::int64_t end) const {
        dim = norm_dim(dim);
        detail::check(0 <= begin && begin <= end && end <= shape_[dim], "slice [", begin, ", ", end, ") of dim ", dim,
                      " is outside shape ", shape_);
        basic_view v = *this;
        v.data_ = data_ + begin * strides_[static_cast<std::size_t>(dim)] * static_cast<std::int64_t>(itemsize(dt_));
        v.shape_[dim] = end - begin;
        return v;
    }

    // Index `i` along `dim`, dropping that dimension.
    basic_view select(int dim, std::int64_t i) const {
        basic_view s = slice(dim, i, i + 1);
        glimpse::shape ns;
        strides_t nst{};
        std::array<std::int64_t, max_rank> d{};
        int r = 0;
        for (int k = 0; k < rank(); ++k) {
            if (k == norm_dim(dim)) continue;
            d[static_cast<std::size_t>(r)] = s.shape_[k];
            nst[static_cast<std::size_t>(r)] = s.strides_[static_cast<std::size_t>(k)];
            ++r;
        }
        ns = glimpse::shape(std::span<const std::int64_t>(d.data(), static_cast<std::size_t>(r)));
        return basic_view(s.data_, dt_, ns, nst);
    }

    basic_view transpose(int a, int b) const {
        a = norm_dim(a);
        b = norm_dim(b);
        basic_view v = *this;
        std::swap(v.shape_[a], v.shape_[b]);
        std::swap(v.strides_[static_cast<std::size_t>(a)], v.strides_[static_cast<std::size_t>(b)]);
        return v;
    }

    // Reinterpret a contiguous view with another shape of the same element count.
    basic_view reshape(const glimpse::shape& s) const {
        detail::check(is_contiguous(), "reshape of a non-contiguous view ", shape_, " to ", s);
        detail::check(s.numel() == numel(), "reshape ", shape_, " to ", s, " changes the element count");
        return basic_view(data_, dt_, s);
    }

private:
    int norm_dim(int d) const {
        const int r = rank();
        const int n = d < 0 ? d + r : d;
        detail::check(0 <= n && n < r, "dimension ", d, " out of range for shape ", shape_);
        return n;
    }
    std::int64_t checked_offset(std::initializer_list<std::int64_t> idx) const {
        detail::check(static_cast<int>(idx.size()) == rank(), "index of rank ", idx.size(), " into shape ", shape_);
        std::int64_t o = 0;
        int i = 0;
        for (auto x : idx) {
            detail::check(0 <= x && x < shape_[i], "index ", x, " out of range in dim ", i, " of ", shape_);
            o += x * strides_[static_cast<std::size_t>(i++)];
        }
        return o;
    }

    byte_ptr data_ = nullptr;
    dtype dt_ = dtype::f32;
    glimpse::shape shape_;
    strides_t strides_{};
};

using view = basic_view<false>;
using cview = basic_view<true>;

// Owning host tensor. Move-only: copies are explicit (`clone`), so two layers
// never silently share parameters.
class tensor {
public:
    tensor() = default;
    tensor(const glimpse::shape& s, dtype t = dtype::f32) : shape_(s), dt_(t) {
        const auto n = s.numel();
        const std::size_t bytes = static_cast<std::size_t>(n) * itemsize(t);
        detail::check(n >= 0 && (n == 0 || bytes / itemsize(t) == static_cast<std::size_t>(n)), "tensor ", s,
                      " is too large");
        bytes_ = bytes;
        if (bytes_ > 0) {
            const std::size_t rounded = (bytes_ + 63) / 64 * 64;
            void* p = detail::host_blocks::instance().take(rounded);
            if (!p) detail::fail("out of memory allocating tensor ", s.str(), " (", bytes_, " bytes)");
            std::memset(p, 0, rounded);  // zero-init: no uninitialised reads, ever
            data_ = std::unique_ptr<std::byte[], block_deleter>(static_cast<std::byte*>(p), block_deleter{rounded});
        }
    }

    static tensor zeros(const glimpse::shape& s, dtype t = dtype::f32) { return tensor(s, t); }

    // A contiguous f32 tensor from values (tests, small parameters).
    static tensor from(const glimpse::shape& s, std::span<const float> values) {
        tensor t(s);
        detail::check(static_cast<std::int64_t>(values.size()) == t.numel(), "tensor::from: ", values.size(),
                      " values for shape ", s);
        if (!values.empty()) std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
        return t;
    }

    tensor(tensor&&) noexcept = default;
    tensor& operator=(tensor&&) noexcept = default;
    tensor(const tensor&) = delete;
    tensor& operator=(const tensor&) = delete;

    tensor clone() const {
        tensor t(shape_, dt_);
        if (bytes_) std::memcpy(t.data(), data(), bytes_);
        return t;
    }

    // Same values stored as another dtype (round-to-nearest-even on narrowing).
    tensor to(dtype t) const {
        if (t == dt_) return clone();
        tensor out(shape_, t);
        const auto n = numel();
        for (std::int64_t i = 0; i < n; ++i) store_f32(out.data(), t, i, load_f32(data(), dt_, i));
        return out;
    }

    bool empty() const noexcept { return !data_ && bytes_ == 0 && shape_.rank() == 0; }
    dtype type() const noexcept { return dt_; }
    const glimpse::shape& shape() const noexcept { return shape_; }
    int rank() const noexcept { return shape_.rank(); }
    std::int64_t size(int i) const noexcept { return shape_[i < 0 ? i + rank() : i]; }
    std::int64_t numel() const { return shape_.numel(); }
    std::size_t nbytes() const noexcept { return bytes_; }
    std::byte* data() noexcept { return data_.get(); }
    const std::byte* data() const noexcept { return data_.get(); }

    template <class T>
    T* ptr() {
        return v().template ptr<T>();
    }
    template <class T>
    const T* ptr() const {
        return cv().template ptr<T>();
    }

    view v() noexcept { return view(data_.get(), dt_, shape_); }
    cview cv() const noexcept { return cview(data_.get(), dt_, shape_); }
    operator view() noexcept { return v(); }
    operator cview() const noexcept { return cv(); }

    float at(std::initializer_list<std::int64_t> idx) const { return cv().at(idx); }
    void set(std::initializer_list<std::int64_t> idx, float x) { v().set(idx, x); }

    // Reinterpret with a new shape of equal element count (in place, O(1)).
    tensor& reshape_inplace(const glimpse::shape& s) {
        detail::check(s.numel() == numel(), "reshape ", shape_, " to ", s, " changes the element count");
        shape_ = s;
        return *this;
    }

private:
    // Large blocks go back to host_blocks for the next tensor of their size (core/host_blocks.hpp).
    struct block_deleter {
        std::size_t bytes;  // (no default member initializer: it would make the deleter not
                            // default-constructible inside the still incomplete tensor)
        void operator()(std::byte* p) const noexcept { detail::host_blocks::instance().give(p, bytes); }
    };
    std::unique_ptr<std::byte[], block_deleter> data_;
    glimpse::shape shape_;
    dtype dt_ = dtype::f32;
    std::size_t bytes_ = 0;
};

namespace detail {
// Calls f(flat_index, offset_in_elements) for every element of v in row-major
// order: the slow, general way to walk any strided view.
template <class V, class F>
void for_each_offset(const V& v, F&& f) {
    const int r = v.rank();
    const std::int64_t n = v.numel();
    std::array<std::int64_t, max_rank> idx{};
    for (std::int64_t flat = 0; flat < n; ++flat) {
        std::int64_t off = 0;
        for (int i = 0; i < r; ++i) off += idx[static_cast<std::size_t>(i)] * v.stride(i);
        f(flat, off);
        for (int i = r - 1; i >= 0; --i) {
            if (++idx[static_cast<std::size_t>(i)] < v.size(i)) break;
            idx[static_cast<std::size_t>(i)] = 0;
        }
    }
}
}  // namespace detail

// Shape check with a message that names the tensor.
inline void expect_shape(const cview& v, const shape& s, std::string_view what) {
    if (!(v.shape() == s)) detail::fail(what, ": expected shape ", s.str(), ", got ", v.shape().str());
}

}  // namespace glimpse
