#pragma once
// Whole-file reads and writes, and the message of a glimpse::error, for tests.

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include <glimpse/core/error.hpp>

namespace glimpse::test {

// The file's bytes (empty if it cannot be opened).
inline std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Replaces the file with `bytes`.
inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
    std::ofstream(p, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The message of the glimpse::error `f` throws, or "" when it throws none (any other
// exception escapes, and fails the test).
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const glimpse::error& e) {
        return e.what();
    }
    return "";
}

}  // namespace glimpse::test
