#pragma once
// safetensors: memory-mapped reading, directory checkpoints, atomic writing.
//
// A checkpoint is untrusted input. `safetensors_file` validates the whole
// header when it opens a file (structure, dtypes, shapes, offsets, sizes,
// overlaps), so every later access is in bounds by construction and a hostile
// file costs at most one glimpse::error — never a crash, an out-of-bounds read
// or an allocation larger than the file itself. Tensor data is only mapped,
// not read: opening a 16 GB checkpoint touches the headers and nothing else.
//
// POSIX only (open/mmap). Tensor bytes are taken as little-endian, as the
// format specifies and as every platform glimpse targets stores them.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

// A read-only, memory-mapped .safetensors file. Move-only; unmaps on destruction.
//
// Alignment: the format does not align tensor data (a header of any length, or
// a BF16 tensor of odd size, shifts whatever follows), while glimpse's kernels
// dereference typed pointers. `get()` therefore hands out a view into the
// mapping only when the data is aligned to its element size and throws
// otherwise; `load()` copies and always works. Files written by
// `save_safetensors` start data on an 8-byte boundary, so their tensors are
// aligned whenever larger-itemsize tensors come first.
//
// The mapping is private and read-only; if another process truncates the file
// while it is mapped, reading the lost pages raises SIGBUS — mmap's one hazard
// that no validation can rule out.
class safetensors_file {
public:
    using entry = safetensors_entry;

    explicit safetensors_file(const std::filesystem::path& path) : path_(path) {
        const std::string where = "safetensors file '" + path.string() + "'";
        std::error_code ec;
        const auto st = std::filesystem::status(path, ec);
        if (st.type() == std::filesystem::file_type::not_found) detail::fail(where, ": no such file");
        if (ec) detail::fail(where, ": ", ec.message());
        // A directory or device is no checkpoint, and opening a FIFO would block.
        if (!std::filesystem::is_regular_file(st)) detail::fail(where, ": not a regular file");

        // O_NONBLOCK: should the path be swapped for a FIFO after the check, open still returns.
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) detail::fail(where, ": cannot open: ", std::strerror(errno));
        struct ::stat sb {};
        if (::fstat(fd, &sb) != 0) {
            const int e = errno;
            ::close(fd);
            detail::fail(where, ": cannot stat: ", std::strerror(e));
        }
        if (!S_ISREG(sb.st_mode)) {
            ::close(fd);
            detail::fail(where, ": not a regular file");
        }
        const auto size = static_cast<std::uint64_t>(sb.st_size);
        if (size < 8) {
            ::close(fd);
            detail::fail(where, ": file is ", size, " bytes, shorter than the 8-byte header length");
        }
        void* p = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
        const int map_errno = errno;
        ::close(fd);  // the mapping keeps the file alive
        if (p == MAP_FAILED) detail::fail(where, ": cannot mmap: ", std::strerror(map_errno));
        base_ = static_cast<const std::byte*>(p);
        size_ = size;
        try {
            parse(where);
        } catch (...) {
            unmap();
            throw;
        }
    }

    safetensors_file(safetensors_file&& o) noexcept
        : path_(std::move(o.path_)),
          base_(std::exchange(o.base_, nullptr)),
          size_(std::exchange(o.size_, 0)),
          data_(std::exchange(o.data_, nullptr)),
          data_size_(std::exchange(o.data_size_, 0)),
          entries_(std::move(o.entries_)),
          metadata_(std::move(o.metadata_)) {}
    safetensors_file& operator=(safetensors_file&& o) noexcept {
        if (this != &o) {
            unmap();
            path_ = std::move(o.path_);
            base_ = std::exchange(o.base_, nullptr);
            size_ = std::exchange(o.size_, 0);
            data_ = std::exchange(o.data_, nullptr);
            data_size_ = std::exchange(o.data_size_, 0);
            entries_ = std::move(o.entries_);
            metadata_ = std::move(o.metadata_);
        }
        return *this;
    }
    safetensors_file(const safetensors_file&) = delete;
    safetensors_file& operator=(const safetensors_file&) = delete;
    ~safetensors_file() { unmap(); }

    const std::filesystem::path& path() const noexcept { return path_; }
    // Sorted by name.
    const std::vector<entry>& entries() const noexcept { return entries_; }
    const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

    const entry* find(std::string_view name) const noexcept {
        auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                                   [](const entry& e, std::string_view n) { return e.name < n; });
        return it != entries_.end() && it->name == name ? &*it : nullptr;
    }
    bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }

    // The raw bytes of an entry of this file, whatever its dtype.
    std::span<const std::byte> bytes(const entry& e) const noexcept {
        return {data_ + e.begin, static_cast<std::size_t>(e.nbytes())};
    }

    // A view into the mapping; valid while this file is open.
    cview get(std::string_view name) const {
        const entry& e = usable(name);
        const std::byte* p = data_ + e.begin;
        if (reinterpret_cast<std::uintptr_t>(p) % itemsize(*e.dtype) != 0)
            detail::fail(where(), ": tensor ", detail::quote_name(name), " (", e.dtype_name,
                         ") is not aligned to its element size in the file; use load() to copy it");
        return cview(p, *e.dtype, e.shape);
    }

    // An owning copy; works at any alignment.
    tensor load(std::string_view name) const {
        const entry& e = usable(name);
        tensor t(e.shape, *e.dtype);
        if (e.nbytes()) std::memcpy(t.data(), data_ + e.begin, static_cast<std::size_t>(e.nbytes()));
        return t;
    }

