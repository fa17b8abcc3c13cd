#pragma once
// Included first by every README.md ```cpp block compiled into glimpse_tests
// (cmake/GlimpseReadmeSnippets.cmake). A block is a function body; after block N,
// GLIMPSE_README_AFTER_N (when defined here) copies what the block computed into
// readme_results() for tests/docs/test_readme.cpp to check. It names the block's own
// variables, so renaming them in the README without updating this fails to compile.

#include <limits>
#include <string>

namespace glimpse_readme {

struct results {
    double encoder_mass = std::numeric_limits<double>::quiet_NaN();  // block 0: a.mass_in_box (enc.attend)
    double head_mass = std::numeric_limits<double>::quiet_NaN();     // block 0: b.mass_in_box (the head by hand)
    long long in_box = -1;                                           // block 0: a.in_box_count
    std::string head_source;                                         // block 0: enc.head_source()
    bool ran = false;
};

inline results& readme_results() {
    static results r;
    return r;
}

}  // namespace glimpse_readme

// Block 0: the library snippet ("Everything is included by ...").
#define GLIMPSE_README_AFTER_0                         \
    {                                                  \
        auto& r_ = ::glimpse_readme::readme_results(); \
        r_.encoder_mass = a.mass_in_box;               \
        r_.head_mass = b.mass_in_box;                  \
        r_.in_box = a.in_box_count;                    \
        r_.head_source = enc.head_source();            \
        r_.ran = true;                                 \
    }
