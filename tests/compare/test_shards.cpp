// Sharded batches (issue 18): --shard K/N computes the images i with i mod N = K, --merge
// folds the N manifests into the CSVs one unsharded run writes (compared byte for byte),
// shards of different runs are refused with the part that differs, and the pipelined
// driver writes what the sequential one writes.

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/compare/batch.hpp>
#include <glimpse/compare/shards.hpp>

#include "temp_dir.hpp"
#include "test_files.hpp"
#include "test_skip.hpp"
#include "test_util.hpp"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

using glimpse::test::error_of;
using glimpse::test::read_file;

const std::string kTiny = test::data_path("qwen3_vl_tiny");
const std::string kTrained = std::string(GLIMPSE_EXAMPLES_DATA_DIR) + "/qwen3_vl_tiny_finetuned";

// Seven images (bundled PNGs and JPEGs), one of them missing: it fails in every run.
fs::path write_batch(const fs::path& dir) {
    const std::string d = test::data_path("images/");
    const std::vector<std::pair<std::string, std::string>> items = {
        {"square", d + "square_100x100.png"}, {"tall", d + "tall_240x90.png"}, {"wide", d + "wide_67x203.png"},
        {"gone", d + "no_such.png"},          {"grey", d + "grey_60x110.png"}, {"rgba", d + "rgba_70x98.png"},
        {"tiny", d + "tiny_31x45.png"}};
    const fs::path p = dir / "batch.jsonl";
    std::ofstream f(p);
    f << "# a comment line: not an image, does not count\n";
    for (const auto& [id, img] : items)
        f << R"({"id": ")" << id << R"(", "image": ")" << img
          << R"(", "box_format": "norm1000", "person_box": [100, 50, 600, 900], "object_box": [400, 300, 950, 700], )"
          << R"("action": "holding", "object_category": "cup"})"
          << "\n";
    return p;
}

struct runner {
    cpu be;
    compare::fonts fonts = compare::fonts::system_default();

    compare::batch_report run(const fs::path& jsonl, const fs::path& out, compare::shard_spec shard = {},
                              bool pipeline = true, double alpha = 0.5) {
        const auto base = compare::model_source::resolve(kTiny, "--base_model");
        const auto ft = compare::model_source::resolve(kTrained, "--finetuned_model", base.encoder_dir);
        const auto c = compare::comparer<cpu>::load(be, base, ft, 0);
        compare::batch_options o;
        o.figure.panel_long_side = 64;
        o.figure.alpha = alpha;
        o.output_dir = out;
        o.log = nullptr;
        o.shard = shard;
        o.pipeline = pipeline;
        o.report.title = "shards test";
        return compare::run_batch(be, c, base, ft, compare::read_batch(jsonl), o, fonts);
    }
};

}  // namespace

TEST_CASE("shard K/N: parsed strictly, round-robin over the file's images", "[compare][shards]") {
    const auto s = compare::shard_spec::parse("2/5");
    CHECK(s.k == 2);
    CHECK(s.n == 5);
    CHECK(s.owns(2));
    CHECK(s.owns(7));
    CHECK_FALSE(s.owns(3));
    CHECK(s.manifest_name() == "shard-2-of-5.json");
    CHECK(compare::shard_spec::parse("0/1").whole());
    for (const char* bad : {"5/5", "1/0", "-1/3", "a/b", "1/", "/3", "1 /3", "1/3/4", "9999999999/2", ""}) {
        INFO(bad);
        CHECK_THAT(error_of([&] { (void)compare::shard_spec::parse(bad); }), Catch::Contains("--shard"));
    }
}

