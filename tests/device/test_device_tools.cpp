// `--device cuda:N` on the tools (backend/device.hpp): in a build with the CUDA backend the
// tools link it and either run there or say why they cannot; in one without, they say so.
// Never a silent fallback to cpu. CUDA_VISIBLE_DEVICES="" hides every device from the CUDA
// runtime, so the "no device" message is checked on any machine, GPU or not.

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <glimpse/backend/cpu/isa.hpp>

#include "temp_dir.hpp"
#include "test_files.hpp"
#include "test_skip.hpp"
#include "test_util.hpp"

namespace {

using glimpse::test::read_file;

namespace fs = std::filesystem;

constexpr bool kToolsHaveCuda = GLIMPSE_TOOLS_HAVE_CUDA;

struct tool_run {
    int code = -1;
    std::string out, err;
};

std::string q(const std::string& s) { return "'" + s + "'"; }

// `env` (e.g. "CUDA_VISIBLE_DEVICES= ") prefixes the command.
tool_run run(const glimpse::test::temp_dir& dir, const std::string& env, const std::string& exe,
             const std::string& args) {
    const std::string cmd =
        env + q(exe) + " " + args + " >" + q((dir / "out.txt").string()) + " 2>" + q((dir / "err.txt").string());
    const int status = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(status));
    return {WEXITSTATUS(status), read_file(dir / "out.txt"), read_file(dir / "err.txt")};
}

const std::string kTiny = glimpse::test::data_path("qwen3_vl_tiny");
const std::string kHead = glimpse::test::data_path("compare_head");
const std::string kSquare = glimpse::test::data_path("images/square_100x100.png");

std::string compare_args(const fs::path& out) {
    return "--base_model " + q(kTiny) + " --finetuned_model " + q(kHead) + " --image_path " + q(kSquare) +
           " --output_dir " + q(out.string()) + " --person_box 10 10 60 60 --threads 2";
}
std::string encode_args() { return "--model " + q(kTiny) + " --image " + q(kSquare) + " --heatmap-box 10 10 60 60"; }

// One line on stderr, "<tool>: <needle>...", exit 1.
void check_refusal(const tool_run& r, const std::string& tool, const std::string& needle) {
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code == 1);
    CHECK(r.err.rfind(tool + ": ", 0) == 0);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.out.find("backend: cpu") == std::string::npos);  // it did not start on the cpu instead
}

}  // namespace

TEST_CASE("tools' --device cuda:0 with no device visible: the tools say why, exit 1, write nothing", "[device][cli]") {
    const glimpse::test::temp_dir dir("device");
    const std::string hidden = "CUDA_VISIBLE_DEVICES= ";
    const std::string no_device = kToolsHaveCuda ? "--device cuda:0: no CUDA device visible: " : "built without CUDA";
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_ENCODE_EXE);
    {
        const auto r = run(dir, hidden, GLIMPSE_COMPARE_EXE, compare_args(dir / "out") + " --device cuda:0");
        check_refusal(r, "glimpse-compare", no_device);
        // The runtime's own reason and the variable that hid the devices, as the user set it.
        if (kToolsHaveCuda) CHECK(r.err.find("CUDA_VISIBLE_DEVICES=\n") != std::string::npos);
        CHECK_FALSE(fs::exists(dir / "out"));
    }
    {
        const auto r = run(dir, hidden, GLIMPSE_ENCODE_EXE,
                           encode_args() + " --device cuda:0 --out " + q((dir / "f.safetensors").string()));
        check_refusal(r, "glimpse-encode", no_device);
        CHECK_FALSE(fs::exists(dir / "f.safetensors"));
    }
}

TEST_CASE("tools' --device cuda:N runs on cuda or refuses and never falls back to cpu", "[device][cli]") {
    const glimpse::test::temp_dir dir("device");
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    for (const char* dev : {"cuda:0", "cuda", "cuda:7"}) {
        INFO(dev);
        const auto r = run(dir, "", GLIMPSE_COMPARE_EXE, compare_args(dir / "out") + " --device " + dev);
        INFO("stdout: " << r.out << "\nstderr: " << r.err);
        if (r.code == 0) {  // a GPU: the run says where it ran
            CHECK(kToolsHaveCuda);
            CHECK(r.out.find("(backend: cuda:") != std::string::npos);
            CHECK(r.out.find("backend: cpu") == std::string::npos);
        } else {
            CHECK(r.code == 1);
            CHECK(r.out.find("backend: cpu") == std::string::npos);
            if (!kToolsHaveCuda)
                CHECK(r.err.find("built without CUDA") != std::string::npos);
            else  // none visible, or fewer than N + 1: "no CUDA device 7: 1 visible (cuda:0), ..."
                CHECK((r.err.find("no CUDA device visible: ") != std::string::npos ||
                       r.err.find("no CUDA device 7: ") != std::string::npos));
        }
        std::error_code ec;
        fs::remove_all(dir / "out", ec);
    }
}

