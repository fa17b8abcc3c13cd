#pragma once
// The tools' `--device cpu|cuda[:N]` seam: parse the string once, then run a generic
// body with the backend it names.
//
//   const auto dev = glimpse::parse_device(args.device);          // throws on "gpu", "cuda:x"
//   glimpse::with_backend(dev, [&](auto& be) { run_tool(be, ...); });
//
// The body is instantiated for glimpse::cpu (with the spec's precision and threads) and, in a
// build that links glimpse::cuda (GLIMPSE_HAVE_CUDA), glimpse::cuda; both instantiations must
// return the same type. Without CUDA in the build, "cuda" parses but with_backend fails with a
// message saying how glimpse was built; with it but no device, it fails with "no CUDA device
// visible: <the runtime's reason>, CUDA_VISIBLE_DEVICES=..." and with fewer than N + 1 with "no
// CUDA device N: <n> visible" (cuda::census::missing). It never falls back to cpu.
//
// GLIMPSE_HAVE_CUDA is a usage requirement of glimpse::cuda: a TU sees the cuda branch
// exactly when its target links glimpse::cuda (the tools do when the build has it).

#include <charconv>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "glimpse/backend/cpu.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#if defined(GLIMPSE_HAVE_CUDA)
#include "glimpse/backend/cuda.hpp"
#endif

namespace glimpse {

struct device_spec {
    enum class kind_t : unsigned char { cpu, cuda };
    kind_t kind = kind_t::cpu;
    int index = 0;                                                         // cuda:N
    glimpse::matmul_precision precision = glimpse::matmul_precision::f32;  // --precision (cpu only)
    int threads = 0;  // --threads: cpu_options::threads (0: OpenMP's default); cuda has no use for it

    std::string str() const {
        return (kind == kind_t::cpu ? std::string("cpu") : "cuda:" + std::to_string(index)) +
               (precision == glimpse::matmul_precision::bf16 ? " (bf16 matmul)" : "");
    }
    friend bool operator==(const device_spec&, const device_spec&) = default;
};

// True when this build has the cuda backend (GLIMPSE_CUDA=ON and linked to glimpse::cuda).
constexpr bool built_with_cuda() noexcept {
#if defined(GLIMPSE_HAVE_CUDA)
    return true;
#else
    return false;
#endif
}

// "cpu", "cuda" (= cuda:0) or "cuda:N".
inline device_spec parse_device(std::string_view s) {
    if (s == "cpu") return {};
    if (s == "cuda") return {device_spec::kind_t::cuda, 0};
    if (s.starts_with("cuda:")) {
        const std::string_view n = s.substr(5);
        int idx = -1;
        const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), idx);
        if (ec == std::errc{} && end == n.data() + n.size() && !n.empty() && idx >= 0)
            return {device_spec::kind_t::cuda, idx};
    }
    detail::fail("--device: '", s, "' is not a device (expected cpu, cuda or cuda:N)");
}

// "f32" or "bf16" (--precision): see matmul_precision in core/backend.hpp.
inline glimpse::matmul_precision parse_matmul_precision(std::string_view s) {
    if (s == "f32") return glimpse::matmul_precision::f32;
    if (s == "bf16") return glimpse::matmul_precision::bf16;
    detail::fail("--precision: '", s, "' is not a matmul precision (expected f32 or bf16)");
}

// Which kernels a backend runs, for the tools' --verbose: the cpu's SIMD level and what the
// CPU has and the GEMM kernel ("avx512 (this CPU: sse2 avx2 avx512; lacks avx512_bf16 amx); gemm
// f32 packed FMA (avx512)"), or the backend's name.
template <class B>
std::string describe_kernels(const B& be) {
    if constexpr (std::is_same_v<B, cpu>)
        return describe_cpu_isa(be.isa()) + "; gemm " + std::string(be.gemm_kernel()) + "; attention " +
               std::string(be.attention_kernel_name());
    else
        return std::string(B::name());
}

// The slower kernels a backend ran instead of the ones asked for, one line each with its count
// ("attention: plain f32 kernel instead of the tensor-core one (head dim 40 ...) x 12"), for the
// tools' --verbose at the end of a run; empty when there were none or the backend never falls
// back (cpu: its kernels are chosen up front, describe_kernels says which).
template <class B>
std::vector<std::string> describe_fallbacks(const B& be) {
    std::vector<std::string> lines;
    if constexpr (requires { be.fallbacks(); })
        for (const auto& [why, count] : be.fallbacks()) lines.push_back(why + " x " + std::to_string(count));
    return lines;
}

// f(be) with be a glimpse::cpu or glimpse::cuda constructed for `d`.
template <class F>
decltype(auto) with_backend(const device_spec& d, F&& f) {
    using R = std::invoke_result_t<F&, cpu&>;
    if (d.kind == device_spec::kind_t::cpu) {
        // --precision bf16 is what a bf16 checkpoint's own forward computes in: bf16 operands for
        // the GEMMs and for attention's two products, f32 sums.
        cpu be(cpu_options{.precision = d.precision, .threads = d.threads});
        be.set_attention_precision(d.precision);
        return static_cast<R>(f(be));
    }
#if defined(GLIMPSE_HAVE_CUDA)
    static_assert(std::is_same_v<R, std::invoke_result_t<F&, cuda&>>,
                  "with_backend: the body must return the same type for cpu and cuda");
    if (d.precision != glimpse::matmul_precision::f32)
        detail::fail("--precision ", name(d.precision), ": the cuda backend computes its GEMMs in f32 only");
    // Never a silent fallback to cpu: no device (or too few) is an error saying what the
    // runtime saw, so a missing driver reads differently from CUDA_VISIBLE_DEVICES="".
    const cuda::census devices = cuda::device_census();
    if (const std::string why = devices.missing(d.index); !why.empty()) detail::fail("--device ", d.str(), ": ", why);
    cuda be(cuda_options{.device = d.index});
    return static_cast<R>(f(be));
#else
    detail::fail("--device ", d.str(),
                 ": glimpse was built without CUDA (GLIMPSE_CUDA=OFF, or this program does not link glimpse::cuda)");
#endif
}

inline decltype(auto) with_backend(std::string_view device, auto&& f) {
    return with_backend(parse_device(device), std::forward<decltype(f)>(f));
}

// Whether the backend `d` names has the backward ops training needs (TrainingBackend,
// core/backend.hpp). A cuda device in a build without CUDA cannot train either.
inline bool can_train(const device_spec& d) {
    if (d.kind == device_spec::kind_t::cpu) return TrainingBackend<cpu>;
#if defined(GLIMPSE_HAVE_CUDA)
    return TrainingBackend<cuda>;
#else
    return false;
#endif
}

// with_backend for a body that trains: f is instantiated for the TrainingBackends only, and a
// forward-only device is refused before any device is looked for, so the message says why
// (`who` starts it: "glimpse-train runs on the cpu only ...") whether or not a GPU is there.
template <class F>
decltype(auto) with_training_backend(const device_spec& d, std::string_view who, F&& f) {
    if (!can_train(d))
        detail::fail("--device ", d.str(), ": ", who,
                     " runs on the cpu only: training needs the backward ops of a TrainingBackend "
                     "(core/backend.hpp), and the cuda backend is forward-only");
    using R = std::invoke_result_t<F&, cpu&>;
    return with_backend(d, [&](auto& be) -> R {
        if constexpr (TrainingBackend<std::remove_cvref_t<decltype(be)>>)
            return f(be);
        else
            detail::fail("--device ", d.str(), ": ", who, " needs a backend with backward ops");
    });
}

}  // namespace glimpse