TEST_CASE("shards then merge: the CSVs of one unsharded run, byte for byte, and the pipeline changes nothing",
          "[compare][shards]") {
    test::temp_dir tmp("shards");
    const fs::path jl = write_batch(tmp.path);
    runner r;
    const auto whole = r.run(jl, tmp / "whole");
    REQUIRE(whole.rows.size() == 7);
    CHECK(whole.failed == 1);
    CHECK(whole.rows[3].failed());
    CHECK(whole.manifest.empty());
    REQUIRE(fs::is_regular_file(tmp / "whole" / "index.html"));

    // The same images one after the other: the same files.
    const auto seq = r.run(jl, tmp / "sequential", {}, /*pipeline=*/false);
    CHECK(seq.computed == 6);
    for (const char* f : {"per_image_referring.csv", "summary_referring.csv"})
        CHECK(read_file(tmp / "whole" / f) == read_file(tmp / "sequential" / f));
    CHECK(read_file(tmp / "whole" / "square" / "attention_comparison_referring.safetensors") ==
          read_file(tmp / "sequential" / "square" / "attention_comparison_referring.safetensors"));

    std::vector<std::int64_t> sizes;
    for (std::int64_t k = 0; k < 3; ++k) {
        const auto rep = r.run(jl, tmp / "sharded", {k, 3});
        sizes.push_back(static_cast<std::int64_t>(rep.rows.size()));
        for (const auto& row : rep.rows) CHECK(row.index % 3 == k);
        CHECK(rep.manifest == tmp / "sharded" / "shards" / ("shard-" + std::to_string(k) + "-of-3.json"));
        CHECK(rep.summaries.empty());
    }
    CHECK(sizes == std::vector<std::int64_t>{3, 2, 2});
    CHECK_FALSE(fs::exists(tmp / "sharded" / "summary_referring.csv"));  // a shard leaves the tables to --merge

    const auto m = compare::merge_shards({tmp / "sharded"}, tmp / "sharded");
    CHECK(m.rows.size() == 7);
    CHECK(m.manifests.size() == 3);
    for (const char* f : {"per_image_referring.csv", "summary_referring.csv"}) {
        INFO(f);
        CHECK(read_file(tmp / "whole" / f) == read_file(tmp / "sharded" / f));
    }
    CHECK(fs::is_regular_file(tmp / "sharded" / "index.html"));

    // A rerun of a shard skips its images (fingerprints) and rewrites the same manifest.
    const auto again = r.run(jl, tmp / "sharded", {1, 3});
    CHECK(again.skipped == 2);
    CHECK(again.computed == 0);
    const auto m2 = compare::merge_shards({tmp / "sharded"}, tmp / "merged2");
    // Statuses say "skipped" for shard 1's images now; the numbers and the summary are the same.
    CHECK(read_file(tmp / "whole" / "summary_referring.csv") == read_file(tmp / "merged2" / "summary_referring.csv"));
}

TEST_CASE("merge refuses a missing shard, a shard twice, shards of two runs, and names what differs",
          "[compare][shards]") {
    test::temp_dir tmp("shards-refused");
    const fs::path jl = write_batch(tmp.path);
    runner r;
    r.run(jl, tmp / "a", {0, 2});
    CHECK_THAT(error_of([&] { (void)compare::merge_shards({tmp / "a"}, tmp / "m"); }),
               Catch::Contains("missing shard(s) 1/2"));
    CHECK_FALSE(fs::exists(tmp / "m" / "summary_referring.csv"));

    r.run(jl, tmp / "b", {1, 2}, true, /*alpha=*/0.3);
    CHECK_THAT(error_of([&] {
                   (void)compare::merge_shards({tmp / "a", tmp / "b"}, tmp / "m");
               }),
               Catch::Contains("shard 1/2 was run differently from shard 0/2: option alpha differ"));

    r.run(jl, tmp / "c", {1, 2});
    CHECK_NOTHROW(compare::merge_shards({tmp / "a", tmp / "c"}, tmp / "m"));
    CHECK_THAT(error_of([&] {
                   (void)compare::merge_shards({tmp / "a", tmp / "c", tmp / "a"}, tmp / "m2");
               }),
               Catch::Contains("shard 0/2 is there twice"));

    r.run(jl, tmp / "a", {2, 3});  // a stale run with another N beside the first
    CHECK_THAT(error_of([&] {
                   (void)compare::merge_shards({tmp / "a", tmp / "c"}, tmp / "m3");
               }),
               Catch::Contains("shards of different runs: N = 2, 3"));
    fs::remove(tmp / "a" / "shards" / "shard-2-of-3.json");

    // Another batch file (one more line) is another run.
    {
        std::ofstream f(jl, std::ios::app);
        f << R"({"id": "extra", "image": ")" << test::data_path("images/square_100x100.png")
          << R"(", "person_box": [0, 0, 50, 50]})"
          << "\n";
    }
    r.run(jl, tmp / "d", {1, 2});
    CHECK_THAT(error_of([&] {
                   (void)compare::merge_shards({tmp / "a", tmp / "d"}, tmp / "m4");
               }),
               Catch::Contains("another batch file"));

    // A damaged manifest is named, not merged.
    { std::ofstream(tmp / "c" / "shards" / "shard-1-of-2.json") << R"({"tool": "glimpse-compare", "shard": 3})"; }
    CHECK_THAT(error_of([&] {
                   (void)compare::merge_shards({tmp / "a", tmp / "c"}, tmp / "m5");
               }),
               Catch::Contains("shard-1-of-2.json") && Catch::Contains("not a valid shard manifest"));
    CHECK_THAT(error_of([&] { (void)compare::merge_shards({tmp / "nothing"}, tmp / "m6"); }),
               Catch::Contains("not a directory"));
    fs::create_directories(tmp / "empty");
    CHECK_THAT(error_of([&] { (void)compare::merge_shards({tmp / "empty"}, tmp / "m6"); }),
               Catch::Contains("no shard manifests"));
}