TEST_CASE("tools' --precision bf16 on cuda is refused before any device is looked for", "[device][cli]") {
    const glimpse::test::temp_dir dir("device");
    const std::string needle =
        kToolsHaveCuda ? "--precision bf16: the cuda backend computes its GEMMs in f32 only" : "built without CUDA";
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_ENCODE_EXE);
    check_refusal(run(dir, "", GLIMPSE_COMPARE_EXE, compare_args(dir / "out") + " --device cuda:0 --precision bf16"),
                  "glimpse-compare", needle);
    check_refusal(run(dir, "", GLIMPSE_ENCODE_EXE, encode_args() + " --device cuda:0 --precision bf16"),
                  "glimpse-encode", needle);
}

TEST_CASE("glimpse-train --device: cpu only, and it says so for cuda", "[device][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_TRAIN_EXE);
    const glimpse::test::temp_dir dir("device");
    const std::string args = "--model " + q(kTiny) + " --data " +
                             q(std::string(GLIMPSE_EXAMPLES_DATA_DIR) + "/train/train.jsonl") + " --out " +
                             q((dir / "run").string()) + " --epochs 1";
    const auto r = run(dir, "", GLIMPSE_TRAIN_EXE, args + " --device cuda:0");
    check_refusal(r, "glimpse-train", "--device cuda:0: glimpse-train runs on the cpu only");
    CHECK_FALSE(fs::exists(dir / "run"));
    check_refusal(run(dir, "", GLIMPSE_TRAIN_EXE, args + " --device gpu"), "glimpse-train", "'gpu' is not a device");
}

TEST_CASE("glimpse-encode --device cpu runs and says so", "[device][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_ENCODE_EXE);
    const glimpse::test::temp_dir dir("device");
    const auto r = run(dir, "", GLIMPSE_ENCODE_EXE, encode_args() + " --device cpu");
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(r.out.find("(backend: cpu, matmul precision f32") != std::string::npos);
    CHECK(r.out.find("attention mass inside the box") != std::string::npos);
}

TEST_CASE("glimpse-encode runs the SIMD level GLIMPSE_CPU_ISA names and refuses one it cannot run",
          "[device][cli][isa]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_ENCODE_EXE);
    const glimpse::test::temp_dir dir("isa");
    const auto best = run(dir, "", GLIMPSE_ENCODE_EXE, encode_args());
    INFO("stdout: " << best.out << "\nstderr: " << best.err);
    CHECK(best.code == 0);
    // The environment's level when this suite runs under GLIMPSE_CPU_ISA, else the best.
    CHECK(best.out.find(", kernels " + std::string(glimpse::name(glimpse::detail::cpu_impl::default_isa())) +
                        " (this CPU:") != std::string::npos);
    const auto sse2 = run(dir, "GLIMPSE_CPU_ISA=sse2 ", GLIMPSE_ENCODE_EXE, encode_args());
    INFO("stdout: " << sse2.out << "\nstderr: " << sse2.err);
    CHECK(sse2.code == 0);
    CHECK(sse2.out.find(", kernels sse2 (this CPU:") != std::string::npos);
    // ... and names the GEMM that ran: the BLAS below avx512, the packed kernel from it on.
    CHECK(sse2.out.find(", gemm f32 BLAS sgemm,") != std::string::npos);
    if (glimpse::detail::cpu_impl::default_isa() >= glimpse::cpu_isa::avx512)
        CHECK(best.out.find(", gemm f32 packed FMA (avx512)") != std::string::npos);  // (+ "; f32 weights: oneDNN")
    // The same numbers on the narrowest kernels: the mass line (4 decimals) is identical.
    const auto mass = [](const std::string& out) {
        const auto at = out.find("attention mass inside the box");
        return at == std::string::npos ? std::string("(none)") : out.substr(at, out.find('\n', at) - at);
    };
    CHECK(mass(sse2.out) == mass(best.out));
    const auto bad = run(dir, "GLIMPSE_CPU_ISA=avx9 ", GLIMPSE_ENCODE_EXE, encode_args());
    INFO("stdout: " << bad.out << "\nstderr: " << bad.err);
    CHECK(bad.code == 1);
    CHECK(bad.err == "glimpse-encode: GLIMPSE_CPU_ISA=avx9: not a level (sse2, avx2, avx512, avx512_bf16, amx)\n");
    CHECK(bad.out.empty());
}
