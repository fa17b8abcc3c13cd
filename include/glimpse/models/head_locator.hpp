#pragma once
// Finding a heatmap head inside a checkpoint, wherever a trainer put it.
//
// A PyTorch trainer saves the whole model (sharded: model-0000k-of-0000n.safetensors +
// model.safetensors.index.json) with the head's tensors under ITS module path —
// `model.visual.heatmap_head.*`, `visual.spatial_linking.block.*`, ... — not under glimpse's
// own `heatmap_head.*`. glimpse names a head block's tensors by LEAF, relative to a prefix
// (docs/weights.md): norm1.weight, attn.q_proj.weight, ..., mlp.linear_fc2.bias. The head is
// found by structure: for any prefix P, `P.attn.q_proj.weight` of shape [D, 1] (nn.Linear(1, D))
// or [1, D] (the seed's "(1, hidden_size)" parameter), beside every other leaf of the block at
// the encoder's width D and MLP width I. A trainer that spelt the leaves differently is read
// through a name map (head_name_map, a JSON file); a checkpoint with several heads needs an
// explicit prefix.
//
// Nothing here guesses: one complete candidate is the head; none is "no head" (the caller
// decides whether that is an error); an incomplete or mis-shaped candidate, a head of the other
// block kind or of another width, or two complete heads, is an error that lists every problem.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/io/safetensors.hpp"

namespace glimpse::models {

// The block kind decides the norms' biases and the MLP's leaves (heatmap/head_block.hpp).
enum class head_kind { rms_swiglu, ln_gelu_tanh };

inline std::string_view name(head_kind k) { return k == head_kind::rms_swiglu ? "rms_swiglu" : "ln_gelu_tanh"; }

// What a human reads: which encoder's blocks a kind follows.
inline std::string_view describe(head_kind k) {
    return k == head_kind::rms_swiglu ? "RMSNorm + SwiGLU MLP, as Qwen2.5-VL's blocks"
                                      : "LayerNorm + GELU-tanh MLP, as Qwen3-VL's blocks";
}

// One tensor of a head block: its leaf name (glimpse's spelling) and shape ([out, in] for
// Linear weights). The q_proj weight also accepts [1, D] (see the top of the file).
struct head_leaf {
    std::string leaf;
    shape expected;
};

// Every tensor a head block of kind `k` has, in heatmap_head::visit order (a test holds this
// table to visit()). D: encoder width; I: MLP width.
inline std::vector<head_leaf> head_leaves(head_kind k, std::int64_t D, std::int64_t I) {
    const bool ln = k == head_kind::ln_gelu_tanh;
    std::vector<head_leaf> v;
    v.push_back({"norm1.weight", shape{D}});
    if (ln) v.push_back({"norm1.bias", shape{D}});
    for (const char* p : {"q_proj", "k_proj", "v_proj", "proj"}) {
        const std::string s = p;
        v.push_back({"attn." + s + ".weight", s == "q_proj" ? shape{D, 1} : shape{D, D}});
        v.push_back({"attn." + s + ".bias", shape{D}});
    }
    v.push_back({"norm2.weight", shape{D}});
    if (ln) v.push_back({"norm2.bias", shape{D}});
    if (ln) {
        v.push_back({"mlp.linear_fc1.weight", shape{I, D}});
        v.push_back({"mlp.linear_fc1.bias", shape{I}});
        v.push_back({"mlp.linear_fc2.weight", shape{D, I}});
        v.push_back({"mlp.linear_fc2.bias", shape{D}});
    } else {
        for (const char* p : {"gate_proj", "up_proj"}) {
            v.push_back({std::string("mlp.") + p + ".weight", shape{I, D}});
            v.push_back({std::string("mlp.") + p + ".bias", shape{I}});
        }
        v.push_back({"mlp.down_proj.weight", shape{D, I}});
        v.push_back({"mlp.down_proj.bias", shape{D}});
    }
    return v;
}

inline constexpr std::string_view q_weight_leaf = "attn.q_proj.weight";

// The file a head-only directory holds its head in (what glimpse-train writes).
inline constexpr std::string_view head_file_name = "heatmap_head.safetensors";

// How a trainer named the leaves, when not as glimpse does. The JSON file (docs/weights.md):
//   {"prefix": "model.visual.hm",                      (optional: the head's prefix)
//    "leaves": {"attn": "cross_attn",                   (a module: every attn.* leaf)
//               "attn.proj": "attn.out_proj",           (longer entries win)
//               "attn.q_proj.weight": "attn.query"}}    (one tensor)
// Keys are glimpse leaf names or dotted module prefixes of them; values the checkpoint's.
struct head_name_map {
    std::string prefix;                         // empty: not given
    std::map<std::string, std::string> leaves;  // glimpse (module or leaf) -> checkpoint
    std::filesystem::path file;                 // where it was read from (messages)

