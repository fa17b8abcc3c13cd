#pragma once
// A test that runs a tool this build did not make (GLIMPSE_BUILD_APPS=OFF) ends at
// GLIMPSE_SKIP_WITHOUT_TOOL and prints "test skipped", which ctest's
// SKIP_REGULAR_EXPRESSION (tests/CMakeLists.txt) lists as Skipped, never as Passed. In a
// build that has the tools, glimpse_tests depends on them, so a test never runs a stale one.

#include <string>

#include <catch2/catch.hpp>

#define GLIMPSE_SKIP_WITHOUT_TOOL(exe)                                         \
    do {                                                                       \
        if (std::string(exe).empty()) {                                        \
            WARN(#exe " is not built (GLIMPSE_BUILD_APPS=OFF): test skipped"); \
            return;                                                            \
        }                                                                      \
    } while (0)
