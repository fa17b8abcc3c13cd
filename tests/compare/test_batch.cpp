// glimpse::compare batch mode (issue 13, item 4): a resumed batch recomputes
// exactly the images whose inputs changed and says why, per-task summaries,
// the JSONL's box_format and unknown keys, and intervals that stay in [0, 1]
// (the bootstrap against numpy: tools/make_bootstrap_fixture.py).

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <glimpse/analysis/attention_stats.hpp>
#include <glimpse/backend/cpu.hpp>
#include <glimpse/compare/batch.hpp>
#include <glimpse/compare/fingerprint.hpp>

#include "csv.hpp"
#include "temp_dir.hpp"
#include "test_files.hpp"
#include "test_skip.hpp"
#include "test_util.hpp"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

using glimpse::test::read_file;

const std::string kTiny = test::data_path("qwen3_vl_tiny");
const std::string kHead = test::data_path("compare_head");
const std::string kTrained = std::string(GLIMPSE_EXAMPLES_DATA_DIR) + "/qwen3_vl_tiny_finetuned";
const std::string kSquare = test::data_path("images/square_100x100.png");
const std::string kTall = test::data_path("images/tall_240x90.png");

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_file(p)); }

void write_lines(const fs::path& p, const std::vector<std::string>& lines) {
    std::ofstream f(p);
    for (const auto& l : lines) f << l << "\n";
}

std::string line(const std::string& id, const std::string& image, const std::string& boxes,
                 const std::string& extra = "") {
    return "{\"id\": \"" + id + "\", \"image\": \"" + image + "\", " + boxes + extra + "}";
}

// Small figures: the rendering is most of a tiny model's time per image.
compare::batch_options small() {
    compare::batch_options o;
    o.figure.panel_long_side = 64;
    return o;
}

// One batch run of base kTiny (seeded head) against `tuned` into `out`.
struct runner {
    cpu be;
    compare::fonts fonts = compare::fonts::system_default();

    compare::batch_report run(const fs::path& jsonl, const fs::path& out, const std::string& tuned = kHead,
                              compare::batch_options o = small(), std::uint64_t seed = 0) {
        const auto base = compare::model_source::resolve(kTiny, "--base_model");
        const auto ft = compare::model_source::resolve(tuned, "--finetuned_model", base.encoder_dir);
        const auto c = compare::comparer<cpu>::load(be, base, ft, seed);
        o.output_dir = out;
        o.log = nullptr;
        return compare::run_batch(be, c, base, ft, compare::read_batch(jsonl), o, fonts);
    }
};

const compare::image_row& row_of(const compare::batch_report& r, const std::string& id) {
    for (const auto& x : r.rows)
        if (x.id == id) return x;
    FAIL("no row " << id);
    return r.rows.front();
}

}  // namespace

TEST_CASE("FNV-1a 64: the published test vectors", "[compare][batch]") {
    const auto h = [](std::string_view s) {
        glimpse::fnv1a64 f;
        f.add(s.data(), s.size());
        return f.hex();
    };
    // http://www.isthe.com/chongo/src/fnv/test_fnv.c (FNV1A_64 of "", "a", "foobar").
    CHECK(h("") == "cbf29ce484222325");
    CHECK(h("a") == "af63dc4c8601ec8c");
    CHECK(h("foobar") == "85944171f73967e8");
}

TEST_CASE("head identity: the loaded tensors, not where they came from", "[compare][batch]") {
    cpu be;
    test::temp_dir tmp("batch-head");
    fs::copy(kHead, tmp / "copy");
    models::qwen_head_options a, b, seeded0, seeded1;
    a.head_dir = kHead;
    b.head_dir = (tmp / "copy").string();
    seeded1.seed = 1;
    const auto id = [&](const models::qwen_head_options& o) {
        return compare::head_identity(be, models::qwen_encoder<cpu>::load(be, kTiny, o));
    };
    const auto ia = id(a);
    CHECK(ia == id(b));  // same head in another directory (another mtime): the same identity
    CHECK(ia["tensors"].get<int>() > 10);
    CHECK(ia != id(seeded0));
    CHECK(id(seeded0) != id(seeded1));  // a seeded head's seed is in its tensors
    CHECK(id(seeded0) == id(seeded0));
    a.head_dir = kTrained;
    CHECK(ia != id(a));
}