private:
    std::string where() const { return "safetensors file '" + path_.string() + "'"; }

    const entry& usable(std::string_view name) const {
        const entry* e = find(name);
        if (!e) detail::fail(where(), ": no tensor named ", detail::quote_name(name));
        if (!e->dtype)
            detail::fail(where(), ": tensor ", detail::quote_name(name), " has dtype ", e->dtype_name,
                         ", which glimpse cannot compute with (only F32, BF16, F16)");
        return *e;
    }

    void parse(const std::string& where) {
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(base_[i]);  // little-endian u64
        if (n > detail::safetensors_max_header)
            detail::fail(where, ": header length ", n, " exceeds the ", detail::safetensors_max_header, "-byte limit");
        if (n > size_ - 8)
            detail::fail(where, ": header length ", n, " runs past the end of the file (", size_, " bytes)");

        detail::safetensors_header_parser sax(where);
        const char* text = reinterpret_cast<const char*>(base_ + 8);
        // nlohmann stops at a NUL as if the input ended there; JSON never contains one.
        if (const void* nul = std::memchr(text, 0, static_cast<std::size_t>(n)))
            detail::fail(where, ": the header is not valid JSON: NUL byte at offset ",
                         8 + (static_cast<const char*>(nul) - text));
        try {
            nlohmann::json::sax_parse(text, text + n, &sax);
        } catch (const nlohmann::json::exception& ex) {
            detail::fail(where, ": the header is not valid JSON: ", detail::printable(ex.what(), true, 240));
        }
        if (!sax.complete()) detail::fail(where, ": the header is not a complete JSON object");

        data_ = base_ + 8 + n;
        data_size_ = size_ - 8 - n;
        for (auto& e : sax.entries) check_entry(where, e);
        entries_ = std::move(sax.entries);
        metadata_ = std::move(sax.metadata);
        check_overlaps(where);
        std::sort(entries_.begin(), entries_.end(), [](const entry& a, const entry& b) { return a.name < b.name; });
    }

    void check_entry(const std::string& where, entry& e) const {
        auto bad = [&](auto&&... p) { detail::fail(where, ": tensor ", detail::quote_name(e.name), ": ", p...); };
        const auto isz = detail::safetensors_itemsize(e.dtype_name);
        if (!isz) bad("dtype \"", detail::printable(e.dtype_name), "\" is not a safetensors dtype");
        e.dtype = detail::glimpse_dtype(e.dtype_name);

        std::uint64_t numel = 1;
        for (auto d : e.shape.dims())
            if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(d), &numel) ||
                numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                bad("shape ", e.shape.str(), " has more elements than fit in 64 bits");
        std::uint64_t nbytes = 0;
        if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(*isz), &nbytes))
            bad("shape ", e.shape.str(), " of ", e.dtype_name, " is larger than 2^64 bytes");

        if (e.begin > e.end) bad("data_offsets [", e.begin, ", ", e.end, "] are reversed");
        if (e.end > data_size_)
            bad("data_offsets [", e.begin, ", ", e.end, "] run past the end of the data section (", data_size_,
                " bytes)");
        if (e.end - e.begin != nbytes)
            bad("data_offsets [", e.begin, ", ", e.end, "] span ", e.end - e.begin, " bytes but shape ", e.shape.str(),
                " of ", e.dtype_name, " needs ", nbytes);
    }

    // Two tensors sharing bytes would alias silently; empty tensors occupy nothing.
    void check_overlaps(const std::string& where) const {
        std::vector<const entry*> by_begin;
        by_begin.reserve(entries_.size());
        for (const auto& e : entries_)
            if (e.nbytes()) by_begin.push_back(&e);
        std::sort(by_begin.begin(), by_begin.end(), [](const entry* a, const entry* b) { return a->begin < b->begin; });
        const entry* reach = nullptr;  // the tensor extending furthest so far
        for (const entry* e : by_begin) {
            if (reach && e->begin < reach->end)
                detail::fail(where, ": tensors ", detail::quote_name(reach->name), " [", reach->begin, ", ", reach->end,
                             ") and ", detail::quote_name(e->name), " [", e->begin, ", ", e->end, ") overlap");
            if (!reach || e->end > reach->end) reach = e;
        }
    }

    void unmap() noexcept {
        if (base_) ::munmap(const_cast<std::byte*>(base_), static_cast<std::size_t>(size_));
        base_ = nullptr;
    }

    std::filesystem::path path_;
    const std::byte* base_ = nullptr;
    std::uint64_t size_ = 0;
    const std::byte* data_ = nullptr;
    std::uint64_t data_size_ = 0;
    std::vector<entry> entries_;
    std::map<std::string, std::string> metadata_;
};

