// glimpse-train end to end on the tiny Qwen3-VL checkpoint, a few steps:
// --help, a run that writes a head directory every tool loads, --stop-after +
// --resume giving the uninterrupted run's head bit for bit, --resume refusing
// changed hyper-parameters, and --on-bad-line reject failing before anything
// is written (skip: reported, trained without the line).

#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/wait.h>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/io/safetensors.hpp>
#include <glimpse/models/qwen_heatmap.hpp>
#include <glimpse/train/head_checkpoint.hpp>

#include "temp_dir.hpp"
#include "test_skip.hpp"
#include "test_util.hpp"

#ifndef GLIMPSE_TRAIN_EXE
#define GLIMPSE_TRAIN_EXE ""
#endif

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

struct result {
    int code = -1;
    std::string out;  // stdout and stderr
};

result run(const std::string& args) {
    const std::string cmd = std::string(GLIMPSE_TRAIN_EXE) + " " + args + " 2>&1";
    result r;
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p);
    std::array<char, 4096> buf{};
    while (const auto n = std::fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
    const int st = ::pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

// Three examples on two small bundled images; held out: one.
struct cli_data {
    test::temp_dir dir{"train-cli"};
    std::string common;
    cli_data() {
        const std::string img = std::string(GLIMPSE_EXAMPLES_DATA_DIR) + "/train/images/";
        std::ofstream(dir / "t.jsonl")
            << "{\"image\": \"" << img
            << "cameraman_0_0_512x512_s625.jpg\", \"person_box\": [0, 38.75, 209.375, 320], "
               "\"object_box\": [155, 85, 207.5, 131.25]}\n"
            << "{\"image\": \"" << img
            << "cameraman_0_0_512x512_s625.jpg\", \"person_box\": [0, 38.75, 209.375, 320], "
               "\"object_box\": [142.5, 112.5, 256.25, 320]}\n"
            << "{\"image\": \"" << img
            << "astronaut_0_0_512x512_s625.jpg\", \"person_box\": [12.5, 9.375, 226.25, 320], "
               "\"object_box\": [172.5, 213.75, 320, 320]}\n";
        std::ofstream(dir / "h.jsonl") << "{\"image\": \"" << img
                                       << "astronaut_192_160_320x320_s1000.jpg\", \"person_box\": [0, 0, 170, 320], "
                                          "\"object_box\": [84, 182, 320, 320]}\n";
        common = "--model " + test::data_path("qwen3_vl_tiny") + " --data " + (dir / "t.jsonl").string() +
                 " --heldout " + (dir / "h.jsonl").string() + " --epochs 2 --batch 2 --lr 0.01 --threads 1";
    }
};

}  // namespace

TEST_CASE("glimpse-train: --help shows an example", "[train][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_TRAIN_EXE);
    const auto r = run("--help");
    CHECK(r.code == 0);
    CHECK(r.out.find("--heldout-fraction") != std::string::npos);
    CHECK(r.out.find("Example") != std::string::npos);
}

TEST_CASE("glimpse-train: a short run, stop + resume = uninterrupted, the head loads", "[train][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_TRAIN_EXE);
    cli_data d;
    const auto full = run(d.common + " --out " + (d.dir / "full").string());
    INFO(full.out);
    REQUIRE(full.code == 0);
    CHECK(full.out.find("held-out mass in box, before:") != std::string::npos);
    CHECK(full.out.find("epoch 2: train loss") != std::string::npos);
    for (const auto f : {train::head_file_name, train::record_file_name, train::state_file_name})
        CHECK(fs::is_regular_file(d.dir / "full" / f));

    // The out dir is a head directory the encoder loads.
    cpu be;
    const auto enc =
        models::qwen_encoder<cpu>::load(be, test::data_path("qwen3_vl_tiny"), {.head_dir = d.dir / "full"});
    CHECK(enc.head_trained());

    // Again over an existing run without --resume: refused.
    const auto again = run(d.common + " --out " + (d.dir / "full").string());
    CHECK(again.code == 1);
    CHECK(again.out.find("already holds a training run") != std::string::npos);

    const std::string part = " --out " + (d.dir / "part").string();
    const auto first = run(d.common + part + " --stop-after 1");
    INFO(first.out);
    REQUIRE(first.code == 0);
    CHECK(train::load_train_state(d.dir / "part").step == 1);
    const auto changed = run(d.common + part + " --resume --lr 0.02");
    CHECK(changed.code == 1);
    CHECK(changed.out.find("hyperparameters.lr (0.01 vs 0.02)") != std::string::npos);
    const auto rest = run(d.common + part + " --resume");
    INFO(rest.out);
    REQUIRE(rest.code == 0);
    CHECK(rest.out.find("resume   from step 1") != std::string::npos);
    CHECK(train::load_train_state(d.dir / "part").losses == train::load_train_state(d.dir / "full").losses);
    const safetensors_file a(d.dir / "full" / train::head_file_name), b(d.dir / "part" / train::head_file_name);
    for (const auto& e : a.entries()) {
        INFO(e.name);
        CHECK(test::compare(a.get(e.name), b.get(e.name)).max_abs == 0);
    }
}

TEST_CASE("glimpse-train: bad lines are rejected before anything is written, or skipped with a report",
          "[train][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_TRAIN_EXE);
    cli_data d;
    {
        std::ofstream f(d.dir / "t.jsonl", std::ios::app);
        f << "{\"image\": \"missing.jpg\", \"person_box\": [0, 0, 5, 5], \"object_box\": [0, 0, 1, 1]}\n";
    }
    const auto out = d.dir / "rejected";
    const auto r = run(d.common + " --out " + out.string());
    INFO(r.out);
    CHECK(r.code == 1);
    CHECK(r.out.find((d.dir / "t.jsonl").string() + ":4: image 'missing.jpg'") != std::string::npos);
    CHECK(!fs::exists(out));

    const auto s = run(d.common + " --out " + (d.dir / "skipped").string() + " --on-bad-line skip --epochs 1");
    INFO(s.out);
    CHECK(s.code == 0);
    CHECK(s.out.find("skipping " + (d.dir / "t.jsonl").string() + ":4:") != std::string::npos);
    CHECK(train::load_record(d.dir / "skipped").at("data").at("skipped_lines") == 1);
}
