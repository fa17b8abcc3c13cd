#pragma once
// The vision-tower configuration of a Qwen2.5-VL or Qwen3-VL checkpoint, read
// from the model directory's config.json (`model_type` at the top level, the
// tower's keys under "vision_config"; shared/docs/qwen_vision_reference.md §1).
//
// Every value comes from the file (pitfall 3: the transformers class defaults —
// hidden_size 3584, out_hidden_size 3584 — are not the checkpoints' values).
// The only defaults are those transformers itself applies to keys real files
// may lack: in_channels (original Qwen2.5 files spell it `in_chans`; only
// `in_channels` is read, default 3) and rope_parameters.rope_theta (10000).
// The norm eps is hard-coded to 1e-6 by both towers (no key).

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "glimpse/core/error.hpp"
#include "glimpse/io/json_file.hpp"

namespace glimpse::models {

enum class qwen_family { qwen2_5_vl, qwen3_vl };

constexpr std::string_view name(qwen_family f) noexcept {
    return f == qwen_family::qwen2_5_vl ? "qwen2_5_vl" : "qwen3_vl";
}

struct qwen_vision_config {
    qwen_family family = qwen_family::qwen2_5_vl;
    std::int64_t depth = 0;
    std::int64_t hidden_size = 0;               // D
    std::int64_t num_heads = 0;                 // H; head dim D / H
    std::int64_t intermediate_size = 0;         // block MLP width
    std::int64_t patch_size = 0;                // p
    std::int64_t temporal_patch_size = 0;       // T
    std::int64_t spatial_merge_size = 0;        // m (2 in every released model)
    std::int64_t in_channels = 3;               // C
    std::int64_t window_size = 0;               // Qwen2.5: pixels (112); Qwen3: 0 (no windows)
    std::vector<int> fullatt_block_indexes;     // Qwen2.5
    std::int64_t out_hidden_size = 0;           // merger output width (= LLM width)
    std::int64_t num_position_embeddings = 0;   // Qwen3: n*n learned table
    std::vector<int> deepstack_visual_indexes;  // Qwen3
    std::string hidden_act;
    float rope_theta = 10000.0f;
    float eps = 1e-6f;

    std::int64_t head_dim() const { return hidden_size / num_heads; }
    std::int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
    std::int64_t merge_group() const { return spatial_merge_size * spatial_merge_size; }
    // Qwen2.5 window side in merged tokens: window_size / (m p) (112 / 28 = 4).
    std::int64_t window_merged() const { return window_size > 0 ? window_size / (spatial_merge_size * patch_size) : 0; }
    // Qwen3: side n of the n x n position table.
    std::int64_t pos_side() const {
        return static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(num_position_embeddings))));
    }

    // Parses the top-level config object (the whole config.json). `where` names
    // the file in error messages.
    static qwen_vision_config from_json(const nlohmann::json& top, const std::string& where);

    // Reads `<model_dir>/config.json` (or the file itself when given a file).
    static qwen_vision_config load(const std::filesystem::path& model_dir) {
        const auto file = std::filesystem::is_directory(model_dir) ? model_dir / "config.json" : model_dir;
        const std::string where = "qwen config '" + file.string() + "'";
        if (!std::filesystem::exists(file)) glimpse::detail::fail(where, ": no such file");
        return from_json(glimpse::parse_json_file(file, where), where);
    }
};

namespace detail::qwen_cfg {

inline const nlohmann::json& require(const nlohmann::json& obj, const char* key, const std::string& where,
                                     const char* scope) {
    auto it = obj.find(key);
    if (it == obj.end()) glimpse::detail::fail(where, ": missing key \"", scope, key, "\"");
    return *it;
}

// Every size read from config.json is bounded before any arithmetic on it: the
// products the towers form (in_channels * temporal * patch^2, merge^2 * hidden,
// the position table's side squared, window / (merge * patch)) then stay far
// inside int64 and no hostile value can wrap one of them to 0 and divide by it.
// The bounds are 10-100x the largest released Qwen vision towers (hidden 1280,
// MLP 5120, depth 32, patch 16, 2304 position embeddings).
inline std::int64_t max_of(const char* key) {
    const std::string_view k(key);
    if (k == "depth") return 1024;
    if (k == "patch_size" || k == "temporal_patch_size" || k == "spatial_merge_size" || k == "in_channels") return 256;
    if (k == "num_heads") return 4096;
    if (k == "window_size") return 1 << 16;
    if (k == "num_position_embeddings") return 1 << 24;
    return 1 << 20;  // hidden_size, intermediate_size, out_hidden_size
}

inline std::int64_t positive_int(const nlohmann::json& obj, const char* key, const std::string& where) {
    const auto& v = require(obj, key, where, "vision_config.");
    if (!v.is_number_integer())
        glimpse::detail::fail(where, ": key \"vision_config.", key, "\" must be an integer, got ", v.type_name());
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(max_of(key)))
        glimpse::detail::fail(where, ": key \"vision_config.", key, "\" is ", v.get<std::uint64_t>(), ", more than ",
                              max_of(key));
    const auto x = v.get<std::int64_t>();
    if (x <= 0) glimpse::detail::fail(where, ": key \"vision_config.", key, "\" must be positive, got ", x);
    if (x > max_of(key))
        glimpse::detail::fail(where, ": key \"vision_config.", key, "\" is ", x, ", more than ", max_of(key));
    return x;
}

