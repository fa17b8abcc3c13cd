// compare/comparison_run.hpp: which run glimpse-compare's options ask for and what it refuses
// before any model loads (the CLI tests run the three runs end to end).

#include <catch2/catch.hpp>

#include <string>

#include <glimpse/compare/comparison_run.hpp>

namespace {

namespace cmp = glimpse::compare;

cmp::run_options models() {
    cmp::run_options o;
    o.base_model = "base";
    o.finetuned_model = "tuned";
    o.output_dir = "out";
    return o;
}

}  // namespace

TEST_CASE("comparison run: the options name one run, and what cannot run is refused before a load", "[compare][cli]") {
    auto single = models();
    single.image_path = "a.png";
    CHECK(cmp::check(single) == cmp::run_kind::single);
    auto batch = models();
    batch.batch = "b.jsonl";
    batch.shard = "1/4";
    CHECK(cmp::check(batch) == cmp::run_kind::batch);
    cmp::run_options merge;
    merge.merge = {"out"};
    merge.output_dir = "out";
    CHECK(cmp::check(merge) == cmp::run_kind::merge);

    const auto refused = [](cmp::run_options o, const std::string& why) {
        INFO(why);
        CHECK_THROWS_WITH(cmp::check(o), Catch::Contains(why));
    };
    refused(models(), "give --image_path (or --batch FILE.jsonl)");
    cmp::run_options none;
    none.image_path = "a.png";
    refused(none, "give --base_model and --finetuned_model");
    auto m = merge;
    m.batch = "b.jsonl";
    refused(m, "--merge reads the shards' results");
    auto b = batch;
    b.image_path = "a.png";
    refused(b, "--batch takes the images and boxes from the JSONL file");
    b = batch;
    b.person_box = {1, 2, 3, 4};
    refused(b, "--batch takes the images and boxes from the JSONL file");
    auto s = single;
    s.shard = "0/2";
    refused(s, "--shard splits a --batch file");
    b = batch;
    b.shard = "4/4";
    refused(b, "K must be in 0..N-1");
    s = single;
    s.task = "pointing";
    refused(s, "unknown task type 'pointing'");
    s = single;
    s.box_format = "cxcywh";
    refused(s, "unknown box format 'cxcywh'");
}

TEST_CASE("comparison run: a batch's options come from the command's, a shard's size from K/N", "[compare][cli]") {
    auto o = models();
    o.batch = "dir/test.jsonl";
    o.task = "grounding";
    o.precision = "bf16";
    o.shard = "2/3";
    o.interpolation = "nearest";
    const cmp::batch_options bo = cmp::batch_options_for(o, "base head", "tuned head", "cpu", "cpu (bf16 matmul)");
    CHECK(bo.task == cmp::task_type::grounding);
    CHECK(bo.precision == "bf16");
    CHECK(bo.device_kind == "cpu");
    CHECK(bo.shard.str() == "2/3");
    CHECK(bo.figure.interp == glimpse::viz::interpolation::nearest);
    CHECK(bo.report.title == "glimpse-compare: test.jsonl");
    // Images 2, 5, 8 of 10 (i mod 3 = 2); 0, 3, 6, 9 for shard 0.
    CHECK(cmp::shard_size(bo.shard, 10) == 3);
    CHECK(cmp::shard_size(cmp::shard_spec::parse("0/3"), 10) == 4);
    CHECK(cmp::shard_size(cmp::shard_spec::parse("2/3"), 2) == 0);

    cmp::stage_timings t;
    t.add("load", 1.5);
    t.add("run", 2.0);
    const std::string table = cmp::timings_table(t);
    CHECK(table.find("load") < table.find("run"));
    CHECK(table.find("total") != std::string::npos);
    CHECK(table.find("3.5") != std::string::npos);
}
