#pragma once
// The fingerprint of one comparison result: a hash over everything that
// determines its numbers and its figure, stored with its readable parts in the
// image's JSON, so that a resumed batch recomputes an image whose inputs
// changed instead of reporting old numbers under a new model's name.
//
// Parts (each a JSON value; the hash is FNV-1a 64 of their compact dump):
//   version            glimpse's version (a new release may compute differently)
//   task               referring | grounding
//   image              file name, size in bytes, mtime (ns since the file clock's epoch)
//   boxes              person / object in pixels of the original image, AFTER the
//                      box_format conversion (the same pixels typed as norm1000 match)
//   labels             action, object_category (titles, JSON)
//   options            every option that changes numbers or the figure: matmul
//                      precision, device kind (cpu | cuda: the index does not change
//                      results), the figure options. Not --seed: it only reaches the
//                      numbers through a seeded head, whose loaded tensors are hashed.
//                      Not --threads (OpenMP sums may round differently; < 1e-6).
//   base_encoder, finetuned_encoder
//                      the encoder directory's config.json, preprocessor_config.json,
//                      *.safetensors and *.safetensors.index.json: name, size, mtime
//                      (hashing gigabytes of tower weights per run would cost more
//                      than many images)
//   base_head, finetuned_head
//                      FNV-1a 64 of the LOADED head: every parameter the head's
//                      visit() yields, downloaded from the backend — name, dtype,
//                      shape, bytes. The same for a seeded head (its seed), a
//                      head-only directory and a head inside a checkpoint, wherever
//                      the loader found it; paths do not enter, contents do.
//
// FNV-1a rather than a cryptographic hash: it detects changes, it does not
// authenticate; 64 bits make an accidental collision negligible.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/compare/comparison_figure.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/fnv1a64.hpp"
#include "glimpse/version.hpp"

namespace glimpse::compare {

// {"name", "bytes", "mtime_ns"} of a file; a missing file is refused.
inline nlohmann::ordered_json file_stamp(const std::filesystem::path& p) {
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(p, ec);
    if (ec) glimpse::detail::fail("'", p.string(), "': ", ec.message());
    const auto t = std::filesystem::last_write_time(p, ec);
    if (ec) glimpse::detail::fail("'", p.string(), "': ", ec.message());
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    return {{"name", p.filename().string()},
            {"bytes", static_cast<std::uint64_t>(bytes)},
            {"mtime_ns", static_cast<std::int64_t>(ns)}};
}

// The files of a checkpoint directory that the encoder is loaded from, by name.
inline nlohmann::ordered_json encoder_identity(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (!e.is_regular_file(ec)) continue;
        const std::string n = e.path().filename().string();
        const auto ends = [&](std::string_view s) {
            return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
        };
        if (n == "config.json" || n == "preprocessor_config.json" || ends(".safetensors") ||
            ends(".safetensors.index.json"))
            files.push_back(e.path());
    }
    if (ec) glimpse::detail::fail("model directory '", dir.string(), "': ", ec.message());
    std::sort(files.begin(), files.end());
    nlohmann::ordered_json a = nlohmann::ordered_json::array();
    for (const auto& f : files) a.push_back(file_stamp(f));
    return {{"files", a}};
}

// The loaded head's parameters, downloaded and hashed (see the top of the file).
template <Backend B>
nlohmann::ordered_json head_identity(B& be, const models::qwen_encoder<B>& enc) {
    fnv1a64 h;
    std::int64_t tensors = 0, values = 0;
    std::visit(
        [&](const auto& integ) {
            integ.visit([&](const std::string& name, const auto& t) {
                const tensor host = be.download(t.cv());
                h.add(name);
                h.add(glimpse::name(host.type()));
                h.add(host.shape().str());
                h.add(host.data(), host.nbytes());
                ++tensors;
                values += host.numel();
            });
        },
        enc.head());
    return {{"tensors", tensors}, {"values", values}, {"fnv1a64", h.hex()}};
}

// Every figure option (a new one belongs here, or a changed value goes unnoticed).
inline nlohmann::ordered_json figure_identity(const figure_options& f) {
    const char* scale = f.scale == color_scale::column ? "column" : f.scale == color_scale::panel ? "panel" : "figure";
    return {{"color_scale", scale},
            {"panel_size", f.panel_long_side},
            {"alpha", f.alpha},
            {"interpolation", f.interp == viz::interpolation::nearest ? "nearest" : "bilinear"},
            {"model_note", f.model_note}};
}

// What one run shares between its images: both models and the options.
struct run_identity {
    nlohmann::ordered_json base_encoder, base_head, finetuned_encoder, finetuned_head, options;

    // Appended to `parts` in the order the fingerprint's hash has always seen them.
    void add_to(nlohmann::ordered_json& parts) const {
        parts["options"] = options;
        parts["base_encoder"] = base_encoder;
        parts["base_head"] = base_head;
        parts["finetuned_encoder"] = finetuned_encoder;
        parts["finetuned_head"] = finetuned_head;
    }
};

