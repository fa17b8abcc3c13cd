// find_package(glimpse COMPONENTS core reference cuda): glimpse::cuda needs no cpu backend (no
// Eigen, OpenMP or CBLAS). A GEMM on the device is checked against the reference backend or,
// with no device, the backend fails with the runtime's reason.
#include <cstdio>
#include <string>

#include <glimpse/backend/cuda.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/version.hpp>

int main() {
    glimpse::tensor a(glimpse::shape{3, 4}), b(glimpse::shape{4, 2});
    for (std::int64_t i = 0; i < a.numel(); ++i) a.ptr<float>()[i] = static_cast<float>(i % 5) - 2.0f;
    for (std::int64_t i = 0; i < b.numel(); ++i) b.ptr<float>()[i] = static_cast<float>(i % 3) - 1.0f;
    const auto product = [&](auto& be) {
        const auto da = be.upload(a.cv()), db = be.upload(b.cv());
        auto c = be.alloc(glimpse::shape{3, 2}, glimpse::dtype::f32);
        be.gemm(da.cv(), db.cv(), c.v(), {}, {});
        return be.download(c.cv());
    };
    try {
        glimpse::reference ref;
        const glimpse::tensor expected = product(ref);
        glimpse::cuda dev;
        const glimpse::tensor on_cuda = product(dev);
        double err = 0;
        for (std::int64_t i = 0; i < expected.numel(); ++i) {
            const double d = expected.ptr<float>()[i] - on_cuda.ptr<float>()[i];
            err = d * d > err * err ? (d < 0 ? -d : d) : err;
        }
        std::printf("glimpse %s core consumer (cuda): cuda vs reference GEMM max abs diff %.2e\n",
                    GLIMPSE_VERSION_STRING, err);
        return err < 1e-5 ? 0 : 1;
    } catch (const glimpse::error& e) {
        const std::string what = e.what();
        std::printf("glimpse %s core consumer (cuda): %s\n", GLIMPSE_VERSION_STRING, what.c_str());
        return what.find("no CUDA device visible: ") != std::string::npos ? 0 : 1;
    }
}
