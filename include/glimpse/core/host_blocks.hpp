#pragma once
// Where host tensors get their memory: aligned_alloc, except that large blocks are kept when a
// tensor dies and handed to the next tensor of (about) the same size.
//
// Why: glibc serves blocks over its mmap threshold (at most 32 MiB) with a fresh mmap and unmaps
// them on free, so every large activation of a tower (a Qwen2.5 1024^2 MLP hidden is 75 MB) was
// page-faulted in and cleared by the kernel anew, block after block: 17 % of the CPU time of
// that forward was in the kernel's page-fault path (perf, Zen 5). A tower allocates the same
// sizes in every block, so a kept block is almost always taken again within a few
// milliseconds. Idle blocks are capped (kKeptBytesMax) and the oldest are freed past it;
// `trim_host_blocks()` frees them all. Blocks below kMinBytes go straight to malloc, which
// keeps those itself.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <mutex>

// GCC says __SANITIZE_ADDRESS__; Clang (14) only answers __has_feature.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GLIMPSE_HOST_BLOCKS_ASAN 1
#endif
#endif
#if !defined(GLIMPSE_HOST_BLOCKS_ASAN)
#define GLIMPSE_HOST_BLOCKS_ASAN 0
#endif

namespace glimpse {

namespace detail {

class host_blocks {
public:
    static constexpr std::size_t kAlign = 64;
#if defined(__SANITIZE_ADDRESS__) || GLIMPSE_HOST_BLOCKS_ASAN
    // Under AddressSanitizer nothing is kept: every freed tensor stays poisoned for it.
    static constexpr std::size_t kMinBytes = SIZE_MAX;
#else
    static constexpr std::size_t kMinBytes = std::size_t{1} << 20;
#endif
    static constexpr std::size_t kKeptBytesMax = std::size_t{1} << 30;

    // The process's one cache (never destroyed: tensors in other statics may die after main).
    static host_blocks& instance() {
        static host_blocks* const b = new host_blocks;
        return *b;
    }

    // A block of `bytes` (a multiple of kAlign), or nullptr when out of memory.
    void* take(std::size_t bytes) {
        if (bytes >= kMinBytes) {
            const std::lock_guard<std::mutex> lock(mu_);
            // The best fit no more than 1/8 larger: the same sizes recur, others are not wasted on.
            auto best = kept_.end();
            for (auto it = kept_.begin(); it != kept_.end(); ++it)
                if (it->bytes >= bytes && it->bytes <= bytes + bytes / 8 &&
                    (best == kept_.end() || it->bytes < best->bytes))
                    best = it;
            if (best != kept_.end()) {
                void* p = best->p;
                kept_bytes_ -= best->bytes;
                kept_.erase(best);
                return p;
            }
        }
        return std::aligned_alloc(kAlign, bytes);
    }

    // Gives back a block from take(bytes) with the same `bytes`.
    void give(void* p, std::size_t bytes) noexcept {
        if (!p) return;
        if (bytes < kMinBytes || bytes > kKeptBytesMax) {
            std::free(p);
            return;
        }
        std::deque<block> freed;
        {
            const std::lock_guard<std::mutex> lock(mu_);
            try {
                kept_.push_back({p, bytes});
            } catch (...) {
                std::free(p);
                return;
            }
            kept_bytes_ += bytes;
            while (kept_bytes_ > kKeptBytesMax) {  // oldest first
                freed.push_back(kept_.front());
                kept_bytes_ -= kept_.front().bytes;
                kept_.pop_front();
            }
        }
        for (const block& b : freed) std::free(b.p);
    }

    void trim() noexcept {
        const std::lock_guard<std::mutex> lock(mu_);
        for (const block& b : kept_) std::free(b.p);
        kept_.clear();
        kept_bytes_ = 0;
    }

    std::size_t kept_bytes() {
        const std::lock_guard<std::mutex> lock(mu_);
        return kept_bytes_;
    }

private:
    struct block {
        void* p;
        std::size_t bytes;
    };
    std::mutex mu_;
    std::deque<block> kept_;
    std::size_t kept_bytes_ = 0;
};

}  // namespace detail

// Frees the large blocks kept for reuse (after a big job, before handing memory to something else).
inline void trim_host_blocks() noexcept { detail::host_blocks::instance().trim(); }

// Bytes currently kept idle for reuse.
inline std::size_t kept_host_block_bytes() { return detail::host_blocks::instance().kept_bytes(); }

}  // namespace glimpse
