#pragma once
// The frozen encoder, run once per distinct image: examples (dataset.hpp) ->
// image_features at the head's site + samples with their focus targets in the
// site's token order (trainer.hpp). The tower never runs again during training;
// only the head does, over these cached features.
//
// Memory: S x D f32 per image (plus the RoPE tables, S x D/H x 2): 64 KiB for a
// 256-patch image of the tiny test model, 5 MiB for a 1024-patch image of a
// 1280-wide Qwen tower.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "glimpse/core/backend.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/models/qwen_heatmap.hpp"
#include "glimpse/train/box_focus.hpp"
#include "glimpse/train/dataset.hpp"
#include "glimpse/train/trainer.hpp"

namespace glimpse::train {

template <Backend B>
struct feature_cache {
    std::vector<std::filesystem::path> paths;
    std::vector<image_features<B>> images;
    std::vector<models::grid_thw_t> grids;
    std::vector<heatmap::token_order> orders;
    std::map<std::filesystem::path, std::size_t> index;

    // Encodes every image of `examples` not encoded yet. on_image(done, total, path)
    // reports progress (the tower is the slow part of a small run).
    void add(B& be, const models::qwen_encoder<B>& enc, std::span<const example> examples,
             const std::function<void(std::size_t, std::size_t, const std::filesystem::path&)>& on_image = {}) {
        std::vector<std::filesystem::path> todo;
        for (const auto& e : examples)
            if (!index.contains(e.image) && std::find(todo.begin(), todo.end(), e.image) == todo.end())
                todo.push_back(e.image);
        for (std::size_t i = 0; i < todo.size(); ++i) {
            if (on_image) on_image(i, todo.size(), todo[i]);
            const auto px = enc.preprocess(load_image(todo[i]));
            auto f = enc.encode_site(be, px);
            image_features<B> out;
            out.x_sum_sq = sum_of_squares(be, f.x.cv());
            out.x = std::move(f.x);
            out.cos = std::move(f.cos);
            out.sin = std::move(f.sin);
            index[todo[i]] = images.size();
            paths.push_back(todo[i]);
            images.push_back(std::move(out));
            grids.push_back(f.grid);
            orders.push_back(std::move(f.order));
        }
        if (on_image) on_image(todo.size(), todo.size(), {});
    }

    // Samples for `examples` (their images must have been added).
    std::vector<train_sample> samples(std::span<const example> examples, std::span<const box_kind> train_kinds) const {
        std::vector<train_sample> out;
        for (const auto& e : examples) {
            const auto it = index.find(e.image);
            glimpse::detail::check(it != index.end(), "feature_cache: image '", e.image.string(), "' was not encoded");
            const auto i = it->second;
            const auto& g = grids[i];
            train_sample s;
            s.image = i;
            s.where = e.file.string() + ":" + std::to_string(e.line);
            const auto w = static_cast<double>(e.image_w), h = static_cast<double>(e.image_h);
            s.targets = make_focus_targets(train_kinds, e.person, e.object, w, h, g[1], g[2], orders[i]);
            s.eval = make_focus_targets(all_box_kinds, e.person, e.object, w, h, g[1], g[2], orders[i]);
            out.push_back(std::move(s));
        }
        return out;
    }
};

}  // namespace glimpse::train
