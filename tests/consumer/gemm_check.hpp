#pragma once
// The GEMM both cuda consumers run on the device and on a host backend, and the difference.

#include <cstdint>

#include <glimpse/core/tensor.hpp>

namespace consumer {

// A [3, 4] x [4, 2] product of small integers (exact in f32) on backend `be`.
template <class B>
glimpse::tensor product(B& be) {
    glimpse::tensor a(glimpse::shape{3, 4}), b(glimpse::shape{4, 2});
    for (std::int64_t i = 0; i < a.numel(); ++i) a.ptr<float>()[i] = static_cast<float>(i % 5) - 2.0f;
    for (std::int64_t i = 0; i < b.numel(); ++i) b.ptr<float>()[i] = static_cast<float>(i % 3) - 1.0f;
    const auto da = be.upload(a.cv()), db = be.upload(b.cv());
    auto c = be.alloc(glimpse::shape{3, 2}, glimpse::dtype::f32);
    be.gemm(da.cv(), db.cv(), c.v(), {}, {});
    return be.download(c.cv());
}

inline double max_abs_diff(const glimpse::tensor& x, const glimpse::tensor& y) {
    double err = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
        const double d = x.ptr<float>()[i] - y.ptr<float>()[i];
        err = d * d > err * err ? (d < 0 ? -d : d) : err;
    }
    return err;
}

}  // namespace consumer