TEST_CASE("batch resume: changed boxes, fine-tuned model, options and seed are recomputed, the rest skipped",
          "[compare][batch]") {
    test::temp_dir tmp("batch-resume");
    runner R;
    const fs::path jl = tmp / "b.jsonl", out = tmp / "out";
    const std::string pa = "\"person_box\": [0, 0, 60, 100], \"object_box\": [50, 50, 100, 100]";
    const std::string pb = "\"person_box\": [0, 0, 50, 130], \"object_box\": [40, 150, 90, 240]";
    write_lines(jl,
                {line("a", kSquare, pa), line("b", kTall, pb), line("c", kSquare, "\"person_box\": [10, 10, 40, 90]")});

    auto r = R.run(jl, out);
    CHECK(r.computed == 3);
    CHECK(r.skipped == 0);
    CHECK(r.recomputed == 0);
    CHECK(r.failed == 0);
    const auto ja = read_json(out / "a" / "attention_comparison_referring.json");
    REQUIRE(ja.contains("fingerprint"));
    CHECK(ja["fingerprint"]["hash"].get<std::string>().rfind("fnv1a64:", 0) == 0);
    CHECK(ja["fingerprint"]["parts"]["boxes"]["person"] == nlohmann::json::array({0.0, 0.0, 60.0, 100.0}));
    CHECK(ja["fingerprint"]["parts"]["options"]["alpha"] == 0.5);
    const auto mtime_a = fs::last_write_time(out / "a" / "attention_comparison_referring.json");

    // Nothing changed: all skipped, nothing rewritten, the same numbers.
    r = R.run(jl, out);
    CHECK(r.computed == 0);
    CHECK(r.skipped == 3);
    CHECK(r.recomputed_line().empty());
    CHECK(fs::last_write_time(out / "a" / "attention_comparison_referring.json") == mtime_a);
    CHECK(row_of(r, "a").values.at("person").second ==
          ja["models"]["finetuned"]["queries"]["person"]["mass_in"]["person"].get<double>());

    // One box changed: that image only.
    write_lines(jl, {line("a", kSquare, pa),
                     line("b", kTall, "\"person_box\": [0, 0, 50, 120], \"object_box\": [40, 150, 90, 240]"),
                     line("c", kSquare, "\"person_box\": [10, 10, 40, 90]")});
    r = R.run(jl, out);
    CHECK(r.computed == 1);
    CHECK(r.recomputed == 1);
    CHECK(r.skipped == 2);
    CHECK(r.recomputed_line() == "1 recomputed: boxes changed (1)");
    CHECK(row_of(r, "b").status == "recomputed (boxes changed)");
    CHECK(read_json(out / "b" / "attention_comparison_referring.json")["boxes"]["person"][3] == 120.0);
    CHECK(fs::last_write_time(out / "a" / "attention_comparison_referring.json") == mtime_a);

    // Another fine-tuned model: every image, under its name, with its numbers.
    r = R.run(jl, out, kTrained);
    CHECK(r.computed == 3);
    CHECK(r.recomputed == 3);
    CHECK(r.recomputed_line() == "3 recomputed: fine-tuned head changed (3)");
    const auto ja2 = read_json(out / "a" / "attention_comparison_referring.json");
    CHECK(ja2["models"]["finetuned"]["dir"] == kTrained);
    CHECK(ja2["models"]["finetuned"]["queries"]["person"]["mass_in"]["person"] !=
          ja["models"]["finetuned"]["queries"]["person"]["mass_in"]["person"]);
    CHECK(row_of(r, "a").values.at("person").second ==
          ja2["models"]["finetuned"]["queries"]["person"]["mass_in"]["person"].get<double>());

    // A copy of that head elsewhere: the same contents, nothing to recompute.
    fs::copy(kTrained, tmp / "trained_copy");
    r = R.run(jl, out, (tmp / "trained_copy").string());
    CHECK(r.skipped == 3);

    // A figure option and the seed of the (seeded, untrained) base head.
    compare::batch_options o = small();
    o.figure.alpha = 0.7;
    r = R.run(jl, out, kTrained, o);
    CHECK(r.recomputed_line() == "3 recomputed: option alpha changed (3)");
    r = R.run(jl, out, kTrained, o, /*seed=*/5);
    CHECK(r.recomputed_line() == "3 recomputed: base head changed (3)");
    o.precision = "bf16";  // the name only (this test runs f32): what the fingerprint records
    r = R.run(jl, out, kTrained, o, 5);
    CHECK(r.recomputed_line() == "3 recomputed: option precision changed (3)");

    // A JSON of an older glimpse (no fingerprint) and one that does not parse.
    for (const char* id : {"a", "c"}) {
        const fs::path p = out / id / "attention_comparison_referring.json";
        auto j = read_json(p);
        j.erase("fingerprint");
        std::ofstream(p) << (std::string(id) == "a" ? j.dump(2) : std::string("{ truncated"));
    }
    r = R.run(jl, out, kTrained, o, 5);
    CHECK(r.recomputed == 2);
    CHECK(r.skipped == 1);
    CHECK(r.recompute_reasons.at("no fingerprint (written before glimpse-compare stored one)") == 1);
    CHECK(r.recompute_reasons.at("unreadable JSON") == 1);
    CHECK(read_json(out / "a" / "attention_comparison_referring.json").contains("fingerprint"));

    // The image file itself (a new mtime).
    const fs::path img = tmp / "sq.png";
    fs::copy_file(kSquare, img);
    write_lines(jl, {line("a", img.string(), pa)});
    r = R.run(jl, out, kTrained, o, 5);
    CHECK(r.recomputed_line() == "1 recomputed: image file changed (1)");
    fs::last_write_time(img, fs::last_write_time(img) + std::chrono::seconds(10));
    r = R.run(jl, out, kTrained, o, 5);
    CHECK(r.recomputed_line() == "1 recomputed: image file changed (1)");
    r = R.run(jl, out, kTrained, o, 5);
    CHECK(r.skipped == 1);

    // A box that became invalid: recomputed, fails, says so; the old result is not summarised.
    write_lines(jl, {line("a", img.string(), "\"person_box\": [0, 0, 600, 100]")});
    r = R.run(jl, out, kTrained, o, 5);
    CHECK(r.failed == 1);
    CHECK(row_of(r, "a").status.find("outside the 100x100 image") != std::string::npos);
    CHECK(row_of(r, "a").values.empty());
    CHECK(read_file(out / "summary_referring.csv").find("\nperson,") == std::string::npos);
}

