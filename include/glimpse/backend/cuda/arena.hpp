#pragma once
// device_arena: the cuda backend's caching device allocator.
//
// cudaMalloc and cudaFree synchronise the device and cost tens of microseconds; a layer
// that allocates its activations per call (every nn layer does: `be.alloc`) would pay that
// per op. So freed blocks are kept in size-binned free lists and handed out again:
// after the first forward of a model, the steady state makes no cudaMalloc at all
// (tests/cuda checks `stats().device_mallocs` stays flat over a second forward).
//
// Stream-ordered reuse, as PyTorch's caching allocator: a block released on stream s is
// immediately reusable by an allocation on s (work queued later on s runs after the work
// that used it); an allocation on another stream first makes its stream wait on an event
// recorded at the release. Sizes are rounded (512 B below 1 MiB, 2 MiB above) so blocks of
// nearby sizes are interchangeable; a cached block is used for a request at most twice as
// small (small blocks) or 16 MiB smaller (large), never split. When cudaMalloc runs out,
// the arena synchronises, returns every cached block to the driver and tries once more.
//
// No CUDA types here (plain C++ includes this header): streams are CUstream_st*, which is
// what cudaStream_t is. Defined in src/backend/cuda/arena.cpp. Thread-safe.

#include <cstddef>
#include <cstdint>
#include <memory>

struct CUstream_st;

namespace glimpse::detail::cuda_impl {

using stream_t = CUstream_st*;

struct arena_stats {
    std::size_t in_use = 0;            // bytes handed out (rounded sizes)
    std::size_t cached = 0;            // bytes held in the free lists
    std::size_t peak_in_use = 0;       // high-water mark of in_use
    std::uint64_t device_mallocs = 0;  // cudaMalloc calls so far
    std::uint64_t device_frees = 0;    // cudaFree calls so far (trim, out-of-memory retry, destruction)
    std::uint64_t reuses = 0;          // allocations served from the free lists
};

class device_arena {
public:
    explicit device_arena(int device);
    ~device_arena();
    device_arena(const device_arena&) = delete;
    device_arena& operator=(const device_arena&) = delete;

    // A block of at least `bytes` (256-byte aligned), usable by work queued on `s`.
    // bytes == 0 gives nullptr.
    void* allocate(std::size_t bytes, stream_t s);
    // Returns a block from allocate(bytes, ...); work queued on `s` may still use it.
    void release(void* p, std::size_t bytes, stream_t s) noexcept;
    // Frees every cached block (synchronises the device first).
    void trim();
    // Destroys stream s when the arena goes: tensors that outlive their backend still release
    // their blocks on the stream they were made on.
    void own_stream(stream_t s);
    arena_stats stats() const;
    int device() const noexcept { return device_; }

    // The size a request is rounded to.
    static std::size_t rounded(std::size_t bytes) noexcept {
        constexpr std::size_t small = std::size_t{1} << 20, big = std::size_t{2} << 20;
        return bytes <= small ? (bytes + 511) / 512 * 512 : (bytes + big - 1) / big * big;
    }

private:
    struct impl;
    int device_;
    std::unique_ptr<impl> impl_;
};

}  // namespace glimpse::detail::cuda_impl
