#pragma once
// Batch mode: many images, each model loaded once.
//
// Input: JSON lines, one image each, the format glimpse-train reads, plus
// optional fields:
//   {"image": "imgs/0001.jpg", "person_box": [x1,y1,x2,y2], "object_box": [...],
//    "action": "holding", "object_category": "helmet", "task_type": "referring", "id": "0001"}
// Relative image paths are relative to the JSONL file's directory. Boxes are in
// the --box_format of the run. Blank lines and lines starting with '#' are skipped.
//
// Output: {out}/{id}/attention_comparison_{task}.{png,json,safetensors} per
// image (id: the "id" field, else the image's file stem, made unique by
// appending -<line> when two lines share it), then {out}/per_image.csv and
// {out}/summary.csv. An image whose JSON exists is skipped (its numbers are read
// back for the summary), so an interrupted run resumes where it stopped.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/core/error.hpp"

namespace glimpse::compare {

struct batch_item {
    std::int64_t line = 0;
    std::string id;
    std::filesystem::path image;
    std::optional<std::vector<double>> person_box, object_box;  // as typed (box_format of the run)
    std::string action, object_category;
    std::optional<task_type> task;
};

// Parses the whole file first (a typo on line 9000 should not wait for 8999
// images); a malformed line fails with its line number.
inline std::vector<batch_item> read_batch(const std::filesystem::path& file) {
    std::ifstream in(file);
    glimpse::detail::check(static_cast<bool>(in), "batch file '", file.string(), "': cannot open");
    const auto base = file.parent_path();
    std::vector<batch_item> items;
    std::string text;
    std::int64_t line = 0;
    const auto where = [&] { return "batch file '" + file.string() + "' line " + std::to_string(line); };
    while (std::getline(in, text)) {
        ++line;
        const auto first = text.find_first_not_of(" \t\r");
        if (first == std::string::npos || text[first] == '#') continue;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(text);
        } catch (const std::exception& e) {
            glimpse::detail::fail(where(), ": not JSON (", e.what(), ")");
        }
        glimpse::detail::check(j.is_object(), where(), ": expected a JSON object");
        batch_item it;
        it.line = line;
        glimpse::detail::check(j.contains("image") && j["image"].is_string(), where(), ": no \"image\" string");
        it.image = j["image"].get<std::string>();
        if (it.image.is_relative()) it.image = base / it.image;
        const auto read_box = [&](const char* key) -> std::optional<std::vector<double>> {
            if (!j.contains(key) || j[key].is_null()) return std::nullopt;
            const auto& b = j[key];
            glimpse::detail::check(b.is_array() && b.size() == 4, where(), ": \"", key, "\" must be [x1, y1, x2, y2]");
            std::vector<double> v;
            for (const auto& x : b) {
                glimpse::detail::check(x.is_number(), where(), ": \"", key, "\" must hold numbers");
                v.push_back(x.get<double>());
            }
            return v;
        };
        it.person_box = read_box("person_box");
        it.object_box = read_box("object_box");
        if (j.contains("action") && j["action"].is_string()) it.action = j["action"].get<std::string>();
        if (j.contains("object_category") && j["object_category"].is_string())
            it.object_category = j["object_category"].get<std::string>();
        if (j.contains("task_type")) {
            glimpse::detail::check(j["task_type"].is_string(), where(), ": \"task_type\" must be a string");
            try {
                it.task = parse_task_type(j["task_type"].get<std::string>());
            } catch (const std::exception& e) {
                glimpse::detail::fail(where(), ": ", e.what());
            }
        }
        if (j.contains("id")) {
            glimpse::detail::check(j["id"].is_string() || j["id"].is_number(), where(),
                                   ": \"id\" must be a string or number");
            it.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
            glimpse::detail::check(
                !it.id.empty() && it.id.find('/') == std::string::npos && it.id != "." && it.id != "..", where(),
                ": \"id\" must be a non-empty file name");
        }
        items.push_back(std::move(it));
    }
    glimpse::detail::check(!items.empty(), "batch file '", file.string(), "': no images in it");
    // Ids: explicit ones must be unique; stems get -<line> on collision.
    std::map<std::string, int> stems;
    for (const auto& it : items)
        if (it.id.empty()) ++stems[it.image.stem().string()];
    std::set<std::string> seen;
    for (auto& it : items) {
        if (it.id.empty()) {
            it.id = it.image.stem().string();
            if (stems[it.id] > 1) it.id += "-" + std::to_string(it.line);
        }
        glimpse::detail::check(seen.insert(it.id).second, "batch file '", file.string(), "' line ", it.line, ": id '",
                               it.id, "' is used twice");
    }
    return items;
}

// A progress line on stderr: bar, count, rate, ETA, current name. On a
// terminal it redraws in place; otherwise one line per step.
class progress {
public:
    progress(std::int64_t total, bool tty) : total_(total), tty_(tty), t0_(std::chrono::steady_clock::now()) {}