TEST_CASE("batch: grounding after referring in one directory keeps both summaries, grounding's has its numbers",
          "[compare][batch]") {
    test::temp_dir tmp("batch-tasks");
    runner R;
    const fs::path jl = tmp / "b.jsonl", out = tmp / "out";
    write_lines(jl, {line("a", kSquare, "\"person_box\": [0, 0, 60, 100], \"object_box\": [50, 50, 100, 100]"),
                     line("b", kTall, "\"person_box\": [0, 0, 50, 130]")});
    auto r = R.run(jl, out);
    REQUIRE(r.summaries.size() == 1);
    const std::string ref_summary = read_file(out / "summary_referring.csv");
    const std::string ref_per_image = read_file(out / "per_image_referring.csv");
    CHECK(ref_summary.find("\nperson,2,") != std::string::npos);
    CHECK(ref_summary.find("\nobject,1,") != std::string::npos);

    compare::batch_options g = small();
    g.task = compare::task_type::grounding;
    r = R.run(jl, out, kHead, g);
    CHECK(r.computed == 2);  // another task: other files, nothing skipped
    REQUIRE(r.summaries.size() == 1);
    CHECK(r.summaries[0].task == compare::task_type::grounding);
    CHECK(read_file(out / "summary_referring.csv") == ref_summary);
    CHECK(read_file(out / "per_image_referring.csv") == ref_per_image);
    CHECK_FALSE(fs::exists(out / "summary.csv"));

    // Grounding's summary: the entropies and masses it computed, each the mean of the JSONs' values.
    const std::string gs = read_file(out / "summary_grounding.csv");
    CHECK(gs.rfind("metric,n,base_mean,", 0) == 0);
    const auto ja = read_json(out / "a" / "attention_comparison_grounding.json");
    const auto jb = read_json(out / "b" / "attention_comparison_grounding.json");
    const auto mean_of = [&](const char* label) {
        for (const auto& s : r.summaries[0].rows)
            if (s.label == label) return s;
        FAIL("no summary row " << label);
        return r.summaries[0].rows.front();
    };
    const auto he = mean_of("head_normalized_entropy");
    CHECK(he.base.n == 2);
    CHECK(he.base.mean == Approx((ja["models"]["base"]["queries"]["uniform"]["normalized_entropy"].get<double>() +
                                  jb["models"]["base"]["queries"]["uniform"]["normalized_entropy"].get<double>()) /
                                 2)
                              .epsilon(1e-12));
    const auto ee = mean_of("encoder_normalized_entropy");
    CHECK(ee.finetuned.mean ==
          Approx((ja["models"]["finetuned"]["encoder_attention"]["normalized_entropy"].get<double>() +
                  jb["models"]["finetuned"]["encoder_attention"]["normalized_entropy"].get<double>()) /
                 2)
              .epsilon(1e-12));
    const auto em = mean_of("encoder_mass_person");
    CHECK(em.base.mean == Approx((ja["models"]["base"]["encoder_attention"]["mass_in"]["person"].get<double>() +
                                  jb["models"]["base"]["encoder_attention"]["mass_in"]["person"].get<double>()) /
                                 2)
                              .epsilon(1e-12));
    CHECK(em.uniform_mean ==
          Approx((ja["uniform_mass"]["person"].get<double>() + jb["uniform_mass"]["person"].get<double>()) / 2));
    CHECK(mean_of("head_mass_object").base.n == 1);
    for (const char* l : {"head_normalized_entropy", "encoder_normalized_entropy", "head_mass_person",
                          "encoder_mass_person", "head_mass_object", "encoder_mass_object", "head_mass_interaction"})
        CHECK(gs.find(std::string("\n") + l + ",") != std::string::npos);
    const std::string gp = read_file(out / "per_image_grounding.csv");
    CHECK(gp.find("base_head_normalized_entropy,finetuned_head_normalized_entropy") != std::string::npos);
    CHECK(gp.find("\na,") != std::string::npos);
    // Resume of each task skips its own images.
    r = R.run(jl, out, kHead, g);
    CHECK(r.skipped == 2);
    r = R.run(jl, out);
    CHECK(r.skipped == 2);
    CHECK(read_file(out / "summary_referring.csv") == ref_summary);
}

