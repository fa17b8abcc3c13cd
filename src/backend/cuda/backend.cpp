// glimpse::cuda (cuda.hpp): argument checks (op_checks.hpp, shared with every backend),
// layout decisions, cuBLAS GEMMs, and the launches of our kernels.

#include "glimpse/backend/cuda.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "glimpse/backend/cuda/flash_attention.hpp"
#include "glimpse/backend/cuda/kernels.hpp"
#include "glimpse/backend/op_checks.hpp"

namespace glimpse {

namespace detail::cuda_impl {

struct context {
    cuda_options opt;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    std::shared_ptr<device_arena> arena;
    std::map<std::string, std::int64_t> fallbacks;  // cuda::fallbacks()

    void activate() const { GLIMPSE_CUDA_CHECK(cudaSetDevice(opt.device)); }
    ~context() {
        if (stream) (void)cudaStreamSynchronize(stream);
        if (blas) (void)cublasDestroy(blas);
        // The stream itself belongs to the arena (arena.own_stream): tensors may outlive us.
    }
};

namespace {

// Raw device scratch from the arena, released (stream-ordered) at scope end.
struct scratch {
    device_arena* a = nullptr;
    void* p = nullptr;
    std::size_t n = 0;
    stream_t s = nullptr;
    scratch(context& c, std::size_t bytes) : a(c.arena.get()), p(a->allocate(bytes, c.stream)), n(bytes), s(c.stream) {}
    ~scratch() { a->release(p, n, s); }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;
};

template <class T>
void* upload_vec(context& c, scratch& dst, const std::vector<T>& v) {
    if (!v.empty())
        GLIMPSE_CUDA_CHECK(cudaMemcpyAsync(dst.p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, c.stream));
    return dst.p;
}

// A view's memory must be the device's: a host pointer would fault inside a kernel (or
// silently work through UVA with pinned memory); say what to do instead.
void expect_device(const cview& v, const char* op, const char* what) {
    if (v.empty()) return;
    cudaPointerAttributes attr{};
    const cudaError_t e = cudaPointerGetAttributes(&attr, v.data());
    if (e != cudaSuccess) (void)cudaGetLastError();
    check(e == cudaSuccess && (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged), "cuda ", op,
          ": ", what, " ", v.shape().str(), " points to host memory (upload it to the device first)");
}

strided desc(const cview& v) {
    strided s;
    s.p = const_cast<std::byte*>(v.data());
    s.type = v.type();
    s.rank = v.rank();
    for (int i = 0; i < v.rank(); ++i) {
        s.size[i] = v.size(i);
        s.stride[i] = v.stride(i);
    }
    return s;
}

std::int64_t checked_int(std::int64_t v, const char* what) {
    check(v <= INT_MAX, "cuda gemm: ", what, " = ", v, " exceeds cuBLAS's int range");
    return v;
}

cudaDataType_t cuda_type(dtype t) {
    switch (t) {
        case dtype::f32:
            return CUDA_R_32F;
        case dtype::bf16:
            return CUDA_R_16BF;
        case dtype::f16:
            return CUDA_R_16F;
    }
    return CUDA_R_32F;
}

}  // namespace
}  // namespace detail::cuda_impl

namespace ci = detail::cuda_impl;

// ---- construction ---------------------------------------------------------------------------

int cuda::device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

cuda::census cuda::device_census() {
    census c;
    const cudaError_t e = cudaGetDeviceCount(&c.count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        c.count = 0;
        c.error = std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
    }
    if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) c.visible_devices = v;
    return c;
}

cuda::device_info cuda::info(int device) {
    cudaDeviceProp p{};
    GLIMPSE_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    return {p.name, p.major, p.minor, p.multiProcessorCount, p.totalGlobalMem};
}

cuda::cuda() : cuda(cuda_options{}) {}

