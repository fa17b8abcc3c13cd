#pragma once
// The integration policy: where heatmap heads act inside an encoder, which
// heatmap feeds each, and how each head's output is combined with the features.
//
// Encoders are templates over a policy P satisfying `integration_policy<P, B>`:
// at every site (after block k, before the merger) they ask `applies_at(site)`
// and, if so, call `apply(be, site, x, ctx)` on their features x [S, D] in
// their own token order. `no_heatmap` is the identity policy; `heatmap_integration`
// is the configurable one (the seed's setup is its default: one residual head
// before the merger).
//
// Combination, with delta the head's contribution (head_block.hpp):
//   residual       x <- x + delta                 (the seed's block)
//   gated_scalar   x <- x + tanh(g) delta          g: one learnable scalar
//   gated_channel  x <- x + tanh(g) * delta        g: [D], per channel
//   replace        x <- delta                      (the head's features alone)
// Gates start at 0 (tanh 0 = 0): an untrained gated head leaves the encoder
// exactly as it was, the usual start for fine-tuning (Flamingo's tanh gating).
// Several heads at the same site apply in the order they were added, each on
// the output of the previous one.

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "glimpse/core/backend.hpp"
#include "glimpse/heatmap/head_block.hpp"

namespace glimpse::heatmap {

struct site {
    enum class kind : std::uint8_t { after_block, before_merger };
    kind where = kind::before_merger;
    int block = -1;  // for after_block: 0-based index of the block whose output the head reads

    static site after_block(int k) { return {kind::after_block, k}; }
    static site before_merger() { return {kind::before_merger, -1}; }
    friend bool operator==(const site&, const site&) = default;
};

enum class combine_mode : std::uint8_t { residual, gated_scalar, gated_channel, replace };

constexpr std::string_view name(combine_mode c) noexcept {
    switch (c) {
        case combine_mode::residual:
            return "residual";
        case combine_mode::gated_scalar:
            return "gated_scalar";
        case combine_mode::gated_channel:
            return "gated_channel";
        case combine_mode::replace:
            return "replace";
    }
    return "?";
}

// What an encoder hands to the policy at a site. Heatmaps are already in the
// encoder's token order ([S] each); cos/sin are the encoder's RoPE tables for
// those tokens ([S, head_dim of the heatmap heads]), used by heads with RoPE.
template <Backend B>
struct integration_context {
    std::span<const cview> heatmaps;
    cview cos, sin;
    maps_request maps;                              // what each applied head should return
    std::vector<head_maps<B>>* maps_out = nullptr;  // one entry appended per applied head
};

template <class P, class B>
concept integration_policy = Backend<B> &&
    requires(const P& p, B& be, const site& s, const view& x, const integration_context<B>& ctx) {
    { p.applies_at(s) } -> std::convertible_to<bool>;
    p.apply(be, s, x, ctx);
};

// The identity policy: an encoder without heatmap heads.
struct no_heatmap {
    bool applies_at(const site&) const { return false; }
    template <Backend B>
    void apply(B&, const site&, const view&, const integration_context<B>&) const {}
};

struct binding {
    site where = site::before_merger();
    combine_mode combine = combine_mode::residual;
    int heatmap = 0;  // index into integration_context::heatmaps
};

template <Backend B, block_kind Kind>
class heatmap_integration {
public:
    using tensor_t = typename B::tensor;
    using head_t = heatmap_head<B, Kind>;

    struct entry {
        binding bind;
        head_t head;
        tensor_t gate;  // [1] or [D] for gated modes, else empty
    };

    // Parameter prefix of head i: "heatmap_head" for a single head, "heatmap_head.<i>" otherwise.
    std::string prefix_of(std::size_t i) const {
        return entries_.size() == 1 ? std::string(prefix_) : std::string(prefix_) + "." + std::to_string(i);
    }

    explicit heatmap_integration(std::string prefix = "heatmap_head") : prefix_(std::move(prefix)) {}

    // Adds a freshly initialised head (PyTorch default init; gates at 0).
    head_t& add(B& be, const binding& b, const head_config& c, rng& g, dtype t = dtype::f32) {
        entries_.push_back({b, head_t::init(be, c, g, t), gate_init(be, b.combine, c.dim)});
        return entries_.back().head;
    }

