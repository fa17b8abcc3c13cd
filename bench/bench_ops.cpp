// Op-level rows from the op table (tests/backend/op_cases.hpp): the very cases the backends are
// held to, timed on cpu at every SIMD level this CPU has and on the reference backend.
// Row names: ops/<backend>/<op>/<case label>, spaces as '_'. The table's shapes are the tests'
// (small: they time dispatch, tails and strided paths more than peak throughput; the towers'
// GEMM and attention shapes are glimpse_bench_encoders' and glimpse_bench_head's rows).
//
//   OMP_NUM_THREADS=2 build/release/bench/glimpse_bench_ops --benchmark_filter='ops/cpu_avx512/gemm'

#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "backend/op_cases.hpp"

namespace {

using glimpse::test::op_case;
using glimpse::test::op_inputs;

std::string row_name(const std::string& backend, const op_case& c) {
    std::string s = "ops/" + backend + "/" + std::string(c.op) + "/" + c.label;
    for (char& ch : s)
        if (ch == ' ') ch = '_';
    return s;
}

template <class B, class Body>
void register_case(const std::string& backend, std::shared_ptr<B> be, const op_case& c, Body body) {
    auto kept = std::make_shared<op_case>(c);
    benchmark::RegisterBenchmark(row_name(backend, c).c_str(), [be, kept, body](benchmark::State& st) mutable {
        std::vector<typename B::tensor> held;
        for (const auto& t : kept->inputs) held.push_back(be->upload(t->cv()));
        std::vector<glimpse::cview> views;
        for (const auto& t : held) views.push_back(t.cv());
        auto out = be->alloc(kept->out, glimpse::dtype::f32);
        const op_inputs in(views, *kept);
        for (auto _ : st) {
            body(*be, in, out.v());
            benchmark::DoNotOptimize(out.data());
        }
    })->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("cpu_kernels", glimpse::describe_cpu_isa(glimpse::detail::cpu_impl::default_isa()));
    for (glimpse::cpu_isa isa : glimpse::supported_cpu_isas()) {
        auto be = std::make_shared<glimpse::cpu>();
        be->set_isa(isa);
        const std::string name = "cpu_" + std::string(glimpse::name(isa));
        glimpse::test::forward_op_cases([&](const op_case& c, auto body) { register_case(name, be, c, body); });
        glimpse::test::training_op_cases([&](const op_case& c, auto body) { register_case(name, be, c, body); });
    }
    auto ref = std::make_shared<glimpse::reference>();
    glimpse::test::forward_op_cases([&](const op_case& c, auto body) { register_case("reference", ref, c, body); });
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
