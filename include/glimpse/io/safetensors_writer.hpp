#pragma once
// save_safetensors: tensors (F32/BF16/F16, any strides) to a .safetensors file that Python's
// safetensors reads, written atomically (temp file, fsync, rename).

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
#include "glimpse/core/tensor.hpp"
#include "glimpse/io/safetensors_header.hpp"

namespace glimpse {

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
