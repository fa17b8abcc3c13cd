#pragma once
// shape: up to `max_rank` extents, stored inline (no allocation on the hot path).
// Shapes follow PyTorch's convention, outermost first: a sequence of S tokens of
// width D is [S, D]; multi-head activations are [S, H, d].

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <span>
#include <string>

#include "glimpse/core/error.hpp"

namespace glimpse {

inline constexpr int max_rank = 6;

class shape {
public:
    constexpr shape() = default;
    constexpr shape(std::initializer_list<std::int64_t> dims) { assign(dims.begin(), dims.end()); }
    explicit shape(std::span<const std::int64_t> dims) { assign(dims.begin(), dims.end()); }

    constexpr int rank() const noexcept { return rank_; }
    constexpr std::int64_t operator[](int i) const noexcept { return d_[static_cast<std::size_t>(i)]; }
    constexpr std::int64_t& operator[](int i) noexcept { return d_[static_cast<std::size_t>(i)]; }
    constexpr std::span<const std::int64_t> dims() const noexcept {
        return {d_.data(), static_cast<std::size_t>(rank_)};
    }

    // Product of extents. Extents are validated non-negative on construction and
    // the product is checked for overflow, so a hostile header cannot wrap it.
    constexpr std::int64_t numel() const {
        std::int64_t n = 1;
        for (int i = 0; i < rank_; ++i) {
            if (d_[i] != 0 && n > std::numeric_limits<std::int64_t>::max() / d_[i])
                detail::fail("shape ", str(), " has more elements than fit in 64 bits");
            n *= d_[i];
        }
        return n;
    }

    friend constexpr bool operator==(const shape& a, const shape& b) noexcept {
        return a.rank_ == b.rank_ && std::equal(a.d_.begin(), a.d_.begin() + a.rank_, b.d_.begin());
    }

    std::string str() const {
        std::string s = "[";
        for (int i = 0; i < rank_; ++i) {
            if (i) s += ", ";
            s += std::to_string(d_[i]);
        }
        return s + "]";
    }
    // Streamed, a shape is formatted only when an error message is built: detail::check's
    // arguments are evaluated on every call, and views are sliced in hot loops.
    friend std::ostream& operator<<(std::ostream& os, const shape& s) { return os << s.str(); }

private:
    template <class It>
    constexpr void assign(It b, It e) {
        const auto n = std::distance(b, e);
        if (n > max_rank) detail::fail("rank ", n, " exceeds glimpse::max_rank (", max_rank, ")");
        rank_ = static_cast<int>(n);
        for (int i = 0; b != e; ++b, ++i) {
            if (*b < 0) detail::fail("negative extent ", *b, " in a shape");
            d_[static_cast<std::size_t>(i)] = *b;
        }
    }

    std::array<std::int64_t, max_rank> d_{};
    int rank_ = 0;
};

}  // namespace glimpse
