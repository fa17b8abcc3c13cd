#pragma once
// The table of a batch: one row of numbers per image (read back from the image's JSON),
// their summary per task with 95% intervals, and the CSV and text forms of both
// (per_image_{task}.csv, summary_{task}.csv). What glimpse-compare --batch writes and what
// --merge rebuilds from shards, so both give the same bytes.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/core/error.hpp"

namespace glimpse::compare {

// ---- per-image numbers and their summary -----------------------------------------------------

// A number each model has per image. `box`: the box whose area fraction is the
// uniform map's value of it (empty for entropies).
struct metric {
    std::string label;   // summary row ("person" | "head_mass_person" | ...)
    std::string column;  // per-image CSV: base_<column>, finetuned_<column>
    std::string box;
};

// referring: the mass each model's map for a box puts inside that box.
// grounding (what it computes): the normalised entropy of the head's map under
// a uniform heatmap and of the encoder's own attention, and the mass of each
// inside every box given.
inline std::vector<metric> metrics_of(task_type t) {
    std::vector<metric> m;
    const char* boxes[] = {"person", "object", "interaction"};
    if (t == task_type::referring) {
        for (const char* b : boxes) m.push_back({b, std::string("mass_") + b, b});
        return m;
    }
    m.push_back({"head_normalized_entropy", "head_normalized_entropy", ""});
    m.push_back({"encoder_normalized_entropy", "encoder_normalized_entropy", ""});
    for (const char* b : boxes) m.push_back({std::string("head_mass_") + b, std::string("head_mass_") + b, b});
    for (const char* b : boxes) m.push_back({std::string("encoder_mass_") + b, std::string("encoder_mass_") + b, b});
    return m;
}

struct image_row {
    std::int64_t index = 0;         // the image's position among the batch file's images (0-based)
    std::int64_t line = 0;          // its line in the batch file
    std::string id, image, status;  // status: computed | recomputed (why) | skipped (...) | failed: <why>
    task_type task = task_type::referring;
    std::string action, object_category;                      // as the request had them (the line's or the run's)
    std::map<std::string, std::pair<double, double>> values;  // metric label -> (base, fine-tuned)
    std::map<std::string, double> uniform_mass;               // box -> area fraction
    // From the image's JSON (absent for a failed image): its size and the boxes in pixels of
    // the original image ("person", "object", "interaction"), [x1, y1, x2, y2].
    std::int64_t width = 0, height = 0;
    std::map<std::string, std::array<double, 4>> boxes;

    bool failed() const { return status.rfind("failed", 0) == 0; }
};

// The numbers of a finished image, from its JSON (to_json's schema).
inline image_row row_from_json(const nlohmann::json& j, const std::string& id) {
    image_row r;
    r.id = id;
    r.image = j.at("image").at("path").get<std::string>();
    r.task = parse_task_type(j.at("task_type").get<std::string>());
    r.width = j.at("image").at("width").get<std::int64_t>();
    r.height = j.at("image").at("height").get<std::int64_t>();
    if (j.contains("action") && j["action"].is_string()) r.action = j["action"].get<std::string>();
    if (j.contains("object_category") && j["object_category"].is_string())
        r.object_category = j["object_category"].get<std::string>();
    if (j.contains("boxes"))
        for (auto it = j["boxes"].begin(); it != j["boxes"].end(); ++it) {
            std::array<double, 4> b{};
            for (std::size_t i = 0; i < 4; ++i) b[i] = it.value().at(i).get<double>();
            r.boxes[it.key()] = b;
        }
    if (j.contains("uniform_mass"))
        for (auto it = j["uniform_mass"].begin(); it != j["uniform_mass"].end(); ++it)
            r.uniform_mass[it.key()] = it.value().get<double>();
    const auto& b = j.at("models").at("base");
    const auto& f = j.at("models").at("finetuned");
    if (r.task == task_type::referring) {
        for (auto it = b.at("queries").begin(); it != b.at("queries").end(); ++it) {
            const std::string q = it.key();
            if (!it.value().at("mass_in").contains(q)) continue;
            r.values[q] = {it.value().at("mass_in").at(q).get<double>(),
                           f.at("queries").at(q).at("mass_in").at(q).get<double>()};
        }
        return r;
    }
    const auto take = [&](const char* what, const nlohmann::json& bm, const nlohmann::json& fm) {
        const std::string w = what;
        r.values[w + "_normalized_entropy"] = {bm.at("normalized_entropy").get<double>(),
                                               fm.at("normalized_entropy").get<double>()};
        for (auto it = bm.at("mass_in").begin(); it != bm.at("mass_in").end(); ++it)
            r.values[w + "_mass_" + it.key()] = {it.value().get<double>(), fm.at("mass_in").at(it.key()).get<double>()};
    };
    take("head", b.at("queries").at("uniform"), f.at("queries").at("uniform"));
    if (b.contains("encoder_attention") && f.contains("encoder_attention"))
        take("encoder", b["encoder_attention"], f["encoder_attention"]);
    return r;
}

inline image_row row_from_json(const std::filesystem::path& json_path, const std::string& id) {
    std::ifstream in(json_path);
    glimpse::detail::check(static_cast<bool>(in), "cannot read '", json_path.string(), "'");
    return row_from_json(nlohmann::json::parse(in), id);
}

// The interval of every summary: masses, normalised entropies and their
// differences are bounded, so a bootstrap that stays in their range
// (analysis::bootstrap_mean_ci).
inline constexpr const char* ci_method = "percentile bootstrap of the mean, 2000 resamples, fixed seed";

struct summary_row {
    std::string label;
    analysis::bootstrap_ci base, finetuned, diff;                    // diff: base - fine-tuned, paired per image
    double uniform_mean = std::numeric_limits<double>::quiet_NaN();  // mean area fraction of the box
};

inline std::vector<summary_row> summarize(const std::vector<image_row>& rows, task_type task) {
    std::vector<summary_row> out;
    for (const auto& m : metrics_of(task)) {
        std::vector<double> a, b, d, u;
        for (const auto& r : rows) {
            if (r.task != task) continue;
            const auto it = r.values.find(m.label);
            if (it == r.values.end()) continue;
            a.push_back(it->second.first);
            b.push_back(it->second.second);
            d.push_back(it->second.first - it->second.second);
            if (const auto ub = r.uniform_mass.find(m.box); ub != r.uniform_mass.end()) u.push_back(ub->second);
        }
        if (a.empty()) continue;
        summary_row s{m.label, analysis::bootstrap_mean_ci(a), analysis::bootstrap_mean_ci(b),
                      analysis::bootstrap_mean_ci(d)};
        if (!u.empty() && u.size() == a.size()) {
            double t = 0;
            for (double v : u) t += v;
            s.uniform_mean = t / static_cast<double>(u.size());
        }
        out.push_back(std::move(s));
    }
    return out;
}

// One task's summary and where its CSVs are.
struct task_summary {
    task_type task;
    std::vector<summary_row> rows;
    std::filesystem::path summary_csv, per_image_csv;
};

inline std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
}