cuda::cuda(const cuda_options& opt) : ctx_(std::make_unique<ci::context>()) {
    const census devices = device_census();
    if (const std::string why = devices.missing(opt.device); !why.empty()) detail::fail("cuda backend: ", why);
    detail::check(opt.attention_compute == dtype::bf16 || opt.attention_compute == dtype::f16,
                  "cuda backend: attention_compute must be bf16 or f16");
    ctx_->opt = opt;
    ctx_->activate();
    ctx_->arena = std::make_shared<ci::device_arena>(opt.device);
    GLIMPSE_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx_->stream, cudaStreamNonBlocking));
    ctx_->arena->own_stream(ctx_->stream);
    GLIMPSE_CUBLAS_CHECK(cublasCreate(&ctx_->blas));
    GLIMPSE_CUBLAS_CHECK(cublasSetStream(ctx_->blas, ctx_->stream));
    GLIMPSE_CUBLAS_CHECK(cublasSetMathMode(ctx_->blas, opt.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

cuda::~cuda() = default;
cuda::cuda(cuda&&) noexcept = default;
cuda& cuda::operator=(cuda&&) noexcept = default;

const std::map<std::string, std::int64_t>& cuda::fallbacks() const noexcept { return ctx_->fallbacks; }

const cuda_options& cuda::options() const noexcept { return ctx_->opt; }
ci::stream_t cuda::stream() const noexcept { return ctx_->stream; }
ci::device_arena& cuda::arena() noexcept { return *ctx_->arena; }
void cuda::synchronize() { GLIMPSE_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream)); }

// ---- memory -------------------------------------------------------------------------------------

device_tensor cuda::alloc(const shape& s, dtype t) {
    ctx_->activate();
    device_tensor out(ctx_->arena, s, t, ctx_->stream);
    if (out.nbytes()) GLIMPSE_CUDA_CHECK(cudaMemsetAsync(out.data(), 0, out.nbytes(), ctx_->stream));
    return out;
}

device_tensor cuda::upload(const cview& host) {
    ctx_->activate();
    device_tensor out(ctx_->arena, host.shape(), host.type(), ctx_->stream);
    if (!out.nbytes()) return out;
    glimpse::tensor packed;
    const std::byte* src = host.data();
    if (!host.is_contiguous()) {
        packed = glimpse::tensor(host.shape(), host.type());
        const auto isz = static_cast<std::int64_t>(itemsize(host.type()));
        detail::for_each_offset(host, [&](std::int64_t flat, std::int64_t off) {
            std::memcpy(packed.data() + flat * isz, host.data() + off * isz, static_cast<std::size_t>(isz));
        });
        src = packed.data();
    }
    // From pageable memory the call returns once the source is staged, so `host` (and
    // `packed`) may go right after; pinned memory is read asynchronously: wait for it.
    GLIMPSE_CUDA_CHECK(cudaMemcpyAsync(out.data(), src, out.nbytes(), cudaMemcpyHostToDevice, ctx_->stream));
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, src) != cudaSuccess) (void)cudaGetLastError();
    if (attr.type == cudaMemoryTypeHost) synchronize();
    return out;
}

glimpse::tensor cuda::download(const cview& dev) {
    ctx_->activate();
    ci::expect_device(dev, "download", "view");
    glimpse::tensor out(dev.shape(), dev.type());
    if (!out.nbytes()) return out;
    device_tensor packed;
    const std::byte* src = dev.data();
    if (!dev.is_contiguous()) {
        packed = device_tensor(ctx_->arena, dev.shape(), dev.type(), ctx_->stream);
        ci::launch_copy(ci::desc(dev), ci::desc(packed.cv()), ctx_->stream);
        src = packed.data();
    }
    GLIMPSE_CUDA_CHECK(cudaMemcpyAsync(out.data(), src, out.nbytes(), cudaMemcpyDeviceToHost, ctx_->stream));
    synchronize();
    return out;
}

void cuda::copy(const cview& src, const view& dst) {
    detail::check(src.shape() == dst.shape(), "copy: ", src.shape().str(), " -> ", dst.shape().str());
    ctx_->activate();
    ci::expect_device(src, "copy", "src");
    ci::expect_device(dst, "copy", "dst");
    if (src.numel() == 0) return;
    if (src.type() == dst.type() && src.is_contiguous() && dst.is_contiguous()) {
        GLIMPSE_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(),
                                           static_cast<std::size_t>(src.numel()) * itemsize(src.type()),
                                           cudaMemcpyDeviceToDevice, ctx_->stream));
        return;
    }
    ci::launch_copy(ci::desc(src), ci::desc(dst), ctx_->stream);
}

