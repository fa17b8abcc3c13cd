#pragma once
// Wall time since a start, for the per-stage timings the tools print (load, preprocess, encode,
// write). stage_clock (core/stage_clock.hpp) times the stages inside a forward; this times
// whatever a caller brackets.

#include <chrono>

namespace glimpse {

class stopwatch {
public:
    stopwatch() : t0_(std::chrono::steady_clock::now()) {}
    double ms() const {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    }
    double s() const { return ms() / 1000.0; }

private:
    std::chrono::steady_clock::time_point t0_;
};

}  // namespace glimpse
