#pragma once
// Wall time per named stage of a forward. The towers and their blocks mark their stages with
// stage_clock::scope; nothing is timed unless a stage_clock is running on the calling thread
// (then a scope costs one branch). The names follow the modules that transformers' towers hook
// (patch_embed, norms, attn, mlp, merger(s)), so the two can be read side by side:
//
//   glimpse::stage_clock clock;            // times the scopes this thread enters from now on
//   tower.encode(be, pixels, grids);
//   for (const auto& s : clock.stages()) std::printf("%s %.1f ms\n", s.name.data(), s.ms);
//
// Scopes are meant not to nest (the stages partition a forward; what no scope covers is the
// caller's total minus their sum). On an asynchronous backend (cuda) a scope times the launches,
// not the kernels, unless the caller synchronizes.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace glimpse {

class stage_clock {
public:
    struct stage {
        std::string_view name;  // a string literal: scopes are named by constants
        double ms = 0.0;
        std::int64_t calls = 0;
    };

    stage_clock() : outer_(current()) { current() = this; }
    ~stage_clock() { current() = outer_; }
    stage_clock(const stage_clock&) = delete;
    stage_clock& operator=(const stage_clock&) = delete;

    // In the order first entered.
    const std::vector<stage>& stages() const { return stages_; }
    double ms(std::string_view name) const {
        for (const stage& s : stages_)
            if (s.name == name) return s.ms;
        return 0.0;
    }
    double total_ms() const {
        double t = 0.0;
        for (const stage& s : stages_) t += s.ms;
        return t;
    }
    // "patch_embed 12.1 ms, norms 13.4 ms, ..." in the order first entered, and "other" for what
    // no stage covered of the caller's own measured wall_ms (when given).
    std::string summary(double wall_ms = -1.0) const {
        std::string out;
        char buf[96];
        for (const stage& s : stages_) {
            std::snprintf(buf, sizeof buf, "%s%.*s %.1f ms", out.empty() ? "" : ", ", static_cast<int>(s.name.size()),
                          s.name.data(), s.ms);
            out += buf;
        }
        if (wall_ms >= 0.0) {
            std::snprintf(buf, sizeof buf, "%sother %.1f ms", out.empty() ? "" : ", ", wall_ms - total_ms());
            out += buf;
        }
        return out;
    }

    class scope {
    public:
        explicit scope(std::string_view name) : clock_(current()), name_(name) {
            if (clock_) t0_ = std::chrono::steady_clock::now();
        }
        ~scope() {
            if (!clock_) return;
            try {
                clock_->add(name_,
                            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count());
            } catch (...) {  // out of memory for one more entry: that stage's time is lost, nothing else
            }
        }
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;

    private:
        stage_clock* clock_;
        std::string_view name_;
        std::chrono::steady_clock::time_point t0_{};
    };

private:
    static stage_clock*& current() {
        static thread_local stage_clock* c = nullptr;
        return c;
    }
    void add(std::string_view name, double ms) {
        for (stage& s : stages_)
            if (s.name == name) {
                s.ms += ms;
                ++s.calls;
                return;
            }
        stages_.push_back({name, ms, 1});
    }

    stage_clock* outer_;
    std::vector<stage> stages_;
};

}  // namespace glimpse