namespace detail {

// Index files name shards relative to their directory; anything that could
// leave it ('/', '..') is refused rather than resolved.
inline bool plain_file_name(std::string_view s) noexcept {
    return !s.empty() && s != "." && s != ".." && s.find('/') == s.npos && s.find('\\') == s.npos &&
           s.find('\0') == s.npos;
}

}  // namespace detail

// A model's weights: one .safetensors file, or a directory holding either a
// `model.safetensors.index.json` with its shards or a set of .safetensors files
// whose tensor names are disjoint. Every file is mapped, none is read beyond
// its header until a tensor is accessed.
class checkpoint {
public:
    static constexpr std::string_view index_name = "model.safetensors.index.json";

    explicit checkpoint(const std::filesystem::path& path) : path_(path) {
        std::error_code ec;
        const auto st = std::filesystem::status(path, ec);
        if (st.type() == std::filesystem::file_type::not_found) detail::fail(where(), ": no such file or directory");
        if (ec) detail::fail(where(), ": ", ec.message());
        if (!std::filesystem::is_directory(st)) {
            files_.emplace_back(path);
            for (std::size_t i = 0; i < files_[0].entries().size(); ++i)
                index_.emplace(files_[0].entries()[i].name, location{0, i});
        } else if (std::filesystem::exists(path / index_name, ec)) {
            open_indexed();
        } else {
            open_all();
        }
    }

    const std::filesystem::path& path() const noexcept { return path_; }
    const std::vector<safetensors_file>& files() const noexcept { return files_; }

    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(index_.size());
        for (const auto& [n, loc] : index_) out.push_back(n);
        return out;  // std::map: already sorted
    }
    bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }

    // {nullptr, nullptr} when absent.
    std::pair<const safetensors_file*, const safetensors_entry*> find(std::string_view name) const {
        auto it = index_.find(name);
        if (it == index_.end()) return {nullptr, nullptr};
        const safetensors_file& f = files_[it->second.file];
        return {&f, &f.entries()[it->second.entry]};
    }

    cview get(std::string_view name) const { return file_of(name).get(name); }
    tensor load(std::string_view name) const { return file_of(name).load(name); }

    std::int64_t total_parameters() const {
        std::int64_t n = 0;
        for (const auto& [name, loc] : index_) n += files_[loc.file].entries()[loc.entry].numel();
        return n;  // cannot overflow: each tensor's count is at most its (disjoint) byte size
    }

