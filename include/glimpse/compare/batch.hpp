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
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/compare/batch_table.hpp"
#include "glimpse/compare/comparison_figure.hpp"
#include "glimpse/compare/fingerprint.hpp"
#include "glimpse/compare/outputs.hpp"
#include "glimpse/compare/shards.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/fnv1a64.hpp"
#include "glimpse/core/progress.hpp"
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
    std::string hash;  // FNV-1a 64 of its lines: shards of one file merge, of two files do not
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
    fnv1a64 h;
    while (std::getline(in, text)) {
        ++line;
        h.add(text);
        h.add("\n");
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
    out.hash = "fnv1a64:" + h.hex();
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
    shard_spec shard;         // the images this run computes (default: all)
    bool pipeline = true;     // decode and write on a second thread (see run_batch)
    report_meta report;       // index.html's title and facts (models, options)
};

struct batch_report {
    std::vector<image_row> rows;  // in file order
    // computed includes recomputed (a result there was, with another fingerprint).
    std::int64_t computed = 0, recomputed = 0, skipped = 0, failed = 0;
    std::map<std::string, std::int64_t> recompute_reasons;  // an image counts once per reason it has
    stage_timings timings;                                  // summed over the images computed
    std::vector<task_summary> summaries;                    // whole file: the tasks of its lines, referring first
    std::filesystem::path manifest;                         // a shard: its manifest (no CSVs; --merge writes them)

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

// What every shard of one run must share to be merged: the version, the defaults the
// file's lines fall back on, both models and the options.
inline nlohmann::ordered_json run_parts(const run_identity& id, const batch_options& o) {
    nlohmann::ordered_json parts = {{"version", GLIMPSE_VERSION_STRING},
                                    {"defaults",
                                     {{"task", std::string(name(o.task))},
                                      {"box_format", std::string(name(o.boxes))},
                                      {"action", o.action},
                                      {"object_category", o.object_category}}}};
    id.add_to(parts);
    return parts;
}

// Who an image is, whatever became of it.
inline void stamp(image_row& r, const batch_item& it, std::int64_t index, const std::string& action,
                  const std::string& category) {
    r.index = index;
    r.line = it.line;
    r.id = it.id;
    r.image = it.image.string();
    r.action = action;
    r.object_category = category;
}

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

// Every image of `file` (of its shard, when o.shard splits the file): computed, recomputed
// (its JSON has another fingerprint) or skipped (the same one). A failing image is
// reported and marked, the others go on. Whole file: then the CSVs of each task and
// index.html; a shard: its manifest (compare/shards.hpp's merge_shards folds the shards).
// `base`/`finetuned`: the sources `c` was loaded from (their encoder directories are
// fingerprinted).
//
// Pipelined (o.pipeline): while the tower runs image i, a second thread decodes image i+1
// and renders and writes image i-1's figure and files, so the tower never waits on them.
// The numbers do not depend on it (each stage sees the same inputs in either order).
template <Backend B>
batch_report run_batch(B& be, const comparer<B>& c, const model_source& base, const model_source& finetuned,
                       const batch_file& file, const batch_options& o, const fonts& f) {
    namespace fs = std::filesystem;
    const run_identity ident = identify(be, c, base, finetuned, o.precision, o.device_kind, o.figure);
    batch_report rep;
    std::error_code ec;

    // What each image of the shard needs, decided before any is computed: the bar then
    // counts the work, and the next image to compute is known while one computes.
    struct job {
        const batch_item* it;
        std::int64_t index;
        task_type task;
        box_format bf;
        std::string action, category, label;
        bool had = false;
        std::vector<std::string> why;  // had && non-empty: recompute, for these reasons
        std::size_t row;               // into rep.rows
    };
    std::vector<job> todo;
    for (std::size_t i = 0; i < file.items.size(); ++i) {
        const auto index = static_cast<std::int64_t>(i);
        if (!o.shard.owns(index)) continue;
        const batch_item& it = file.items[i];
        job jb{&it,
               index,
               it.task.value_or(o.task),
               it.format.value_or(o.boxes),
               it.action.empty() ? o.action : it.action,
               it.object_category.empty() ? o.object_category : it.object_category,
               it.image.filename().string(),
               false,
               {},
               rep.rows.size()};
        image_row row;
        row.task = jb.task;
        const auto json = output_paths(o.output_dir / it.id, jb.task).json;
        // A result there is: the same fingerprint skips it, another one says why.
        jb.had = fs::is_regular_file(json, ec);
        bool skip = false;
        if (jb.had) {
            nlohmann::json j;
            jb.why = detail::stale_reasons(json, ident, it, jb.task, jb.bf, jb.action, jb.category, jb.label, j);
            if (jb.why.empty()) {
                try {
                    row = row_from_json(j, it.id);
                    row.status = "skipped (done before, same fingerprint)";
                    ++rep.skipped;
                    skip = true;
                } catch (const std::exception&) {
                    jb.why = {"unreadable JSON"};  // the fingerprint is there, the numbers are not
                }
            }
        }
        detail::stamp(row, it, index, jb.action, jb.category);
        rep.rows.push_back(std::move(row));
        if (!skip) todo.push_back(std::move(jb));
    }

    progress_line bar(o.log, o.tty, static_cast<std::int64_t>(todo.size()), "image");
    std::int64_t done = 0;
    const auto failed = [&](const job& jb, const std::exception& e) {
        image_row& row = rep.rows[jb.row];
        row.values.clear();
        row.uniform_mass.clear();
        row.boxes.clear();
        row.width = row.height = 0;
        row.status = std::string("failed: ") + e.what();
        ++rep.failed;
        bar.note(o.log_prefix + file.path.string() + " line " + std::to_string(jb.it->line) + " (" + jb.it->id +
                 "): " + e.what());
    };
    // Image i's decode, started while image i-1 computes.
    const auto decode = [&](std::size_t i) {
        const fs::path path = todo[i].it->image;
        return std::async(o.pipeline ? std::launch::async : std::launch::deferred, [path] { return load_image(path); });
    };
    // Writing image i's files and reading its row back, on the second thread while image
    // i+1 computes; finished (and counted) before the next one starts.
    std::future<void> writing;
    const auto finish_write = [&] {
        if (writing.valid()) writing.get();
    };
    std::future<image_u8> next = todo.empty() ? std::future<image_u8>() : decode(0);
    for (std::size_t i = 0; i < todo.size(); ++i) {
        const job& jb = todo[i];
        const batch_item& it = *jb.it;
        try {
            const image_u8 img = next.get();
            if (i + 1 < todo.size()) next = decode(i + 1);
            const request req = make_request(static_cast<double>(img.width), static_cast<double>(img.height), jb.task,
                                             jb.bf, it.person_box, it.object_box, jb.action, jb.category, jb.label);
            const fingerprint fp = make_fingerprint(ident, req, it.image);
            auto r = std::make_shared<comparison_result>(c.run(be, img, req));
            finish_write();
            const auto write = [&, r, fpj = fp.to_json(), pj = &jb] {
                const job& jb = *pj;
                try {
                    stage_timings t = r->timings;
                    const fs::path dir = o.output_dir / jb.it->id;
                    write_outputs(*r, dir, f, o.figure, &t, {{"fingerprint", fpj}});
                    image_row row = row_from_json(output_paths(dir, jb.task).json, jb.it->id);
                    detail::stamp(row, *jb.it, jb.index, jb.action, jb.category);
                    for (const auto& [k, v] : t.ms) rep.timings.add(k, v);
                    ++rep.computed;
                    if (jb.had) {
                        ++rep.recomputed;
                        for (const auto& w : jb.why) ++rep.recompute_reasons[w];
                        row.status = "recomputed (" + detail::join(jb.why) + ")";
                    } else {
                        row.status = "computed";
                    }
                    rep.rows[jb.row] = std::move(row);
                } catch (const std::exception& e) {
                    failed(jb, e);
                }
                bar.update(++done, {}, jb.it->id);
            };
            writing = std::async(o.pipeline ? std::launch::async : std::launch::deferred, write);
            if (!o.pipeline) finish_write();
        } catch (const std::exception& e) {
            if (i + 1 < todo.size() && !next.valid()) next = decode(i + 1);
            finish_write();
            failed(jb, e);
            bar.update(++done, {}, it.id);
        }
    }
    finish_write();
    bar.finish();

    fs::create_directories(o.output_dir, ec);
    if (ec) glimpse::detail::fail("--output_dir '", o.output_dir.string(), "': ", ec.message());
    if (o.shard.whole()) {
        rep.summaries = write_batch_tables(o.output_dir, rep.rows, o.report);
    } else {
        rep.manifest = o.output_dir / "shards" / o.shard.manifest_name();
        fs::create_directories(rep.manifest.parent_path(), ec);
        if (ec) glimpse::detail::fail("--output_dir '", o.output_dir.string(), "': ", ec.message());
        const shard_manifest m{o.shard,
                               file.path.string(),
                               file.hash,
                               static_cast<std::int64_t>(file.items.size()),
                               detail::run_parts(ident, o),
                               o.report,
                               rep.rows};
        write_text_atomic(rep.manifest, m.to_json().dump(1) + "\n");
    }
    return rep;
}

}  // namespace glimpse::compare
