#pragma once
// Batch mode: many images, each model loaded once (the driver behind
// `glimpse-compare --batch`).
//
//   const auto file = compare::read_batch("test.jsonl");     // every line checked first
//   const auto rep  = compare::run_batch(be, comparer, base, tuned, file, opts, fonts);
//
// Input: JSON lines, one image each, the format glimpse-train reads, plus
// optional fields:
//   {"image": "imgs/0001.jpg", "person_box": [x1,y1,x2,y2], "object_box": [...],
//    "action": "holding", "object_category": "helmet", "task_type": "referring",
//    "box_format": "norm1000", "id": "0001"}
// Relative image paths are relative to the JSONL file's directory. Boxes are in
// the line's "box_format", else the run's. Blank lines and lines starting with
// '#' are skipped. Other keys are reported (one warning per key, with the lines
// it is on) and ignored.
//
// Output: {out}/{id}/attention_comparison_{task}.{png,json,safetensors} per
// image (id: the "id" field, else the image's file stem, made unique by
// appending -<line> when two lines share it), then per task of the run
// {out}/per_image_{task}.csv and {out}/summary_{task}.csv (a grounding run and a
// referring run share a directory without overwriting each other's summaries).
//
// Resume: each JSON holds the fingerprint of its result (compare/fingerprint.hpp).
// An image whose JSON exists with the fingerprint the current inputs give is
// skipped and its numbers read back for the summary; one without a fingerprint
// or with another one is recomputed, and the report says how many and why.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/compare/comparison_figure.hpp"
#include "glimpse/compare/fingerprint.hpp"
#include "glimpse/compare/outputs.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/io/json_file.hpp"

namespace glimpse::compare {

// ---- the JSONL file -------------------------------------------------------------------------

struct batch_item {
    std::int64_t line = 0;
    std::string id;
    std::filesystem::path image;
    std::optional<std::vector<double>> person_box, object_box;  // as typed, in `format` (else the run's)
    std::optional<box_format> format;
    std::string action, object_category;
    std::optional<task_type> task;
};

struct batch_file {
    std::filesystem::path path;
    std::vector<batch_item> items;
    std::map<std::string, std::vector<std::int64_t>> unknown_keys;  // key -> the lines it is on