void cuda::fill(const view& v, float value) {
    ctx_->activate();
    ci::expect_device(v, "fill", "view");
    if (v.numel() == 0) return;
    if (value == 0.0f && !std::signbit(value) && v.is_contiguous()) {
        GLIMPSE_CUDA_CHECK(
            cudaMemsetAsync(v.data(), 0, static_cast<std::size_t>(v.numel()) * itemsize(v.type()), ctx_->stream));
        return;
    }
    ci::launch_fill(ci::desc(v), value, ctx_->stream);
}

// ---- row-operand plumbing -------------------------------------------------------------------

namespace {

// x as rows (a contiguous copy of the same dtype in `holder` when its rows do not collapse).
ci::rows_in rows_input(ci::context& c, const cview& x, device_tensor& holder) {
    std::int64_t m = 0, n = 0, ld = 0;
    if (x.rows(m, n, ld)) return {x.data(), x.type(), m, n, ld};
    holder = device_tensor(c.arena, x.shape(), x.type(), c.stream);
    ci::launch_copy(ci::desc(x), ci::desc(holder.cv()), c.stream);
    holder.cv().rows(m, n, ld);
    return {holder.data(), x.type(), m, n, ld};
}

// A contiguous 1-D operand (norm weights, biases).
const void* vector_input(ci::context& c, const cview& v, device_tensor& holder) {
    if (v.empty()) return nullptr;
    if (v.is_contiguous()) return v.data();
    holder = device_tensor(c.arena, v.shape(), v.type(), c.stream);
    ci::launch_copy(ci::desc(v), ci::desc(holder.cv()), c.stream);
    return holder.data();
}

// Runs f(rows_out) on `out` directly when its rows collapse, else on a contiguous f32 buffer
// copied into `out` afterwards (seeded from `out` when f reads it: in-place ops).
template <class F>
void with_rows_out(ci::context& c, const view& out, bool reads_out, F&& f) {
    std::int64_t m = 0, n = 0, ld = 0;
    if (out.rows(m, n, ld)) {
        f(ci::rows_out{reinterpret_cast<float*>(out.data()), m, n, ld});
        return;
    }
    device_tensor tmp(c.arena, out.shape(), dtype::f32, c.stream);
    if (reads_out) ci::launch_copy(ci::desc(out), ci::desc(tmp.cv()), c.stream);
    tmp.cv().rows(m, n, ld);
    f(ci::rows_out{reinterpret_cast<float*>(tmp.data()), m, n, ld});
    ci::launch_copy(ci::desc(tmp.cv()), ci::desc(out), c.stream);
}

void binary(ci::context& C, ci::binary_op op, const cview& a, const cview& b, const view& out, float alpha) {
    C.activate();
    const char* name = op == ci::binary_op::add ? "add" : "mul";
    ci::expect_device(a, name, "a");
    ci::expect_device(b, name, "b");
    ci::expect_device(out, name, "out");
    device_tensor ah, bh;
    const ci::rows_in A = rows_input(C, a, ah);
    ci::rows_in B;
    if (b.shape() == a.shape()) {
        B = rows_input(C, b, bh);
    } else {  // [N] broadcast over the rows of a
        B = {vector_input(C, b, bh), b.type(), 1, b.size(0), 0};
    }
    with_rows_out(C, out, false, [&](const ci::rows_out& o) { ci::launch_binary(op, A, B, alpha, o, C.stream); });
}

}  // namespace

// ---- gemm ---------------------------------------------------------------------------------

