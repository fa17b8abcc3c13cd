#pragma once
// The memory half of a host backend (reference, cpu): tensors are plain host
// tensors, so upload and download are copies through the backend's own `copy`
// (which also converts dtypes and makes strided views contiguous).

#include "glimpse/core/tensor.hpp"

namespace glimpse::detail {

template <class Derived>
struct host_memory {
    using tensor = glimpse::tensor;

    tensor alloc(const shape& s, dtype t) { return tensor(s, t); }
    tensor upload(const cview& v) { return download(v); }
    tensor download(const cview& v) {
        tensor t(v.shape(), v.type());
        static_cast<Derived*>(this)->copy(v, t.v());
        return t;
    }
};

}  // namespace glimpse::detail
