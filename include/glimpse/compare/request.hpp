#pragma once
// What glimpse-compare is asked for: the task, the boxes (in pixels or Qwen's 0-1000 grid) and
// where each model comes from (a checkpoint directory, or a head directory on its base).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "glimpse/core/error.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/models/head_locator.hpp"

namespace glimpse::compare {

// ---- what the user asks for --------------------------------------------------------------

enum class task_type { referring, grounding };

inline std::string_view name(task_type t) { return t == task_type::referring ? "referring" : "grounding"; }

inline task_type parse_task_type(std::string_view s) {
    if (s == "referring") return task_type::referring;
    if (s == "grounding") return task_type::grounding;
    glimpse::detail::fail("unknown task type '", s, "' (expected referring or grounding)");
}

// pixels: original-image pixels (HICO-DET, COCO xyxy). norm1000: Qwen3-VL's
// 0..1000 grounding convention, x * W / 1000, y * H / 1000.
enum class box_format { pixels, norm1000 };

inline std::string_view name(box_format f) { return f == box_format::pixels ? "pixels" : "norm1000"; }

inline box_format parse_box_format(std::string_view s) {
    if (s == "pixels") return box_format::pixels;
    if (s == "norm1000") return box_format::norm1000;
    glimpse::detail::fail("unknown box format '", s, "' (expected pixels or norm1000)");
}

// Four numbers as typed -> a validated box in pixels of a W x H image.
inline heatmap::box to_pixel_box(const std::vector<double>& v, box_format f, double W, double H,
                                 const std::string& what) {
    glimpse::detail::check(v.size() == 4, what, " needs 4 numbers x1 y1 x2 y2, got ", v.size());
    heatmap::box b{v[0], v[1], v[2], v[3]};
    if (f == box_format::norm1000) {
        for (double c : v)
            glimpse::detail::check(std::isfinite(c) && c >= 0 && c <= 1000, what, " [", v[0], ", ", v[1], ", ", v[2],
                                   ", ", v[3], "] is outside 0..1000 (--box_format norm1000)");
        b = {v[0] * W / 1000, v[1] * H / 1000, v[2] * W / 1000, v[3] * H / 1000};
    }
    heatmap::validate_box(b, W, H, what);
    return b;
}

// A named box of the comparison (person, object, interaction).
struct named_box {
    std::string key;  // "person", "object", "interaction"
    heatmap::box b;   // original-image pixels
};

struct request {
    task_type task = task_type::referring;
    std::optional<heatmap::box> person, object;  // pixels, validated
    std::string action, object_category;
    std::string image_label;  // shown in titles (the file name)

    // The boxes the maps are computed for / reported on: person, object and, with
    // both, their union (the interaction).
    std::vector<named_box> boxes() const {
        std::vector<named_box> out;
        if (person) out.push_back({"person", *person});
        if (object) out.push_back({"object", *object});
        if (person && object) out.push_back({"interaction", heatmap::union_of(*person, *object)});
        return out;
    }
    void check() const {
        glimpse::detail::check(task != task_type::referring || person || object,
                               "the referring task needs --person_box and/or --object_box");
    }
};

// ---- where a model comes from -------------------------------------------------------------

// A model argument: a Hugging Face checkpoint directory (config.json; its own
// heatmap_head.* when present, else a seeded untrained head) or a head-only
// directory written by glimpse-train (heatmap_head.safetensors, whose encoder
// is the base model's).
struct model_source {
    std::filesystem::path given;        // as typed
    std::filesystem::path encoder_dir;  // the checkpoint with config.json
    std::filesystem::path head_dir;     // non-empty: head-only directory
    // How its head is found (models/head_locator.hpp): an explicit prefix, renamed leaves,
    // and whether a model with no head is an error (the fine-tuned model, unless the user
    // allowed an untrained one) or gets a seeded, untrained head (the base model).
    std::string head_prefix;
    models::head_name_map head_names;
    bool require_head = false;

    bool head_only() const { return !head_dir.empty(); }

    static model_source resolve(const std::filesystem::path& dir, const std::string& what,
                                const std::filesystem::path& base_encoder = {}) {
        namespace fs = std::filesystem;
        std::error_code ec;
        const std::string where = what + " '" + dir.string() + "'";
        if (!fs::exists(dir, ec)) glimpse::detail::fail(where, ": no such directory");
        if (!fs::is_directory(dir, ec)) glimpse::detail::fail(where, ": not a directory");
        model_source m;
        m.given = dir;
        if (fs::is_regular_file(dir / "config.json", ec)) {
            m.encoder_dir = dir;
            return m;
        }
        if (fs::is_regular_file(dir / "heatmap_head.safetensors", ec)) {
            glimpse::detail::check(!base_encoder.empty(), where,
                                   ": a head-only directory (heatmap_head.safetensors, no config.json) cannot be the "
                                   "base model; give the Hugging Face checkpoint it was trained on");
            m.encoder_dir = base_encoder;
            m.head_dir = dir;
            return m;
        }
        glimpse::detail::fail(where,
                              ": neither a Hugging Face checkpoint (no config.json) nor a glimpse-train head "
                              "directory (no heatmap_head.safetensors)");
    }
};

}  // namespace glimpse::compare
