// Finding the heatmap head in checkpoints as PyTorch trainers write them (models/head_locator.hpp):
// sharded save_pretrained directories with the head under the trainer's module path, renamed
// leaves, [1, D] query projections; and every way a head can be unusable, each said as such.

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/compare/attention_comparison.hpp>
#include <glimpse/heatmap/head_block.hpp>
#include <glimpse/io/image.hpp>
#include <glimpse/models/head_locator.hpp>
#include <glimpse/models/qwen_heatmap.hpp>

#include "temp_dir.hpp"
#include "test_files.hpp"
#include "test_skip.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
namespace models = glimpse::models;
using glimpse::cpu;
using glimpse::cview;
using glimpse::shape;
using glimpse::tensor;

namespace {

using glimpse::test::read_file;

const std::string kQwen3 = glimpse::test::data_path("qwen3_vl_tiny");
const std::string kQwen25 = glimpse::test::data_path("qwen2_5_vl_tiny");
const std::string kPt = glimpse::test::data_path("pt_heads");

// The error text of `f` (empty when it does not throw).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return {};
}

// A head block's tensors on the host, named `prefix.<leaf>` (glimpse's leaves), seeded.
template <class Kind>
std::vector<std::pair<std::string, tensor>> head_tensors(const std::string& prefix, std::int64_t D, std::int64_t H,
                                                         std::int64_t I, std::uint64_t seed) {
    cpu be;
    glimpse::rng g(seed);
    auto h = glimpse::heatmap::heatmap_head<cpu, Kind>::init(be, {D, H, I, true}, g);
    std::vector<std::pair<std::string, tensor>> out;
    h.visit(prefix, [&](const std::string& n, const auto& t) { out.emplace_back(n, be.download(t.cv())); });
    return out;
}

// A model directory: the tiny checkpoint's config and weights, plus `extra.safetensors`.
fs::path model_with(const glimpse::test::temp_dir& d, const std::string& tiny,
                    const std::vector<std::pair<std::string, tensor>>& extra) {
    const fs::path dir = d.path / "model";
    fs::create_directories(dir);
    fs::copy_file(fs::path(tiny) / "config.json", dir / "config.json");
    fs::copy_file(fs::path(tiny) / "model.safetensors", dir / "model.safetensors");
    std::vector<std::pair<std::string, cview>> v;
    for (const auto& [n, t] : extra) v.emplace_back(n, t.cv());
    if (!v.empty()) glimpse::save_safetensors(dir / "extra.safetensors", v);
    return dir;
}

std::vector<std::pair<std::string, tensor>> drop(std::vector<std::pair<std::string, tensor>> v,
                                                 const std::vector<std::string>& names) {
    std::erase_if(v, [&](const auto& p) { return std::find(names.begin(), names.end(), p.first) != names.end(); });
    return v;
}

}  // namespace

TEST_CASE("head_leaves is the block's own parameter list, for both kinds", "[models][head_locator]") {
    const auto check_kind = [](auto kind_tag, models::head_kind k) {
        using Kind = decltype(kind_tag);
        const auto got = head_tensors<Kind>("", 64, 4, 96, 1);
        const auto want = models::head_leaves(k, 64, 96);
        REQUIRE(got.size() == want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
            CHECK(got[i].first == want[i].leaf);
            CHECK(got[i].second.shape() == want[i].expected);
        }
    };
    check_kind(glimpse::heatmap::rms_swiglu{}, models::head_kind::rms_swiglu);
    check_kind(glimpse::heatmap::ln_gelu_tanh{}, models::head_kind::ln_gelu_tanh);
}

