#pragma once
// safetensors_file: one .safetensors file, memory-mapped read-only and validated whole when
// it opens (io/safetensors_header.hpp). Tensor data is only mapped, not read: opening a
// 16 GB checkpoint touches its header and nothing else. POSIX only (open/mmap).

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

#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/io/safetensors_header.hpp"

namespace glimpse {

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

}  // namespace glimpse