    bool empty() const { return leaves.empty(); }

    // The checkpoint's spelling of a glimpse leaf: the longest key that is the leaf or a
    // dotted module prefix of it, replaced by its value.
    std::string mapped(const std::string& leaf) const {
        std::string best_key;
        for (const auto& [k, v] : leaves)
            if ((leaf == k || (leaf.size() > k.size() && leaf.compare(0, k.size(), k) == 0 && leaf[k.size()] == '.')) &&
                k.size() > best_key.size())
                best_key = k;
        if (best_key.empty()) return leaf;
        const std::string& to = leaves.at(best_key);
        const std::string rest = leaf.substr(best_key.size());  // "" or ".weight", ...
        return to.empty() ? rest.substr(rest.empty() ? 0 : 1) : to + rest;
    }

    static head_name_map from_json(const std::filesystem::path& file) {
        const std::string where = "head name map '" + file.string() + "'";
        const nlohmann::json j = glimpse::parse_json_file(file, where);
        glimpse::detail::check(j.is_object(), where, ": expected a JSON object {\"prefix\": ..., \"leaves\": {...}}");
        head_name_map m;
        m.file = file;
        for (const auto& [k, v] : j.items()) {
            if (k == "prefix") {
                glimpse::detail::check(v.is_string(), where, ": \"prefix\" must be a string");
                m.prefix = v.get<std::string>();
            } else if (k == "leaves") {
                glimpse::detail::check(v.is_object(), where,
                                       ": \"leaves\" must be an object {glimpse name: checkpoint name}");
                for (const auto& [from, to] : v.items()) {
                    glimpse::detail::check(to.is_string(), where, ": leaves.", from, " must be a string");
                    glimpse::detail::check(!from.empty(), where, ": an empty key in \"leaves\"");
                    m.leaves[from] = to.get<std::string>();
                }
            } else if (k != "format" && k != "comment") {
                glimpse::detail::fail(where, ": unknown key \"", k, "\" (expected prefix, leaves, comment)");
            }
        }
        // Every key must name something a head has: a typo would otherwise silently map nothing.
        std::set<std::string> known;
        for (head_kind kind : {head_kind::rms_swiglu, head_kind::ln_gelu_tanh})
            for (const auto& l : head_leaves(kind, 1, 1)) {
                known.insert(l.leaf);
                for (std::size_t dot = l.leaf.find('.'); dot != std::string::npos; dot = l.leaf.find('.', dot + 1))
                    known.insert(l.leaf.substr(0, dot));
            }
        for (const auto& [from, to] : m.leaves)
            glimpse::detail::check(known.count(from) != 0, where, ": \"", from,
                                   "\" is not a head leaf or module (docs/weights.md: norm1, attn, attn.q_proj, "
                                   "attn.q_proj.weight, mlp, ...)");
        return m;
    }
};

// What to look for.
struct head_search {
    std::string prefix;  // exactly this prefix ("" with `explicit_prefix`: top level); empty: search
    bool explicit_prefix = false;
    head_name_map names;  // its prefix, when given, counts as explicit
};

// A head found in a checkpoint.
struct head_location {
    std::string prefix;          // the checkpoint's prefix of the head ("" = top level)
    std::filesystem::path file;  // the file holding its query projection
    head_kind kind = head_kind::rms_swiglu;
    bool q_row = false;         // q_proj stored [1, D] (transposed on load)
    std::string dtype_name;     // of the query projection, as in the file
    bool by_structure = false;  // found by search (not an explicit prefix)
    head_name_map names;