TEST_CASE("head_name_map: longest module prefix wins, unknown keys are errors", "[models][head_locator]") {
    glimpse::test::temp_dir d("names");
    std::ofstream(d / "names.json") << R"({"leaves": {"attn": "cross", "attn.proj": "cross.out", "mlp": "ffn",
        "attn.q_proj.weight": "cross.query"}, "prefix": "visual.hm"})";
    const auto m = models::head_name_map::from_json(d / "names.json");
    CHECK(m.prefix == "visual.hm");
    CHECK(m.mapped("attn.k_proj.weight") == "cross.k_proj.weight");
    CHECK(m.mapped("attn.proj.bias") == "cross.out.bias");
    CHECK(m.mapped("attn.q_proj.weight") == "cross.query");
    CHECK(m.mapped("attn.q_proj.bias") == "cross.q_proj.bias");
    CHECK(m.mapped("mlp.linear_fc1.weight") == "ffn.linear_fc1.weight");
    CHECK(m.mapped("norm1.weight") == "norm1.weight");
    std::ofstream(d / "typo.json") << R"({"leaves": {"atn": "cross"}})";
    CHECK_THAT(error_of([&] { (void)models::head_name_map::from_json(d / "typo.json"); }),
               Catch::Contains("\"atn\" is not a head leaf or module"));
    std::ofstream(d / "key.json") << R"({"leafs": {}})";
    CHECK_THAT(error_of([&] { (void)models::head_name_map::from_json(d / "key.json"); }),
               Catch::Contains("unknown key \"leafs\""));
}

// The fixtures of tools/make_pt_head_fixtures.py: the whole tiny model + a head written from the
// seed's description, saved by transformers' save_pretrained (sharded; f32 and bf16), and the
// maps PyTorch computes in float64 from the stored weights.
// Tolerance: glimpse runs the tower and the head in f32 against the f64 truth; the measured
// error is 0.5-1.7e-6 of max |map| (GLIMPSE_PARITY_VERBOSE=1 prints it), so 5e-6
// relative (test::kF32Deep) is 3-10x the error and far below what a wrong prefix, a transposed
// q_proj, a wrong token order or an untrained head produce (>= 1e-1).
TEST_CASE("PyTorch-written sharded checkpoints: head found under the trainer's prefix, maps equal PyTorch's",
          "[models][head_locator][pytorch]") {
    const glimpse::test::fixture fx("pt_heads/expected.safetensors");
    const auto meta_json = [&](const std::string& k) { return nlohmann::json::parse(fx.s(k)); };
    const glimpse::image_u8 img = glimpse::load_image(glimpse::test::data_path(fx.s("image")));
    for (const std::string c : {"qwen3_f32", "qwen2_5_bf16", "qwen3_renamed_bf16"}) {
        DYNAMIC_SECTION(c) {
            cpu be;
            const fs::path dir = fs::path(kPt) / c;
            models::qwen_head_options opt;
            opt.require_trained = true;
            if (fs::exists(dir / "names.json")) opt.names = models::head_name_map::from_json(dir / "names.json");
            const auto enc = models::qwen_encoder<cpu>::load(be, dir, opt);
            REQUIRE(enc.head_trained());
            const auto& loc = enc.head_location_info();
            REQUIRE(loc);
            CHECK(loc->prefix == fx.s(c + ".prefix"));
            CHECK(loc->by_structure);
            CHECK(loc->q_row == (c == "qwen3_renamed_bf16"));
            CHECK_THAT(enc.head_source(), Catch::Contains(fx.s(c + ".prefix")) && Catch::Contains("model-0000"));
            CHECK(std::stoi(fx.s(c + ".shards")) >= 2);

            const auto px = enc.preprocess(img);
            const auto f = enc.encode_site(be, px);
            const auto cache = enc.prepare_head(be, f);
            const auto grid = meta_json(c + ".grid_hw");
            REQUIRE(f.grid[1] == grid[0].get<std::int64_t>());
            REQUIRE(f.grid[2] == grid[1].get<std::int64_t>());
            for (const std::string b : {"person", "object", "interaction"}) {
                const auto v = meta_json("box." + b);
                const glimpse::heatmap::box bx{v[0], v[1], v[2], v[3]};
                const tensor h = models::box_to_heatmap(bx, img.width, img.height, f.grid);
                const auto a = enc.attend(be, f, cache, h.cv());
                const auto e_mean = glimpse::test::compare(a.mean.cv(), fx[c + ".attention." + b]);
                const auto e_head = glimpse::test::compare(a.per_head.cv(), fx[c + ".per_head." + b]);
                INFO(c << " " << b << ": mean map rel " << e_mean.rel() << ", per head rel " << e_head.rel());
                if (std::getenv("GLIMPSE_PARITY_VERBOSE"))
                    std::printf("pt_heads %-18s %-11s mean map %.2e, per head %.2e (relative to max |map|)\n",
                                c.c_str(), b.c_str(), e_mean.rel(), e_head.rel());
                glimpse::test::record_bound(__FILE__, __LINE__, "pt_heads mean map", e_mean.rel(),
                                            glimpse::test::kF32Deep);
                glimpse::test::record_bound(__FILE__, __LINE__, "pt_heads per-head map", e_head.rel(),
                                            glimpse::test::kF32Deep);
                CHECK(e_mean.rel() <= glimpse::test::kF32Deep);
                CHECK(e_head.rel() <= glimpse::test::kF32Deep);
            }
            // The bound separates: the same tower with a seeded head instead of the trained one
            // is far outside it.
            const auto seeded = models::qwen_encoder<cpu>::load(be, dir, {.load_trained = false});
            const auto v = meta_json("box.person");
            const tensor h = models::box_to_heatmap({v[0], v[1], v[2], v[3]}, img.width, img.height, f.grid);
            const auto a = seeded.attend(be, seeded.encode_site(be, px), h.cv());
            CHECK(glimpse::test::compare(a.mean.cv(), fx[c + ".attention.person"]).rel() >
                  100 * glimpse::test::kF32Deep);
        }
    }
}

