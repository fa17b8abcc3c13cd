// The backward ops of TrainingBackend: their values against the reference are the op table's
// (backend/op_cases.hpp, training_op_cases); here, the errors a bad call gets, the same on both
// host backends.

#include <catch2/catch.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "test_util.hpp"

using namespace glimpse;
using test::randn;

static_assert(TrainingBackend<reference> && TrainingBackend<cpu>);

TEMPLATE_TEST_CASE("backward ops reject mismatched shapes with the same message", "[backend][grad][errors]", reference,
                   cpu) {
    TestType be;
    tensor x = randn(shape{4, 6}, 1), y = randn(shape{4, 5}, 2), w = randn(shape{6}, 3), dw_bad(shape{5});
    tensor out(shape{4, 6});
    auto msg = [](auto&& fn) -> std::string {
        try {
            fn();
        } catch (const error& e) {
            return e.what();
        }
        return "no error";
    };
    using Catch::Matchers::Contains;
    CHECK_THAT(msg([&] { be.softmax_rows_backward(x.cv(), y.cv(), 1.0f, out.v()); }),
               Contains("softmax_rows_backward: dp [4, 5] vs p [4, 6]"));
    CHECK_THAT(msg([&] { be.activate_backward(activation::silu, x.cv(), y.cv(), out.v()); }),
               Contains("activate_backward: dy [4, 5] vs x [4, 6]"));
    CHECK_THAT(msg([&] { be.rms_norm_backward(x.cv(), w.cv(), 1e-6f, x.cv(), out.v(), dw_bad.v()); }),
               Contains("rms_norm_backward: dw [5] vs x [4, 6]"));
    CHECK_THAT(msg([&] { be.layer_norm_backward(x.cv(), w.cv(), 1e-6f, y.cv(), out.v(), view{}); }),
               Contains("layer_norm_backward: dy [4, 5] vs x [4, 6]"));
}
