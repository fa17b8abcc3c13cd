#pragma once
// A safetensors file or checkpoint directory as text: a table of its tensors (name, dtype,
// shape, parameters) in the checkpoint's name order, each file's metadata, and the totals —
// what glimpse-inspect prints. Meant for files of unknown provenance: names and metadata are
// printed escaped and capped (detail::printable), so a hostile name cannot break the table or
// the terminal.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "glimpse/core/error.hpp"
#include "glimpse/io/checkpoint.hpp"

namespace glimpse {

// 512 B, 1.50 KiB, 2.00 GiB.
inline std::string human_bytes(std::uint64_t b) {
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

inline std::string checkpoint_listing(const checkpoint& ck) {
    // Names may hold control characters (JSON escapes them); keep the table intact.
    const auto cell = [](const std::string& s) { return detail::printable(s, false, 200); };
    struct row {
        std::string name, dtype, shape, params;
    };
    std::vector<row> rows;
    const row head{"name", "dtype", "shape", "parameters"};
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

    std::string out;
    const auto line = [&](const row& r) {
        out += r.name + std::string(w[0] - r.name.size() + 2, ' ') + r.dtype +
               std::string(w[1] - r.dtype.size() + 2, ' ') + r.shape + std::string(w[2] - r.shape.size() + 2, ' ') +
               std::string(w[3] - r.params.size(), ' ') + r.params + '\n';
    };
    line(head);
    for (const auto& r : rows) line(r);

    const bool several = ck.files().size() > 1;
    for (const auto& f : ck.files()) {
        if (f.metadata().empty()) continue;
        out += "\nmetadata";
        if (several) out += " (" + cell(f.path().filename().string()) + ")";
        out += ":\n";
        for (const auto& [k, v] : f.metadata()) out += "  " + cell(k) + " = " + cell(v) + '\n';
    }

    out += "\ntotal: " + std::to_string(rows.size()) + (rows.size() == 1 ? " tensor in " : " tensors in ") +
           std::to_string(ck.files().size()) + (several ? " files, " : " file, ") +
           std::to_string(ck.total_parameters()) + " parameters, " + std::to_string(total_bytes) + " bytes (" +
           human_bytes(total_bytes) + ")\n";
    return out;
}

}  // namespace glimpse
