#pragma once
// Shards of a batch, for array jobs: `glimpse-compare --batch F --shard K/N` computes the
// images whose position i among F's images (0-based; blank and comment lines do not count)
// has i mod N = K, and writes {out}/shards/shard-K-of-N.json, its manifest, instead of the
// CSVs. `--merge DIR...` reads the N manifests and writes what one unsharded run writes
// (compare/batch_outputs.hpp), byte for byte: the rows carry every number at full
// precision, and the summaries are computed from them in file order.
//
// Round-robin rather than contiguous slices: an image keeps its shard when lines are
// appended to the file (its index does not change), and every shard gets a mix of the
// file's images (HICO-DET's lines are grouped by image size).
//
// A manifest also holds what the run was: glimpse's version, both models' identities and
// the options (compare/fingerprint.hpp's run parts), and the batch file's hash. Shards that
// differ in any of them are refused, with the part named, rather than merged into one
// summary of two experiments.

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <regex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/compare/batch_outputs.hpp"
#include "glimpse/compare/batch_table.hpp"
#include "glimpse/compare/fingerprint.hpp"
#include "glimpse/compare/report_html.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/io/json_file.hpp"

namespace glimpse::compare {

struct shard_spec {
    std::int64_t k = 0, n = 1;

    bool whole() const { return n == 1; }
    bool owns(std::int64_t index) const { return index % n == k; }
    std::string str() const { return std::to_string(k) + "/" + std::to_string(n); }
    std::string manifest_name() const { return "shard-" + std::to_string(k) + "-of-" + std::to_string(n) + ".json"; }

    // "K/N" with 0 <= K < N (Slurm's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT for --array=0-(N-1)).
    static shard_spec parse(const std::string& s) {
        static const std::regex form("([0-9]{1,9})/([0-9]{1,9})");
        std::smatch m;
        glimpse::detail::check(std::regex_match(s, m, form), "--shard '", s,
                               "': expected K/N, e.g. 0/4 (the K-th of N shards, K from 0 to N-1)");
        const shard_spec r{std::stoll(m[1].str()), std::stoll(m[2].str())};
        glimpse::detail::check(r.n >= 1 && r.k < r.n, "--shard '", s, "': K must be in 0..N-1 (", r.n, " shards are 0/",
                               r.n, " to ", r.n - 1, "/", r.n, ")");
        return r;
    }
};

namespace detail {

inline nlohmann::ordered_json row_json(const image_row& r) {
    using oj = nlohmann::ordered_json;
    oj values = oj::object(), uniform = oj::object(), boxes = oj::object();
    for (const auto& [k, v] : r.values) values[k] = {v.first, v.second};
    for (const auto& [k, v] : r.uniform_mass) uniform[k] = v;
    for (const auto& [k, b] : r.boxes) boxes[k] = {b[0], b[1], b[2], b[3]};
    return {{"index", r.index},
            {"line", r.line},
            {"id", r.id},
            {"image", r.image},
            {"task", std::string(name(r.task))},
            {"status", r.status},
            {"action", r.action},
            {"object_category", r.object_category},
            {"width", r.width},
            {"height", r.height},
            {"boxes", boxes},
            {"values", values},
            {"uniform_mass", uniform}};
}

// JSON has no NaN: a value nlohmann wrote as null comes back as one.
inline double number_or_nan(const nlohmann::json& v) {
    return v.is_null() ? std::numeric_limits<double>::quiet_NaN() : v.get<double>();
}

inline image_row row_of_json(const nlohmann::json& j) {
    image_row r;
    r.index = j.at("index").get<std::int64_t>();
    r.line = j.at("line").get<std::int64_t>();
    r.id = j.at("id").get<std::string>();
    r.image = j.at("image").get<std::string>();
    r.task = parse_task_type(j.at("task").get<std::string>());
    r.status = j.at("status").get<std::string>();
    r.action = j.at("action").get<std::string>();
    r.object_category = j.at("object_category").get<std::string>();
    r.width = j.at("width").get<std::int64_t>();
    r.height = j.at("height").get<std::int64_t>();
    for (auto it = j.at("boxes").begin(); it != j.at("boxes").end(); ++it) {
        std::array<double, 4> b{};
        glimpse::detail::check(it.value().is_array() && it.value().size() == 4, "box '", it.key(),
                               "' is not [x1, y1, x2, y2]");
        for (std::size_t i = 0; i < 4; ++i) b[i] = number_or_nan(it.value()[i]);
        r.boxes[it.key()] = b;
    }
    for (auto it = j.at("values").begin(); it != j.at("values").end(); ++it) {
        glimpse::detail::check(it.value().is_array() && it.value().size() == 2, "value '", it.key(),
                               "' is not [base, fine-tuned]");
        r.values[it.key()] = {number_or_nan(it.value()[0]), number_or_nan(it.value()[1])};
    }
    for (auto it = j.at("uniform_mass").begin(); it != j.at("uniform_mass").end(); ++it)
        r.uniform_mass[it.key()] = number_or_nan(it.value());
    return r;
}

}  // namespace detail

struct shard_manifest {
    shard_spec shard;
    std::string batch_path, batch_hash;
    std::int64_t images = 0;  // in the whole batch file
    nlohmann::ordered_json run;
    report_meta report;
    std::vector<image_row> rows;  // this shard's images, in file order