TEST_CASE("batch JSONL: a line's box_format is honoured, a bad one refused, unknown keys reported once",
          "[compare][batch]") {
    test::temp_dir tmp("batch-format");
    runner R;
    // 100x100 image: norm1000 [0, 0, 600, 1000] is pixels [0, 0, 60, 100] exactly.
    write_lines(tmp / "px.jsonl",
                {line("a", kSquare, "\"person_box\": [0, 0, 60, 100], \"object_box\": [50, 50, 100, 100]")});
    write_lines(tmp / "n.jsonl",
                {line("a", kSquare, "\"person_box\": [0, 0, 600, 1000], \"object_box\": [500, 500, 1000, 1000]",
                      ", \"box_format\": \"norm1000\"")});
    auto r = R.run(tmp / "px.jsonl", tmp / "px");
    REQUIRE(r.computed == 1);
    r = R.run(tmp / "n.jsonl", tmp / "n");
    REQUIRE(r.computed == 1);
    const auto jp = read_json(tmp / "px" / "a" / "attention_comparison_referring.json");
    const auto jn = read_json(tmp / "n" / "a" / "attention_comparison_referring.json");
    CHECK(jn["boxes"] == jp["boxes"]);
    // Same boxes, same maps: up to the run-to-run rounding of threaded sums (measured <= 3e-9).
    for (const char* m : {"base", "finetuned"})
        for (const char* q : {"person", "object", "interaction"}) {
            const auto& a = jn["models"][m]["queries"][q];
            const auto& b = jp["models"][m]["queries"][q];
            INFO(m << " " << q);
            CHECK(a["query_box"] == b["query_box"]);
            CHECK(a["query_patches"] == b["query_patches"]);
            for (const char* k : {"person", "object", "interaction"})
                CHECK(std::abs(a["mass_in"][k].get<double>() - b["mass_in"][k].get<double>()) < 1e-6);
        }
    CHECK(jn["fingerprint"]["hash"] == jp["fingerprint"]["hash"]);  // boxes fingerprinted in pixels
    // The norm1000 line into the pixel run's directory: the same result, skipped.
    r = R.run(tmp / "n.jsonl", tmp / "px");
    CHECK(r.skipped == 1);
    // The run's --box_format applies to lines without one: norm1000 read as pixels is outside the image.
    write_lines(tmp / "n2.jsonl", {line("a", kSquare, "\"person_box\": [0, 0, 600, 1000]")});
    r = R.run(tmp / "n2.jsonl", tmp / "n2");
    CHECK(r.failed == 1);
    compare::batch_options o = small();
    o.boxes = compare::box_format::norm1000;
    r = R.run(tmp / "n2.jsonl", tmp / "n2", kHead, o);
    CHECK(r.computed == 1);

    // Bad box_format / task_type / labels: refused with the file and line, before anything runs.
    const fs::path bad = tmp / "bad.jsonl";
    for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
             {", \"box_format\": \"yolo\"", "\"box_format\": unknown box format 'yolo'"},
             {", \"box_format\": 1000", "\"box_format\" must be a string"},
             {", \"task_type\": \"detection\"", "unknown task type 'detection'"},
             {", \"action\": 3", "\"action\" must be a string"},
             // 20,000 nested arrays: refused by depth, not parsed into a DOM and dumped
             {", \"split\": " + std::string(20000, '[') + std::string(20000, ']'),
              "nested more than 64 levels deep"}}) {
        write_lines(bad, {line("a", kSquare, "\"person_box\": [0, 0, 60, 100]"), "",
                          line("b", kSquare, "\"person_box\": [0, 0, 60, 100]", extra)});
        INFO(extra);
        CHECK_THROWS_WITH(compare::read_batch(bad),
                          Catch::Contains("batch file '" + bad.string() + "' line 3") && Catch::Contains(needle));
    }

    // Unknown keys: one warning per key, with its line count, not one per line.
    write_lines(tmp / "u.jsonl", {line("a", kSquare, "\"person_box\": [0, 0, 60, 100]", ", \"split\": \"test\""),
                                  line("b", kSquare, "\"person_box\": [0, 0, 60, 100]", ", \"split\": \"test\""),
                                  line("c", kSquare, "\"person_box\": [0, 0, 60, 100]",
                                       ", \"split\": \"test\", \"boxformat\": \"norm1000\"")});
    const auto f = compare::read_batch(tmp / "u.jsonl");
    const auto w = f.warnings();
    REQUIRE(w.size() == 2);
    CHECK(w[0].find("unknown key \"boxformat\" ignored (on 1 line: 3)") != std::string::npos);
    CHECK(w[1].find("unknown key \"split\" ignored (on 3 lines: 1, 2, 3)") != std::string::npos);
}

