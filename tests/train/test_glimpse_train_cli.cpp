// glimpse-train end to end on the tiny Qwen3-VL checkpoint, a few steps:
// --help, a run that writes a head directory every tool loads, --stop-after +
// --resume giving the uninterrupted run's head bit for bit, --resume refusing
// changed hyper-parameters, and --on-bad-line reject failing before anything
// is written (skip: reported, trained without the line); --heldout-fraction,
// --boxes, --init; SIGINT / SIGTERM: the step's checkpoint, exit 130, resumable.

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/io/safetensors.hpp>
#include <glimpse/models/qwen_heatmap.hpp>
#include <glimpse/train/head_checkpoint.hpp>

#include "temp_dir.hpp"
#include "test_files.hpp"
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
    CHECK(full.out.find("held-out mass on the box's patches, before:") != std::string::npos);
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

TEST_CASE("glimpse-train: --heldout-fraction, --boxes and --init do what docs/training.md says", "[train][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_TRAIN_EXE);
    cli_data d;
    const std::string base = "--model " + test::data_path("qwen3_vl_tiny") + " --data " + (d.dir / "t.jsonl").string() +
                             " --heldout-fraction 0.34 --epochs 3 --batch 2 --lr 0.01 --threads 1";
    const auto read_record = [&](const std::string& run_dir) {
        return nlohmann::json::parse(test::read_file(d.dir / run_dir / train::record_file_name));
    };
    // The line after "<label>" in the run's report: the held-out masses.
    const auto line_after = [](const std::string& out, const std::string& label) {
        const auto at = out.find(label);
        if (at == std::string::npos) return std::string("(missing: " + label + ")");
        std::string v = out.substr(at + label.size(), out.find('\n', at) - at - label.size());
        v.erase(0, v.find_first_not_of(' '));
        return v;
    };

    // A fraction of the training file is held out (1 of 3 here), deterministically.
    const auto full = run(base + " --out " + (d.dir / "full").string());
    INFO(full.out);
    REQUIRE(full.code == 0);
    const auto rec = read_record("full");
    CHECK(rec["data"]["heldout_fraction"] == 0.34);
    CHECK(rec["data"]["heldout_examples"] == 1);
    CHECK(rec["data"]["train_examples"] == 2);
    CHECK(rec["objective"]["boxes"] == nlohmann::json::array({"person", "object", "union"}));
    const auto again = run(base + " --out " + (d.dir / "again").string());
    CHECK(line_after(again.out, "after: ") == line_after(full.out, "after: "));
    for (const char* bad : {"1", "1.5", "-0.2"}) {
        INFO(bad);
        const auto r = run(base + " --heldout-fraction " + bad + " --out " + (d.dir / "bad").string());
        CHECK(r.code == 1);
        CHECK((r.out.find("held-out fraction must be in (0, 1)") != std::string::npos ||
               r.out.find("--heldout-fraction: Value") != std::string::npos));
        CHECK_FALSE(fs::exists(d.dir / "bad"));
    }

    // --boxes person: the objective has one term, the record says so, the losses differ.
    const auto person = run(base + " --boxes person --out " + (d.dir / "person").string());
    INFO(person.out);
    REQUIRE(person.code == 0);
    CHECK(read_record("person")["objective"]["boxes"] == nlohmann::json::array({"person"}));
    CHECK(train::load_train_state(d.dir / "person").losses != train::load_train_state(d.dir / "full").losses);
    const auto unknown = run(base + " --boxes person,hand --out " + (d.dir / "bad").string());
    CHECK(unknown.code == 1);
    CHECK_FALSE(fs::exists(d.dir / "bad"));

    // --init RUN_DIR starts from that run's head: the new run's "before" masses are the old
    // run's "after" masses (same held-out example), and the record names the start.
    const auto init =
        run(base + " --init " + (d.dir / "full").string() + " --stop-after 1 --out " + (d.dir / "init").string());
    INFO(init.out);
    REQUIRE(init.code == 0);
    CHECK(init.out.find("start: 'heatmap_head.*' in") != std::string::npos);
    CHECK(line_after(init.out, "before: ") == line_after(full.out, "after: "));
    CHECK(line_after(init.out, "before: ") != line_after(full.out, "before: "));
    CHECK(read_record("init")["init"]["from"] != "seeded");
}

