#pragma once
// Where parameters come from and how layers expose theirs.
//
// A `param_source` is anything that can look a tensor up by name — a
// safetensors file, a sharded checkpoint, or an in-memory `tensor_map`. Layers
// load from any of them and name the missing or mis-shaped tensor when they
// can't. Every layer also has `visit(prefix, f)`, calling f(name, tensor&) for
// each parameter with its full dotted name: saving, counting, initialising and
// optimising are written once on top of it. A layer lists its parameters once, in a
// static `parameters(self, prefix, f)`, and inherits both visits (const and not)
// from nn::visits_parameters.

#include <concepts>
#include <map>
#include <string>
#include <utility>

#include "glimpse/core/backend.hpp"
#include "glimpse/core/random.hpp"

namespace glimpse {

template <class S>
concept param_source = requires(const S& s, const std::string& n) {
    { s.contains(n) } -> std::convertible_to<bool>;
    { s.get(n) } -> std::convertible_to<cview>;
};

// Host tensors by name: a param_source for tests, fixtures and freshly
// initialised layers.
class tensor_map {
public:
    bool contains(const std::string& n) const { return m_.count(n) != 0; }
    cview get(const std::string& n) const {
        auto it = m_.find(n);
        if (it == m_.end()) detail::fail("tensor '", n, "' not found");
        return it->second.cv();
    }
    void insert(std::string n, tensor t) { m_.insert_or_assign(std::move(n), std::move(t)); }
    const std::map<std::string, tensor>& items() const { return m_; }

private:
    std::map<std::string, tensor> m_;
};

// Load `name` from src onto the backend, checking its shape.
template <Backend B, param_source S>
typename B::tensor load_param(B& be, const S& src, const std::string& name, const shape& expected) {
    if (!src.contains(name)) detail::fail("missing tensor '", name, "' (expected shape ", expected.str(), ")");
    const cview v = src.get(name);
    if (!(v.shape() == expected))
        detail::fail("tensor '", name, "' has shape ", v.shape().str(), ", expected ", expected.str());
    return be.upload(v);
}

// A host tensor of values drawn uniformly from [-bound, bound), stored as `t`.
inline tensor uniform_tensor(const shape& s, double bound, rng& g, dtype t = dtype::f32) {
    tensor out(s, t);
    for (std::int64_t i = 0, n = out.numel(); i < n; ++i)
        store_f32(out.data(), t, i, static_cast<float>(g.uniform(-bound, bound)));
    return out;
}

inline tensor constant_tensor(const shape& s, float value, dtype t = dtype::f32) {
    tensor out(s, t);
    for (std::int64_t i = 0, n = out.numel(); i < n; ++i) store_f32(out.data(), t, i, value);
    return out;
}

inline std::string join_name(const std::string& prefix, const char* leaf) {
    return prefix.empty() ? std::string(leaf) : prefix + "." + leaf;
}

}  // namespace glimpse

namespace glimpse::nn {

// visit(prefix, f) on a layer, mutable and const, from the one list its Derived keeps in
// `template <class Self, class F> static void parameters(Self& self, const std::string& prefix,
// F& f)` (Self is Derived or const Derived; C++20 has no explicit object parameter to say it
// once otherwise). An empty base: a layer stays an aggregate, brace-initialised {{}, members...}.
template <class Derived>
struct visits_parameters {
    template <class F>
    void visit(const std::string& prefix, F&& f) {
        Derived::parameters(static_cast<Derived&>(*this), prefix, f);
    }
    template <class F>
    void visit(const std::string& prefix, F&& f) const {
        Derived::parameters(static_cast<const Derived&>(*this), prefix, f);
    }
};

}  // namespace glimpse::nn
