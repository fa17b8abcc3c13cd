#pragma once
// Base vs fine-tuned: where the heatmap head of two Qwen vision models looks
// for the same boxes on the same image (the library behind glimpse-compare).
//
//   auto cmp = compare::comparer<cpu>::load(be, model_source::resolve(base), model_source::resolve(tuned, base));
//   auto r   = cmp.run(be, image, request);          // maps + statistics, nothing written
//   compare::write_outputs(r, out_dir, fonts);        // PNG + JSON + safetensors, atomically
//
// Per model and image the tower runs ONCE (encode_site; once for both models
// when they share an encoder, e.g. a glimpse-train head directory on its base),
// the head's norm1/K/V are computed ONCE (prepare_head), and each box is one
// attend() on them — referring: the person box, the object box and their union
// (interaction). Grounding (no box input to the model): the head under a
// uniform heatmap (every patch a query) and the encoder's own attention
// received per patch in its last full-attention block, head-averaged.
//
// Maps: raster [grid_h, grid_w] over the pre-merge patch grid, the attention
// the query patches (those the box touches) place on every patch, mean over
// heads, summing to 1 (models/qwen_heatmap.hpp, raster_attention). Statistics:
// analysis/attention_stats.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/compare/comparison_result.hpp"
#include "glimpse/compare/request.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/stopwatch.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/io/safetensors.hpp"
#include "glimpse/models/qwen_heatmap.hpp"
#include "glimpse/version.hpp"

namespace glimpse::compare {

// ---- the comparer -------------------------------------------------------------------------

template <Backend B>
class comparer {
public:
    using encoder_t = models::qwen_encoder<B>;

    static comparer load(B& be, const model_source& base, const model_source& finetuned, std::uint64_t seed = 0,
                         stage_timings* t = nullptr) {
        comparer c;
        c.base_src_ = base;
        c.ft_src_ = finetuned;
        stopwatch w;
        c.base_ = encoder_t::load(be, base.encoder_dir, head_options(base, seed));
        if (t) t->add("load base model", w.ms());
        stopwatch w2;
        c.ft_ = encoder_t::load(be, finetuned.encoder_dir, head_options(finetuned, seed));
        if (t) t->add("load fine-tuned model", w2.ms());
        std::error_code ec;
        c.shared_tower_ = std::filesystem::equivalent(base.encoder_dir, finetuned.encoder_dir, ec) && !ec;
        glimpse::detail::check(c.base_.config().hidden_size == c.ft_.config().hidden_size &&
                                   c.base_.config().patch_size == c.ft_.config().patch_size &&
                                   c.base_.config().spatial_merge_size == c.ft_.config().spatial_merge_size,
                               "base and fine-tuned models have different vision towers (hidden ",
                               c.base_.config().hidden_size, " vs ", c.ft_.config().hidden_size, ", patch ",
                               c.base_.config().patch_size, " vs ", c.ft_.config().patch_size,
                               "): their maps would not be comparable");
        return c;
    }

    const encoder_t& base() const { return base_; }
    const encoder_t& finetuned() const { return ft_; }
    bool shared_tower() const { return shared_tower_; }

    // Everything but the files. `img` is the decoded original; boxes in `req`
    // must already be validated against its size (to_pixel_box).
    comparison_result run(B& be, const image_u8& img, const request& req) const {
        req.check();
        comparison_result r;
        r.req = req;
        r.image_w = img.width;
        r.image_h = img.height;
        r.boxes = req.boxes();
        stopwatch wp;
        const models::pixel_batch px = base_.preprocess(img);
        r.timings.add("preprocess", wp.ms());
        r.resized_h = px.resized_hw[0].first;
        r.resized_w = px.resized_hw[0].second;
        r.grid_h = px.grid_thw[0][1];
        r.grid_w = px.grid_thw[0][2];
        const analysis::grid_geometry geo{r.grid_h, r.grid_w, static_cast<double>(img.width),
                                          static_cast<double>(img.height)};
        for (const auto& b : r.boxes) r.uniform_mass[b.key] = analysis::area_fraction(b.b, geo);

        const bool grounding = req.task == task_type::grounding;
        std::optional<models::site_features<B>> base_site;
        r.base = run_model(be, base_, base_src_, "base", px, img, r, geo, grounding, nullptr, base_site);
        r.finetuned = run_model(be, ft_, ft_src_, "finetuned", px, img, r, geo, grounding,
                                shared_tower_ ? &*base_site : nullptr, base_site);
        if (shared_tower_ && r.base.own) {  // one tower: the same own attention for both
            own_attention c;
            c.map.block = r.base.own->map.block;
            c.map.grid_h = r.base.own->map.grid_h;
            c.map.grid_w = r.base.own->map.grid_w;
            c.map.per_head = r.base.own->map.per_head.clone();
            c.map.mean = r.base.own->map.mean.clone();
            c.stats = r.base.own->stats;
            c.mass_in = r.base.own->mass_in;
            r.finetuned.own = std::move(c);
        }
        r.image = img;
        return r;
    }

private:
    static models::qwen_head_options head_options(const model_source& m, std::uint64_t seed) {
        models::qwen_head_options o;
        o.seed = seed;
        o.head_dir = m.head_dir;
        o.prefix = m.head_prefix;
        o.names = m.head_names;
        o.require_trained = m.require_head;
        return o;
    }