TEST_CASE("glimpse-compare on a PyTorch-written checkpoint: head found, named, and its maps are PyTorch's",
          "[models][head_locator][pytorch][compare]") {
    const glimpse::test::fixture fx("pt_heads/expected.safetensors");
    cpu be;
    namespace cmp = glimpse::compare;
    // Both families: Qwen3 (f32, its tower shared with the base) and Qwen2.5 (windowed
    // blocks, bf16 weights: the fine-tuned model runs its own tower).
    for (const auto& [base_dir, case_name] :
         {std::pair{kQwen3, std::string("qwen3_f32")}, std::pair{kQwen25, std::string("qwen2_5_bf16")}}) {
        DYNAMIC_SECTION(case_name) {
            const auto base = cmp::model_source::resolve(base_dir, "--base_model");
            auto tuned = cmp::model_source::resolve(fs::path(kPt) / case_name, "--finetuned_model", base.encoder_dir);
            tuned.require_head = true;
            const auto c = cmp::comparer<cpu>::load(be, base, tuned);
            CHECK_FALSE(c.base().head_trained());
            REQUIRE(c.finetuned().head_trained());
            const glimpse::image_u8 img = glimpse::load_image(glimpse::test::data_path(fx.s("image")));
            cmp::request req;
            const auto box_of = [&](const std::string& b) {
                const auto v = nlohmann::json::parse(fx.s("box." + b));
                return glimpse::heatmap::box{v[0], v[1], v[2], v[3]};
            };
            req.person = box_of("person");
            req.object = box_of("object");
            const auto r = c.run(be, img, req);
            REQUIRE(r.finetuned.queries.size() == 3);
            for (const auto& q : r.finetuned.queries) {
                const auto e = glimpse::test::compare(q.attention.mean.cv(), fx[case_name + ".attention." + q.key]);
                INFO(q.key << ": rel " << e.rel());
                glimpse::test::record_bound(__FILE__, __LINE__, "comparison of a pt_heads checkpoint", e.rel(),
                                            glimpse::test::kF32Deep);
                CHECK(e.rel() <= glimpse::test::kF32Deep);
            }
            const auto j = cmp::to_json(r);
            CHECK(j["models"]["finetuned"]["family"] == fx.s(case_name + ".family"));
            CHECK(j["models"]["finetuned"]["head_location"]["prefix"] == fx.s(case_name + ".prefix"));
            CHECK(j["models"]["finetuned"]["head_location"]["found_by"] == "structure");
            CHECK(j["models"]["base"]["head_trained"] == false);
        }
    }
}

