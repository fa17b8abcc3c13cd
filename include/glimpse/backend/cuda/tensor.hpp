#pragma once
// device_tensor: the cuda backend's owning tensor. Contiguous device memory from a
// device_arena (returned to it, stream-ordered, on destruction), a dtype and a shape;
// move-only like glimpse::tensor. Its views (v(), cv()) point to device memory: they
// go to the cuda backend's ops, and reach the host only through `download`.

#include <cstddef>
#include <memory>
#include <utility>

#include "glimpse/backend/cuda/arena.hpp"
#include "glimpse/core/tensor.hpp"

namespace glimpse {

class device_tensor {
public:
    device_tensor() = default;
    // Uninitialised memory for shape s (the backend's alloc zero-fills it).
    device_tensor(std::shared_ptr<detail::cuda_impl::device_arena> arena, const glimpse::shape& s, dtype t,
                  detail::cuda_impl::stream_t stream)
        : arena_(std::move(arena)), shape_(s), dt_(t), stream_(stream) {
        bytes_ = static_cast<std::size_t>(s.numel()) * itemsize(t);
        data_ = static_cast<std::byte*>(arena_->allocate(bytes_, stream_));
    }
    ~device_tensor() { reset(); }

    device_tensor(device_tensor&& o) noexcept { swap(o); }
    device_tensor& operator=(device_tensor&& o) noexcept {
        if (this != &o) {
            reset();
            swap(o);
        }
        return *this;
    }
    device_tensor(const device_tensor&) = delete;
    device_tensor& operator=(const device_tensor&) = delete;

    dtype type() const noexcept { return dt_; }
    const glimpse::shape& shape() const noexcept { return shape_; }
    int rank() const noexcept { return shape_.rank(); }
    std::int64_t size(int i) const noexcept { return shape_[i < 0 ? i + rank() : i]; }
    std::int64_t numel() const { return shape_.numel(); }
    std::size_t nbytes() const noexcept { return bytes_; }
    std::byte* data() noexcept { return data_; }
    const std::byte* data() const noexcept { return data_; }

    view v() noexcept { return view(data_, dt_, shape_); }
    cview cv() const noexcept { return cview(data_, dt_, shape_); }

    // Same memory, new shape of equal element count (as glimpse::tensor::reshape_inplace).
    device_tensor& reshape_inplace(const glimpse::shape& s) {
        detail::check(s.numel() == numel(), "reshape ", shape_, " to ", s, " changes the element count");
        shape_ = s;
        return *this;
    }

private:
    void reset() noexcept {
        if (arena_ && data_) arena_->release(data_, bytes_, stream_);
        data_ = nullptr;
        bytes_ = 0;
        arena_.reset();
    }
    void swap(device_tensor& o) noexcept {
        std::swap(arena_, o.arena_);
        std::swap(data_, o.data_);
        std::swap(bytes_, o.bytes_);
        std::swap(shape_, o.shape_);
        std::swap(dt_, o.dt_);
        std::swap(stream_, o.stream_);
    }

    std::shared_ptr<detail::cuda_impl::device_arena> arena_;
    std::byte* data_ = nullptr;
    std::size_t bytes_ = 0;
    glimpse::shape shape_;
    dtype dt_ = dtype::f32;
    detail::cuda_impl::stream_t stream_ = nullptr;
};

}  // namespace glimpse