void cuda::gemm(const cview& a, const cview& b, const view& c, const gemm_args& g, const cview& bias) {
    const auto d = detail::check_gemm(a, b, c, g, bias);
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(a, "gemm", "A");
    ci::expect_device(b, "gemm", "B");
    ci::expect_device(c, "gemm", "C");
    ci::expect_device(bias, "gemm", "bias");
    if (d.batch == 0 || d.m == 0 || d.n == 0) return;

    // Operand dtypes for cuBLAS (A and B must match): narrow weights run on tensor cores with
    // A rounded to their dtype (narrow_activations), else everything is widened to f32.
    const dtype want = b.type() != dtype::f32 && C.opt.narrow_activations ? b.type() : dtype::f32;
    device_tensor ah, bh;
    auto operand = [&](const cview& v, device_tensor& holder) -> cview {
        const std::int64_t rows = v.size(-2), cols = v.size(-1);
        const bool ld_ok = rows <= 1 || v.stride(-2) >= cols;
        const bool batch_ok = v.rank() == 2 || v.size(0) <= 1 || v.stride(0) >= 0;
        if (v.type() == want && ld_ok && batch_ok) return v;
        holder = device_tensor(C.arena, v.shape(), want, C.stream);
        ci::launch_copy(ci::desc(v), ci::desc(holder.cv()), C.stream);
        return holder.cv();
    };
    const cview A = operand(a, ah), B = operand(b, bh);
    const auto ld = [](const cview& v) {
        return std::max<std::int64_t>(v.size(-2) <= 1 ? v.size(-1) : v.stride(-2), 1);
    };

    gemm_args gb = g;
    device_tensor biash;
    const void* bias_p = vector_input(C, bias, biash);
    auto bias_pass = [&](bool accumulate) {
        for (std::int64_t p = 0; p < d.batch; ++p) {
            const view Cp = c.rank() == 3 ? c.select(0, p) : c;
            ci::launch_bias_rows(
                bias_p, bias.type(),
                ci::rows_out{reinterpret_cast<float*>(Cp.data()), d.m, d.n, std::max<std::int64_t>(Cp.stride(0), d.n)},
                accumulate, C.stream);
        }
    };
    // With beta = 0 the bias goes in first and the product adds onto it (beta = 1), as the cpu
    // backend: one pass over C instead of a read-modify-write after the GEMM.
    if (bias_p && g.beta == 0.0f) {
        bias_pass(false);
        gb.beta = 1.0f;
    }
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS gets B first.
    const cublasOperation_t opB = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opA = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const long long sA = d.batched_a ? A.stride(0) : 0, sB = d.batched_b ? B.stride(0) : 0,
                    sC = c.rank() == 3 ? c.stride(0) : 0;
    const cublasComputeType_t compute =
        want == dtype::f32 ? (C.opt.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_32F;
    const float alpha = gb.alpha, beta = gb.beta;
    GLIMPSE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        C.blas, opB, opA, static_cast<int>(ci::checked_int(d.n, "N")), static_cast<int>(ci::checked_int(d.m, "M")),
        static_cast<int>(ci::checked_int(d.k, "K")), &alpha, B.data(), ci::cuda_type(want),
        static_cast<int>(ci::checked_int(ld(B), "ldb")), sB, A.data(), ci::cuda_type(want),
        static_cast<int>(ci::checked_int(ld(A), "lda")), sA, &beta, c.data(), CUDA_R_32F,
        static_cast<int>(ci::checked_int(ld(c), "ldc")), sC, static_cast<int>(ci::checked_int(d.batch, "batch")),
        compute, CUBLAS_GEMM_DEFAULT));
    if (bias_p && g.beta != 0.0f) bias_pass(true);
}

// ---- elementwise --------------------------------------------------------------------------

void cuda::add(const cview& a, const cview& b, const view& out, float alpha) {
    detail::check_binary(a, b, out, "add");
    binary(*ctx_, ci::binary_op::add, a, b, out, alpha);
}

void cuda::mul(const cview& a, const cview& b, const view& out) {
    detail::check_binary(a, b, out, "mul");
    binary(*ctx_, ci::binary_op::mul, a, b, out, 1.0f);
}

void cuda::activate(activation act, const cview& x, const view& out) {
    detail::check_same(x, out, "activate");
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(x, "activate", "x");
    ci::expect_device(out, "activate", "out");
    device_tensor xh;
    const ci::rows_in X = rows_input(C, x, xh);
    with_rows_out(C, out, false, [&](const ci::rows_out& o) { ci::launch_activate(act, X, o, C.stream); });
}

