#pragma once
// The safetensors format: a header entry per tensor, its dtype names, and the parser that
// validates a whole header (structure, dtypes, shapes, offsets, sizes, overlaps) so that
// every later access is in bounds by construction. A checkpoint is untrusted input: a
// hostile header costs at most one glimpse::error, never a crash, an out-of-bounds read or
// an allocation larger than the file. Tensor bytes are little-endian, as the format
// specifies and as every platform glimpse targets stores them.

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/dtype.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/shape.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/io/json_file.hpp"

namespace glimpse {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; glimpse reads and writes it without byte swapping");

// One tensor as described by a safetensors header.
struct safetensors_entry {
    std::string name;
    std::string dtype_name;               // as spelled in the file: "BF16", "I64", ...
    std::optional<glimpse::dtype> dtype;  // set only for the dtypes glimpse computes with (F32, BF16, F16)
    glimpse::shape shape;
    std::uint64_t begin = 0;  // byte range [begin, end) within the data section
    std::uint64_t end = 0;

    std::int64_t numel() const { return shape.numel(); }
    std::uint64_t nbytes() const noexcept { return end - begin; }
};

namespace detail {

// The reference implementation refuses headers above 100 MB; so do we, which
// also bounds what parsing a hostile header may allocate.
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

// Every dtype the safetensors format defines with a whole-byte element size.
// Unknown names are rejected; known ones open fine and fail only when used.
inline std::optional<std::size_t> safetensors_itemsize(std::string_view dt) {
    static constexpr std::pair<std::string_view, std::size_t> known[] = {
        {"F64", 8},     {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},     {"I32", 4},
        {"I16", 2},     {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
        {"F8_E8M0", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8},  {"C64", 8},
    };
    for (const auto& [n, size] : known)
        if (n == dt) return size;
    return std::nullopt;
}

inline std::optional<glimpse::dtype> glimpse_dtype(std::string_view dt) {
    for (auto t : {dtype::f32, dtype::bf16, dtype::f16})
        if (safetensors_name(t) == dt) return t;
    return std::nullopt;
}

// Streams the header through nlohmann's SAX interface instead of building a
// DOM: the state machine rejects a wrong structure at the first offending
// token, sees duplicate keys (a DOM silently keeps the last), and never holds
// more than the entries themselves.
class safetensors_header_parser {
public:
    using json = nlohmann::json;

    explicit safetensors_header_parser(std::string where) : where_(std::move(where)) {}

    std::vector<safetensors_entry> entries;  // dtype/shape/offsets still unchecked
    std::map<std::string, std::string> metadata;

    bool null() { return value("null"); }
    bool boolean(bool) { return value("a boolean"); }
    bool number_integer(json::number_integer_t v) {
        if (v >= 0) return number_unsigned(static_cast<json::number_unsigned_t>(v));
        if (state_ == state::shape) fail_entry("shape has a negative extent ", v);
        if (state_ == state::offsets) fail_entry("data_offsets has a negative value ", v);
        return value("a number");
    }
    bool number_unsigned(json::number_unsigned_t v) {
        if (state_ == state::shape) {
            if (rank_ == max_rank) fail_entry("shape has more than ", max_rank, " dimensions (glimpse::max_rank)");
            if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                fail_entry("shape extent ", v, " does not fit in 64-bit signed");
            dims_[static_cast<std::size_t>(rank_++)] = static_cast<std::int64_t>(v);
            return true;
        }
        if (state_ == state::offsets) {
            if (noffsets_ == 2) fail_entry("data_offsets has more than 2 values");
            offsets_[noffsets_++] = v;
            return true;
        }
        return value("a number");
    }
    bool number_float(json::number_float_t, const json::string_t& text) {
        if (state_ == state::shape)
            fail_entry("shape extent ", printable(text), " is not a non-negative 64-bit integer");
        if (state_ == state::offsets)
            fail_entry("data_offsets value ", printable(text), " is not a non-negative 64-bit integer");
        return value("a number");
    }
    bool string(json::string_t& s) {
        if (state_ == state::entry && field_ == "dtype") {
            cur_.dtype_name = std::move(s);
            return true;
        }
        if (state_ == state::metadata) {
            metadata.emplace(key_, std::move(s));
            return true;
        }
        return value("a string");
    }
    bool binary(json::binary_t&) { return value("binary data"); }

    bool start_object(std::size_t) {
        if (state_ == state::start) {
            state_ = state::top;
        } else if (state_ == state::top && key_ == "__metadata__") {
            state_ = state::metadata;
        } else if (state_ == state::top) {
            state_ = state::entry;
            cur_ = safetensors_entry{};
            cur_.name = key_;
            seen_ = {};
        } else {
            value("an object");
        }
        return true;
    }
    bool key(json::string_t& k) {
        switch (state_) {
            case state::top:
                if (!top_keys_.insert(k).second) {
                    if (k == "__metadata__") fail("the header has '__metadata__' twice");
                    fail("tensor ", quote_name(k), " appears twice in the header");
                }
                break;
            case state::metadata:
                if (metadata.count(k)) fail("__metadata__ has key ", quote_name(k), " twice");
                break;
            case state::entry: {
                const int i = k == "dtype" ? 0 : k == "shape" ? 1 : k == "data_offsets" ? 2 : -1;
                if (i < 0) fail_entry("unexpected field ", quote_name(k), " (expected dtype, shape, data_offsets)");
                if (seen_[static_cast<std::size_t>(i)]) fail_entry("field ", quote_name(k), " appears twice");
                seen_[static_cast<std::size_t>(i)] = true;
                break;
            }
            default:
                break;  // unreachable: keys only occur directly inside objects we track
        }
        key_ = std::move(k);
        field_ = key_;
        return true;
    }
    bool end_object() {
        if (state_ == state::entry) {
            static constexpr const char* names[] = {"dtype", "shape", "data_offsets"};
            for (std::size_t i = 0; i < 3; ++i)
                if (!seen_[i]) fail_entry("missing field '", names[i], "'");
            entries.push_back(std::move(cur_));
            state_ = state::top;
        } else if (state_ == state::metadata) {
            state_ = state::top;
        } else {
            state_ = state::done;
        }
        return true;
    }
    bool start_array(std::size_t) {
        if (state_ == state::entry && field_ == "shape") {
            state_ = state::shape;
            rank_ = 0;
        } else if (state_ == state::entry && field_ == "data_offsets") {
            state_ = state::offsets;
            noffsets_ = 0;
        } else {
            value("an array");
        }
        return true;
    }
    bool end_array() {
        if (state_ == state::shape) {
            cur_.shape = glimpse::shape(std::span<const std::int64_t>(dims_.data(), static_cast<std::size_t>(rank_)));
        } else {  // offsets: start_array admits no other array
            if (noffsets_ != 2) fail_entry("data_offsets must hold 2 values, got ", noffsets_);
            cur_.begin = offsets_[0];
            cur_.end = offsets_[1];
        }
        state_ = state::entry;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
        fail("the header is not valid JSON: ", printable(ex.what(), true, 240));
    }

    bool complete() const noexcept { return state_ == state::done; }

private:
    enum class state { start, top, entry, metadata, shape, offsets, done };

    template <class... P>
    [[noreturn]] void fail(P&&... p) const {
        detail::fail(where_, ": ", std::forward<P>(p)...);
    }
    template <class... P>
    [[noreturn]] void fail_entry(P&&... p) const {
        fail("tensor ", quote_name(cur_.name), ": ", std::forward<P>(p)...);
    }

    // A value of kind `what` arrived where the format does not allow one.
    bool value(const char* what) {
        switch (state_) {
            case state::start:
                fail("the header is not a JSON object (it starts with ", what, ")");
            case state::top:
                if (key_ == "__metadata__") fail("__metadata__ must be an object, got ", what);
                fail("tensor ", quote_name(key_), ": entry must be an object, got ", what);
            case state::metadata:
                fail("__metadata__ value for ", quote_name(key_), " must be a string, got ", what);
            case state::entry:
                fail_entry("field ", quote_name(field_), " must be ", field_ == "dtype" ? "a string" : "an array",
                           ", got ", what);
            case state::shape:
                fail_entry("shape extent is ", what, ", not a non-negative integer");
            case state::offsets:
                fail_entry("data_offsets value is ", what, ", not a non-negative integer");
            case state::done:
                break;
        }
        fail("unexpected ", what, " in the header");
    }

    std::string where_;
    state state_ = state::start;
    std::string key_, field_;
    std::unordered_set<std::string> top_keys_;
    safetensors_entry cur_;
    std::array<bool, 3> seen_{};
    std::array<std::int64_t, max_rank> dims_{};
    int rank_ = 0;
    std::array<std::uint64_t, 2> offsets_{};
    std::size_t noffsets_ = 0;
};

}  // namespace detail

}  // namespace glimpse