namespace {

int run_compare(const fs::path& dir, const std::string& args, std::string& out) {
    const auto q = [](const std::string& s) { return "'" + s + "'"; };
    const std::string cmd = q(GLIMPSE_COMPARE_EXE) + " " + args + " >" + q((dir / "log.txt").string()) + " 2>&1";
    const int status = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(status));
    out = read_file(dir / "log.txt");
    return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("glimpse-compare --shard and --merge on the command line", "[compare][shards][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    test::temp_dir tmp("shards-cli");
    const fs::path jl = write_batch(tmp.path);
    const std::string models = "--base_model '" + kTiny + "' --finetuned_model '" + kTrained + "' --panel_size 64";
    const std::string out = (tmp / "out").string();
    std::string log;
    // An image fails in shard 0 (index 3): exit 1, the other images written.
    CHECK(run_compare(tmp.path, models + " --batch '" + jl.string() + "' --output_dir '" + out + "' --shard 0/3",
                      log) == 1);
    INFO(log);
    CHECK_THAT(log, Catch::Contains("shard      0/3: 3 of the 7 images") && Catch::Contains("shard-0-of-3.json"));
    CHECK(run_compare(tmp.path, "--merge '" + out + "' --output_dir '" + out + "'", log) == 1);
    CHECK_THAT(log, Catch::Contains("missing shard(s) 1/3, 2/3"));
    for (const char* k : {"1/3", "2/3"})
        CHECK(run_compare(tmp.path, models + " --batch '" + jl.string() + "' --output_dir '" + out + "' --shard " + k,
                          log) == 0);
    CHECK(run_compare(tmp.path, "--merge '" + out + "' --output_dir '" + out + "'", log) == 1);  // 1 image failed
    CHECK_THAT(log, Catch::Contains("merged 3 shards") && Catch::Contains("7 images, 1 failed") &&
                        Catch::Contains("index.html"));
    CHECK(fs::is_regular_file(tmp / "out" / "summary_referring.csv"));
    CHECK(run_compare(tmp.path, "--merge '" + out + "' --output_dir '" + out + "' --base_model x", log) == 1);
    CHECK_THAT(log, Catch::Contains("--merge reads the shards' results"));
    CHECK(run_compare(tmp.path, models + " --image_path x.png --output_dir o --shard 0/2", log) == 1);
    CHECK_THAT(log, Catch::Contains("--shard splits a --batch file"));
    CHECK(run_compare(tmp.path, models + " --batch '" + jl.string() + "' --output_dir o --shard 2/2", log) == 1);
    CHECK_THAT(log, Catch::Contains("K must be in 0..N-1"));
}