TEST_CASE("95% interval of a [0, 1]-bounded mean: bootstrap equals numpy and stays in [0, 1] near the bounds",
          "[compare][batch][analysis]") {
    const auto fx = nlohmann::json::parse(read_file(test::data_path("bootstrap_ci.json")));
    REQUIRE(fx["cases"].size() == 5);
    for (const auto& c : fx["cases"]) {
        INFO(c["name"].get<std::string>());
        const auto x = c["x"].get<std::vector<double>>();
        const auto ci =
            analysis::bootstrap_mean_ci(x, c["resamples"].get<std::int64_t>(), c["seed"].get<std::uint64_t>());
        // The same resampling stream, numpy's mean (pairwise sums) and quantile: measured max |diff| 2.2e-16.
        CHECK(std::abs(ci.mean - c["mean"].get<double>()) < 1e-12);
        CHECK(std::abs(ci.lo - c["lo"].get<double>()) < 1e-12);
        CHECK(std::abs(ci.hi - c["hi"].get<double>()) < 1e-12);
        const double mn = *std::min_element(x.begin(), x.end()), mx = *std::max_element(x.begin(), x.end());
        CHECK(ci.lo >= mn);
        CHECK(ci.hi <= mx);
        CHECK(ci.lo <= ci.mean);
        CHECK(ci.mean <= ci.hi);
        const std::string name = c["name"];
        if (name == "near_one" || name == "near_zero") {
            CHECK(ci.lo >= 0.0);
            CHECK(ci.hi <= 1.0);
            // The t interval of the same sample leaves [0, 1]: why the summaries use the bootstrap.
            const auto t = analysis::mean_with_ci(x);
            CHECK((name == "near_one" ? t.hi() > 1.0 : t.lo() < 0.0));
        }
        if (name == "diff_near_minus_one") CHECK(ci.lo >= -1.0);
    }
    // Degenerate samples: no interval for n < 2; a constant sample at a bound is that bound.
    CHECK(std::isnan(analysis::bootstrap_mean_ci(std::vector<double>{1.0}).lo));
    const auto ones = analysis::bootstrap_mean_ci(std::vector<double>(7, 1.0));
    CHECK(ones.lo == 1.0);
    CHECK(ones.hi == 1.0);
    // For a large mid-range sample the bootstrap and t intervals agree (the bootstrap's
    // percentile interval is ~ mean +- 1.96 s/sqrt(n)): within 10% of the half width.
    std::vector<double> big;
    rng g(3);
    for (int i = 0; i < 400; ++i) big.push_back(g.uniform(0.3, 0.7));
    const auto b = analysis::bootstrap_mean_ci(big);
    const auto t = analysis::mean_with_ci(big);
    CHECK(std::abs((b.hi - b.lo) / 2 - t.half_width) < 0.1 * t.half_width);
}

