// Builds against the installed glimpse::cuda (when the package has it): `--device cuda:0` through
// with_backend either runs a GEMM on the device and checks it against the cpu, or, with no
// device, fails with the runtime's reason — never "built without CUDA", never the cpu instead.
#include <cstdio>
#include <string>

#include <glimpse/backend/device.hpp>
#include <glimpse/version.hpp>

int main() {
    static_assert(glimpse::built_with_cuda(), "glimpse::cuda must bring GLIMPSE_HAVE_CUDA");
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
        const glimpse::tensor on_cpu = glimpse::with_backend("cpu", product);
        const glimpse::tensor on_cuda = glimpse::with_backend("cuda:0", product);
        double err = 0;
        for (std::int64_t i = 0; i < on_cpu.numel(); ++i) {
            const double d = on_cpu.ptr<float>()[i] - on_cuda.ptr<float>()[i];
            err = d * d > err * err ? (d < 0 ? -d : d) : err;
        }
        std::printf("glimpse %s consumer (cuda): cuda vs cpu GEMM max abs diff %.2e\n", GLIMPSE_VERSION_STRING, err);
        return err < 1e-5 ? 0 : 1;
    } catch (const glimpse::error& e) {
        const std::string what = e.what();
        std::printf("glimpse %s consumer (cuda): %s\n", GLIMPSE_VERSION_STRING, what.c_str());
        return what.find("no CUDA device visible: ") != std::string::npos ? 0 : 1;
    }
}
