// stage_clock (core/stage_clock.hpp): scopes add time only while a clock runs on their thread,
// an inner clock hides the outer one until it ends, and the towers name the stages that
// ../shared/bench/vision_bench.py times in transformers.

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/core/stage_clock.hpp>
#include <glimpse/models/qwen2_5_vl.hpp>
#include <glimpse/models/qwen3_vl.hpp>

#include "test_files.hpp"
#include "test_util.hpp"

using namespace glimpse;

namespace {
void busy(const char* stage, int ms) {
    const stage_clock::scope s(stage);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
std::vector<std::string> names(const stage_clock& c) {
    std::vector<std::string> v;
    for (const auto& s : c.stages()) v.emplace_back(s.name);
    return v;
}
}  // namespace

TEST_CASE("stage_clock: scopes add up per name while a clock runs, and cost nothing otherwise", "[core][stage_clock]") {
    busy("before", 1);  // no clock: not recorded anywhere
    stage_clock outer;
    busy("a", 5);
    busy("b", 1);
    busy("a", 5);
    {
        stage_clock inner;  // hides outer until it ends
        busy("c", 2);
        REQUIRE(names(inner) == std::vector<std::string>{"c"});
        CHECK(inner.stages()[0].calls == 1);
    }
    busy("b", 1);
    REQUIRE(names(outer) == std::vector<std::string>{"a", "b"});
    CHECK(outer.stages()[0].calls == 2);
    CHECK(outer.stages()[1].calls == 2);
    CHECK(outer.ms("a") >= 10.0);
    CHECK(outer.ms("b") >= 2.0);
    CHECK(outer.ms("c") == 0.0);
    CHECK(outer.total_ms() == Approx(outer.ms("a") + outer.ms("b")));
    const std::string line = outer.summary(outer.total_ms() + 1.0);
    CHECK(line.rfind("a ", 0) == 0);
    CHECK(line.find(" ms, b ") != std::string::npos);
    CHECK(line.find(", other 1.0 ms") != std::string::npos);
    CHECK(stage_clock{}.summary().empty());
    // Another thread has no clock of its own: its scopes are not this clock's.
    std::thread([] { busy("elsewhere", 1); }).join();
    CHECK(outer.ms("elsewhere") == 0.0);
}

TEST_CASE("stage_clock: both towers mark transformers' stages, once per block where they are per block",
          "[core][stage_clock][models]") {
    cpu be;
    for (const bool q3 : {false, true}) {
        const std::string dir = test::data_path(q3 ? "qwen3_vl_tiny" : "qwen2_5_vl_tiny");
        const auto cfg = models::qwen_vision_config::load(dir);
        const checkpoint ck(dir);
        const std::int64_t m = cfg.spatial_merge_size;
        const std::vector<models::grid_thw_t> grids = {{1, 4 * m, 4 * m}};
        const tensor pix = test::randn(shape{16 * m * m, cfg.patch_dim()}, 3);
        stage_clock clock;
        if (q3)
            (void)models::qwen3_vision<cpu>::load(be, ck, cfg).encode(be, pix.cv(), grids);
        else
            (void)models::qwen2_5_vision<cpu>::load(be, ck, cfg).encode(be, pix.cv(), grids);
        INFO((q3 ? "qwen3" : "qwen2.5"));
        std::vector<std::string> want = {"patch_embed"};
        if (q3) want.push_back("pos_embed");
        for (const char* s : {"norms", "attn.qkv", "attn.rotary", "attn.core", "attn.proj", "residual", "mlp"})
            want.push_back(s);
        want.push_back("merger(s)");
        CHECK(names(clock) == want);
        const std::int64_t depth = cfg.depth;
        for (const auto& s : clock.stages()) {
            INFO(std::string(s.name));
            const std::string n(s.name);
            if (n == "norms" || n == "residual")  // two per block
                CHECK(s.calls == 2 * depth);
            else if (n.rfind("attn.", 0) == 0 || n == "mlp")
                CHECK(s.calls == depth);
            else if (n == "merger(s)")
                CHECK(s.calls == (q3 ? 1 + static_cast<std::int64_t>(cfg.deepstack_visual_indexes.size()) : 1));
            else
                CHECK(s.calls == 1);
        }
    }
}