namespace {

int run_cli(const fs::path& dir, const std::string& args, std::string& out, std::string& err) {
    const auto q = [](const std::string& s) { return "'" + s + "'"; };
    const std::string cmd = q(GLIMPSE_COMPARE_EXE) + " " + args + " >" + q((dir / "out.txt").string()) + " 2>" +
                            q((dir / "err.txt").string());
    const int status = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(status));
    out = read_file(dir / "out.txt");
    err = read_file(dir / "err.txt");
    return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("glimpse-compare --batch: recompute counts per reason, unknown keys once, per-task CSVs",
          "[compare][batch][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    test::temp_dir tmp("batch-cli");
    const fs::path jl = tmp / "b.jsonl", out = tmp / "out";
    const std::string pa = "\"person_box\": [0, 0, 60, 100], \"object_box\": [50, 50, 100, 100]";
    write_lines(jl, {line("a", kSquare, pa, ", \"split\": \"test\""),
                     line("b", kTall, "\"person_box\": [0, 0, 50, 130]", ", \"split\": \"test\"")});
    const auto args = [&](const std::string& tuned) {
        return " --base_model '" + kTiny + "' --finetuned_model '" + tuned + "' --threads 2 --batch '" + jl.string() +
               "' --output_dir '" + out.string() + "'";
    };
    std::string o, e;
    REQUIRE(run_cli(tmp.path, args(kHead) + " --panel_size 64", o, e) == 0);
    INFO(o << e);
    CHECK(o.find("2 computed, 0 skipped") != std::string::npos);
    std::size_t n = 0;
    for (std::size_t p = e.find("unknown key \"split\""); p != std::string::npos; p = e.find("unknown key", p + 1)) ++n;
    CHECK(n == 1);
    CHECK(e.find("on 2 lines: 1, 2") != std::string::npos);
    CHECK(o.find("percentile bootstrap") != std::string::npos);
    CHECK(fs::is_regular_file(out / "summary_referring.csv"));
    CHECK(fs::is_regular_file(out / "per_image_referring.csv"));
    CHECK(read_json(out / "a" / "attention_comparison_referring.json")["fingerprint"]["parts"]["options"]["device"] ==
          "cpu");
    REQUIRE(run_cli(tmp.path, args(kTrained) + " --panel_size 80", o, e) == 0);
    CHECK(o.find("2 computed, 0 skipped") != std::string::npos);
    CHECK(o.find("2 recomputed: fine-tuned head changed (2), option panel_size changed (2)") != std::string::npos);
    REQUIRE(run_cli(tmp.path, args(kTrained) + " --panel_size 80 --task_type grounding", o, e) == 0);
    CHECK(o.find("2 computed, 0 skipped") != std::string::npos);
    CHECK(o.find("recomputed") == std::string::npos);
    CHECK(o.find("head_normalized_entropy") != std::string::npos);
    CHECK(fs::is_regular_file(out / "summary_grounding.csv"));
    CHECK(fs::is_regular_file(out / "summary_referring.csv"));
}

using glimpse::test::csv_rows;

TEST_CASE("batch: relative paths resolve against the JSONL file, equal stems get their line, summary = per-image means",
          "[compare][batch]") {
    test::temp_dir tmp("batch-paths");
    fs::create_directories(tmp / "data" / "imgs");
    fs::create_directories(tmp / "other");
    fs::copy_file(kSquare, tmp / "data" / "imgs" / "square_100x100.png");
    fs::copy_file(kTall, tmp / "data" / "imgs" / "tall_240x90.png");
    fs::copy_file(kSquare, tmp / "other" / "square_100x100.png");
    const fs::path jl = tmp / "data" / "b.jsonl";
    write_lines(
        jl,
        {R"({"image": "imgs/square_100x100.png", "person_box": [0, 0, 60, 100], "object_box": [50, 50, 100, 100]})", "",
         "# a comment",
         R"({"image": "../other/square_100x100.png", "person_box": [10, 0, 70, 90], "object_box": [40, 40, 100, 100]})",
         R"({"image": "imgs/tall_240x90.png", "person_box": [0, 0, 50, 130], "object_box": [20, 100, 90, 200]})"});
    const auto f = compare::read_batch(jl);
    REQUIRE(f.items.size() == 3);
    CHECK(fs::equivalent(f.items[0].image, tmp / "data" / "imgs" / "square_100x100.png"));
    CHECK(fs::equivalent(f.items[1].image, tmp / "other" / "square_100x100.png"));
    CHECK(f.items[1].image == (tmp / "other" / "square_100x100.png").lexically_normal());  // no "data/.."
    // Two files share the stem: each id takes its line number (blank and comment lines count).
    CHECK(f.items[0].id == "square_100x100-1");
    CHECK(f.items[1].id == "square_100x100-4");
    CHECK(f.items[2].id == "tall_240x90");

    runner R;
    const fs::path out = tmp / "out";
    const auto r = R.run(jl, out);
    CHECK(r.computed == 3);
    for (const char* id : {"square_100x100-1", "square_100x100-4", "tall_240x90"})
        CHECK(fs::is_regular_file(out / id / "attention_comparison_referring.json"));

    // per_image_referring.csv holds each JSON's masses; summary_referring.csv their means.
    const auto per = csv_rows(read_file(out / "per_image_referring.csv"));
    REQUIRE(per.size() == 3);
    for (const auto& row : per) {
        INFO(row.at("id"));
        const auto j = read_json(out / row.at("id") / "attention_comparison_referring.json");
        for (const char* b : {"person", "object", "interaction"})
            for (const char* m : {"base", "finetuned"})
                CHECK(std::stod(row.at(std::string(m) + "_mass_" + b)) ==
                      Approx(j["models"][m]["queries"][b]["mass_in"][b].get<double>()).margin(5e-7));
    }
    const auto sum = csv_rows(read_file(out / "summary_referring.csv"));
    REQUIRE(sum.size() == 3);
    for (const auto& row : sum) {
        const std::string b = row.at("box");
        INFO(b);
        CHECK(row.at("n") == "3");
        double base = 0, ft = 0, uni = 0;
        for (const auto& p : per) {
            base += std::stod(p.at("base_mass_" + b)) / 3;
            ft += std::stod(p.at("finetuned_mass_" + b)) / 3;
            uni += std::stod(p.at("uniform_mass_" + b)) / 3;
        }
        CHECK(std::stod(row.at("base_mean")) == Approx(base).margin(2e-6));
        CHECK(std::stod(row.at("finetuned_mean")) == Approx(ft).margin(2e-6));
        CHECK(std::stod(row.at("diff_base_minus_finetuned_mean")) == Approx(base - ft).margin(2e-6));
        CHECK(std::stod(row.at("uniform_mass_mean")) == Approx(uni).margin(2e-6));
        for (const char* m : {"base", "finetuned", "diff"}) {
            const std::string pre = std::string(m) == "diff" ? "diff" : m;
            const std::string mean_col = std::string(m) == "diff" ? "diff_base_minus_finetuned_mean" : pre + "_mean";
            CHECK(std::stod(row.at(pre + "_ci95_lo")) <= std::stod(row.at(mean_col)));
            CHECK(std::stod(row.at(mean_col)) <= std::stod(row.at(pre + "_ci95_hi")));
        }
    }
}
