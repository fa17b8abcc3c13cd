#pragma once
// A progress line on a FILE*, for every tool that loops over many things (glimpse-train's
// steps, glimpse-compare --batch's images):
//
//   epoch 3/30  step 120/1200 [####----------------]  10%  14.2 steps/s  ETA 1m16s  loss 1.2345
//   image 3/40 [#-------------------]   7%  6.9 s/image  ETA 4m29s  0003
//
// On a terminal it is one line redrawn in place (at most 10 times a second, and at the
// last step); anywhere else (a log file, a Slurm job's output, CI) it prints plain lines,
// one every ~5% of the run plus the first and the last, so a 10,000-image shard writes
// ~22 lines, not 10,000. note() prints a line of its own (an epoch summary, a failed
// image) without breaking the bar. Rate and ETA count only the work of this process
// (`start`: what was done before, e.g. by the run a resumed one continues).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace glimpse {

// 42s, 3m05s, 2h07m; "?" for what is not a duration.
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

class progress_line {
public:
    using clock = std::chrono::steady_clock;

    // `unit`: what is counted, singular ("step", "image"); `out` nullptr: silent.
    progress_line(std::FILE* out, bool tty, std::int64_t total, std::string unit, std::int64_t start = 0)
        : out_(out), tty_(tty), total_(total), start_(start), unit_(std::move(unit)), t0_(clock::now()) {}

    // `done` of `total` finished. `prefix` goes before the count ("epoch 3/30  "),
    // `suffix` after the ETA ("loss 1.2345", the current image's id).
    void update(std::int64_t done, const std::string& prefix = {}, const std::string& suffix = {}) {
        if (!out_) return;
        const auto now = clock::now();
        const double elapsed = std::chrono::duration<double>(now - t0_).count();
        const double rate = elapsed > 0 ? static_cast<double>(done - start_) / elapsed : 0.0;
        const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : NAN;
        const bool last = done >= total_;
        if (tty_) {
            if (!last && drawn_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
        } else {
            const std::int64_t every = std::max<std::int64_t>(1, total_ / 20);
            if (!last && done % every != 0 && done != start_ + 1) return;
        }
        last_draw_ = now;
        constexpr int width = 20;
        const int fill = total_ > 0 ? static_cast<int>(width * std::min(done, total_) / total_) : width;
        std::string bar(static_cast<std::size_t>(fill), '#');
        bar.append(static_cast<std::size_t>(width - fill), '-');
        // Fast work reads best as a rate, slow work (a tower per image) as time per unit.
        char speed[64];
        if (rate <= 0)
            std::snprintf(speed, sizeof speed, "-");
        else if (rate >= 1)
            std::snprintf(speed, sizeof speed, "%.1f %ss/s", rate, unit_.c_str());
        else
            std::snprintf(speed, sizeof speed, "%.1f s/%s", 1.0 / rate, unit_.c_str());
        char line[512];
        std::snprintf(line, sizeof line, "%s%s %lld/%lld [%s] %3d%%  %s  ETA %s%s%s", prefix.c_str(), unit_.c_str(),
                      static_cast<long long>(done), static_cast<long long>(total_), bar.c_str(),
                      total_ > 0 ? static_cast<int>(100 * std::min(done, total_) / total_) : 100, speed,
                      last ? "0s" : format_duration(eta).c_str(), suffix.empty() ? "" : "  ", suffix.c_str());
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
        if (!out_) return;
        if (tty_ && drawn_) std::fprintf(out_, "\r\033[2K");
        std::fprintf(out_, "%s\n", text.c_str());
        if (tty_ && drawn_) std::fprintf(out_, "%s", current_.c_str());
        std::fflush(out_);
    }

    // Ends the bar's line (terminal) so what follows starts on a new one.
    void finish() {
        if (out_ && tty_ && drawn_) std::fprintf(out_, "\n");
        drawn_ = false;
        if (out_) std::fflush(out_);
    }

    double elapsed_s() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }

private:
    std::FILE* out_;
    bool tty_;
    std::int64_t total_, start_;
    std::string unit_;
    clock::time_point t0_, last_draw_{};
    bool drawn_ = false;
    std::string current_;
};

}  // namespace glimpse
