// train/training_run.hpp: the checks a run makes before anything slow or written (the CLI tests
// run whole runs, resumes and refusals end to end).

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <glimpse/train/training_run.hpp>

#include "temp_dir.hpp"

namespace {

namespace train = glimpse::train;

const std::string kTrainData = std::string(GLIMPSE_EXAMPLES_DATA_DIR) + "/train/train.jsonl";

}  // namespace

TEST_CASE("training run: --boxes names each box kind at most once", "[train]") {
    using train::box_kind;
    CHECK(train::parse_box_kinds("person,object,union") ==
          std::vector<box_kind>{box_kind::person, box_kind::object, box_kind::union_});
    CHECK(train::parse_box_kinds("union,person") == std::vector<box_kind>{box_kind::union_, box_kind::person});
    CHECK_THROWS_WITH(train::parse_box_kinds("person,person"), Catch::Contains("'person' given twice"));
    CHECK_THROWS_WITH(train::parse_box_kinds("person,hand"), Catch::Contains("'hand' is not one of"));
    CHECK_THROWS_WITH(train::parse_box_kinds(""), Catch::Contains("'' is not one of"));
}

TEST_CASE("training run: prepare_run checks the run directory and the init flags, and says what is missing",
          "[train]") {
    const glimpse::test::temp_dir tmp("training-run");
    train::run_options o;
    o.model = "unused: prepare_run loads no model";
    o.data = kTrainData;
    o.out = (tmp / "run").string();
    o.boxes = "union";
    std::vector<std::string> warnings;
    const auto in = train::prepare_run(o, [&](const std::string& w) { warnings.push_back(w); });
    CHECK(o.opt.objective.boxes == std::vector<train::box_kind>{train::box_kind::union_});
    CHECK(!in.data.examples.empty());
    CHECK(in.heldout.empty());
    CHECK(!in.head.load_trained);  // a run starts from a seeded head unless --init says otherwise
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("no held-out set") == 0);
    CHECK(!std::filesystem::exists(tmp / "run"));  // nothing written

    o.heldout_fraction = 0.3;
    const auto split = train::prepare_run(o);
    CHECK(!split.heldout.empty());

    auto r = o;
    r.resume = true;
    CHECK_THROWS_WITH(train::prepare_run(r), Catch::Contains("--resume: '" + o.out + "' holds no checkpoint"));
    auto p = o;
    p.init_prefix = "model.visual.heatmap_head";
    CHECK_THROWS_WITH(train::prepare_run(p), Catch::Contains("give --init too"));
    auto e = o;
    e.opt.epochs = 0;
    CHECK_THROWS_WITH(train::prepare_run(e), Catch::Contains("epochs must be >= 1"));
}

TEST_CASE("training run: an epoch record as one line", "[train]") {
    const auto e = nlohmann::json::parse(R"({"epoch": 3, "train_loss": 0.5,
        "heldout": {"feature_change": 0.25, "mass_on_box_patches": {"person": 0.7, "object": 0.2, "union": 0.9}}})");
    CHECK(train::epoch_summary(e) ==
          "epoch 3: train loss 0.5000, held-out mass on the box's patches: person 0.7000  object 0.2000  union "
          "0.9000  (feature change 0.250000)");
    CHECK(train::box_masses(nullptr, "uniform") == "(no held-out set)");
    // Records written before the quantity had its own name call it mass_in_box.
    const auto old = nlohmann::json::parse(R"({"mass_in_box": {"person": 0.1, "object": 0.2, "union": 0.3}})");
    CHECK(train::box_masses(old, "mass_on_box_patches") == "person 0.1000  object 0.2000  union 0.3000");
}