TEST_CASE("a fine-tuned model without a head is an error that says what was looked for, unless --allow_untrained",
          "[models][head_locator]") {
    cpu be;
    models::qwen_head_options opt;
    opt.require_trained = true;
    const std::string e = error_of([&] { (void)models::qwen_encoder<cpu>::load(be, kQwen3, opt); });
    CHECK_THAT(e, Catch::Contains("no heatmap head found") && Catch::Contains("under any prefix P") &&
                      Catch::Contains("attn.q_proj.weight of shape [64, 1] or [1, 64]") &&
                      Catch::Contains("--allow_untrained"));
    opt.require_trained = false;  // the base model's case: seeded, labelled untrained
    const auto enc = models::qwen_encoder<cpu>::load(be, kQwen3, opt);
    CHECK_FALSE(enc.head_trained());
    CHECK_THAT(enc.head_source(), Catch::Contains("untrained"));
}

TEST_CASE("heads under model.visual.heatmap_head / visual.heatmap_head / any prefix load (not a seeded head)",
          "[models][head_locator]") {
    cpu be;
    const auto canonical = models::qwen_encoder<cpu>::load(be, fs::path(kPt) / "qwen3_f32", {.require_trained = true});
    for (const std::string p :
         {"model.visual.heatmap_head", "visual.heatmap_head", "heatmap_head", "model.visual.blocks.spatial.0"}) {
        glimpse::test::temp_dir d("prefix");
        const auto dir = model_with(d, kQwen3, head_tensors<glimpse::heatmap::ln_gelu_tanh>(p, 64, 4, 96, 7));
        const auto enc = models::qwen_encoder<cpu>::load(be, dir, {.require_trained = true});
        CHECK(enc.head_trained());
        CHECK(enc.head_location_info()->prefix == p);
        CHECK_THAT(enc.head_source(), Catch::Contains("'" + p + ".*' in ") && Catch::Contains("extra.safetensors"));
    }
    CHECK(canonical.head_trained());
}

TEST_CASE("incomplete heads list every missing and mis-shaped tensor with its file", "[models][head_locator]") {
    cpu be;
    glimpse::test::temp_dir d("incomplete");
    auto t = head_tensors<glimpse::heatmap::ln_gelu_tanh>("model.visual.heatmap_head", 64, 4, 96, 3);
    t = drop(std::move(t), {"model.visual.heatmap_head.mlp.linear_fc2.bias", "model.visual.heatmap_head.norm2.weight"});
    for (auto& [n, x] : t)
        if (n == "model.visual.heatmap_head.attn.k_proj.weight") x = tensor(shape{64, 32});
    const auto dir = model_with(d, kQwen3, t);
    const std::string e = error_of([&] { (void)models::qwen_encoder<cpu>::load(be, dir, {}); });
    CHECK_THAT(e, Catch::Contains("incomplete or mis-shaped (3 of 16 tensors") &&
                      Catch::Contains("missing 'model.visual.heatmap_head.mlp.linear_fc2.bias' [64]") &&
                      Catch::Contains("missing 'model.visual.heatmap_head.norm2.weight' [64]") &&
                      Catch::Contains("'model.visual.heatmap_head.attn.k_proj.weight' in extra.safetensors is [64, "
                                      "32], expected [64, 64]"));
}

