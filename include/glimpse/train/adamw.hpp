#pragma once
// AdamW (Loshchilov & Hutter), step for step as torch.optim.AdamW (foreach=False),
// on host f32 parameters and gradients, with the same f32 operation order:
//
//   t += 1
//   p  <- p * (1 - lr * wd)                      decoupled weight decay (decayed tensors only)
//   m  <- m + (1 - b1) (g - m)                   (torch's lerp)
//   v  <- b2 v + (1 - b2) g^2
//   p  <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//
// Which tensors decay: by default only those of rank >= 2 (the Linear weights,
// q_proj's [D, 1] included); norm weights and biases, every bias, and gates
// ([1] / [D]) do not — decaying a norm's scale toward 0 or a bias toward 0 is
// no regulariser, it is a bias of its own. `decay_policy::all` decays every
// tensor (torch's default with one parameter group).
//
// The moments are named like the parameters (named_grads order) so the
// optimiser state can be saved and checked against the head it belongs to.

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"

namespace glimpse::train {

enum class decay_policy { matrices_only, all };

constexpr std::string_view name(decay_policy d) noexcept { return d == decay_policy::all ? "all" : "matrices_only"; }

struct adamw_options {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;
    decay_policy decay = decay_policy::matrices_only;

    void validate() const {
        detail::check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "AdamW betas must be in [0, 1), got ", beta1,
                      ", ", beta2);
        detail::check(eps > 0 && std::isfinite(eps), "AdamW eps must be positive, got ", eps);
        detail::check(weight_decay >= 0 && std::isfinite(weight_decay), "weight decay must be >= 0, got ",
                      weight_decay);
    }
};

class adamw {
public:
    adamw() = default;

    // One moment pair per parameter, zero, in the given order.
    adamw(const adamw_options& o, std::vector<std::string> names, std::span<const shape> shapes) : opt_(o) {
        o.validate();
        detail::check(names.size() == shapes.size(), "adamw: ", names.size(), " names for ", shapes.size(), " shapes");
        names_ = std::move(names);
        for (const auto& s : shapes) {
            m_.emplace_back(s, dtype::f32);
            v_.emplace_back(s, dtype::f32);
        }
    }

    const adamw_options& options() const noexcept { return opt_; }
    std::int64_t steps() const noexcept { return t_; }
    const std::vector<std::string>& names() const noexcept { return names_; }
    std::span<const tensor> exp_avg() const noexcept { return m_; }
    std::span<const tensor> exp_avg_sq() const noexcept { return v_; }

    bool decays(std::size_t i) const { return opt_.decay == decay_policy::all || m_.at(i).rank() >= 2; }

    // Restores a saved state (resume): moments of the same names and shapes, and the step count.
    void restore(std::int64_t steps, std::vector<tensor> m, std::vector<tensor> v) {
        detail::check(steps >= 0, "adamw: negative step count ", steps);
        detail::check(m.size() == m_.size() && v.size() == v_.size(), "adamw: saved state has ", m.size(),
                      " moments for ", m_.size(), " parameters");
        for (std::size_t i = 0; i < m_.size(); ++i) {
            detail::check(m[i].shape() == m_[i].shape() && v[i].shape() == v_[i].shape() && m[i].type() == dtype::f32 &&
                              v[i].type() == dtype::f32,
                          "adamw: saved moments of '", names_[i], "' are ", m[i].shape(), " / ", v[i].shape(),
                          ", the parameter is ", m_[i].shape());
        }
        t_ = steps;
        m_ = std::move(m);
        v_ = std::move(v);
    }

    // One step with learning rate lr. params: f32 host views, gradients f32, same order and shapes.
    void step(std::span<const view> params, std::span<const tensor> grads, double lr) {
        detail::check(params.size() == m_.size() && grads.size() == m_.size(), "adamw::step: ", params.size(),
                      " parameters and ", grads.size(), " gradients for ", m_.size(), " moments");
        ++t_;
        const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(t_));
        const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(t_));
        const auto step_size = static_cast<float>(lr / bc1);
        const auto bc2_sqrt = static_cast<float>(std::sqrt(bc2));
        const auto decay = static_cast<float>(1.0 - lr * opt_.weight_decay);
        const auto w1 = static_cast<float>(1.0 - opt_.beta1), b2 = static_cast<float>(opt_.beta2),
                   w2 = static_cast<float>(1.0 - opt_.beta2), eps = static_cast<float>(opt_.eps);
        for (std::size_t i = 0; i < m_.size(); ++i) {
            const view& p = params[i];
            detail::check(p.type() == dtype::f32 && p.is_contiguous() && p.shape() == m_[i].shape() &&
                              grads[i].shape() == m_[i].shape() && grads[i].type() == dtype::f32,
                          "adamw::step: parameter '", names_[i], "' must be f32 contiguous ", m_[i].shape(),
                          " with an f32 gradient of that shape");
            float* pp = p.ptr<float>();
            const float* g = grads[i].ptr<float>();
            float* m = m_[i].ptr<float>();
            float* v = v_[i].ptr<float>();
            const bool dec = decays(i) && opt_.weight_decay != 0.0;
            for (std::int64_t k = 0; k < p.numel(); ++k) {
                if (dec) pp[k] *= decay;
                m[k] += w1 * (g[k] - m[k]);
                v[k] = v[k] * b2 + (w2 * g[k]) * g[k];
                const float denom = std::sqrt(v[k]) / bc2_sqrt + eps;
                pp[k] += -step_size * (m[k] / denom);
            }
        }
    }

private:
    adamw_options opt_;
    std::vector<std::string> names_;
    std::vector<tensor> m_, v_;
    std::int64_t t_ = 0;
};

}  // namespace glimpse::train
