#pragma once
// A training progress bar on a FILE* (stderr in glimpse-train):
//
//   epoch 3/30  step 120/1200 [######--------------]  10%  loss 1.2345  lr 2.0e-03  14.2 steps/s  ETA 1m16s
//
// On a terminal it is one line redrawn in place (at most 10 times a second, and
// at the last step); anywhere else (a log file, CI) it prints plain lines, one
// every ~5% of the run, so logs stay readable. note() prints a line of its own
// (epoch summaries) without breaking the bar. The rate and ETA count only the
// steps of this process (a resumed run does not claim the old run's speed).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace glimpse::train {

inline std::string format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    const auto t = static_cast<long long>(std::llround(s));
    char buf[32];
    if (t >= 3600)
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
    else
        std::snprintf(buf, sizeof buf, "%llds", t);
    return buf;
}

class progress_bar {
public:
    using clock = std::chrono::steady_clock;

    progress_bar(std::FILE* out, bool tty, std::int64_t total_steps, std::int64_t epochs, std::int64_t start_step = 0)
        : out_(out), tty_(tty), total_(total_steps), epochs_(epochs), start_(start_step), t0_(clock::now()) {}

    void update(std::int64_t step, std::int64_t epoch, double loss, double lr) {
        const auto now = clock::now();
        const double elapsed = std::chrono::duration<double>(now - t0_).count();
        const double rate = elapsed > 0 ? static_cast<double>(step - start_) / elapsed : 0.0;
        const double eta = rate > 0 ? static_cast<double>(total_ - step) / rate : NAN;
        const bool last = step == total_;
        if (tty_) {
            if (!last && drawn_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
        } else {
            const std::int64_t every = std::max<std::int64_t>(1, total_ / 20);
            if (!last && step % every != 0 && step != start_ + 1) return;
        }
        last_draw_ = now;
        constexpr int width = 20;
        const int fill = total_ > 0 ? static_cast<int>(width * step / total_) : width;
        std::string bar(static_cast<std::size_t>(fill), '#');
        bar.append(static_cast<std::size_t>(width - fill), '-');
        char line[256];
        std::snprintf(
            line, sizeof line, "epoch %lld/%lld  step %lld/%lld [%s] %3d%%  loss %.4f  lr %.1e  %.1f steps/s  ETA %s",
            static_cast<long long>(epoch + 1), static_cast<long long>(epochs_), static_cast<long long>(step),
            static_cast<long long>(total_), bar.c_str(), total_ > 0 ? static_cast<int>(100 * step / total_) : 100, loss,
            lr, rate, last ? "0s" : format_duration(eta).c_str());
        if (tty_) {
            std::fprintf(out_, "\r\033[2K%s", line);
            drawn_ = true;
            current_ = line;
        } else {
            std::fprintf(out_, "%s\n", line);
        }
        std::fflush(out_);
    }

    // A line of its own, above the bar.
    void note(const std::string& text) {
        if (tty_ && drawn_) std::fprintf(out_, "\r\033[2K");
        std::fprintf(out_, "%s\n", text.c_str());
        if (tty_ && drawn_) std::fprintf(out_, "%s", current_.c_str());
        std::fflush(out_);
    }

    // Ends the bar's line (terminal) so what follows starts on a new one.
    void finish() {
        if (tty_ && drawn_) std::fprintf(out_, "\n");
        drawn_ = false;
        std::fflush(out_);
    }

    double elapsed_s() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }

private:
    std::FILE* out_;
    bool tty_;
    std::int64_t total_, epochs_, start_;
    clock::time_point t0_, last_draw_{};
    bool drawn_ = false;
    std::string current_;
};

}  // namespace glimpse::train
