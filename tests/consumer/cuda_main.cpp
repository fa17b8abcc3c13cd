// Builds against the installed glimpse::cuda (when the package has it): `--device cuda:0` through
// with_backend either runs a GEMM on the device and checks it against the cpu, or, with no
// device, fails with the runtime's reason — never "built without CUDA", never the cpu instead.
#include <cstdio>
#include <string>

#include <glimpse/backend/device.hpp>
#include <glimpse/version.hpp>

#include "gemm_check.hpp"

int main() {
    static_assert(glimpse::built_with_cuda(), "glimpse::cuda must bring GLIMPSE_HAVE_CUDA");
    try {
        const glimpse::tensor on_cpu = glimpse::with_backend("cpu", [](auto& be) { return consumer::product(be); });
        const glimpse::tensor on_cuda = glimpse::with_backend("cuda:0", [](auto& be) { return consumer::product(be); });
        const double err = consumer::max_abs_diff(on_cpu, on_cuda);
        std::printf("glimpse %s consumer (cuda): cuda vs cpu GEMM max abs diff %.2e\n", GLIMPSE_VERSION_STRING, err);
        return err < 1e-5 ? 0 : 1;
    } catch (const glimpse::error& e) {
        const std::string what = e.what();
        std::printf("glimpse %s consumer (cuda): %s\n", GLIMPSE_VERSION_STRING, what.c_str());
        return what.find("no CUDA device visible: ") != std::string::npos ? 0 : 1;
    }
}
