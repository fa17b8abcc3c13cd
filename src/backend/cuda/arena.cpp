// device_arena (cuda/arena.hpp): size-binned free lists over cudaMalloc, stream-ordered reuse.

#include "glimpse/backend/cuda/arena.hpp"

#include <map>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>

#include "glimpse/backend/cuda/error.hpp"
#include "glimpse/core/error.hpp"

namespace glimpse::detail::cuda_impl {

namespace {
struct block {
    void* p;
    stream_t stream;    // the stream that released it last
    cudaEvent_t event;  // recorded at that release (for reuse on another stream)
};
}  // namespace

struct device_arena::impl {
    std::mutex mu;
    std::multimap<std::size_t, block> free;  // rounded size -> cached block
    std::map<void*, cudaEvent_t> events;     // one event per block ever released, reused
    arena_stats st;
    std::vector<stream_t> streams;  // destroyed with the arena

    // Best fit among cached blocks that are not much larger than asked.
    bool take(std::size_t n, stream_t s, void*& out) {
        const std::size_t limit = n <= (std::size_t{1} << 20) ? 2 * n : n + (std::size_t{16} << 20);
        // The smallest fitting block, one last released on the same stream if there is one.
        auto best = free.end();
        for (auto j = free.lower_bound(n); j != free.end() && j->first <= limit; ++j) {
            if (j->second.stream == s) {
                best = j;
                break;
            }
            if (best == free.end()) best = j;
        }
        if (best == free.end()) return false;
        if (best->second.stream != s) GLIMPSE_CUDA_CHECK(cudaStreamWaitEvent(s, best->second.event, 0));
        out = best->second.p;
        st.cached -= best->first;
        st.in_use += best->first;
        ++st.reuses;
        free.erase(best);
        return true;
    }

    void free_all() {
        for (auto& [n, b] : free) {
            (void)cudaFree(b.p);
            ++st.device_frees;
            st.cached -= n;
            if (auto e = events.find(b.p); e != events.end()) {
                (void)cudaEventDestroy(e->second);
                events.erase(e);
            }
        }
        free.clear();
    }
};

device_arena::device_arena(int device) : device_(device), impl_(std::make_unique<impl>()) {}

device_arena::~device_arena() {
    int prev = 0;
    if (cudaGetDevice(&prev) == cudaSuccess) (void)cudaSetDevice(device_);
    (void)cudaDeviceSynchronize();
    impl_->free_all();
    for (auto& [p, e] : impl_->events) (void)cudaEventDestroy(e);
    for (stream_t s : impl_->streams) (void)cudaStreamDestroy(s);
    (void)cudaSetDevice(prev);
}

void* device_arena::allocate(std::size_t bytes, stream_t s) {
    if (bytes == 0) return nullptr;
    const std::size_t n = rounded(bytes);
    const std::lock_guard<std::mutex> lock(impl_->mu);
    void* p = nullptr;
    if (impl_->take(n, s, p)) {
        impl_->st.peak_in_use = std::max(impl_->st.peak_in_use, impl_->st.in_use);
        return p;
    }
    cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaErrorMemoryAllocation) {
        // Out of memory with blocks cached: give them back and try once more.
        (void)cudaGetLastError();
        GLIMPSE_CUDA_CHECK(cudaDeviceSynchronize());
        impl_->free_all();
        e = cudaMalloc(&p, n);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        fail("cudaMalloc(", n, " bytes) failed on device ", device_, ": ", cudaGetErrorString(e),
             " (arena: ", impl_->st.in_use, " bytes in use, ", impl_->st.cached, " cached)");
    }
    ++impl_->st.device_mallocs;
    impl_->st.in_use += n;
    impl_->st.peak_in_use = std::max(impl_->st.peak_in_use, impl_->st.in_use);
    return p;
}

void device_arena::release(void* p, std::size_t bytes, stream_t s) noexcept {
    if (!p) return;
    const std::size_t n = rounded(bytes);
    const std::lock_guard<std::mutex> lock(impl_->mu);
    cudaEvent_t& ev = impl_->events[p];
    if (!ev && cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) {
        // No event, no safe cross-stream reuse: hand the block back to the driver instead.
        (void)cudaGetLastError();
        impl_->events.erase(p);
        (void)cudaStreamSynchronize(s);
        (void)cudaFree(p);
        ++impl_->st.device_frees;
        impl_->st.in_use -= n;
        return;
    }
    (void)cudaEventRecord(ev, s);
    impl_->free.emplace(n, block{p, s, ev});
    impl_->st.in_use -= n;
    impl_->st.cached += n;
}

void device_arena::trim() {
    const std::lock_guard<std::mutex> lock(impl_->mu);
    GLIMPSE_CUDA_CHECK(cudaDeviceSynchronize());
    impl_->free_all();
}

void device_arena::own_stream(stream_t s) {
    const std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->streams.push_back(s);
}

arena_stats device_arena::stats() const {
    const std::lock_guard<std::mutex> lock(impl_->mu);
    return impl_->st;
}

}  // namespace glimpse::detail::cuda_impl