    model_result run_model(B& be, const encoder_t& enc, const model_source& src, const std::string& role,
                           const models::pixel_batch& px, const image_u8& img, comparison_result& r,
                           const analysis::grid_geometry& geo, bool grounding, const models::site_features<B>* shared,
                           std::optional<models::site_features<B>>& keep) const {
        model_result m;
        m.role = role;
        m.source = src;
        m.family = std::string(models::name(enc.family()));
        m.head_source = enc.head_source();
        m.head_location = enc.head_location_info();
        m.head_trained = enc.head_trained();
        const std::string who = role == "base" ? "base" : "fine-tuned";

        // The tower, once (or not at all when the base's features are the same).
        std::optional<models::site_features<B>> own_site;
        const models::site_features<B>* f = shared;
        if (!f) {
            stopwatch w;
            if (grounding) {
                models::received_attention ra;
                own_site = enc.encode_site(be, px, ra);
                own_attention oa;
                oa.stats = analysis::stats_of(span_of(ra.mean), geo);
                for (const auto& b : r.boxes) oa.mass_in[b.key] = analysis::mass_in_box(span_of(ra.mean), b.b, geo);
                oa.map = std::move(ra);
                m.own = std::move(oa);
            } else {
                own_site = enc.encode_site(be, px);
            }
            r.timings.add("encoder tower (" + who + ")", w.ms());
            f = &*own_site;
        } else {
            m.shared_tower = true;
        }

        // The head's norm1 / K / V, once per model.
        stopwatch wk;
        const models::head_cache<B> cache = enc.prepare_head(be, *f);
        r.timings.add("head K/V (" + who + ")", wk.ms());
        m.head_path = std::string(heatmap::name(
            std::visit([](const auto& h) { return h.entries()[0].head.attn.choose_cached(); }, enc.head())));

        // One attend per heatmap.
        stopwatch wa;
        const std::int64_t S = r.grid_h * r.grid_w;
        std::vector<std::pair<std::string, heatmap::box>> queries;
        if (grounding)
            queries.push_back(
                {"uniform", heatmap::box{0, 0, static_cast<double>(img.width), static_cast<double>(img.height)}});
        else
            for (const auto& b : r.boxes) queries.push_back({b.key, b.b});
        for (const auto& [key, qb] : queries) {
            query_result q;
            q.key = key;
            q.query = qb;
            tensor h;
            if (key == "uniform") {
                h = tensor(shape{S});
                for (std::int64_t i = 0; i < S; ++i) h.ptr<float>()[i] = 1.0f;
            } else {
                h = models::box_to_heatmap(qb, geo.image_w, geo.image_h, models::grid_thw_t{1, r.grid_h, r.grid_w});
            }
            q.attention = enc.attend(be, *f, cache, h.cv());
            q.stats = analysis::stats_of(span_of(q.attention.mean), geo);
            for (const auto& b : r.boxes) q.mass_in[b.key] = analysis::mass_in_box(span_of(q.attention.mean), b.b, geo);
            m.queries.push_back(std::move(q));
        }
        r.timings.add("head attention x" + std::to_string(queries.size()) + " (" + who + ")", wa.ms());
        if (own_site && !keep) keep = std::move(own_site);
        return m;
    }

    static std::span<const float> span_of(const tensor& t) {
        return {t.ptr<float>(), static_cast<std::size_t>(t.numel())};
    }

    model_source base_src_, ft_src_;
    encoder_t base_, ft_;
    bool shared_tower_ = false;
};

}  // namespace glimpse::compare