    nlohmann::ordered_json to_json() const {
        using oj = nlohmann::ordered_json;
        oj facts = oj::array();
        for (const auto& [k, v] : report.facts) facts.push_back({k, v});
        oj rs = oj::array();
        for (const auto& r : rows) rs.push_back(detail::row_json(r));
        return {{"tool", "glimpse-compare"},
                {"what",
                 "one shard of a --batch run: its images' numbers; glimpse-compare --merge folds the N shards into "
                 "the CSVs and index.html of the whole file"},
                {"shard", {{"k", shard.k}, {"n", shard.n}}},
                {"batch", {{"path", batch_path}, {"hash", batch_hash}, {"images", images}}},
                {"run", run},
                {"report", {{"title", report.title}, {"facts", facts}}},
                {"rows", rs}};
    }

    // `where` names the file in errors.
    static shard_manifest from_json(const nlohmann::json& j, const std::string& where) {
        try {
            glimpse::detail::check(j.is_object() && j.value("tool", "") == "glimpse-compare" && j.contains("shard"),
                                   "not a glimpse-compare shard manifest");
            shard_manifest m;
            m.shard = {j.at("shard").at("k").get<std::int64_t>(), j.at("shard").at("n").get<std::int64_t>()};
            glimpse::detail::check(m.shard.n >= 1 && m.shard.k >= 0 && m.shard.k < m.shard.n, "shard ", m.shard.str(),
                                   " is not K/N with 0 <= K < N");
            m.batch_path = j.at("batch").at("path").get<std::string>();
            m.batch_hash = j.at("batch").at("hash").get<std::string>();
            m.images = j.at("batch").at("images").get<std::int64_t>();
            glimpse::detail::check(m.images >= 1, "batch.images must be at least 1");
            m.run = j.at("run");
            m.report.title = j.at("report").at("title").get<std::string>();
            for (const auto& f : j.at("report").at("facts"))
                m.report.facts.emplace_back(f.at(0).get<std::string>(), f.at(1).get<std::string>());
            for (const auto& r : j.at("rows")) m.rows.push_back(detail::row_of_json(r));
            return m;
        } catch (const glimpse::error& e) {
            glimpse::detail::fail(where, ": ", e.what());
        } catch (const std::exception& e) {
            glimpse::detail::fail(where, ": not a valid shard manifest (", e.what(), ")");
        }
    }
};

struct merge_result {
    std::vector<image_row> rows;  // every image of the file, in file order
    std::vector<task_summary> summaries;
    std::vector<std::filesystem::path> manifests;  // in shard order
    shard_manifest first;                          // shard 0's run and report facts (rows moved out)
};

namespace detail {

// What differs between two shards' runs, by part ("fine-tuned head", "option alpha", ...).
inline std::vector<std::string> run_differences(const nlohmann::json& a, const nlohmann::json& b) {
    static constexpr part_label labels[] = {
        {"version", "glimpse version"},
        {"defaults", "defaults (--task_type, --box_format, --action, ...)"},
        {"base_encoder", "base encoder"},
        {"base_head", "base head"},
        {"finetuned_encoder", "fine-tuned encoder"},
        {"finetuned_head", "fine-tuned head"},
    };
    std::vector<std::string> why = differing_parts(a, b, labels);
    if (why.empty() && a != b) why.emplace_back("run record");
    return why;
}

}  // namespace detail

// Reads every {dir}/shards/shard-K-of-N.json of `dirs`, checks that they are the N shards
// of one run (each K once, the same N, batch file, version, models and options; every image
// of the file in exactly one), and writes the CSVs and index.html into `output_dir`.
inline merge_result merge_shards(const std::vector<std::filesystem::path>& dirs,
                                 const std::filesystem::path& output_dir) {
    namespace fs = std::filesystem;
    glimpse::detail::check(!dirs.empty(), "--merge: give the output directories of the shards");
    static const std::regex name_form("shard-([0-9]{1,9})-of-([0-9]{1,9})\\.json");
    std::map<std::int64_t, std::vector<std::pair<fs::path, std::int64_t>>> by_n;  // n -> (file, k)
    for (const auto& d : dirs) {
        std::error_code ec;
        glimpse::detail::check(fs::is_directory(d, ec), "--merge '", d.string(), "': not a directory");
        const fs::path sd = d / "shards";
        std::size_t found = 0;
        if (fs::is_directory(sd, ec))
            for (const auto& e : fs::directory_iterator(sd, ec)) {
                std::smatch m;
                const std::string fn = e.path().filename().string();
                if (!std::regex_match(fn, m, name_form)) continue;
                by_n[std::stoll(m[2].str())].emplace_back(e.path(), std::stoll(m[1].str()));
                ++found;
            }
        glimpse::detail::check(found > 0, "--merge '", d.string(), "': no shard manifests in it (", sd.string(),
                               "/shard-K-of-N.json, written by glimpse-compare --batch ... --shard K/N)");
    }
    if (by_n.size() > 1) {
        std::string ns;
        for (const auto& [n, v] : by_n) ns += (ns.empty() ? "" : ", ") + std::to_string(n);
        glimpse::detail::fail("--merge: shards of different runs: N = ", ns,
                              " (remove the manifests of the run you do not want from shards/)");
    }
    const std::int64_t n = by_n.begin()->first;
    auto& files = by_n.begin()->second;
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    for (std::size_t i = 1; i < files.size(); ++i)
        glimpse::detail::check(files[i].second != files[i - 1].second, "--merge: shard ", files[i].second, "/", n,
                               " is there twice: '", files[i - 1].first.string(), "' and '", files[i].first.string(),
                               "'");
    std::string missing;
    for (std::int64_t k = 0, i = 0; k < n; ++k) {
        if (i < static_cast<std::int64_t>(files.size()) && files[static_cast<std::size_t>(i)].second == k)
            ++i;
        else
            missing += (missing.empty() ? "" : ", ") + std::to_string(k) + "/" + std::to_string(n);
    }
    glimpse::detail::check(missing.empty(), "--merge: missing shard(s) ", missing,
                           " (not run yet, still running, or stopped before writing their manifest)");

    merge_result out;
    std::vector<char> seen;
    for (const auto& [file, k] : files) {
        shard_manifest m =
            shard_manifest::from_json(parse_json_file(file, "shard manifest"), "'" + file.string() + "'");
        const std::string where = "--merge: '" + file.string() + "'";
        glimpse::detail::check(m.shard.k == k && m.shard.n == n, where, ": holds shard ", m.shard.str(),
                               ", its name says ", k, "/", n);
        std::vector<image_row> rows = std::move(m.rows);
        m.rows.clear();
        if (out.manifests.empty()) {
            out.first = m;
            seen.assign(static_cast<std::size_t>(m.images), 0);
        } else {
            glimpse::detail::check(m.batch_hash == out.first.batch_hash && m.images == out.first.images, where,
                                   ": another batch file ('", m.batch_path, "', ", m.images, " images) than shard 0/",
                                   n, "'s ('", out.first.batch_path, "', ", out.first.images, " images)");
            const auto why = detail::run_differences(out.first.run, m.run);
            if (!why.empty()) {
                std::string w;
                for (const auto& x : why) w += (w.empty() ? "" : ", ") + x;
                glimpse::detail::fail(where, ": shard ", m.shard.str(), " was run differently from shard 0/", n, ": ",
                                      w, " differ");
            }
        }
        for (auto& r : rows) {
            glimpse::detail::check(r.index >= 0 && r.index < m.images && m.shard.owns(r.index), where, ": image ",
                                   r.index, " ('", r.id, "') is not one of shard ", m.shard.str(), "'s");
            glimpse::detail::check(!seen[static_cast<std::size_t>(r.index)], where, ": image ", r.index,
                                   " is there twice");
            seen[static_cast<std::size_t>(r.index)] = 1;
            out.rows.push_back(std::move(r));
        }
        out.manifests.push_back(file);
    }
    const auto absent = std::count(seen.begin(), seen.end(), 0);
    glimpse::detail::check(absent == 0, "--merge: ", absent, " of the batch file's ", seen.size(),
                           " images are in no shard's manifest");
    std::sort(out.rows.begin(), out.rows.end(),
              [](const image_row& a, const image_row& b) { return a.index < b.index; });
    std::error_code ec;
    fs::create_directories(output_dir, ec);
    if (ec) glimpse::detail::fail("--output_dir '", output_dir.string(), "': ", ec.message());
    out.summaries = write_batch_tables(output_dir, out.rows, out.first.report);
    return out;
}

}  // namespace glimpse::compare