// `precision`: the matmul precision's name (f32 | bf16); `device_kind`: cpu | cuda.
template <Backend B>
run_identity identify(B& be, const comparer<B>& c, const model_source& base, const model_source& finetuned,
                      const std::string& precision, const std::string& device_kind, const figure_options& fig) {
    run_identity r;
    r.base_encoder = encoder_identity(base.encoder_dir);
    r.finetuned_encoder = encoder_identity(finetuned.encoder_dir);
    r.base_head = head_identity(be, c.base());
    r.finetuned_head = head_identity(be, c.finetuned());
    r.options = {{"precision", precision}, {"device", device_kind}};
    const auto f = figure_identity(fig);
    for (auto it = f.begin(); it != f.end(); ++it) r.options[it.key()] = it.value();
    return r;
}

struct fingerprint {
    std::string hash;  // "fnv1a64:<16 hex digits>"
    nlohmann::ordered_json parts;

    nlohmann::ordered_json to_json() const {
        return {{"hash", hash},
                {"what",
                 "FNV-1a 64 of the compact dump of `parts`: everything that determines this result; a resumed "
                 "--batch recomputes the image when it differs"},
                {"parts", parts}};
    }
};

// `req`: the validated request (boxes in pixels); `image`: the file it was decoded from.
inline fingerprint make_fingerprint(const run_identity& id, const request& req, const std::filesystem::path& image) {
    using oj = nlohmann::ordered_json;
    oj boxes = oj::object();
    if (req.person) boxes["person"] = box_json(*req.person);
    if (req.object) boxes["object"] = box_json(*req.object);
    fingerprint f;
    f.parts = {{"version", GLIMPSE_VERSION_STRING},
               {"task", std::string(name(req.task))},
               {"image", file_stamp(image)},
               {"boxes", boxes},
               {"labels", {{"action", req.action}, {"object_category", req.object_category}}}};
    id.add_to(f.parts);
    fnv1a64 h;
    h.add(f.parts.dump());
    f.hash = "fnv1a64:" + h.hex();
    return f;
}

inline bool has_fingerprint(const nlohmann::json& stored) {
    return stored.is_object() && stored.contains("hash") && stored["hash"].is_string() && stored.contains("parts") &&
           stored["parts"].is_object();
}

namespace detail {

using part_label = std::pair<const char*, const char*>;  // key in the parts, what to call it

// What differs between two sets of parts: the label of each listed part whose value
// differs (absent counts as a value), then "option <name>" for each option that differs
// (`now`'s in their order, then those only `was` has). A non-object counts as empty.
inline std::vector<std::string> differing_parts(const nlohmann::json& was, const nlohmann::json& now,
                                                std::span<const part_label> labels) {
    const nlohmann::json none = nlohmann::json::object(), absent;
    const auto obj = [&](const nlohmann::json& j) -> const nlohmann::json& { return j.is_object() ? j : none; };
    const nlohmann::json &w = obj(was), &n = obj(now);
    const auto options = [&](const nlohmann::json& j) -> const nlohmann::json& {
        return j.contains("options") ? obj(j["options"]) : none;
    };
    const nlohmann::json &wo = options(w), &no = options(n);
    std::vector<std::string> why;
    for (const auto& [key, label] : labels)
        if (w.value(key, absent) != n.value(key, absent)) why.emplace_back(label);
    for (auto it = no.begin(); it != no.end(); ++it)
        if (!wo.contains(it.key()) || wo[it.key()] != it.value()) why.push_back("option " + it.key());
    for (auto it = wo.begin(); it != wo.end(); ++it)
        if (!no.contains(it.key())) why.push_back("option " + it.key());
    return why;
}

}  // namespace detail

// Why a stored result does not match `current`: one reason per part that
// differs ("fine-tuned head changed", "option alpha changed", ...); empty when
// it matches. `stored`: the JSON's "fingerprint" member (null when absent).
inline std::vector<std::string> fingerprint_changes(const nlohmann::json& stored, const fingerprint& current) {
    if (!has_fingerprint(stored)) return {"no fingerprint (written before glimpse-compare stored one)"};
    if (stored["hash"] == current.hash) return {};
    static constexpr detail::part_label labels[] = {
        {"version", "glimpse version"},
        {"task", "task"},
        {"image", "image file"},
        {"boxes", "boxes"},
        {"labels", "action/object_category"},
        {"base_encoder", "base encoder"},
        {"base_head", "base head"},
        {"finetuned_encoder", "fine-tuned encoder"},
        {"finetuned_head", "fine-tuned head"},
    };
    std::vector<std::string> why =
        detail::differing_parts(stored["parts"], nlohmann::json::parse(current.parts.dump()), labels);
    for (auto& w : why) w += " changed";
    if (why.empty()) why.emplace_back("fingerprint changed");  // same parts, another hash: a changed scheme
    return why;
}

}  // namespace glimpse::compare
