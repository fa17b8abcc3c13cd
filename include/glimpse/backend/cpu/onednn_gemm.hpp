#pragma once
// The cpu backend's Linear-layout GEMMs on oneDNN's matmul primitive, where the build found
// oneDNN (GLIMPSE_HAVE_ONEDNN; Debian: libdnnl-dev) and the backend's gemm library is `onednn`
// (cpu_options::gemm, the default where it is built in; GLIMPSE_CPU_GEMM=own|onednn).
//
// Why: measured per shape class of the towers in one process (bench/bench_gemm_peers.cpp,
// docs/benchmarks.md), oneDNN 2.6's brgemm kernels run the Linear layout 3-15 % (f32) and
// 3-20 % (bf16 on VDPBF16PS) faster than our packed kernels on Zen 5, weights read in place.
//
// What goes here: C [m, n] = op(A) op(B) (+ bias) (+ beta C), alpha 1, A [m, K] f32 rows,
// B [N, K] rows (the weights as stored), both with unit inner stride, outside a parallel region:
//   f32 matmul precision   A f32 x B f32 -> C f32
//   bf16 matmul precision  A rounded to bf16 (to nearest even, as everywhere) x B bf16 -> C f32
// Every other product (bf16 weights under f32 precision, which oneDNN 2.6 does not mix; alpha
// != 1; few rows; other layouts) stays on our kernels. The primitive of each shape is created
// once and kept (creating one costs ~0.1 ms; the towers call a few dozen shapes thousands of
// times). oneDNN threads with OpenMP at omp_get_max_threads(), the backend's team while its op
// runs.

#include "glimpse/backend/cpu/gemm_operand.hpp"

// Only beside the AVX-512 kernels: the route replaces the packed kernels, and rounds A with them.
#if defined(GLIMPSE_HAVE_ONEDNN) && defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
#define GLIMPSE_CPU_ONEDNN 1

#include <oneapi/dnnl/dnnl.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "glimpse/core/dtype.hpp"
#include "glimpse/core/error.hpp"

namespace glimpse::detail::cpu_impl::onednn {

inline void ok(dnnl_status_t s, const char* what) {
    if (s != dnnl_success) detail::fail("oneDNN: ", what, " failed (status ", static_cast<int>(s), ")");
}

// A [m, k] f32 rows (lda) rounded to bf16 bits (to nearest even, cpu/gemm_operand.hpp's
// to_bf16x16), rows of k in out.
GLIMPSE_AVX512_TARGET inline void round_row_bf16(const float* a, std::int64_t k, std::uint16_t* out) {
    std::int64_t i = 0;
    for (; i + 16 <= k; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), to_bf16x16(_mm512_loadu_ps(a + i)));
    for (; i < k; ++i) out[i] = to_bf16(a[i]).bits;
}

// One shape's primitive: m, n, k, lda, ldb, ldc, weights dtype, bias, beta.
using shape_key =
    std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, int, bool, float>;

class matmuls {
public:
    static matmuls& get() {
        static matmuls m;
        return m;
    }

    // C = A B^T (+ bias) + beta C for A [m, k] (lda; f32, or bf16 bits under bf16 precision),
    // B [n, k] (ldb) of the same dtype, C [m, n] (ldc) f32. Returns the implementation's name.
    std::string run(const void* a, std::int64_t lda, const void* b, std::int64_t ldb, bool bf16, std::int64_t m,
                    std::int64_t n, std::int64_t k, float beta, float* c, std::int64_t ldc, const float* bias) {
        std::shared_ptr<entry> e;  // shared: another thread may evict it while this call runs
        {
            const std::lock_guard<std::mutex> lock(mu_);
            const shape_key key{m, n, k, lda, ldb, ldc, bf16 ? 1 : 0, bias != nullptr, beta};
            auto it = prims_.find(key);
            if (it == prims_.end()) {
                // Kept for the next call of the shape, at most kKept of them: a batch of images of
                // many sizes makes new row counts without end; the oldest go first.
                if (prims_.size() >= kKept) {
                    prims_.erase(order_.front());
                    order_.erase(order_.begin());
                }
                it = prims_.emplace(key, make(lda, ldb, bf16, m, n, k, beta, ldc, bias != nullptr)).first;
                order_.push_back(key);
            }
            e = it->second;
            ++calls_;
        }
        dnnl_memory_t src = nullptr, wei = nullptr, bia = nullptr, dst = nullptr;
        ok(dnnl_memory_create(&src, &e->src, engine_, const_cast<void*>(a)), "memory_create");
        ok(dnnl_memory_create(&wei, &e->wei, engine_, const_cast<void*>(b)), "memory_create");
        ok(dnnl_memory_create(&dst, &e->dst, engine_, c), "memory_create");
        if (bias) ok(dnnl_memory_create(&bia, &e->bias, engine_, const_cast<float*>(bias)), "memory_create");
        const dnnl_exec_arg_t args[] = {
            {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, bia}};
        // A stream per call: dnnl_stream_t is not to be shared by threads that run primitives at once.
        dnnl_stream_t stream = nullptr;
        ok(dnnl_stream_create(&stream, engine_, dnnl_stream_default_flags), "stream_create");
        const dnnl_status_t s = dnnl_primitive_execute(e->prim, stream, bias ? 4 : 3, args);
        const dnnl_status_t w = dnnl_stream_wait(stream);
        dnnl_stream_destroy(stream);
        for (dnnl_memory_t x : {src, wei, dst, bia})
            if (x) dnnl_memory_destroy(x);
        ok(s, "matmul execute");
        ok(w, "stream wait");
        return e->impl;
    }