    void step(std::int64_t done, std::int64_t computed, const std::string& what) {
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
        // ETA from the images actually computed (skipped ones cost nothing).
        const double per = computed > 0 ? el / static_cast<double>(computed) : 0.0;
        const double eta = per * static_cast<double>(total_ - done);
        const int width = 28;
        const int fill = total_ > 0 ? static_cast<int>(width * done / total_) : width;
        std::string bar(static_cast<std::size_t>(fill), '=');
        if (fill < width) bar += '>';
        bar.resize(static_cast<std::size_t>(width), ' ');
        std::fprintf(stderr, "%s[%s] %lld/%lld  %s/img  ETA %s  %s%s", tty_ ? "\r\033[K" : "", bar.c_str(),
                     static_cast<long long>(done), static_cast<long long>(total_),
                     computed > 0 ? duration(per).c_str() : "-", computed > 0 ? duration(eta).c_str() : "-",
                     what.c_str(), tty_ ? "" : "\n");
        std::fflush(stderr);
    }
    void finish() {
        if (tty_) std::fprintf(stderr, "\n");
    }
    static std::string duration(double s) {
        char b[32];
        if (s < 60)
            std::snprintf(b, sizeof b, "%.1fs", s);
        else if (s < 3600)
            std::snprintf(b, sizeof b, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
        else
            std::snprintf(b, sizeof b, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) / 60) % 60);
        return b;
    }

private:
    std::int64_t total_;
    bool tty_;
    std::chrono::steady_clock::time_point t0_;
};

// Per image and query box: the mass each model puts inside that same box.
struct image_row {
    std::string id, image, status;                          // status: computed | skipped (already done) | failed: <why>
    std::map<std::string, std::pair<double, double>> mass;  // query -> (base, fine-tuned)
};

// Reads the numbers of a finished image back from its JSON.
inline image_row row_from_json(const std::filesystem::path& json_path, const std::string& id) {
    std::ifstream in(json_path);
    glimpse::detail::check(static_cast<bool>(in), "cannot read '", json_path.string(), "'");
    const auto j = nlohmann::json::parse(in);
    image_row r;
    r.id = id;
    r.image = j.at("image").at("path").get<std::string>();
    const auto& b = j.at("models").at("base").at("queries");
    const auto& f = j.at("models").at("finetuned").at("queries");
    for (auto it = b.begin(); it != b.end(); ++it) {
        const std::string q = it.key();
        const std::string target = q == "uniform" ? "" : q;
        if (target.empty() || !it.value().at("mass_in").contains(target)) continue;
        r.mass[q] = {it.value().at("mass_in").at(target).get<double>(), f.at(q).at("mass_in").at(target).get<double>()};
    }
    return r;
}

struct summary_row {
    std::string query;
    analysis::mean_ci base, finetuned, diff;  // diff: base - fine-tuned, paired per image
};

inline std::vector<summary_row> summarize(const std::vector<image_row>& rows) {
    std::vector<summary_row> out;
    for (const char* q : {"person", "object", "interaction"}) {
        std::vector<double> a, b, d;
        for (const auto& r : rows)
            if (auto it = r.mass.find(q); it != r.mass.end()) {
                a.push_back(it->second.first);
                b.push_back(it->second.second);
                d.push_back(it->second.first - it->second.second);
            }
        if (a.empty()) continue;
        out.push_back({q, analysis::mean_with_ci(a), analysis::mean_with_ci(b), analysis::mean_with_ci(d)});
    }
    return out;
}

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

inline std::string per_image_csv(const std::vector<image_row>& rows) {
    std::ostringstream o;
    o << "id,image,status";
    for (const char* q : {"person", "object", "interaction"}) o << ",base_mass_" << q << ",finetuned_mass_" << q;
    o << "\n";
    for (const auto& r : rows) {
        o << csv_field(r.id) << "," << csv_field(r.image) << "," << csv_field(r.status);
        for (const char* q : {"person", "object", "interaction"}) {
            const auto it = r.mass.find(q);
            o << "," << (it != r.mass.end() ? num(it->second.first) : "") << ","
              << (it != r.mass.end() ? num(it->second.second) : "");
        }
        o << "\n";
    }
    return o.str();
}

inline std::string summary_csv(const std::vector<summary_row>& s) {
    std::ostringstream o;
    o << "box,n,base_mean,base_ci95_lo,base_ci95_hi,finetuned_mean,finetuned_ci95_lo,finetuned_ci95_hi,"
         "diff_base_minus_finetuned_mean,diff_ci95_lo,diff_ci95_hi\n";
    for (const auto& r : s)
        o << r.query << "," << r.base.n << "," << num(r.base.mean) << "," << num(r.base.lo()) << "," << num(r.base.hi())
          << "," << num(r.finetuned.mean) << "," << num(r.finetuned.lo()) << "," << num(r.finetuned.hi()) << ","
          << num(r.diff.mean) << "," << num(r.diff.lo()) << "," << num(r.diff.hi()) << "\n";
    return o.str();
}

inline std::string summary_table(const std::vector<summary_row>& s) {
    std::ostringstream o;
    const auto ci = [](const analysis::mean_ci& m) {
        char b[64];
        if (std::isfinite(m.half_width))
            std::snprintf(b, sizeof b, "%.4f [%.4f, %.4f]", m.mean, m.lo(), m.hi());
        else
            std::snprintf(b, sizeof b, "%.4f (n=1, no CI)", m.mean);
        return std::string(b);
    };
    char head[200];
    std::snprintf(head, sizeof head, "  %-12s %6s  %-28s %-28s %-28s\n", "box", "n", "base mass in box [95% CI]",
                  "fine-tuned [95% CI]", "base - fine-tuned [95% CI]");
    o << head;
    for (const auto& r : s) {
        char line[256];
        std::snprintf(line, sizeof line, "  %-12s %6lld  %-28s %-28s %-28s\n", r.query.c_str(),
                      static_cast<long long>(r.base.n), ci(r.base).c_str(), ci(r.finetuned).c_str(),
                      ci(r.diff).c_str());
        o << line;
    }
    return o.str();
}

}  // namespace glimpse::compare
