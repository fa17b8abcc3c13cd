#pragma once
// Shared by the libFuzzer harnesses: the input written to a file in a per-process
// scratch directory (the parsers under test read files, as the tools do), and the
// one rule every harness checks: bad input is a glimpse::error, nothing else.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include <unistd.h>

namespace glimpse::fuzz {

// Removed at exit (libFuzzer ends with exit(), which runs static destructors).
struct scratch_dir {
    std::filesystem::path path;
    scratch_dir() : path(std::filesystem::temp_directory_path() / ("glimpse-fuzz-" + std::to_string(::getpid()))) {
        std::filesystem::create_directories(path);
    }
    ~scratch_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

inline const std::filesystem::path& scratch() {
    static const scratch_dir dir;
    return dir.path;
}

inline std::filesystem::path write(const std::string& name, const std::uint8_t* data, std::size_t size) {
    const auto p = scratch() / name;
    std::ofstream(p, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    return p;
}

}  // namespace glimpse::fuzz
