#pragma once
// A training run's directory (what glimpse-train writes into --out):
//
//   heatmap_head.safetensors  the head, `heatmap_head.*` (docs/weights.md), f32: what
//                             qwen_head_options::head_dir loads
//   glimpse_head.json         the record: encoder, head config, integration policy,
//                             objective, hyper-parameters, progress, metrics history
//   train_state.safetensors   everything --resume needs, self-contained: parameters
//                             (param.<name>), AdamW moments (exp_avg.<name>,
//                             exp_avg_sq.<name>), the loss of every step done
//                             (losses [steps]), and in its metadata the step count
//                             and the record as JSON text
//
// Writing is crash-safe at two levels. Each file is written to `<file>.partial`,
// synced, and only then renamed over the previous one (rename is atomic on POSIX);
// and all three partial files are complete before the first rename, so a crash
// while writing leaves the previous checkpoint untouched, and one during the three
// renames (microseconds) can only leave newer files beside an older state — which
// --resume never mixes, because train_state.safetensors alone is the resume point.
// Leftover `.partial` files from a crash are overwritten by the next save.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/io/safetensors.hpp"
#include "glimpse/models/head_locator.hpp"

namespace glimpse::train {

inline constexpr std::string_view head_file_name = models::head_file_name;
inline constexpr std::string_view record_file_name = "glimpse_head.json";
inline constexpr std::string_view state_file_name = "train_state.safetensors";

// What a checkpoint holds; host f32 tensors, names with their full prefix
// ("heatmap_head.norm1.weight", ...), in head.visit order.
struct train_state {
    std::int64_t step = 0;  // optimiser steps done
    std::vector<std::string> names;
    std::vector<tensor> params, exp_avg, exp_avg_sq;
    std::vector<float> losses;  // [step]: the minibatch loss of every step done
    nlohmann::json record = nlohmann::json::object();
};

namespace impl {

inline std::filesystem::path partial(const std::filesystem::path& p) { return p.string() + ".partial"; }

// Writes text to `path`, synced (no rename: the caller renames).
inline void write_synced(const std::filesystem::path& path, std::string_view text) {
    const std::string where = "checkpoint file '" + path.string() + "'";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) glimpse::detail::fail(where, ": cannot create: ", std::strerror(errno));
    try {
        glimpse::detail::write_all(fd, reinterpret_cast<const std::byte*>(text.data()), text.size(), where);
        if (::fsync(fd) != 0) glimpse::detail::fail(where, ": fsync failed: ", std::strerror(errno));
        const int rc = ::close(std::exchange(fd, -1));
        if (rc != 0) glimpse::detail::fail(where, ": close failed: ", std::strerror(errno));
    } catch (...) {
        if (fd >= 0) ::close(fd);
        throw;
    }
}

// Makes the renames themselves durable (best effort: some filesystems refuse).
inline void sync_dir(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)::fsync(fd);
    ::close(fd);
}

inline std::int64_t parse_int(const std::string& s, const std::string& where) {
    try {
        std::size_t n = 0;
        const long long v = std::stoll(s, &n);
        if (n == s.size()) return v;
    } catch (const std::exception&) {
    }
    glimpse::detail::fail(where, ": '", s, "' is not an integer");
}

}  // namespace impl

// Called at the stages of save_checkpoint: "partial" (all three partial files
// written, nothing renamed yet), then "renamed <file>" after each rename. Tests
// use it to kill the process there.
using checkpoint_hook = std::function<void(std::string_view stage)>;