void cuda::swiglu(const cview& gate, const cview& up, const view& out) {
    detail::check_same(gate, out, "swiglu");
    detail::check_same(up, out, "swiglu");
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(gate, "swiglu", "gate");
    ci::expect_device(up, "swiglu", "up");
    ci::expect_device(out, "swiglu", "out");
    device_tensor gh, uh;
    const ci::rows_in G = rows_input(C, gate, gh), U = rows_input(C, up, uh);
    with_rows_out(C, out, false, [&](const ci::rows_out& o) { ci::launch_swiglu(G, U, o, C.stream); });
}

// ---- row-wise -----------------------------------------------------------------------------

void cuda::softmax_rows(const view& x, float scale) {
    std::int64_t m = 0, n = 0, ld = 0;
    detail::check_f32(x, "softmax_rows", "x");
    detail::check(x.rows(m, n, ld), "softmax_rows: x ", x.shape().str(), " must have rows with unit stride");
    ctx_->activate();
    ci::expect_device(x, "softmax_rows", "x");
    ci::launch_softmax_rows(ci::rows_out{reinterpret_cast<float*>(x.data()), m, n, ld}, scale, ctx_->stream);
}

void cuda::rms_norm(const cview& x, const cview& w, float eps, const view& out) {
    detail::check_norm(x, w, cview{}, out, "rms_norm");
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(x, "rms_norm", "x");
    ci::expect_device(w, "rms_norm", "weight");
    ci::expect_device(out, "rms_norm", "out");
    device_tensor xh, wh;
    const ci::rows_in X = rows_input(C, x, xh);
    const void* W = vector_input(C, w, wh);
    with_rows_out(C, out, false, [&](const ci::rows_out& o) { ci::launch_rms_norm(X, W, w.type(), eps, o, C.stream); });
}

void cuda::layer_norm(const cview& x, const cview& w, const cview& b, float eps, const view& out) {
    detail::check_norm(x, w, b, out, "layer_norm");
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(x, "layer_norm", "x");
    ci::expect_device(w, "layer_norm", "weight");
    ci::expect_device(b, "layer_norm", "bias");
    ci::expect_device(out, "layer_norm", "out");
    device_tensor xh, wh, bh;
    const ci::rows_in X = rows_input(C, x, xh);
    const void* W = vector_input(C, w, wh);
    const void* Bp = vector_input(C, b, bh);
    with_rows_out(C, out, false, [&](const ci::rows_out& o) {
        ci::launch_layer_norm(X, W, w.type(), Bp, b.empty() ? dtype::f32 : b.type(), eps, o, C.stream);
    });
}

void cuda::sum_rows(const cview& x, const view& out) {
    detail::check(x.rank() == 2 && out.rank() == 1 && out.size(0) == x.size(1), "sum_rows: x ", x.shape().str(),
                  " -> out ", out.shape().str());
    detail::check_f32(out, "sum_rows", "out");
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(x, "sum_rows", "x");
    ci::expect_device(out, "sum_rows", "out");
    device_tensor xh;
    const ci::rows_in X = rows_input(C, x, xh);
    with_rows_out(C, out, false, [&](const ci::rows_out& o) { ci::launch_sum_rows(X, o.p, C.stream); });
}

// ---- positional / permutation ---------------------------------------------------------------

void cuda::rotary(const view& x, const cview& cos, const cview& sin) {
    detail::check_rotary(x, cos, sin);
    detail::check(x.stride(2) == 1, "rotary: x needs unit inner stride");
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(x, "rotary", "x");
    ci::expect_device(cos, "rotary", "cos");
    ci::expect_device(sin, "rotary", "sin");
    device_tensor ch, sh;
    const ci::rows_in Cs = rows_input(C, cos, ch), Sn = rows_input(C, sin, sh);
    ci::launch_rotary(reinterpret_cast<float*>(x.data()), x.size(0), x.size(1), x.size(2), x.stride(0), x.stride(1), Cs,
                      Sn, C.stream);
}

