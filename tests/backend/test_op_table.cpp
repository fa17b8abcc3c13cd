// The op table (backend/op_cases.hpp) for the host backends: cpu at every SIMD level this CPU
// has (the levels it lacks are named by test_cpu_isa.cpp), each held to `reference` case by case
// with guard bands around every output; and the table's own completeness: every op the Backend
// and TrainingBackend concepts of core/backend.hpp name has a case.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <glimpse/backend/cpu.hpp>

#include "backend/op_table.hpp"

using namespace glimpse;

namespace {

std::vector<test::backend_under_test<cpu>> cpu_levels() {
    std::vector<test::backend_under_test<cpu>> v;
    for (cpu_isa isa : supported_cpu_isas())
        v.push_back({"cpu kernels " + std::string(name(isa)), [isa] {
                         cpu be;
                         be.set_isa(isa);
                         return be;
                     }});
    return v;
}

// The ops a concept of core/backend.hpp requires: every `be.NAME(` between `concept <Name> =`
// and the end of its requires-expression.
std::set<std::string> concept_ops(const std::string& concept_name) {
    const auto root = std::filesystem::path(GLIMPSE_TEST_DATA_DIR).parent_path().parent_path();
    std::ifstream f(root / "include/glimpse/core/backend.hpp");
    REQUIRE(f);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    const auto at = text.find("concept " + concept_name + " =");
    REQUIRE(at != std::string::npos);
    const auto end = text.find("};", at);
    const std::string body = text.substr(at, end - at);
    std::set<std::string> ops;
    const std::regex call(R"(be\.(\w+)\()");
    for (auto it = std::sregex_iterator(body.begin(), body.end(), call); it != std::sregex_iterator(); ++it)
        ops.insert((*it)[1].str());
    return ops;
}

}  // namespace

TEST_CASE("op table: cpu at every SIMD level against reference, guard bands intact", "[backend][ops][table]") {
    const auto stats = test::run_op_table(cpu_levels());
    std::printf("op table: %lld cases over %zu ops, cpu at %zu levels\n", static_cast<long long>(stats.cases),
                stats.ops.size(), supported_cpu_isas().size());
}

TEST_CASE("op table: every op of the Backend and TrainingBackend concepts has a case", "[backend][ops][table]") {
    std::set<std::string> forward, training;
    std::set<std::string> labels;
    test::forward_op_cases([&](const test::op_case& c, auto) {
        forward.insert(std::string(c.op));
        INFO(c.label);
        CHECK(labels.insert(c.label).second);  // labels name cases in messages and benchmark rows
    });
    test::training_op_cases([&](const test::op_case& c, auto) {
        training.insert(std::string(c.op));
        INFO(c.label);
        CHECK(labels.insert(c.label).second);
    });
    const auto need_forward = concept_ops("Backend");
    const auto need_training = concept_ops("TrainingBackend");
    REQUIRE(need_forward.size() >= 17);  // the parse found the concept's body
    REQUIRE(need_training.size() >= 4);
    for (const auto& op : need_forward) {
        INFO("Backend op without a case in tests/backend/op_cases.hpp: " << op);
        CHECK(forward.count(op) == 1);
    }
    for (const auto& op : need_training) {
        INFO("TrainingBackend op without a case in tests/backend/op_cases.hpp: " << op);
        CHECK(training.count(op) == 1);
    }
    // And no case names an op the concepts do not have (a typo would escape the check above).
    for (const auto& op : forward) CHECK(need_forward.count(op) == 1);
    for (const auto& op : training) CHECK(need_training.count(op) == 1);
}

TEST_CASE("op table: a write past the output, or a wrong value, fails its case", "[backend][ops][table]") {
    // The guard bands and the comparison catch what they are for: a body that writes one element
    // past its output, and one that computes the wrong thing.
    const test::op_case c{"fill", "planted overrun", {}, shape{4, 5}, 1e-12};
    reference ref;
    auto overrun = [](auto& be, const test::op_inputs&, const view& o) {
        be.fill(o, 1.0f);
        const view past(o.data() + static_cast<std::ptrdiff_t>(o.numel() * 4), dtype::f32, shape{1});
        be.fill(past, 0.0f);
    };
    CHECK(test::run_op_case(ref, c, overrun).guard_hit == 0);
    auto underrun = [](auto& be, const test::op_inputs&, const view& o) {
        be.fill(o, 1.0f);
        be.fill(view(o.data() - 4 * 3, dtype::f32, shape{1}), 0.0f);
    };
    CHECK(test::run_op_case(ref, c, underrun).guard_hit == -3);
    auto clean = [](auto& be, const test::op_inputs&, const view& o) { be.fill(o, 1.0f); };
    const auto r = test::run_op_case(ref, c, clean);
    CHECK(r.guard_hit == -1);
    CHECK(r.out.at({3, 4}) == 1.0f);
}