    // The checkpoint's full name of a glimpse leaf.
    std::string name_of(const std::string& leaf) const {
        const std::string l = names.mapped(leaf);
        return prefix.empty() ? l : prefix + "." + l;
    }
    // "'model.visual.heatmap_head.*' in model-00002-of-00003.safetensors (found by structure, BF16)"
    std::string str() const {
        std::string s = "'" + (prefix.empty() ? std::string("") : prefix + ".") + "*' in " + file.string();
        s += by_structure ? " (found by structure" : " (given prefix";
        if (!names.empty()) s += ", leaves renamed by " + names.file.string();
        if (q_row) s += ", q_proj stored [1, D]";
        return s + ", " + dtype_name + ")";
    }
};

// A param_source over a checkpoint presenting a located head under glimpse's names
// (`as_prefix` + "." + leaf), so heatmap_head::load reads it unchanged. The [1, D] query
// projection is handed out as its [D, 1] transpose (a strided view: no copy).
class located_head_source {
public:
    located_head_source(const checkpoint& ck, head_location loc, std::string as_prefix)
        : ck_(&ck), loc_(std::move(loc)), as_(std::move(as_prefix)) {}

    bool contains(const std::string& n) const {
        const auto l = leaf_of(n);
        return l && ck_->contains(loc_.name_of(*l));
    }
    cview get(const std::string& n) const {
        const auto l = leaf_of(n);
        glimpse::detail::check(l.has_value(), "tensor '", n, "' is not a leaf of the head under '", as_, "'");
        const cview v = ck_->get(loc_.name_of(*l));
        if (*l == q_weight_leaf && loc_.q_row && v.rank() == 2 && v.size(0) == 1) return v.transpose(0, 1);
        return v;
    }
    const head_location& location() const { return loc_; }

private:
    std::optional<std::string> leaf_of(const std::string& n) const {
        if (n.size() <= as_.size() + 1 || n.compare(0, as_.size(), as_) != 0 || n[as_.size()] != '.')
            return std::nullopt;
        return n.substr(as_.size() + 1);
    }
    const checkpoint* ck_;
    head_location loc_;
    std::string as_;
};

namespace detail {

inline std::string shape_of(const safetensors_entry& e) { return e.shape.str(); }

// What is wrong with the head of kind `k` under `prefix` (empty: complete).
inline std::vector<std::string> head_problems(const checkpoint& ck, const std::string& prefix, head_kind k,
                                              std::int64_t D, std::int64_t I, const head_name_map& names,
                                              bool* q_row = nullptr) {
    std::vector<std::string> out;
    head_location loc;
    loc.prefix = prefix;
    loc.names = names;
    for (const auto& l : head_leaves(k, D, I)) {
        const std::string n = loc.name_of(l.leaf);
        const auto [f, e] = ck.find(n);
        if (!e) {
            out.push_back("missing '" + n + "' " + l.expected.str());
            continue;
        }
        const bool row = l.leaf == q_weight_leaf && e->shape == shape{1, D};
        if (row && q_row) *q_row = true;
        if (!(e->shape == l.expected) && !row)
            out.push_back("'" + n + "' in " + f->path().filename().string() + " is " + e->shape.str() + ", expected " +
                          l.expected.str() + (l.leaf == q_weight_leaf ? " or [1, " + std::to_string(D) + "]" : ""));
        else if (!e->dtype)
            out.push_back("'" + n + "' in " + f->path().filename().string() + " is " + e->dtype_name +
                          " (glimpse reads F32, BF16, F16)");
    }
    return out;
}

// The width a q_proj entry says its head was trained for (0: not a [X, 1] / [1, X] matrix).
inline std::int64_t q_width(const safetensors_entry& e) {
    if (e.shape.rank() != 2) return 0;
    if (e.shape[1] == 1) return e.shape[0];
    if (e.shape[0] == 1) return e.shape[1];
    return 0;
}

inline std::string join_lines(const std::vector<std::string>& v, const std::string& indent, std::size_t max = 40) {
    std::string s;
    for (std::size_t i = 0; i < v.size() && i < max; ++i) s += "\n" + indent + v[i];
    if (v.size() > max) s += "\n" + indent + "... and " + std::to_string(v.size() - max) + " more";
    return s;
}

}  // namespace detail

// The outcome of a search: a head, or nothing, with what was looked for (for the error a
// caller raises when a head was required).
struct head_search_result {
    std::optional<head_location> found;
    std::string looked_for;  // a human-readable account: what, where, the closest candidates
};

// Finds the head of kind `k` (the encoder's) for an encoder of width D and MLP width I in
// `ck`. Throws on anything that is a head but not a usable one (see the top of the file);
// returns an empty result when nothing in `ck` looks like a head.
inline head_search_result locate_head(const checkpoint& ck, head_kind k, std::int64_t D, std::int64_t I,
                                      const head_search& s, const std::string& where) {
    const head_kind other = k == head_kind::rms_swiglu ? head_kind::ln_gelu_tanh : head_kind::rms_swiglu;
    const head_name_map& names = s.names;
    const bool explicit_prefix = s.explicit_prefix || !s.prefix.empty() || !names.prefix.empty();
    const std::string given = !s.prefix.empty() || s.explicit_prefix ? s.prefix : names.prefix;
    const std::string q_leaf = names.mapped(std::string(q_weight_leaf));
    const std::size_t nfiles = ck.files().size();
    const std::string in_ck = where + " (" + std::to_string(nfiles) + (nfiles == 1 ? " file" : " files") + ")";

    // Candidate prefixes: those with a query, key or value projection leaf (the towers' own
    // blocks have a fused qkv, so their norm1/attn.proj/mlp leaves never make one a candidate).
    std::set<std::string> cands;
    if (explicit_prefix) {
        cands.insert(given);
    } else {
        std::vector<std::string> probes;
        for (const char* l : {"attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight"})
            probes.push_back(names.mapped(l));
        for (const auto& n : ck.names())
            for (const auto& p : probes) {
                if (n == p) cands.insert("");
                if (n.size() > p.size() + 1 && n.compare(n.size() - p.size(), p.size(), p) == 0 &&
                    n[n.size() - p.size() - 1] == '.')
                    cands.insert(n.substr(0, n.size() - p.size() - 1));
            }
    }

    std::vector<head_location> complete;
    std::vector<std::string> errors;
    for (const auto& p : cands) {
        head_location loc;
        loc.prefix = p;
        loc.names = names;
        loc.kind = k;
        loc.by_structure = !explicit_prefix;
        const auto problems = detail::head_problems(ck, p, k, D, I, names, &loc.q_row);
        const auto absent = static_cast<std::size_t>(std::count_if(
            problems.begin(), problems.end(), [](const std::string& m) { return m.rfind("missing", 0) == 0; }));
        const auto qe0 = ck.find(loc.name_of(std::string(q_weight_leaf))).second;
        const std::size_t total = head_leaves(k, D, I).size();
        // Not a candidate: nothing of a head there, a q_proj that is no [X, 1] / [1, X] matrix (a
        // language model's self_attn.q_proj under a renamed map), or a stray k/v_proj without
        // most of a block around it. (An explicit prefix is always examined.)
        if (absent == total) continue;
        if (!explicit_prefix && (qe0 ? detail::q_width(*qe0) == 0 : absent * 2 > total)) continue;
        const std::string shown = p.empty() ? std::string("the top level") : "'" + p + ".*'";
        const auto [qf, qe] = ck.find(loc.name_of(std::string(q_weight_leaf)));
        if (problems.empty()) {
            loc.file = qf->path();
            loc.dtype_name = qe->dtype_name;
            complete.push_back(std::move(loc));
            continue;
        }
        // A head of another width or kind is said as such, not as a list of wrong shapes.
        const std::int64_t w = qe ? detail::q_width(*qe) : 0;
        if (w != 0 && w != D) {
            errors.push_back("the head at " + shown + " is " + std::to_string(w) + " wide (its q_proj is " +
                             qe->shape.str() +
                             "): it was trained on an encoder of "
                             "hidden_size " +
                             std::to_string(w) + ", this encoder's is " + std::to_string(D));
            continue;
        }
        if (detail::head_problems(ck, p, other, D, I, names).empty()) {
            errors.push_back("the head at " + shown + " is a " + std::string(name(other)) + " block (" +
                             std::string(describe(other)) + "), but this encoder's head is " + std::string(name(k)) +
                             " (" + std::string(describe(k)) + "): it was trained for the other model family");
            continue;
        }
        errors.push_back("the head at " + shown + " is incomplete or mis-shaped (" + std::to_string(problems.size()) +
                         " of " + std::to_string(head_leaves(k, D, I).size()) + " tensors, kind " +
                         std::string(name(k)) + ", D " + std::to_string(D) + ", I " + std::to_string(I) +
                         "):" + detail::join_lines(problems, "      "));
    }

    if (complete.size() > 1) {
        std::vector<std::string> ps;
        for (const auto& c : complete) ps.push_back("'" + c.prefix + "' in " + c.file.filename().string());
        glimpse::detail::fail(where, ": ", complete.size(), " complete heatmap heads:", detail::join_lines(ps, "  "),
                              "\n  choose one with --head_prefix");
    }
    if (complete.size() == 1 && errors.empty()) return {std::move(complete[0]), {}};
    if (!errors.empty()) {
        std::string msg = where + ": no usable heatmap head:";
        for (const auto& e : errors) msg += "\n  " + e;
        if (complete.size() == 1)
            msg += "\n  (a complete one is at '" + complete[0].prefix + "'; choose with --head_prefix)";
        glimpse::detail::fail(msg);
    }

    // Nothing that looks like a head: say what was looked for and what came closest.
    std::ostringstream os;
    if (explicit_prefix)
        os << "no heatmap head under the prefix '" << given << "' (no tensor " << given << (given.empty() ? "" : ".")
           << q_leaf << ") in " << in_ck;
    else
        os << "looked in " << in_ck << " for a heatmap head under any prefix P: P." << q_leaf << " of shape [" << D
           << ", 1] or [1, " << D << "] beside the other " << head_leaves(k, D, I).size() - 1 << " tensors of a "
           << name(k) << " block (docs/weights.md)";
    if (!names.empty()) os << ", leaves renamed by " << names.file.string();
    std::vector<std::string> close;
    for (const auto& n : ck.names()) {
        const auto [f, e] = ck.find(n);
        const std::int64_t w = detail::q_width(*e);
        std::string lower = n;
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
        if ((w == D && e->shape.numel() == D) || lower.find("heatmap") != std::string::npos)
            close.push_back("'" + n + "' " + e->shape.str() + " in " + f->path().filename().string());
    }
    if (close.empty())
        os << "; found none, and no tensor of shape [" << D << ", 1] / [1, " << D << "] or named *heatmap*";
    else
        os << "; found none. Closest candidates:" << detail::join_lines(close, "    ", 12)
           << "\n  if one of these is the head, name its prefix with --head_prefix and its leaves with --head_names";
    if (explicit_prefix) glimpse::detail::fail(where, ": ", os.str());
    return {std::nullopt, os.str()};
}

}  // namespace glimpse::models