    // One line per unknown key: how many lines carry it, the first few of them.
    std::vector<std::string> warnings() const {
        std::vector<std::string> out;
        for (const auto& [key, lines] : unknown_keys) {
            std::string w = "batch file '" + path.string() + "': unknown key \"" + key + "\" ignored (on " +
                            std::to_string(lines.size()) + (lines.size() == 1 ? " line: " : " lines: ");
            for (std::size_t i = 0; i < lines.size() && i < 5; ++i) w += (i ? ", " : "") + std::to_string(lines[i]);
            if (lines.size() > 5) w += ", ...";
            w += "); known keys: image, person_box, object_box, action, object_category, task_type, box_format, id";
            out.push_back(std::move(w));
        }
        return out;
    }
};

// Parses the whole file first (a typo on line 9000 should not wait for 8999
// images); a malformed line fails with its line number.
inline batch_file read_batch(const std::filesystem::path& file) {
    std::ifstream in(file);
    glimpse::detail::check(static_cast<bool>(in), "batch file '", file.string(), "': cannot open");
    static const std::set<std::string> known = {"image",           "person_box", "object_box", "action",
                                                "object_category", "task_type",  "box_format", "id"};
    const auto base = file.parent_path();
    batch_file out;
    out.path = file;
    std::string text;
    std::int64_t line = 0;
    const auto where = [&] { return "batch file '" + file.string() + "' line " + std::to_string(line); };
    while (std::getline(in, text)) {
        ++line;
        const auto first = text.find_first_not_of(" \t\r");
        if (first == std::string::npos || text[first] == '#') continue;
        // io/json_file.hpp's limits: nesting, keys given twice, NUL bytes.
        const nlohmann::json j = parse_json_text(text, where());
        glimpse::detail::check(j.is_object(), where(), ": expected a JSON object");
        for (auto k = j.begin(); k != j.end(); ++k)
            if (!known.count(k.key())) out.unknown_keys[k.key()].push_back(line);
        batch_item it;
        it.line = line;
        glimpse::detail::check(j.contains("image") && j["image"].is_string(), where(), ": no \"image\" string");
        it.image = j["image"].get<std::string>();
        if (it.image.is_relative()) it.image = (base / it.image).lexically_normal();
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
        const auto read_text = [&](const char* key) -> std::string {
            if (!j.contains(key) || j[key].is_null()) return {};
            glimpse::detail::check(j[key].is_string(), where(), ": \"", key, "\" must be a string, got ",
                                   j[key].dump());
            return j[key].get<std::string>();
        };
        it.action = read_text("action");
        it.object_category = read_text("object_category");
        const auto parsed = [&](const char* key, auto parse) {
            const std::string v = read_text(key);
            try {
                return parse(v);
            } catch (const std::exception& e) {
                glimpse::detail::fail(where(), ": \"", key, "\": ", e.what());
            }
        };
        if (j.contains("task_type") && !j["task_type"].is_null())
            it.task = parsed("task_type", [](const std::string& s) { return parse_task_type(s); });
        if (j.contains("box_format") && !j["box_format"].is_null())
            it.format = parsed("box_format", [](const std::string& s) { return parse_box_format(s); });
        if (j.contains("id")) {
            glimpse::detail::check(j["id"].is_string() || j["id"].is_number(), where(),
                                   ": \"id\" must be a string or number");
            it.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
            glimpse::detail::check(
                !it.id.empty() && it.id.find('/') == std::string::npos && it.id != "." && it.id != "..", where(),
                ": \"id\" must be a non-empty file name");
        }
        out.items.push_back(std::move(it));
    }
    glimpse::detail::check(!out.items.empty(), "batch file '", file.string(), "': no images in it");
    // Ids: explicit ones must be unique; stems get -<line> on collision.
    std::map<std::string, int> stems;
    for (const auto& it : out.items)
        if (it.id.empty()) ++stems[it.image.stem().string()];
    std::set<std::string> seen;
    for (auto& it : out.items) {
        if (it.id.empty()) {
            it.id = it.image.stem().string();
            if (stems[it.id] > 1) it.id += "-" + std::to_string(it.line);
        }
        glimpse::detail::check(seen.insert(it.id).second, "batch file '", file.string(), "' line ", it.line, ": id '",
                               it.id, "' is used twice");
    }
    return out;
}

// Boxes typed for a W x H image -> a validated request (throws on any bad box).
inline request make_request(double W, double H, task_type task, box_format bf,
                            const std::optional<std::vector<double>>& person,
                            const std::optional<std::vector<double>>& object, const std::string& action,
                            const std::string& category, const std::string& label) {
    request req;
    req.task = task;
    req.action = action;
    req.object_category = category;
    req.image_label = label;
    if (person) req.person = to_pixel_box(*person, bf, W, H, "--person_box");
    if (object) req.object = to_pixel_box(*object, bf, W, H, "--object_box");
    req.check();
    return req;
}

// ---- progress --------------------------------------------------------------------------------

// A progress line: bar, count, rate, ETA, current name. On a terminal it
// redraws in place; otherwise one line per step.
class progress {
public:
    progress(std::int64_t total, bool tty, std::FILE* out = stderr)
        : total_(total), tty_(tty), out_(out), t0_(std::chrono::steady_clock::now()) {}