TEST_CASE("a head of the other family or another width is said as such", "[models][head_locator]") {
    cpu be;
    {
        glimpse::test::temp_dir d("family");
        const auto dir = model_with(d, kQwen3, head_tensors<glimpse::heatmap::rms_swiglu>("visual.hm", 64, 4, 96, 3));
        CHECK_THAT(error_of([&] { (void)models::qwen_encoder<cpu>::load(be, dir, {}); }),
                   Catch::Contains("is a rms_swiglu block") && Catch::Contains("trained for the other model family"));
    }
    {
        glimpse::test::temp_dir d("width");
        const auto dir = model_with(d, kQwen3, head_tensors<glimpse::heatmap::ln_gelu_tanh>("visual.hm", 32, 4, 48, 3));
        CHECK_THAT(error_of([&] { (void)models::qwen_encoder<cpu>::load(be, dir, {}); }),
                   Catch::Contains("is 32 wide") && Catch::Contains("this encoder's is 64"));
    }
    {  // a glimpse-train directory's record says which encoder it was trained on
        glimpse::test::temp_dir d("record");
        fs::copy_file(glimpse::test::data_path("compare_head/heatmap_head.safetensors"),
                      d / "heatmap_head.safetensors");
        std::ofstream(d / "glimpse_head.json") << R"({"encoder": {"family": "qwen2_5_vl", "hidden_size": 64}})";
        CHECK_THAT(error_of([&] { (void)models::qwen_encoder<cpu>::load(be, kQwen3, {.head_dir = d.path}); }),
                   Catch::Contains("trained on a qwen2_5_vl encoder") && Catch::Contains("this model is qwen3_vl"));
    }
}

TEST_CASE("several heads need --head_prefix, and a prefix that names nothing is an error", "[models][head_locator]") {
    cpu be;
    glimpse::test::temp_dir d("several");
    auto t = head_tensors<glimpse::heatmap::ln_gelu_tanh>("heatmap_head.0", 64, 4, 96, 3);
    for (auto& p : head_tensors<glimpse::heatmap::ln_gelu_tanh>("heatmap_head.1", 64, 4, 96, 4))
        t.push_back(std::move(p));
    const auto dir = model_with(d, kQwen3, t);
    CHECK_THAT(error_of([&] { (void)models::qwen_encoder<cpu>::load(be, dir, {}); }),
               Catch::Contains("2 complete heatmap heads") && Catch::Contains("'heatmap_head.0'") &&
                   Catch::Contains("'heatmap_head.1'") && Catch::Contains("--head_prefix"));
    models::qwen_head_options o;
    o.prefix = "heatmap_head.1";
    const auto enc = models::qwen_encoder<cpu>::load(be, dir, o);
    CHECK(enc.head_location_info()->prefix == "heatmap_head.1");
    CHECK_FALSE(enc.head_location_info()->by_structure);
    o.prefix = "model.visual.nothing";
    CHECK_THAT(error_of([&] { (void)models::qwen_encoder<cpu>::load(be, dir, o); }),
               Catch::Contains("no heatmap head under the prefix 'model.visual.nothing'"));
}

