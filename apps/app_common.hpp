#pragma once
// What every glimpse tool's main shares, so that a main is its flags, library calls and what it
// prints: parsing with one error style, the backend flags (--device, --precision, --threads) as
// a device_spec, the exit on an error, the command line as typed, Ctrl-C as a request to stop.
// Not installed: CLI11 is a dependency of the tools, not of the library.
//
// Every error ends as one line "<tool>: <what>" on stderr and exit status 1; --help exits 0.

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>

#include <CLI/CLI.hpp>

#include <glimpse/backend/device.hpp>

namespace glimpse::app {

// Parses argv into `app`'s options. Returns the exit status when main should return now (after
// --help, or a bad command line), nothing when the tool should run.
inline std::optional<int> parse(CLI::App& app, int argc, char** argv, const char* tool) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::string what = e.what();
        std::replace(what.begin(), what.end(), '\n', ' ');
        std::fprintf(stderr, "%s: %s (see --help)\n", tool, what.c_str());
        return 1;
    }
    return std::nullopt;
}

// body()'s exit status; an exception ends as "<tool>: <what>" on stderr and 1. stdout is
// flushed first, so what was printed before the error stays above it in a shared log.
// `one_line`: line breaks in the message become spaces (messages about untrusted files).
template <class F>
int run(const char* tool, F&& body, bool one_line = false) {
    try {
        return body();
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::string what = e.what();
        if (one_line)
            std::replace_if(
                what.begin(), what.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
        std::fprintf(stderr, "%s: %s\n", tool, what.c_str());
    } catch (...) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: unknown error\n", tool);
    }
    return 1;
}

// --device, --precision and --threads: which backend runs, and how (backend/device.hpp).
struct backend_flags {
    std::string device = "cpu", precision = "f32";
    int threads = 0;  // 0: OpenMP's default (all cores, or OMP_NUM_THREADS)

    // `device_help` says which devices the tool runs on; `with_precision`: the tool has --precision.
    void add_to(CLI::App& app, const std::string& device_help, bool with_precision = true,
                const std::string& threads_help = "CPU threads (default: all)") {
        app.add_option("--device", device, device_help);
        if (with_precision)
            app.add_option("--precision", precision,
                           "GEMM inputs: f32 (exact; default) or bf16 (rounded to bf16, f32 sums: several times "
                           "faster on CPUs with AMX, ~3e-3 off)")
                ->check(CLI::IsMember({"f32", "bf16"}));
        app.add_option("--threads", threads, threads_help)->check(CLI::PositiveNumber);
    }
    // Throws on a device or precision that is not one.
    device_spec spec() const {
        device_spec d = parse_device(device);
        d.precision = parse_matmul_precision(precision);
        d.threads = threads;
        return d;
    }
};

// The SIMD level a cpu backend runs its kernels at (cpu/isa.hpp), else the backend's name.
template <class B>
std::string kernels(const B& be) {
    if constexpr (std::is_same_v<B, cpu>)
        return describe_cpu_isa(be.isa());
    else
        return std::string(B::name());
}

// The command as typed, argv[0] spelt as the tool's name (for records that say how a result
// was made).
inline std::string command_line(int argc, char** argv, const char* tool) {
    std::string s = tool;
    for (int i = 1; i < argc; ++i) s += std::string(" ") + argv[i];
    return s;
}

inline bool stderr_is_tty() { return ::isatty(STDERR_FILENO) != 0; }

// SIGINT and SIGTERM, once caught, only set a flag that the tool polls (glimpse-train: stop
// after the next checkpoint); a tool that never calls this is ended by them as usual.
namespace impl {
inline volatile std::sig_atomic_t stop_flag = 0;
extern "C" inline void on_stop_signal(int) { stop_flag = 1; }
}  // namespace impl

inline void catch_stop_signals() {
    std::signal(SIGINT, impl::on_stop_signal);
    std::signal(SIGTERM, impl::on_stop_signal);
}
inline bool stop_signalled() { return impl::stop_flag != 0; }

}  // namespace glimpse::app
