// The tools' --device seam (backend/device.hpp): parsing, and the dispatch to a backend.

#include <glimpse/backend/device.hpp>

#include "cuda/cuda_test_util.hpp"

using namespace glimpse;

TEST_CASE("device strings parse; bad ones name themselves", "[cuda][device]") {
    CHECK(parse_device("cpu") == device_spec{});
    CHECK(parse_device("cuda") == device_spec{device_spec::kind_t::cuda, 0});
    CHECK(parse_device("cuda:3") == device_spec{device_spec::kind_t::cuda, 3});
    CHECK(parse_device("cuda:3").str() == "cuda:3");
    for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "CPU"})
        CHECK_THROWS_WITH(parse_device(bad), Catch::Contains(std::string("'") + bad + "' is not a device"));
    CHECK(built_with_cuda());
}

TEST_CASE("with_backend runs the body on cpu or cuda", "[cuda][device]") {
    const auto name_of = [](auto& be) { return std::string(std::remove_reference_t<decltype(be)>::name()); };
    CHECK(with_backend("cpu", name_of) == "cpu");
    if (cuda::device_count() == 0) {
        CHECK_THROWS_WITH(with_backend("cuda:0", name_of), Catch::Contains("no CUDA device"));
        GLIMPSE_REQUIRE_CUDA_DEVICE();
    }
    CHECK(with_backend("cuda", name_of) == "cuda");
    CHECK_THROWS_WITH(with_backend("cuda:999", name_of), Catch::Contains("no CUDA device 999"));
}