private:
    struct location {
        std::size_t file;
        std::size_t entry;
    };

    std::string where() const { return "checkpoint '" + path_.string() + "'"; }

    const safetensors_file& file_of(std::string_view name) const {
        auto [f, e] = find(name);
        if (!f) detail::fail(where(), ": no tensor named ", detail::quote_name(name));
        return *f;
    }

    void open_indexed() {
        const std::string idx(index_name);
        const nlohmann::json j = parse_json_file(path_ / index_name, where());
        if (!j.is_object()) detail::fail(where(), ": ", idx, " is not a JSON object");
        const auto wm = j.find("weight_map");
        if (wm == j.end() || !wm->is_object()) detail::fail(where(), ": ", idx, " has no \"weight_map\" object");

        std::map<std::string, std::size_t, std::less<>> shard_ids;
        for (const auto& [name, shard] : wm->items()) {
            if (!shard.is_string())
                detail::fail(where(), ": ", idx, " maps tensor ", detail::quote_name(name), " to a ", shard.type_name(),
                             ", not a file name");
            const auto& file = shard.get_ref<const std::string&>();
            if (!detail::plain_file_name(file))
                detail::fail(where(), ": ", idx, " maps tensor ", detail::quote_name(name), " to ",
                             detail::quote_name(file), ", which is not a plain file name inside the directory");
            auto it = shard_ids.find(file);
            if (it == shard_ids.end()) {
                files_.emplace_back(path_ / file);  // each shard is opened once
                it = shard_ids.emplace(file, files_.size() - 1).first;
            }
            const safetensors_file& f = files_[it->second];
            const safetensors_entry* e = f.find(name);
            if (!e)
                detail::fail(where(), ": ", idx, " maps tensor ", detail::quote_name(name), " to ",
                             detail::quote_name(file), ", which has no such tensor");
            index_.emplace(name, location{it->second, static_cast<std::size_t>(e - f.entries().data())});
        }
    }

    void open_all() {
        std::vector<std::filesystem::path> found;
        std::error_code ec;
        for (auto it = std::filesystem::directory_iterator(path_, ec);
             !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
            std::error_code type_ec;  // an unreadable entry is skipped, not fatal
            if (it->path().extension() == ".safetensors" && std::filesystem::is_regular_file(it->path(), type_ec))
                found.push_back(it->path());
        }
        if (ec) detail::fail(where(), ": cannot list the directory: ", ec.message());
        if (found.empty()) detail::fail(where(), ": directory has no ", index_name, " and no .safetensors files");
        std::sort(found.begin(), found.end());
        for (const auto& p : found) files_.emplace_back(p);
        for (std::size_t fi = 0; fi < files_.size(); ++fi) {
            const auto& es = files_[fi].entries();
            for (std::size_t ei = 0; ei < es.size(); ++ei) {
                auto [it, fresh] = index_.emplace(es[ei].name, location{fi, ei});
                if (!fresh)
                    detail::fail(where(), ": tensor ", detail::quote_name(es[ei].name), " is in both ",
                                 files_[it->second.file].path().filename().string(), " and ",
                                 files_[fi].path().filename().string());
            }
        }
    }

    std::filesystem::path path_;
    std::vector<safetensors_file> files_;  // never resized after construction: index_ refers into it
    std::map<std::string, location, std::less<>> index_;
};