TEST_CASE("a [1, D] query projection is the transpose of nn.Linear(1, D)'s [D, 1]", "[models][head_locator]") {
    cpu be;
    glimpse::test::temp_dir d1("qcol"), d2("qrow");
    const auto col = head_tensors<glimpse::heatmap::ln_gelu_tanh>("visual.hm", 64, 4, 96, 9);
    auto row = head_tensors<glimpse::heatmap::ln_gelu_tanh>("visual.hm", 64, 4, 96, 9);
    for (auto& [n, x] : row)
        if (n == "visual.hm.attn.q_proj.weight") x.reshape_inplace(shape{1, 64});  // [64, 1] and [1, 64]: same bytes
    const auto a = models::qwen_encoder<cpu>::load(be, model_with(d1, kQwen3, col), {});
    const auto b = models::qwen_encoder<cpu>::load(be, model_with(d2, kQwen3, row), {});
    CHECK_FALSE(a.head_location_info()->q_row);
    CHECK(b.head_location_info()->q_row);
    const glimpse::image_u8 img = glimpse::load_image(glimpse::test::data_path("images/square_100x100.png"));
    const auto px = a.preprocess(img);
    const auto fa = a.encode_site(be, px);
    const tensor h = models::box_to_heatmap({10, 10, 60, 70}, img.width, img.height, fa.grid);
    const auto ma = a.attend(be, fa, h.cv());
    const auto mb = b.attend(be, b.encode_site(be, px), h.cv());
    // The same weights: equal up to the threaded attention's order of summing per-thread maps
    // (measured 5e-10 absolute); a q_proj read untransposed gives a different map (or no load).
    CHECK(glimpse::test::compare(ma.mean.cv(), mb.mean.cv()).rel() <= 1e-6);
}

TEST_CASE("glimpse-compare and glimpse-encode: --allow_untrained, --head_prefix, --head",
          "[models][head_locator][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_ENCODE_EXE);
    glimpse::test::temp_dir d("head-cli");
    const auto q = [](const std::string& s) { return "'" + s + "'"; };
    const auto run = [&](const std::string& exe, const std::string& args, std::string& out) {
        const int st = std::system((q(exe) + " " + args + " >" + q((d / "o.txt").string()) + " 2>&1").c_str());
        out = read_file(d / "o.txt");
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    };
    const std::string img = glimpse::test::data_path("images/wide_67x203.png");
    const std::string common = " --image_path " + q(img) + " --person_box 10 5 80 60 --threads 2 --output_dir ";
    std::string out;
    // The fine-tuned model is the base model (no head): refused, and allowed with the flag.
    CHECK(run(GLIMPSE_COMPARE_EXE,
              "--base_model " + q(kQwen3) + " --finetuned_model " + q(kQwen3) + common + q((d / "a").string()),
              out) == 1);
    CHECK_THAT(out, Catch::Contains("no heatmap head found") && Catch::Contains("--allow_untrained"));
    CHECK_FALSE(fs::exists(d / "a" / "attention_comparison_referring.json"));
    CHECK(run(GLIMPSE_COMPARE_EXE,
              "--base_model " + q(kQwen3) + " --finetuned_model " + q(kQwen3) + common + q((d / "b").string()) +
                  " --allow_untrained",
              out) == 0);
    CHECK_THAT(out, Catch::Contains("fine-tuned model's head is UNTRAINED"));
    // A PyTorch-written sharded checkpoint, head found by structure and named in the output.
    const std::string pt = (fs::path(kPt) / "qwen3_f32").string();
    CHECK(run(GLIMPSE_COMPARE_EXE,
              "--base_model " + q(kQwen3) + " --finetuned_model " + q(pt) + common + q((d / "c").string()), out) == 0);
    CHECK_THAT(out, Catch::Contains("'model.visual.heatmap_head.*' in ") && Catch::Contains("found by structure"));
    CHECK(run(GLIMPSE_COMPARE_EXE,
              "--base_model " + q(kQwen3) + " --finetuned_model " + q(pt) + common + q((d / "e").string()) +
                  " --head_prefix visual.nope",
              out) == 1);
    CHECK_THAT(out, Catch::Contains("no heatmap head under the prefix 'visual.nope'"));
    // glimpse-encode --head DIR on the base model.
    CHECK(run(GLIMPSE_ENCODE_EXE,
              "--model " + q(kQwen3) + " --head " + q(pt) + " --image " + q(img) +
                  " --heatmap-box 10 5 80 60 --threads 2",
              out) == 0);
    CHECK_THAT(out, Catch::Contains("'model.visual.heatmap_head.*' in "));
    CHECK_THAT(out, !Catch::Contains("UNTRAINED"));
}
