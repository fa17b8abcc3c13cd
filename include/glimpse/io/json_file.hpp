#pragma once
// JSON from untrusted bytes, with the limits every JSON reader in glimpse applies: config.json,
// preprocessor_config.json, sharded-checkpoint indexes, the heatmap head's record, JSON-lines
// datasets and compare batch files all parse through parse_json_text.
//
//   * nesting deeper than json_max_depth is refused as it is met, before the DOM holds it (a
//     line of 20,000 nested arrays would otherwise be built, then dumped recursively into an
//     error message: a stack overflow);
//   * a key given twice in one object is refused (a DOM keeps only the last, which would hide a
//     conflicting value);
//   * a NUL byte is refused (nlohmann would stop there as if the input ended);
//   * files are read whole only up to json_max_file_bytes.
// Every refusal is one glimpse::error naming what was being read.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/error.hpp"

namespace glimpse {

inline constexpr int json_max_depth = 64;
inline constexpr std::uintmax_t json_max_file_bytes = 100'000'000;

// text as one JSON value. Errors: "<what>: <reason>" (just the reason when what is empty), the
// reason one of "not valid JSON: ...", "nested more than 64 levels deep", "key 'k' appears twice".
inline nlohmann::json parse_json_text(std::string_view text, std::string_view what) {
    const auto refuse = [&](const std::string& reason) {
        if (what.empty()) throw error(reason);
        detail::fail(what, ": ", reason);
    };
    if (text.find('\0') != std::string_view::npos) refuse("not valid JSON: it contains a NUL byte");
    std::vector<std::unordered_set<std::string>> keys;
    const auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
        using ev_t = nlohmann::json::parse_event_t;
        if (depth > json_max_depth) refuse("nested more than " + std::to_string(json_max_depth) + " levels deep");
        if (ev == ev_t::object_start) keys.emplace_back();
        if (ev == ev_t::object_end && !keys.empty()) keys.pop_back();
        if (ev == ev_t::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
            refuse("key " + detail::quote_name(parsed.get<std::string>()) + " appears twice");
        return true;
    };
    try {
        return nlohmann::json::parse(text, cb);
    } catch (const nlohmann::json::exception& ex) {
        std::string m = ex.what();
        // "[json.exception.parse_error.101] parse error at line 1, ...": the bracketed id says nothing to a user.
        if (const auto p = m.find("] "); m.rfind("[json.exception.", 0) == 0 && p != std::string::npos)
            m = m.substr(p + 2);
        refuse("not valid JSON: " + detail::printable(m, true, 240));
    }
    return {};  // not reached: refuse throws
}

// A small JSON file whole (file name in every error, after `where`).
inline nlohmann::json parse_json_file(const std::filesystem::path& file, const std::string& where) {
    const std::string name = file.filename().string();
    std::error_code ec;
    const auto size = std::filesystem::file_size(file, ec);
    if (ec) detail::fail(where, ": cannot read ", name, ": ", ec.message());
    if (size > json_max_file_bytes) detail::fail(where, ": ", name, " is larger than 100 MB");
    std::ifstream in(file, std::ios::binary);
    std::string text(static_cast<std::size_t>(size), '\0');
    if (!in.read(text.data(), static_cast<std::streamsize>(size))) detail::fail(where, ": cannot read ", name);
    return parse_json_text(text, where + ": " + name);
}

}  // namespace glimpse
