#pragma once
// glimpse::cuda — the CUDA backend (opt-in: GLIMPSE_CUDA=ON builds the compiled target
// glimpse::cuda; link it and this header's declarations have their definitions).
//
// Same concept, same validation (op_checks.hpp) and same results as the cpu backend up to
// the precision stated per op, so every layer, the heatmap head and both Qwen towers run on
// it unchanged; what differs is where memory lives. Views given to its ops point to device
// memory (its tensors' v()/cv(), or views of them); host data reaches the device through
// `upload` and comes back through `download`. An op handed a host pointer says so
// ("... points to host memory: upload it first") instead of faulting.
//
//  * memory: device_tensor from a caching arena (cuda/arena.hpp), one stream per backend;
//    scratch of an op is released stream-ordered when the op returns, without a sync.
//  * gemm: cuBLAS (cublasGemmStridedBatchedEx), row-major views mapped to column-major by
//    swapping operands, so transposes, alpha/beta, batches, a shared B and any row stride
//    need no copy. bf16/f16 weights: tensor cores with f32 accumulation (activations are
//    rounded to the weight dtype; `narrow_activations = false` widens the weights instead);
//    f32 x f32: full f32, TF32 tensor cores only with `tf32 = true`.
//  * attention: the fused flash kernel (cuda/flash_attention.hpp) for d == dv in
//    {64, 72, 80, 128}; any other shape runs the plain reference kernel. f32 q/k/v are
//    rounded to `attention_compute` (bf16 by default) for the tensor cores; softmax and
//    accumulation are f32. Maps: a second pass from the saved log-sum-exp, only the maps asked.
//  * everything else: our kernels (cuda/kernels.hpp), f32 arithmetic.
//
// Synchronisation: ops are asynchronous on the backend's stream; download() and
// synchronize() wait. Errors are glimpse::error naming the failing CUDA/cuBLAS call.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "glimpse/backend/cuda/arena.hpp"
#include "glimpse/backend/cuda/error.hpp"
#include "glimpse/backend/cuda/tensor.hpp"
#include "glimpse/core/backend.hpp"

namespace glimpse {

namespace detail::cuda_impl {
struct context;
}

struct cuda_options {
    int device = 0;
    bool tf32 = false;                      // f32 x f32 GEMMs on TF32 tensor cores (10-bit mantissa)
    bool narrow_activations = true;         // bf16/f16 weights: round A to their dtype (tensor cores)
    dtype attention_compute = dtype::bf16;  // f32 q/k/v are rounded to this (bf16 or f16) for the fused kernel
    bool attention_reference = false;       // always the plain kernel (tests, debugging)
};

class cuda {
public:
    using tensor = device_tensor;
    static constexpr std::string_view name() { return "cuda"; }

    // Throws glimpse::error "no CUDA device visible: ..." when there is none (or no driver),
    // "no CUDA device N: ..." when opt.device is not one of them (census::missing).
    cuda();
    explicit cuda(const cuda_options& opt);
    ~cuda();
    cuda(cuda&&) noexcept;
    cuda& operator=(cuda&&) noexcept;
    cuda(const cuda&) = delete;
    cuda& operator=(const cuda&) = delete;

    // Devices visible to the runtime; 0 without a driver or a device (never throws).
    static int device_count() noexcept;
    // What device_count() saw, for messages that must say why there is no device: the
    // count, cudaGetDeviceCount's error ("no CUDA-capable device is detected
    // (cudaErrorNoDevice)"; empty on success) and CUDA_VISIBLE_DEVICES (nullopt: unset),
    // which hides devices from the runtime without any error of its own.
    struct census {
        int count = 0;
        std::string error;
        std::optional<std::string> visible_devices;
        // "CUDA_VISIBLE_DEVICES=<value>" or "CUDA_VISIBLE_DEVICES unset".
        std::string visible_devices_str() const {
            return visible_devices ? "CUDA_VISIBLE_DEVICES=" + *visible_devices : "CUDA_VISIBLE_DEVICES unset";
        }
        // "no CUDA device visible: <why>, CUDA_VISIBLE_DEVICES=..." (count == 0) or
        // "no CUDA device <index>: <count> visible (cuda:0..cuda:<count-1>), CUDA_VISIBLE_DEVICES=..."
        // (index >= count); empty when `index` exists.
        std::string missing(int index) const {
            if (count <= 0)
                return "no CUDA device visible: " +
                       (error.empty() ? std::string("cudaGetDeviceCount found none") : error) + ", " +
                       visible_devices_str();
            if (index < 0 || index >= count)
                return "no CUDA device " + std::to_string(index) + ": " + std::to_string(count) + " visible (cuda:0" +
                       (count > 1 ? "..cuda:" + std::to_string(count - 1) : std::string()) + "), " +
                       visible_devices_str();
            return {};
        }
    };
    static census device_census();
    // "NVIDIA H100 80GB HBM3", compute capability "9.0", SM count, memory.
    struct device_info {
        std::string name;
        int major = 0, minor = 0, sms = 0;
        std::size_t memory = 0;
    };
    static device_info info(int device);

    const cuda_options& options() const noexcept;
    // Each time an op ran a slower kernel than the one asked for, and why (today: attention on
    // the plain f32 kernel where the tensor-core one does not take the shape), with counts;
    // tools print them under --verbose and the op table with each case.
    const std::map<std::string, std::int64_t>& fallbacks() const noexcept;
    detail::cuda_impl::stream_t stream() const noexcept;
    detail::cuda_impl::device_arena& arena() noexcept;
    void synchronize();

    // ---- memory
    device_tensor alloc(const shape& s, dtype t);  // zero-filled
    device_tensor upload(const cview& host);       // host view (any strides) -> device tensor
    glimpse::tensor download(const cview& dev);    // device view -> host tensor (waits)
    void copy(const cview& src, const view& dst);  // device -> device, strided, converting
    void fill(const view& v, float value);
    // ---- linear algebra
    void gemm(const cview& a, const cview& b, const view& c, const gemm_args& g, const cview& bias);
    // ---- elementwise
    void add(const cview& a, const cview& b, const view& out, float alpha);
    void mul(const cview& a, const cview& b, const view& out);
    void activate(activation act, const cview& x, const view& out);
    void swiglu(const cview& gate, const cview& up, const view& out);
    // ---- row-wise
    void softmax_rows(const view& x, float scale);
    void rms_norm(const cview& x, const cview& w, float eps, const view& out);
    void layer_norm(const cview& x, const cview& w, const cview& b, float eps, const view& out);
    void sum_rows(const cview& x, const view& out);
    // ---- positional / permutation
    void rotary(const view& x, const cview& cos, const cview& sin);
    void gather_rows(const cview& src, std::span<const std::int64_t> idx, const view& out);
    // ---- fused attention
    void attention(const cview& q, const cview& k, const cview& v, const view& out, const attention_args& a);

private:
    std::unique_ptr<detail::cuda_impl::context> ctx_;
};

static_assert(Backend<cuda>);

}  // namespace glimpse