inline std::string num(double v) {
    if (!std::isfinite(v)) return "";
    char b[32];
    std::snprintf(b, sizeof b, "%.6f", v);
    return b;
}

// Atomic text file (temp + rename).
inline void write_text_atomic(const std::filesystem::path& p, const std::string& text) {
    const auto tmp = p.parent_path() / ("." + p.filename().string() + ".tmp");
    {
        std::ofstream o(tmp);
        o << text;
        o.flush();
        glimpse::detail::check(static_cast<bool>(o), "cannot write '", tmp.string(), "'");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, p, ec);
    if (ec) glimpse::detail::fail("cannot write '", p.string(), "': ", ec.message());
}

// The rows of `task`: id, image, status, base_/finetuned_<metric>, uniform_mass_<box>.
inline std::string per_image_csv(const std::vector<image_row>& rows, task_type task) {
    const auto ms = metrics_of(task);
    const char* boxes[] = {"person", "object", "interaction"};
    std::ostringstream o;
    o << "id,image,status";
    for (const auto& m : ms) o << ",base_" << m.column << ",finetuned_" << m.column;
    for (const char* b : boxes) o << ",uniform_mass_" << b;
    o << "\n";
    for (const auto& r : rows) {
        if (r.task != task) continue;
        o << csv_field(r.id) << "," << csv_field(r.image) << "," << csv_field(r.status);
        for (const auto& m : ms) {
            const auto it = r.values.find(m.label);
            o << "," << (it != r.values.end() ? num(it->second.first) : "") << ","
              << (it != r.values.end() ? num(it->second.second) : "");
        }
        for (const char* b : boxes) {
            const auto it = r.uniform_mass.find(b);
            o << "," << (it != r.uniform_mass.end() ? num(it->second) : "");
        }
        o << "\n";
    }
    return o.str();
}

inline std::string summary_csv(const std::vector<summary_row>& s, task_type task) {
    std::ostringstream o;
    o << (task == task_type::referring ? "box" : "metric")
      << ",n,base_mean,base_ci95_lo,base_ci95_hi,finetuned_mean,finetuned_ci95_lo,finetuned_ci95_hi,"
         "diff_base_minus_finetuned_mean,diff_ci95_lo,diff_ci95_hi,uniform_mass_mean,ci95_method\n";
    for (const auto& r : s)
        o << r.label << "," << r.base.n << "," << num(r.base.mean) << "," << num(r.base.lo) << "," << num(r.base.hi)
          << "," << num(r.finetuned.mean) << "," << num(r.finetuned.lo) << "," << num(r.finetuned.hi) << ","
          << num(r.diff.mean) << "," << num(r.diff.lo) << "," << num(r.diff.hi) << "," << num(r.uniform_mean) << ","
          << csv_field(ci_method) << "\n";
    return o.str();
}

inline std::string summary_table(const std::vector<summary_row>& s, task_type task) {
    std::ostringstream o;
    const auto ci = [](const analysis::bootstrap_ci& m) {
        char b[64];
        if (std::isfinite(m.lo))
            std::snprintf(b, sizeof b, "%.4f [%.4f, %.4f]", m.mean, m.lo, m.hi);
        else
            std::snprintf(b, sizeof b, "%.4f (n=1, no CI)", m.mean);
        return std::string(b);
    };
    const bool ref = task == task_type::referring;
    char head[256];
    std::snprintf(head, sizeof head, "  %-26s %6s  %-28s %-28s %-28s %s\n", ref ? "box" : "metric", "n",
                  ref ? "base mass in box [95% CI]" : "base [95% CI]", "fine-tuned [95% CI]",
                  "base - fine-tuned [95% CI]", "uniform");
    o << head;
    for (const auto& r : s) {
        char line[320];
        std::snprintf(line, sizeof line, "  %-26s %6lld  %-28s %-28s %-28s %s\n", r.label.c_str(),
                      static_cast<long long>(r.base.n), ci(r.base).c_str(), ci(r.finetuned).c_str(), ci(r.diff).c_str(),
                      std::isfinite(r.uniform_mean) ? num(r.uniform_mean).c_str() : "-");
        o << line;
    }
    return o.str();
}

}  // namespace glimpse::compare