    // Products run here so far (tests ask whether the route was taken).
    std::int64_t calls() {
        const std::lock_guard<std::mutex> lock(mu_);
        return calls_;
    }

    matmuls(const matmuls&) = delete;
    matmuls& operator=(const matmuls&) = delete;

private:
    struct entry {
        dnnl_memory_desc_t src{}, wei{}, bias{}, dst{};
        dnnl_primitive_t prim = nullptr;
        std::string impl;
        ~entry() {
            if (prim) dnnl_primitive_destroy(prim);
        }
    };

    matmuls() { ok(dnnl_engine_create(&engine_, dnnl_cpu, 0), "engine_create"); }
    ~matmuls() {
        prims_.clear();
        if (engine_) dnnl_engine_destroy(engine_);
    }

    static constexpr std::size_t kKept = 256;

    std::shared_ptr<entry> make(std::int64_t lda, std::int64_t ldb, bool bf16, std::int64_t m, std::int64_t n,
                                std::int64_t k, float beta, std::int64_t ldc, bool has_bias) {
        auto e = std::make_shared<entry>();
        const dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
        const dnnl_dims_t sd{m, k}, ss{lda, 1};
        const dnnl_dims_t wd{k, n}, ws{1, ldb};  // [K, N] read from the [N, K] rows: strides (1, ldb)
        const dnnl_dims_t dd{m, n}, ds{ldc, 1};
        const dnnl_dims_t bd{1, n}, bs{n, 1};
        ok(dnnl_memory_desc_init_by_strides(&e->src, 2, sd, in, ss), "src desc");
        ok(dnnl_memory_desc_init_by_strides(&e->wei, 2, wd, in, ws), "weights desc");
        ok(dnnl_memory_desc_init_by_strides(&e->dst, 2, dd, dnnl_f32, ds), "dst desc");
        if (has_bias) ok(dnnl_memory_desc_init_by_strides(&e->bias, 2, bd, dnnl_f32, bs), "bias desc");
        dnnl_matmul_desc_t md;
        ok(dnnl_matmul_desc_init(&md, &e->src, &e->wei, has_bias ? &e->bias : nullptr, &e->dst), "matmul desc");
        dnnl_primitive_attr_t attr = nullptr;
        dnnl_post_ops_t po = nullptr;
        ok(dnnl_primitive_attr_create(&attr), "attr");
        if (beta != 0.0f) {
            ok(dnnl_post_ops_create(&po), "post ops");
            ok(dnnl_post_ops_append_sum(po, beta), "sum post op");
            ok(dnnl_primitive_attr_set_post_ops(attr, po), "set post ops");
        }
        dnnl_primitive_desc_t pd = nullptr;
        const dnnl_status_t s = dnnl_primitive_desc_create(&pd, &md, attr, engine_, nullptr);
        if (po) dnnl_post_ops_destroy(po);
        dnnl_primitive_attr_destroy(attr);
        ok(s, "matmul primitive descriptor");
        const char* impl = nullptr;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        e->impl = impl ? impl : "?";
        const dnnl_status_t c = dnnl_primitive_create(&e->prim, pd);
        dnnl_primitive_desc_destroy(pd);
        ok(c, "matmul primitive");
        return e;
    }

    dnnl_engine_t engine_ = nullptr;
    std::mutex mu_;
    std::map<shape_key, std::shared_ptr<entry>> prims_;
    std::vector<shape_key> order_;
    std::int64_t calls_ = 0;
};

}  // namespace glimpse::detail::cpu_impl::onednn

#endif