inline std::vector<int> index_list(const nlohmann::json& obj, const char* key, const std::string& where,
                                   std::int64_t depth) {
    const auto& v = require(obj, key, where, "vision_config.");
    if (!v.is_array())
        glimpse::detail::fail(where, ": key \"vision_config.", key, "\" must be a list of block indexes, got ",
                              v.type_name());
    std::vector<int> out;
    for (const auto& e : v) {
        if (!e.is_number_integer())
            glimpse::detail::fail(where, ": key \"vision_config.", key, "\" holds a ", e.type_name(),
                                  ", not an integer");
        const auto i = e.get<std::int64_t>();
        if (i < 0 || i >= depth)
            glimpse::detail::fail(where, ": key \"vision_config.", key, "\" names block ", i, " of a ", depth,
                                  "-block tower");
        out.push_back(static_cast<int>(i));
    }
    return out;
}

}  // namespace detail::qwen_cfg

inline qwen_vision_config qwen_vision_config::from_json(const nlohmann::json& top, const std::string& where) {
    namespace qc = detail::qwen_cfg;
    if (!top.is_object()) glimpse::detail::fail(where, ": not a JSON object");
    const auto& mt = qc::require(top, "model_type", where, "");
    if (!mt.is_string()) glimpse::detail::fail(where, ": key \"model_type\" must be a string, got ", mt.type_name());
    qwen_vision_config c;
    const auto& model_type = mt.get_ref<const std::string&>();
    if (model_type == "qwen2_5_vl")
        c.family = qwen_family::qwen2_5_vl;
    else if (model_type == "qwen3_vl")
        c.family = qwen_family::qwen3_vl;
    else
        glimpse::detail::fail(where, ": unsupported model_type \"", model_type, "\" (expected qwen2_5_vl or qwen3_vl)");

    const auto& v = qc::require(top, "vision_config", where, "");
    if (!v.is_object()) glimpse::detail::fail(where, ": key \"vision_config\" must be an object, got ", v.type_name());

    c.depth = qc::positive_int(v, "depth", where);
    c.hidden_size = qc::positive_int(v, "hidden_size", where);
    c.num_heads = qc::positive_int(v, "num_heads", where);
    c.intermediate_size = qc::positive_int(v, "intermediate_size", where);
    c.patch_size = qc::positive_int(v, "patch_size", where);
    c.temporal_patch_size = qc::positive_int(v, "temporal_patch_size", where);
    c.spatial_merge_size = qc::positive_int(v, "spatial_merge_size", where);
    c.out_hidden_size = qc::positive_int(v, "out_hidden_size", where);
    c.in_channels = v.contains("in_channels") ? qc::positive_int(v, "in_channels", where) : 3;

    const auto& act = qc::require(v, "hidden_act", where, "vision_config.");
    if (!act.is_string())
        glimpse::detail::fail(where, ": key \"vision_config.hidden_act\" must be a string, got ", act.type_name());
    c.hidden_act = act.get<std::string>();

    if (auto rp = v.find("rope_parameters"); rp != v.end() && !rp->is_null()) {
        if (!rp->is_object())
            glimpse::detail::fail(where, ": key \"vision_config.rope_parameters\" must be an object, got ",
                                  rp->type_name());
        if (auto th = rp->find("rope_theta"); th != rp->end()) {
            if (!th->is_number())
                glimpse::detail::fail(where,
                                      ": key \"vision_config.rope_parameters.rope_theta\" must be a number, got ",
                                      th->type_name());
            c.rope_theta = th->get<float>();
        }
        if (auto ty = rp->find("rope_type"); ty != rp->end() && !(ty->is_string() && ty->get<std::string>() == "axial"))
            glimpse::detail::fail(where, ": key \"vision_config.rope_parameters.rope_type\" must be \"axial\", got ",
                                  ty->dump());
    }

    if (c.family == qwen_family::qwen2_5_vl) {
        c.window_size = qc::positive_int(v, "window_size", where);
        c.fullatt_block_indexes = qc::index_list(v, "fullatt_block_indexes", where, c.depth);
        if (c.hidden_act != "silu")
            glimpse::detail::fail(where, ": vision_config.hidden_act \"", c.hidden_act,
                                  "\" is not supported for qwen2_5_vl (its blocks are SwiGLU: \"silu\")");
        if (c.window_size % (c.spatial_merge_size * c.patch_size) != 0)
            glimpse::detail::fail(where, ": vision_config.window_size ", c.window_size,
                                  " is not a multiple of merge x patch (", c.spatial_merge_size * c.patch_size, ")");
    } else {
        c.num_position_embeddings = qc::positive_int(v, "num_position_embeddings", where);
        c.deepstack_visual_indexes = qc::index_list(v, "deepstack_visual_indexes", where, c.depth);
        if (c.hidden_act != "gelu_pytorch_tanh")
            glimpse::detail::fail(where, ": vision_config.hidden_act \"", c.hidden_act,
                                  "\" is not supported for qwen3_vl (its blocks use \"gelu_pytorch_tanh\")");
        if (c.pos_side() * c.pos_side() != c.num_position_embeddings)
            glimpse::detail::fail(where, ": vision_config.num_position_embeddings ", c.num_position_embeddings,
                                  " is not a square (the table is n x n)");
    }
    if (c.hidden_size % c.num_heads != 0 || c.head_dim() % 4 != 0)
        glimpse::detail::fail(where, ": vision_config.hidden_size ", c.hidden_size, " / num_heads ", c.num_heads,
                              " must give a head dim that is a multiple of 4 (2-D rotary)");
    return c;
}

}  // namespace glimpse::models
