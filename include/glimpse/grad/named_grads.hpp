#pragma once
// named_grads: parameter gradients by name, in the order and with the names
// `visit(prefix, f)` of the layer yields (docs/weights.md), each an f32 tensor
// of the parameter's shape (whatever its storage dtype: bf16 weights get f32
// gradients). What every backward function of grad/ returns, and what an
// optimiser walks next to the parameters.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "glimpse/core/backend.hpp"
#include "glimpse/nn/parameters.hpp"

namespace glimpse::grad {

template <Backend B>
struct named_grads {
    std::vector<std::string> names;
    std::vector<typename B::tensor> grads;

    std::size_t size() const noexcept { return names.size(); }

    void add(std::string name, typename B::tensor g) {
        names.push_back(std::move(name));
        grads.push_back(std::move(g));
    }
    // Appends `other` with its names under `prefix` ("" keeps them as they are).
    void append(const std::string& prefix, named_grads&& other) {
        for (std::size_t i = 0; i < other.size(); ++i)
            add(prefix.empty() ? std::move(other.names[i]) : prefix + "." + other.names[i], std::move(other.grads[i]));
    }
    // The gradient named `name`; throws naming it when absent.
    const typename B::tensor& at(const std::string& name) const {
        for (std::size_t i = 0; i < names.size(); ++i)
            if (names[i] == name) return grads[i];
        glimpse::detail::fail("named_grads: no gradient named '", name, "'");
    }
};

// A layer's backward: its parameter gradients (names relative to the layer) and
// the gradient with respect to its input.
template <Backend B>
struct layer_backward_result {
    named_grads<B> params;
    typename B::tensor dx;
};

namespace impl {

// Checks that `g` names exactly the parameters `layer.visit(prefix, ...)` yields,
// in order, with their shapes: the contract optimisers rely on.
template <Backend B, class Layer>
void check_matches_visit(const Layer& layer, const std::string& prefix, const named_grads<B>& g) {
    std::size_t i = 0;
    layer.visit(prefix, [&](const std::string& n, const typename B::tensor& p) {
        glimpse::detail::check(i < g.size() && g.names[i] == n, "grad: parameter ", i, " is '", n,
                               "' but the gradient is '", i < g.size() ? g.names[i] : std::string("<none>"), "'");
        glimpse::detail::check(g.grads[i].shape() == p.shape(), "grad: gradient of '", n, "' has shape ",
                               g.grads[i].shape(), ", the parameter ", p.shape());
        ++i;
    });
    glimpse::detail::check(i == g.size(), "grad: ", g.size(), " gradients for ", i, " parameters");
}

}  // namespace impl
}  // namespace glimpse::grad