namespace detail {

inline void write_all(int fd, const std::byte* p, std::size_t n, const std::string& where) {
    while (n > 0) {
        const ::ssize_t w = ::write(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            fail(where, ": write failed: ", std::strerror(errno));
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

// Writes the elements of v in row-major order, gathering strided views
// through a bounded staging buffer.
inline void write_view(int fd, const cview& v, const std::string& where) {
    const std::size_t isz = itemsize(v.type());
    const std::int64_t n = v.numel();
    if (n == 0) return;
    if (v.is_contiguous()) {
        write_all(fd, v.data(), static_cast<std::size_t>(n) * isz, where);
        return;
    }
    constexpr std::size_t chunk = std::size_t{1} << 20;
    std::vector<std::byte> buf;
    buf.reserve(chunk);
    std::array<std::int64_t, max_rank> idx{};
    const auto r = static_cast<std::size_t>(v.rank());
    for (std::int64_t i = 0; i < n; ++i) {
        const std::byte* src = v.data() + v.offset({idx.data(), r}) * static_cast<std::int64_t>(isz);
        buf.insert(buf.end(), src, src + isz);
        if (buf.size() + isz > chunk) {
            write_all(fd, buf.data(), buf.size(), where);
            buf.clear();
        }
        for (std::size_t d = r; d-- > 0;) {
            if (++idx[d] < v.shape()[static_cast<int>(d)]) break;
            idx[d] = 0;
        }
    }
    write_all(fd, buf.data(), buf.size(), where);
}

}  // namespace detail

// Writes tensors (F32/BF16/F16, any strides) to a .safetensors file, laid out in
// the given order. The header is space-padded to a multiple of 8 bytes as the
// reference implementation does, so the data section starts 8-byte aligned. The
// file appears atomically: it is written to `<path>.tmp.<pid>`, synced, and
// renamed over `path`; on failure no partial file is left behind.
inline void save_safetensors(const std::filesystem::path& path, std::span<const std::pair<std::string, cview>> tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    const std::string where = "save_safetensors '" + path.string() + "'";
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        auto& m = header["__metadata__"] = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) m[k] = v;
    }
    std::unordered_set<std::string_view> names;
    std::uint64_t offset = 0;
    for (const auto& [name, v] : tensors) {
        if (name == "__metadata__") detail::fail(where, ": '__metadata__' is reserved and cannot name a tensor");
        if (!names.insert(name).second) detail::fail(where, ": tensor ", detail::quote_name(name), " is given twice");
        const auto n = static_cast<std::uint64_t>(v.numel());
        if (n > 0 && !v.data()) detail::fail(where, ": tensor ", detail::quote_name(name), " is a view of no memory");
        std::uint64_t bytes = 0, end = 0;
        if (__builtin_mul_overflow(n, itemsize(v.type()), &bytes) || __builtin_add_overflow(offset, bytes, &end))
            detail::fail(where, ": tensor ", detail::quote_name(name), " does not fit in a 64-bit file");
        auto& e = header[name] = nlohmann::ordered_json::object();
        e["dtype"] = safetensors_name(v.type());
        e["shape"] = std::vector<std::int64_t>(v.shape().dims().begin(), v.shape().dims().end());
        e["data_offsets"] = {offset, end};
        offset = end;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& ex) {
        detail::fail(where, ": a tensor name or metadata string is not valid UTF-8 (",
                     detail::printable(ex.what(), true), ")");
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    std::array<std::byte, 8> len{};
    for (std::size_t i = 0; i < 8; ++i) len[i] = static_cast<std::byte>((text.size() >> (8 * i)) & 0xff);

    const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) detail::fail(where, ": cannot create ", tmp.string(), ": ", std::strerror(errno));
    try {
        detail::write_all(fd, len.data(), len.size(), where);
        detail::write_all(fd, reinterpret_cast<const std::byte*>(text.data()), text.size(), where);
        for (const auto& [name, v] : tensors) detail::write_view(fd, v, where);
        if (::fsync(fd) != 0) detail::fail(where, ": fsync failed: ", std::strerror(errno));
        // close() may report a deferred write error; the descriptor is gone either way.
        const int rc = ::close(std::exchange(fd, -1));
        if (rc != 0) detail::fail(where, ": close failed: ", std::strerror(errno));
    } catch (...) {
        if (fd >= 0) ::close(fd);
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw;
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        detail::fail(where, ": cannot rename the temporary file into place: ", ec.message());
    }
}

// Convenience overload for a braced list or a vector.
inline void save_safetensors(const std::filesystem::path& path,
                             const std::vector<std::pair<std::string, cview>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    save_safetensors(path, std::span<const std::pair<std::string, cview>>(tensors), metadata);
}

}  // namespace glimpse