    // Adds a head loaded from `src`. Call after every binding is known (the
    // prefix depends on the number of heads): pass the final count.
    template <param_source S>
    head_t& add_loaded(B& be, const S& src, const binding& b, const head_config& c, std::size_t index,
                       std::size_t total) {
        const std::string p = total == 1 ? prefix_ : prefix_ + "." + std::to_string(index);
        tensor_t gate;
        if (b.combine == combine_mode::gated_scalar || b.combine == combine_mode::gated_channel)
            gate = load_param(be, src, p + ".gate", shape{b.combine == combine_mode::gated_scalar ? 1 : c.dim});
        entries_.push_back({b, head_t::load(be, src, p, c), std::move(gate)});
        return entries_.back().head;
    }

    std::span<entry> entries() { return entries_; }
    std::span<const entry> entries() const { return entries_; }

    // Every head's parameters and its gate, under the head's prefix.
    template <class F>
    void visit(F&& f) {
        visit_entries(*this, f);
    }
    template <class F>
    void visit(F&& f) const {
        visit_entries(*this, f);
    }

    bool applies_at(const site& s) const {
        for (const auto& e : entries_)
            if (e.bind.where == s) return true;
        return false;
    }

    void apply(B& be, const site& s, const view& x, const integration_context<B>& ctx) const {
        for (const auto& e : entries_) {
            if (!(e.bind.where == s)) continue;
            detail::check(e.bind.heatmap >= 0 && static_cast<std::size_t>(e.bind.heatmap) < ctx.heatmaps.size(),
                          "heatmap integration: head reads heatmap ", e.bind.heatmap, " but ", ctx.heatmaps.size(),
                          " were given");
            head_maps<B> maps;
            const bool want = ctx.maps.any() && ctx.maps_out;
            auto delta = e.head.delta(
                be, head_inputs{x, ctx.heatmaps[static_cast<std::size_t>(e.bind.heatmap)], ctx.cos, ctx.sin},
                want ? ctx.maps : maps_request{}, want ? &maps : nullptr);
            combine(be, e, x, delta);
            if (want) ctx.maps_out->push_back(std::move(maps));
        }
    }

private:
    static bool is_empty(const tensor_t& t) { return t.shape().rank() == 0; }

    template <class Self, class F>
    static void visit_entries(Self& self, F& f) {
        for (std::size_t i = 0; i < self.entries_.size(); ++i) {
            self.entries_[i].head.visit(self.prefix_of(i), f);
            if (!is_empty(self.entries_[i].gate)) f(self.prefix_of(i) + ".gate", self.entries_[i].gate);
        }
    }

    static tensor_t gate_init(B& be, combine_mode m, std::int64_t dim) {
        if (m == combine_mode::gated_scalar) return be.alloc(shape{1}, dtype::f32);
        if (m == combine_mode::gated_channel) return be.alloc(shape{dim}, dtype::f32);
        return tensor_t{};
    }

    void combine(B& be, const entry& e, const view& x, tensor_t& delta) const {
        switch (e.bind.combine) {
            case combine_mode::residual:
                be.add(x, delta.cv(), x, 1.0f);
                return;
            case combine_mode::replace:
                be.copy(delta.cv(), x);
                return;
            case combine_mode::gated_scalar: {
                const float g = std::tanh(be.download(e.gate.cv()).at({0}));
                be.add(x, delta.cv(), x, g);
                return;
            }
            case combine_mode::gated_channel: {
                tensor g = be.download(e.gate.cv()).to(dtype::f32);
                for (std::int64_t i = 0; i < g.numel(); ++i) g.ptr<float>()[i] = std::tanh(g.ptr<float>()[i]);
                auto tg = be.upload(g.cv());
                be.mul(delta.cv(), tg.cv(), delta.v());
                be.add(x, delta.cv(), x, 1.0f);
                return;
            }
        }
    }

    std::string prefix_;
    std::vector<entry> entries_;
};

}  // namespace glimpse::heatmap
