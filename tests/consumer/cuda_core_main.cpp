// find_package(glimpse COMPONENTS core reference cuda): glimpse::cuda needs no cpu backend (no
// Eigen, OpenMP or CBLAS). A GEMM on the device is checked against the reference backend or,
// with no device, the backend fails with the runtime's reason.
#include <cstdio>
#include <string>

#include <glimpse/backend/cuda.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/version.hpp>

#include "gemm_check.hpp"

int main() {
    try {
        glimpse::reference ref;
        const glimpse::tensor expected = consumer::product(ref);
        glimpse::cuda dev;
        const glimpse::tensor on_cuda = consumer::product(dev);
        const double err = consumer::max_abs_diff(expected, on_cuda);
        std::printf("glimpse %s core consumer (cuda): cuda vs reference GEMM max abs diff %.2e\n",
                    GLIMPSE_VERSION_STRING, err);
        return err < 1e-5 ? 0 : 1;
    } catch (const glimpse::error& e) {
        const std::string what = e.what();
        std::printf("glimpse %s core consumer (cuda): %s\n", GLIMPSE_VERSION_STRING, what.c_str());
        return what.find("no CUDA device visible: ") != std::string::npos ? 0 : 1;
    }
}
