#pragma once
// The training data: JSON lines, one example per line,
//
//   {"image": "images/a.jpg", "person_box": [x1, y1, x2, y2], "object_box": [x1, y1, x2, y2]}
//
// boxes in pixels of the ORIGINAL image (x right, y down, x1 < x2, y1 < y2,
// inside the image), the image path relative to the .jsonl file's directory
// (or absolute). Other keys are allowed and ignored (ids, labels); blank lines
// are skipped. Every other line that cannot be used exactly as written is a
// bad line, reported as `FILE:LINE: reason`: invalid JSON (NaN and Infinity
// are not JSON), a key given twice, a missing or mistyped key, a box that is
// not four finite numbers, inverted or empty, or outside the image, an image
// that does not exist or does not decode. The caller chooses: skip them (and
// report each), or reject the file (one error listing them all) — never use
// them silently.
//
// Host-only: no tensors. Images are decoded once here (a corrupt file must be
// caught before training starts), and only their sizes are kept.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/error.hpp"
#include "glimpse/core/random.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/io/json_file.hpp"

namespace glimpse::train {

enum class bad_line_policy { skip, reject };

struct example {
    std::filesystem::path image;  // resolved: the .jsonl's directory / "image"
    heatmap::box person, object;  // pixels of the original image
    std::int64_t image_w = 0, image_h = 0;
    std::filesystem::path file;  // the .jsonl it came from, and its 1-based line
    std::size_t line = 0;
};

struct bad_line {
    std::filesystem::path file;
    std::size_t line = 0;
    std::string reason;
    std::string str() const { return file.string() + ":" + std::to_string(line) + ": " + reason; }
};

struct dataset {
    std::filesystem::path file;
    std::vector<example> examples;
    std::vector<bad_line> bad;  // skipped lines (empty under bad_line_policy::reject: it throws instead)
    std::size_t blank_lines = 0;
};

namespace impl {

// The reason a line is bad, as an exception internal to parsing.
struct line_error {
    std::string reason;
};

[[noreturn]] inline void bad(std::string reason) { throw line_error{std::move(reason)}; }

inline nlohmann::json parse_line(const std::string& text) {
    // io/json_file.hpp's limits: nesting, keys given twice, NUL bytes.
    nlohmann::json j;
    try {
        j = parse_json_text(text, {});
    } catch (const glimpse::error& ex) {
        std::string why = ex.what();
        if (why.rfind("not valid JSON", 0) == 0) {
            // Python's json.dumps writes NaN / Infinity for non-finite floats; say so plainly.
            for (const char* tok : {"NaN", "Infinity"})
                if (text.find(tok) != std::string::npos)
                    bad(std::string("not valid JSON: ") + tok +
                        " is not a JSON number (a box coordinate must be a finite number)");
            if (why.find("number overflow") != std::string::npos) why += " (a box coordinate must be a finite number)";
        }
        bad(why);
    }
    if (!j.is_object()) bad(std::string("not a JSON object (a ") + j.type_name() + ")");
    return j;
}

inline heatmap::box parse_box(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end()) bad(std::string("missing \"") + key + "\"");
    const auto& a = *it;
    if (!a.is_array() || a.size() != 4)
        bad(std::string("\"") + key + "\" must be an array of 4 numbers [x1, y1, x2, y2], got " + a.dump());
    double v[4];
    for (std::size_t i = 0; i < 4; ++i) {
        if (!a[i].is_number())
            bad(std::string("\"") + key + "\" must be an array of 4 numbers [x1, y1, x2, y2], got " + a.dump());
        v[i] = a[i].get<double>();
        if (!std::isfinite(v[i]))  // 1e999 parses as infinity
            bad(std::string("\"") + key + "\" has a non-finite coordinate: " + a.dump());
    }
    return {v[0], v[1], v[2], v[3]};
}

// The image's size, decoding it fully (a truncated file must fail here, not
// after an hour of training). Cached per resolved path: many lines share an image.
struct image_probe {
    std::map<std::filesystem::path, std::pair<std::int64_t, std::int64_t>> ok;
    std::map<std::filesystem::path, std::string> failed;

