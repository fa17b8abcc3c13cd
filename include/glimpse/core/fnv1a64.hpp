#pragma once
// FNV-1a, 64 bits: a fast non-cryptographic hash for detecting that something
// changed (a comparison's inputs, a fixture's generator), not for authenticating
// it. Strings are added with a terminating NUL so that "ab"+"c" and "a"+"bc"
// differ; tools/provenance.py computes the same digest on the Python side.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace glimpse {

class fnv1a64 {
public:
    void add(const void* data, std::size_t n) noexcept {
        const auto* p = static_cast<const unsigned char*>(data);
        for (std::size_t i = 0; i < n; ++i) {
            h_ ^= p[i];
            h_ *= 0x100000001b3ull;
        }
    }
    void add(std::string_view s) noexcept {
        add(s.data(), s.size());
        add("\0", 1);  // "ab"+"c" differs from "a"+"bc"
    }
    std::uint64_t value() const noexcept { return h_; }
    std::string hex() const {
        char b[24];
        std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h_));
        return b;
    }

private:
    std::uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace glimpse