namespace {

// Starts glimpse-train with its output in `log`; returns the pid.
pid_t spawn_train(const std::string& args, const fs::path& log) {
    const std::string cmd = "exec " + std::string(GLIMPSE_TRAIN_EXE) + " " + args + " > '" + log.string() + "' 2>&1";
    const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    pid_t pid = -1;
    REQUIRE(::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) == 0);
    return pid;
}

}  // namespace

TEST_CASE("glimpse-train: SIGINT or SIGTERM write the checkpoint of the step reached, exit 130, and the run resumes",
          "[train][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_TRAIN_EXE);
    cli_data d;
    // 100 epochs of one step each (~15 s uninterrupted here); the signal comes after the
    // first epoch's checkpoint, so the run is stopped well before its end.
    const std::string base = "--model " + test::data_path("qwen3_vl_tiny") + " --data " + (d.dir / "t.jsonl").string() +
                             " --heldout " + (d.dir / "h.jsonl").string() +
                             " --epochs 100 --batch 4 --lr 0.01 --threads 1";
    for (const int sig : {SIGINT, SIGTERM}) {
        const std::string name = sig == SIGINT ? "int" : "term";
        INFO("signal " << name);
        const fs::path out = d.dir / name;
        const pid_t pid = spawn_train(base + " --out " + out.string(), d.dir / (name + ".log"));
        const auto t0 = std::chrono::steady_clock::now();
        while (!fs::exists(out / train::state_file_name) &&
               std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        REQUIRE(::kill(pid, sig) == 0);
        int st = 0;
        REQUIRE(::waitpid(pid, &st, 0) == pid);
        const std::string log = test::read_file(d.dir / (name + ".log"));
        INFO(log);
        REQUIRE(WIFEXITED(st));
        CHECK(WEXITSTATUS(st) == 130);
        CHECK(log.find("continue with the same command and --resume") != std::string::npos);
        const auto stopped = train::load_train_state(out);
        REQUIRE(stopped.step >= 1);
        REQUIRE(stopped.step < 100);

        // The checkpoint is the one an uninterrupted run has at that step, bit for bit ...
        const fs::path ref = d.dir / (name + "-ref");
        const auto r = run(base + " --stop-after " + std::to_string(stopped.step) + " --out " + ref.string());
        REQUIRE(r.code == 0);
        CHECK(train::load_train_state(ref).losses == stopped.losses);
        const safetensors_file a(out / train::head_file_name), b(ref / train::head_file_name);
        for (const auto& e : a.entries()) CHECK(test::compare(a.get(e.name), b.get(e.name)).max_abs == 0);
        // ... and --resume continues it exactly as it continues the uninterrupted one.
        const auto ra = run(base + " --resume --stop-after 2 --out " + out.string());
        const auto rb = run(base + " --resume --stop-after 2 --out " + ref.string());
        REQUIRE(ra.code == 0);
        REQUIRE(rb.code == 0);
        CHECK(train::load_train_state(out).step == stopped.step + 2);
        CHECK(train::load_train_state(out).losses == train::load_train_state(ref).losses);
    }
}

TEST_CASE("glimpse-train on a Qwen2.5-VL (windowed) tower: an rms_swiglu head that trains and loads", "[train][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_TRAIN_EXE);
    cli_data d;
    const std::string model = test::data_path("qwen2_5_vl_tiny");
    const auto r = run("--model " + model + " --data " + (d.dir / "t.jsonl").string() + " --heldout " +
                       (d.dir / "h.jsonl").string() + " --epochs 3 --batch 2 --lr 0.01 --threads 1 --out " +
                       (d.dir / "q25").string());
    INFO(r.out);
    REQUIRE(r.code == 0);
    CHECK(r.out.find("(qwen2_5_vl, depth 4, D=64)") != std::string::npos);
    CHECK(r.out.find("head     rms_swiglu") != std::string::npos);
    const auto st = train::load_train_state(d.dir / "q25");
    REQUIRE(st.losses.size() == static_cast<std::size_t>(st.step));
    REQUIRE(st.step >= 3);
    CHECK(st.losses.back() < st.losses.front());
    cpu be;
    const auto enc = models::qwen_encoder<cpu>::load(be, model, {.head_dir = d.dir / "q25"});
    CHECK(enc.family() == models::qwen_family::qwen2_5_vl);
    CHECK(enc.head_trained());
}