void cuda::gather_rows(const cview& src, std::span<const std::int64_t> idx, const view& out) {
    detail::check_gather(src, idx, out);
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(src, "gather_rows", "src");
    ci::expect_device(out, "gather_rows", "out");
    if (idx.empty()) return;
    ci::scratch dev_idx(C, idx.size() * sizeof(std::int64_t));
    ci::upload_vec(C, dev_idx, std::vector<std::int64_t>(idx.begin(), idx.end()));
    ci::launch_gather_rows(ci::desc(src), static_cast<const std::int64_t*>(dev_idx.p), ci::desc(out), C.stream);
}

// ---- attention ----------------------------------------------------------------------------

void cuda::attention(const cview& q, const cview& k, const cview& v, const view& out, const attention_args& a) {
    const auto d = detail::check_attention(q, k, v, out, a);
    auto& C = *ctx_;
    C.activate();
    ci::expect_device(q, "attention", "q");
    ci::expect_device(k, "attention", "k");
    ci::expect_device(v, "attention", "v");
    ci::expect_device(out, "attention", "out");
    ci::expect_device(a.mask, "attention", "mask");
    const auto& maps = a.maps;
    ci::expect_device(maps.per_head, "attention", "maps.per_head");
    ci::expect_device(maps.mean, "attention", "maps.mean");
    ci::expect_device(maps.query_weights, "attention", "maps.query_weights");
    ci::expect_device(maps.pooled, "attention", "maps.pooled");
    detail::check(d.sq < INT_MAX && d.sk < INT_MAX, "cuda attention: sequence of ", std::max(d.sq, d.sk),
                  " tokens exceeds int32 tile indices");
    if (d.sq == 0) return;

    // The tensor-core kernel writes float2 pairs of out.
    const bool out_pairs =
        reinterpret_cast<std::uintptr_t>(out.data()) % 8 == 0 && out.stride(0) % 2 == 0 && out.stride(1) % 2 == 0;
    const bool fast =
        !C.opt.attention_reference && d.d == d.dv && ci::flash_head_dim_supported(d.d) && out_pairs && d.h <= 65535;
    if (!fast && !C.opt.attention_reference) {
        // Said, not silent: the caller asked for the fast kernel and gets the plain f32 one.
        std::string why = "attention: plain f32 kernel instead of the tensor-core one (";
        if (d.d != d.dv)
            why += "head dims of q/k and v differ";
        else if (!ci::flash_head_dim_supported(d.d))
            why += "head dim " + std::to_string(d.d) + " has no tensor-core kernel: 64, 72, 80, 128";
        else if (!out_pairs)
            why += "out is not 8-byte aligned with even strides";
        else
            why += std::to_string(d.h) + " heads exceed the grid's 65535";
        ++C.fallbacks[why + ")"];
    }
    // Query tiles that never straddle a segment, each with its keys.
    constexpr std::int64_t kTileQ = ci::flash_traits<64>::block_q;
    std::vector<std::int32_t> tiles;
    {
        std::vector<std::int64_t> seg(a.segments.begin(), a.segments.end());
        const bool whole = seg.empty();
        if (whole) seg = {0, d.sq};
        for (std::size_t s = 0; s + 1 < seg.size(); ++s)
            for (std::int64_t q0 = seg[s]; q0 < seg[s + 1]; q0 += kTileQ)
                tiles.insert(tiles.end(), {static_cast<std::int32_t>(q0),
                                           static_cast<std::int32_t>(std::min(q0 + kTileQ, seg[s + 1])),
                                           static_cast<std::int32_t>(whole ? 0 : seg[s]),
                                           static_cast<std::int32_t>(whole ? d.sk : seg[s + 1])});
    }
    const auto ntiles = static_cast<std::int32_t>(tiles.size() / 4);
    ci::scratch dev_tiles(C, tiles.size() * sizeof(std::int32_t));
    ci::upload_vec(C, dev_tiles, tiles);

    // The tensor-core kernel reads bf16 or f16 q, k, v with 16-byte aligned rows; anything else
    // is converted into packed [S, H, d] buffers of the compute dtype first.
    device_tensor qh, kh, vh;
    cview Q = q, K = k, V = v;
    if (fast) {
        const bool same_narrow = q.type() == k.type() && k.type() == v.type() && q.type() != dtype::f32;
        const dtype cdt = same_narrow ? q.type() : C.opt.attention_compute;
        auto prepare = [&](const cview& x, device_tensor& holder) -> cview {
            const bool aligned =
                reinterpret_cast<std::uintptr_t>(x.data()) % 16 == 0 && x.stride(0) % 8 == 0 && x.stride(1) % 8 == 0;
            if (x.type() == cdt && aligned) return x;
            holder = device_tensor(C.arena, x.shape(), cdt, C.stream);
            ci::launch_copy(ci::desc(x), ci::desc(holder.cv()), C.stream);
            return holder.cv();
        };
        Q = prepare(q, qh);
        K = prepare(k, kh);
        V = prepare(v, vh);
    }
    ci::attention_params p;
    p.q = Q.data();
    p.k = K.data();
    p.v = V.data();
    p.q_type = Q.type();
    p.k_type = K.type();
    p.v_type = V.type();
    p.q_row = Q.stride(0);
    p.q_head = Q.stride(1);
    p.k_row = K.stride(0);
    p.k_head = K.stride(1);
    p.v_row = V.stride(0);
    p.v_head = V.stride(1);
    p.o = reinterpret_cast<float*>(out.data());
    p.o_row = out.stride(0);
    p.o_head = out.stride(1);
    p.sq = d.sq;
    p.sk = d.sk;
    p.heads = d.h;
    p.d = d.d;
    p.dv = d.dv;
    p.scale_log2 = a.scale * 1.4426950408889634f;
    p.mask = a.mask.empty() ? nullptr : reinterpret_cast<const float*>(a.mask.data());
    p.mask_ld = a.mask.empty() ? 0 : a.mask.stride(0);
    p.tiles = static_cast<const std::int32_t*>(dev_tiles.p);
    p.num_tiles = ntiles;
    p.tile_q = static_cast<std::int32_t>(kTileQ);
    const bool want_maps = maps.wanted();
    ci::scratch lse(C, want_maps ? static_cast<std::size_t>(d.h * d.sq) * sizeof(float) : 0);
    p.lse2 = want_maps ? static_cast<float*>(lse.p) : nullptr;
    if (ntiles > 0) {
        if (fast)
            ci::launch_flash_attention(p, C.stream);
        else
            ci::launch_attention_reference(p, C.stream);
    }
    if (!want_maps) return;

    if (!maps.per_head.empty()) fill(maps.per_head, 0.0f);
    if (!maps.mean.empty()) fill(maps.mean, 0.0f);
    if (!maps.pooled.empty()) fill(maps.pooled, 0.0f);
    std::vector<std::int32_t> lo(static_cast<std::size_t>(d.sq)), hi(static_cast<std::size_t>(d.sq));
    for (std::int64_t i = 0; i < d.sq; ++i) {
        const auto [l, h] = detail::segment_of(a.segments, i, d.sk);
        lo[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(l);
        hi[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(h);
    }
    ci::scratch dlo(C, lo.size() * sizeof(std::int32_t)), dhi(C, hi.size() * sizeof(std::int32_t));
    ci::upload_vec(C, dlo, lo);
    ci::upload_vec(C, dhi, hi);
    ci::attention_maps_params m;
    m.per_head = maps.per_head.empty() ? nullptr : reinterpret_cast<float*>(maps.per_head.data());
    m.mean = maps.mean.empty() ? nullptr : reinterpret_cast<float*>(maps.mean.data());
    if (!maps.pooled.empty()) {
        m.query_weights = reinterpret_cast<const float*>(maps.query_weights.data());
        m.qw_ld = maps.query_weights.stride(0);
        m.r = maps.query_weights.size(0);
        m.pooled = reinterpret_cast<float*>(maps.pooled.data());
    }
    m.seg_lo = static_cast<const std::int32_t*>(dlo.p);
    m.seg_hi = static_cast<const std::int32_t*>(dhi.p);
    ci::launch_attention_maps(p, m, C.stream);
}

}  // namespace glimpse
