// The tools' --device seam (backend/device.hpp): parsing, and the dispatch to a backend.

#include <glimpse/backend/device.hpp>

#include "cuda/cuda_test_util.hpp"

using namespace glimpse;

TEST_CASE("device strings parse, and bad ones name themselves", "[cuda][device]") {
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
        CHECK_THROWS_WITH(with_backend("cuda:0", name_of),
                          Catch::Contains("--device cuda:0: no CUDA device visible: "));
        GLIMPSE_REQUIRE_CUDA_DEVICE();
    }
    CHECK(with_backend("cuda", name_of) == "cuda");
    CHECK_THROWS_WITH(with_backend("cuda:999", name_of), Catch::Contains("no CUDA device 999"));
}

TEST_CASE("the census says why there is no device, and how many there are", "[cuda][device]") {
    // census::missing is plain string work: checked on any machine.
    cuda::census none;
    none.error = "no CUDA-capable device is detected (cudaErrorNoDevice)";
    CHECK(none.missing(0) ==
          "no CUDA device visible: no CUDA-capable device is detected (cudaErrorNoDevice), CUDA_VISIBLE_DEVICES unset");
    none.visible_devices = "";
    CHECK(none.missing(0).ends_with(", CUDA_VISIBLE_DEVICES="));
    cuda::census two{2, "", std::string("0,1")};
    CHECK(two.missing(0).empty());
    CHECK(two.missing(1).empty());
    CHECK(two.missing(5) == "no CUDA device 5: 2 visible (cuda:0..cuda:1), CUDA_VISIBLE_DEVICES=0,1");
    CHECK(cuda::census{1, "", std::nullopt}.missing(1) ==
          "no CUDA device 1: 1 visible (cuda:0), CUDA_VISIBLE_DEVICES unset");
    // This machine's: consistent with device_count(), and a reason whenever there is none.
    const auto here = cuda::device_census();
    CHECK(here.count == cuda::device_count());
    if (here.count == 0) CHECK_FALSE(here.error.empty());
    CHECK(here.missing(here.count).find("no CUDA device") == 0);
    CHECK_THROWS_WITH(with_backend("cuda:" + std::to_string(here.count), [](auto&) { return 0; }),
                      Catch::Contains(here.missing(here.count)));
    CHECK_THROWS_WITH(cuda(cuda_options{.device = here.count}),
                      Catch::Contains("cuda backend: " + here.missing(here.count)));
}

TEST_CASE("bf16 matmul precision on cuda is refused, device or not", "[cuda][device]") {
    device_spec d = parse_device("cuda:0");
    d.precision = matmul_precision::bf16;
    CHECK_THROWS_WITH(with_backend(d, [](auto&) { return 0; }),
                      Catch::Contains("--precision bf16: the cuda backend computes its GEMMs in f32 only"));
}
