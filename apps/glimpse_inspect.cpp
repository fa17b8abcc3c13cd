// glimpse-inspect FILE_OR_DIR: list the tensors of a safetensors checkpoint.
//
// Meant to be pointed at files of unknown provenance, so every failure —
// including a hostile file — ends as one line on stderr and exit status 1.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "glimpse/io/safetensors.hpp"

namespace {

// Names may hold control characters (JSON escapes them); keep the table intact.
std::string cell(const std::string& s) { return glimpse::detail::printable(s, false, 200); }

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    std::replace(s.begin(), s.end(), '\r', ' ');
    return s;
}

std::string human_bytes(std::uint64_t b) {
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = static_cast<double>(b);
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
    return buf;
}

int inspect(const std::filesystem::path& path) {
    const glimpse::checkpoint ck(path);

    struct row {
        std::string name, dtype, shape, params;
    };
    std::vector<row> rows;
    row head{"name", "dtype", "shape", "parameters"};
    std::size_t w[4] = {head.name.size(), head.dtype.size(), head.shape.size(), head.params.size()};
    std::uint64_t total_bytes = 0;
    for (const auto& n : ck.names()) {
        const auto [file, e] = ck.find(n);
        rows.push_back({cell(e->name), cell(e->dtype_name), e->shape.str(), std::to_string(e->numel())});
        const row& r = rows.back();
        w[0] = std::max(w[0], r.name.size());
        w[1] = std::max(w[1], r.dtype.size());
        w[2] = std::max(w[2], r.shape.size());
        w[3] = std::max(w[3], r.params.size());
        total_bytes += e->nbytes();
    }

    auto print = [&](const row& r) {
        std::cout << r.name << std::string(w[0] - r.name.size() + 2, ' ') << r.dtype
                  << std::string(w[1] - r.dtype.size() + 2, ' ') << r.shape
                  << std::string(w[2] - r.shape.size() + 2, ' ') << std::string(w[3] - r.params.size(), ' ') << r.params
                  << '\n';
    };
    print(head);
    for (const auto& r : rows) print(r);

    const bool several = ck.files().size() > 1;
    for (const auto& f : ck.files()) {
        if (f.metadata().empty()) continue;
        std::cout << "\nmetadata";
        if (several) std::cout << " (" << cell(f.path().filename().string()) << ")";
        std::cout << ":\n";
        for (const auto& [k, v] : f.metadata()) std::cout << "  " << cell(k) << " = " << cell(v) << '\n';
    }

    std::cout << "\ntotal: " << rows.size() << (rows.size() == 1 ? " tensor in " : " tensors in ") << ck.files().size()
              << (several ? " files, " : " file, ") << ck.total_parameters() << " parameters, " << total_bytes
              << " bytes (" << human_bytes(total_bytes) << ")\n";
    std::cout.flush();
    if (!std::cout) {
        std::cerr << "glimpse-inspect: cannot write to standard output\n";
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"List the tensors of a safetensors file or checkpoint directory.", "glimpse-inspect"};
    std::string path;
    app.add_option("FILE_OR_DIR", path,
                   "a .safetensors file, or a directory with model.safetensors.index.json or .safetensors files")
        ->required();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "glimpse-inspect: " << one_line(e.what()) << " (see --help)\n";
        return 1;
    }
    try {
        return inspect(path);
    } catch (const std::exception& e) {
        std::cerr << "glimpse-inspect: " << one_line(e.what()) << '\n';
    } catch (...) {
        std::cerr << "glimpse-inspect: unknown error\n";
    }
    return 1;
}