    void step(std::int64_t done, std::int64_t computed, const std::string& what) {
        if (!out_) return;
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
        // ETA from the images actually computed (skipped ones cost nothing).
        const double per = computed > 0 ? el / static_cast<double>(computed) : 0.0;
        const double eta = per * static_cast<double>(total_ - done);
        const int width = 28;
        const int fill = total_ > 0 ? static_cast<int>(width * done / total_) : width;
        std::string bar(static_cast<std::size_t>(fill), '=');
        if (fill < width) bar += '>';
        bar.resize(static_cast<std::size_t>(width), ' ');
        std::fprintf(out_, "%s[%s] %lld/%lld  %s/img  ETA %s  %s%s", tty_ ? "\r\033[K" : "", bar.c_str(),
                     static_cast<long long>(done), static_cast<long long>(total_),
                     computed > 0 ? duration(per).c_str() : "-", computed > 0 ? duration(eta).c_str() : "-",
                     what.c_str(), tty_ ? "" : "\n");
        std::fflush(out_);
    }
    // Before another line on the same stream: clears a redrawn bar.
    void interrupt() {
        if (out_ && tty_) std::fprintf(out_, "\r\033[K");
    }
    void finish() {
        if (out_ && tty_) std::fprintf(out_, "\n");
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
    std::FILE* out_;
    std::chrono::steady_clock::time_point t0_;
};

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
    std::string id, image, status;  // status: computed | recomputed (why) | skipped (...) | failed: <why>
    task_type task = task_type::referring;
    std::map<std::string, std::pair<double, double>> values;  // metric label -> (base, fine-tuned)
    std::map<std::string, double> uniform_mass;               // box -> area fraction
};

// The numbers of a finished image, from its JSON (to_json's schema).
inline image_row row_from_json(const nlohmann::json& j, const std::string& id) {
    image_row r;
    r.id = id;
    r.image = j.at("image").at("path").get<std::string>();
    r.task = parse_task_type(j.at("task_type").get<std::string>());
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

// ---- the driver ------------------------------------------------------------------------------

struct batch_options {
    std::filesystem::path output_dir;
    task_type task = task_type::referring;  // lines without "task_type"
    box_format boxes = box_format::pixels;  // lines without "box_format"
    std::string action, object_category;    // lines without them
    figure_options figure;
    // Fingerprinted with the figure options (they change the numbers): the
    // matmul precision (f32 | bf16) and the device kind (cpu | cuda).
    std::string precision = "f32", device_kind = "cpu";
    std::FILE* log = stderr;  // progress bar and per-image failures; nullptr: silent
    bool tty = false;         // the progress bar redraws in place
    std::string log_prefix;   // before each failure line ("glimpse-compare: ")
};

struct batch_report {
    std::vector<image_row> rows;  // in file order
    // computed includes recomputed (a result there was, with another fingerprint).
    std::int64_t computed = 0, recomputed = 0, skipped = 0, failed = 0;
    std::map<std::string, std::int64_t> recompute_reasons;  // an image counts once per reason it has
    stage_timings timings;                                  // summed over the images computed
    struct task_summary {
        task_type task;
        std::vector<summary_row> rows;
        std::filesystem::path summary_csv, per_image_csv;
    };
    std::vector<task_summary> summaries;  // the tasks of this run's lines, referring first

    // "3 recomputed: fine-tuned head changed (2), boxes changed (1)"; empty when none.
    std::string recomputed_line() const {
        if (recomputed == 0) return {};
        std::vector<std::pair<std::string, std::int64_t>> why(recompute_reasons.begin(), recompute_reasons.end());
        std::stable_sort(why.begin(), why.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
        std::string s = std::to_string(recomputed) + " recomputed:";
        for (std::size_t i = 0; i < why.size(); ++i)
            s += (i ? ", " : " ") + why[i].first + " (" + std::to_string(why[i].second) + ")";
        return s;
    }
};

namespace detail {

inline std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s;
}

// Why the result at `json_path` is not the one the current inputs give (empty:
// it is; `j` then holds it). The stored image size converts the boxes: it is
// this image's as long as the file's stamp, a part of the fingerprint, matches.
inline std::vector<std::string> stale_reasons(const std::filesystem::path& json_path, const run_identity& ident,
                                              const batch_item& it, task_type task, box_format bf,
                                              const std::string& action, const std::string& category,
                                              const std::string& label, nlohmann::json& j) {
    try {
        std::ifstream in(json_path);
        j = nlohmann::json::parse(in);
        (void)j.at("image").at("width").get<double>();
        (void)j.at("image").at("height").get<double>();
    } catch (const std::exception&) {
        return {"unreadable JSON"};
    }
    if (!j.contains("fingerprint") || !has_fingerprint(j["fingerprint"]))
        return fingerprint_changes(nlohmann::json(), fingerprint{});
    std::optional<request> req;
    try {
        req = make_request(j["image"]["width"].get<double>(), j["image"]["height"].get<double>(), task, bf,
                           it.person_box, it.object_box, action, category, label);
    } catch (const std::exception&) {
        return {"boxes changed"};  // invalid now: the recompute says how
    }
    try {
        return fingerprint_changes(j["fingerprint"], make_fingerprint(ident, *req, it.image));
    } catch (const std::exception&) {
        return {"image file changed"};  // gone or unreadable: the recompute says how
    }
}

}  // namespace detail

// Every image of `file`: computed, recomputed (its JSON has another fingerprint)
// or skipped (the same one), then the CSVs of each task. A failing image is
// reported and marked, the others go on. `base`/`finetuned`: the sources `c`
// was loaded from (their encoder directories are fingerprinted).
template <Backend B>
batch_report run_batch(B& be, const comparer<B>& c, const model_source& base, const model_source& finetuned,
                       const batch_file& file, const batch_options& o, const fonts& f) {
    namespace fs = std::filesystem;
    const run_identity ident = identify(be, c, base, finetuned, o.precision, o.device_kind, o.figure);
    batch_report rep;
    progress bar(static_cast<std::int64_t>(file.items.size()), o.tty, o.log);
    std::int64_t done = 0;
    std::error_code ec;
    for (const auto& it : file.items) {
        const fs::path dir = o.output_dir / it.id;
        const task_type task = it.task.value_or(o.task);
        const box_format bf = it.format.value_or(o.boxes);
        const std::string& action = it.action.empty() ? o.action : it.action;
        const std::string& category = it.object_category.empty() ? o.object_category : it.object_category;
        const std::string label = it.image.filename().string();
        const auto paths = output_paths(dir, task);
        image_row row;
        row.id = it.id;
        row.image = it.image.string();
        row.task = task;
        try {
            // A result there is: the same fingerprint skips it, another one says why.
            const bool had = fs::is_regular_file(paths.json, ec);
            std::vector<std::string> why;
            if (had) {
                nlohmann::json j;
                why = detail::stale_reasons(paths.json, ident, it, task, bf, action, category, label, j);
                if (why.empty()) {
                    try {
                        row = row_from_json(j, it.id);
                        row.image = it.image.string();
                        row.status = "skipped (done before, same fingerprint)";
                        ++rep.skipped;
                    } catch (const std::exception&) {
                        why = {"unreadable JSON"};  // the fingerprint is there, the numbers are not
                    }
                }
            }
            if (!had || !why.empty()) {
                const image_u8 img = load_image(it.image);
                const request req = make_request(static_cast<double>(img.width), static_cast<double>(img.height), task,
                                                 bf, it.person_box, it.object_box, action, category, label);
                const fingerprint fp = make_fingerprint(ident, req, it.image);
                comparison_result r = c.run(be, img, req);
                stage_timings t = r.timings;
                write_outputs(r, dir, f, o.figure, &t, {{"fingerprint", fp.to_json()}});
                for (const auto& [k, v] : t.ms) rep.timings.add(k, v);
                row = row_from_json(paths.json, it.id);
                row.image = it.image.string();
                ++rep.computed;
                if (had) {
                    ++rep.recomputed;
                    for (const auto& w : why) ++rep.recompute_reasons[w];
                    row.status = "recomputed (" + detail::join(why) + ")";
                } else {
                    row.status = "computed";
                }
            }
        } catch (const std::exception& e) {
            row.values.clear();
            row.uniform_mass.clear();
            row.status = std::string("failed: ") + e.what();
            ++rep.failed;
            if (o.log) {
                bar.interrupt();
                std::fprintf(o.log, "%s%s line %lld (%s): %s\n", o.log_prefix.c_str(), file.path.string().c_str(),
                             static_cast<long long>(it.line), it.id.c_str(), e.what());
            }
        }
        rep.rows.push_back(std::move(row));
        bar.step(++done, rep.computed, it.id);
    }
    bar.finish();

    fs::create_directories(o.output_dir, ec);
    if (ec) glimpse::detail::fail("--output_dir '", o.output_dir.string(), "': ", ec.message());
    for (const task_type t : {task_type::referring, task_type::grounding}) {
        if (std::none_of(rep.rows.begin(), rep.rows.end(), [&](const image_row& r) { return r.task == t; })) continue;
        batch_report::task_summary s{t, summarize(rep.rows, t),
                                     o.output_dir / ("summary_" + std::string(name(t)) + ".csv"),
                                     o.output_dir / ("per_image_" + std::string(name(t)) + ".csv")};
        write_text_atomic(s.per_image_csv, per_image_csv(rep.rows, t));
        write_text_atomic(s.summary_csv, summary_csv(s.rows, t));
        rep.summaries.push_back(std::move(s));
    }
    return rep;
}

}  // namespace glimpse::compare