// Writes the three files of `st` into `dir` (created if needed); the head file
// holds st.params under st.names exactly.
inline void save_checkpoint(const std::filesystem::path& dir, const train_state& st, const checkpoint_hook& hook = {}) {
    using glimpse::detail::check;
    check(st.names.size() == st.params.size() && st.exp_avg.size() == st.params.size() &&
              st.exp_avg_sq.size() == st.params.size(),
          "save_checkpoint: ", st.names.size(), " names, ", st.params.size(), " parameters, ", st.exp_avg.size(), " / ",
          st.exp_avg_sq.size(), " moments");
    check(static_cast<std::int64_t>(st.losses.size()) == st.step, "save_checkpoint: ", st.losses.size(), " losses for ",
          st.step, " steps");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) glimpse::detail::fail("output directory '", dir.string(), "': ", ec.message());

    const std::string record = st.record.dump(2) + "\n";
    const std::string step = std::to_string(st.step);
    const auto head = dir / head_file_name, json = dir / record_file_name, state = dir / state_file_name;

    std::vector<std::pair<std::string, cview>> head_t, state_t;
    std::vector<std::string> keys;  // owns the state names while the views are in use
    keys.reserve(3 * st.names.size());
    for (std::size_t i = 0; i < st.names.size(); ++i) {
        head_t.emplace_back(st.names[i], st.params[i].cv());
        keys.push_back("param." + st.names[i]);
        keys.push_back("exp_avg." + st.names[i]);
        keys.push_back("exp_avg_sq." + st.names[i]);
    }
    for (std::size_t i = 0; i < st.names.size(); ++i) {
        state_t.emplace_back(keys[3 * i], st.params[i].cv());
        state_t.emplace_back(keys[3 * i + 1], st.exp_avg[i].cv());
        state_t.emplace_back(keys[3 * i + 2], st.exp_avg_sq[i].cv());
    }
    const tensor losses = st.losses.empty() ? tensor(shape{0})
                                            : tensor::from(shape{static_cast<std::int64_t>(st.losses.size())},
                                                           std::span<const float>(st.losses));
    state_t.emplace_back("losses", losses.cv());

    save_safetensors(impl::partial(state), state_t,
                     {{"format", "glimpse_train_state"}, {"step", step}, {"record", st.record.dump()}});
    save_safetensors(impl::partial(head), head_t, {{"format", "pt"}, {"glimpse_step", step}});
    impl::write_synced(impl::partial(json), record);
    if (hook) hook("partial");
    for (const auto& f : {state, head, json}) {
        std::filesystem::rename(impl::partial(f), f, ec);
        if (ec)
            glimpse::detail::fail("checkpoint: cannot rename '", impl::partial(f).string(),
                                  "' into place: ", ec.message());
        if (hook) hook("renamed " + f.filename().string());
    }
    impl::sync_dir(dir);
}

inline bool has_checkpoint(const std::filesystem::path& dir) {
    std::error_code ec;
    return std::filesystem::is_regular_file(dir / state_file_name, ec);
}

// Reads train_state.safetensors (validated: every parameter has both moments of
// its shape, f32; losses match the step count; the record parses).
inline train_state load_train_state(const std::filesystem::path& dir) {
    using glimpse::detail::check;
    const auto path = dir / state_file_name;
    const std::string where = "training state '" + path.string() + "'";
    const safetensors_file f(path);
    const auto& meta = f.metadata();
    const auto get = [&](const char* k) -> const std::string& {
        const auto it = meta.find(k);
        if (it == meta.end())
            glimpse::detail::fail(where, ": no '", k, "' in its metadata (not a glimpse-train state?)");
        return it->second;
    };
    check(get("format") == "glimpse_train_state", where, ": format '", get("format"),
          "', expected glimpse_train_state");
    train_state st;
    st.step = impl::parse_int(get("step"), where + ": step");
    check(st.step >= 0, where, ": negative step ", st.step);
    st.record = parse_json_text(get("record"), where + ": its record");
    for (const auto& e : f.entries()) {
        if (!e.name.starts_with("param.")) continue;
        const std::string n = e.name.substr(6);
        for (const char* pre : {"exp_avg.", "exp_avg_sq."})
            check(f.contains(pre + n), where, ": parameter '", n, "' has no '", pre, n, "'");
        tensor p = f.load(e.name), m = f.load("exp_avg." + n), v = f.load("exp_avg_sq." + n);
        check(p.type() == dtype::f32 && m.type() == dtype::f32 && v.type() == dtype::f32 && p.shape() == m.shape() &&
                  p.shape() == v.shape(),
              where, ": '", n, "' and its moments must be f32 of one shape, got ", p.shape(), ", ", m.shape(), ", ",
              v.shape());
        st.names.push_back(n);
        st.params.push_back(std::move(p));
        st.exp_avg.push_back(std::move(m));
        st.exp_avg_sq.push_back(std::move(v));
    }
    check(!st.names.empty(), where, ": no parameters in it");
    check(f.contains("losses"), where, ": no 'losses'");
    const tensor l = f.load("losses");
    check(l.type() == dtype::f32 && l.rank() == 1 && l.size(0) == st.step, where, ": 'losses' must be f32 [", st.step,
          "], got ", l.shape());
    st.losses.assign(l.ptr<float>(), l.ptr<float>() + l.numel());
    return st;
}

// Reads glimpse_head.json (the record) of a run directory or head directory.
inline nlohmann::json load_record(const std::filesystem::path& dir) {
    return glimpse::parse_json_file(dir / record_file_name, "head directory '" + dir.string() + "'");
}

}  // namespace glimpse::train