    std::pair<std::int64_t, std::int64_t> size_of(const std::filesystem::path& p, const std::string& as_written) {
        if (auto it = ok.find(p); it != ok.end()) return it->second;
        if (auto it = failed.find(p); it != failed.end()) bad(it->second);
        std::error_code ec;
        std::string reason;
        if (!std::filesystem::exists(p, ec)) {
            reason = "image '" + as_written + "' (" + p.string() + "): no such file";
        } else if (!std::filesystem::is_regular_file(p, ec)) {
            reason = "image '" + as_written + "' (" + p.string() + "): not a regular file";
        } else {
            try {
                const image_u8 img = load_image(p);
                return ok[p] = {img.width, img.height};
            } catch (const glimpse::error& e) {
                reason = "image '" + as_written + "' cannot be read: " + e.what();
            }
        }
        failed[p] = reason;
        bad(reason);
    }
};

inline example parse_example(const std::string& text, const std::filesystem::path& dir, image_probe& probe) {
    const nlohmann::json j = parse_line(text);
    const auto it = j.find("image");
    if (it == j.end()) bad("missing \"image\"");
    if (!it->is_string() || it->get<std::string>().empty())
        bad("\"image\" must be a non-empty string (a path relative to the .jsonl's directory), got " + it->dump());
    const std::string as_written = it->get<std::string>();
    example e;
    e.person = parse_box(j, "person_box");
    e.object = parse_box(j, "object_box");
    const std::filesystem::path rel(as_written);
    e.image = (rel.is_absolute() ? rel : dir / rel).lexically_normal();
    const auto [w, h] = probe.size_of(e.image, as_written);
    e.image_w = w;
    e.image_h = h;
    for (const auto& [b, what] : {std::pair{e.person, "person_box"}, std::pair{e.object, "object_box"}}) {
        try {
            heatmap::validate_box(b, static_cast<double>(w), static_cast<double>(h), what);
        } catch (const glimpse::error& ex) {
            bad(ex.what());
        }
    }
    return e;
}

}  // namespace impl

// Reads and validates a .jsonl file. Under `reject`, any bad line throws one
// glimpse::error that lists every bad line (up to 50, then a count).
inline dataset load_dataset(const std::filesystem::path& jsonl, bad_line_policy policy) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(jsonl, ec))
        glimpse::detail::fail("data file '", jsonl.string(),
                              "': ", std::filesystem::exists(jsonl, ec) ? "not a regular file" : "no such file");
    std::ifstream in(jsonl, std::ios::binary);
    if (!in) glimpse::detail::fail("data file '", jsonl.string(), "': cannot open");
    dataset d;
    d.file = jsonl;
    const std::filesystem::path dir = jsonl.parent_path();
    impl::image_probe probe;
    std::string text;
    std::size_t n = 0;
    while (std::getline(in, text)) {
        ++n;
        if (n == 1 && text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);  // UTF-8 byte-order mark
        if (!text.empty() && text.back() == '\r') text.pop_back();         // CRLF files
        if (text.find_first_not_of(" \t") == std::string::npos) {
            ++d.blank_lines;
            continue;
        }
        try {
            example e = impl::parse_example(text, dir, probe);
            e.file = jsonl;
            e.line = n;
            d.examples.push_back(std::move(e));
        } catch (const impl::line_error& le) {
            d.bad.push_back({jsonl, n, le.reason});
        }
    }
    if (policy == bad_line_policy::reject && !d.bad.empty()) {
        std::ostringstream msg;
        msg << "data file '" << jsonl.string() << "': " << d.bad.size() << " bad line" << (d.bad.size() > 1 ? "s" : "")
            << " (rejected; --on-bad-line skip would skip them):";
        for (std::size_t i = 0; i < std::min<std::size_t>(d.bad.size(), 50); ++i) msg << "\n  " << d.bad[i].str();
        if (d.bad.size() > 50) msg << "\n  ... and " << d.bad.size() - 50 << " more";
        throw glimpse::error(msg.str());
    }
    if (d.examples.empty())
        glimpse::detail::fail("data file '", jsonl.string(), "': no usable example (", n, " lines, ", d.bad.size(),
                              " bad)");
    return d;
}

// Moves a fraction of `d`'s examples into a held-out set, by IMAGE (every line
// of one image goes to the same side, so held-out images are never trained on),
// chosen by a seeded shuffle: the same seed and data give the same split.
// Keeps at least one image on each side; needs two distinct images.
inline std::vector<example> split_heldout(dataset& d, double fraction, std::uint64_t seed) {
    glimpse::detail::check(fraction > 0 && fraction < 1, "held-out fraction must be in (0, 1), got ", fraction);
    std::vector<std::filesystem::path> images;
    for (const auto& e : d.examples)
        if (std::find(images.begin(), images.end(), e.image) == images.end()) images.push_back(e.image);
    glimpse::detail::check(images.size() >= 2, "held-out split: '", d.file.string(), "' has ", images.size(),
                           " distinct image(s); a split by image needs at least 2");
    rng g(seed ^ 0x68656c646f7574ull);  // "heldout": independent of the shuffling stream
    for (std::size_t i = images.size() - 1; i > 0; --i)
        std::swap(images[i], images[static_cast<std::size_t>(g.next_u64() % (i + 1))]);
    auto k = static_cast<std::size_t>(std::llround(fraction * static_cast<double>(images.size())));
    k = std::clamp<std::size_t>(k, 1, images.size() - 1);
    const std::vector<std::filesystem::path> held(images.begin(), images.begin() + static_cast<std::ptrdiff_t>(k));
    std::vector<example> train, out;
    for (auto& e : d.examples)
        (std::find(held.begin(), held.end(), e.image) != held.end() ? out : train).push_back(std::move(e));
    d.examples = std::move(train);
    return out;
}

}  // namespace glimpse::train
