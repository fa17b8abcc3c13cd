#pragma once
// checkpoint: a model's weights as a Hugging Face checkpoint stores them: one .safetensors
// file, or a directory with a model.safetensors.index.json and its shards, or a set of
// .safetensors files whose tensor names are disjoint. Every file is mapped and validated
// (io/safetensors_file.hpp); the index is untrusted JSON (io/json_file.hpp).

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

#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/io/json_file.hpp"
#include "glimpse/io/safetensors_file.hpp"

namespace glimpse {

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

}  // namespace glimpse
