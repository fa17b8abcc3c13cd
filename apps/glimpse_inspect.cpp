// glimpse-inspect FILE_OR_DIR: list the tensors of a safetensors checkpoint (the table is
// io/checkpoint_listing.hpp's).
//
// Meant to be pointed at files of unknown provenance, so every failure —
// including a hostile file — ends as one line on stderr and exit status 1.

#include <cstdio>
#include <string>

#include "app_common.hpp"

#include <glimpse/io/checkpoint_listing.hpp>

int main(int argc, char** argv) {
    CLI::App app{"List the tensors of a safetensors file or checkpoint directory.", "glimpse-inspect"};
    std::string path;
    app.add_option("FILE_OR_DIR", path,
                   "a .safetensors file, or a directory with model.safetensors.index.json or .safetensors files")
        ->required();
    if (const auto done = glimpse::app::parse(app, argc, argv, "glimpse-inspect")) return *done;
    return glimpse::app::run(
        "glimpse-inspect",
        [&] {
            const std::string listing = glimpse::checkpoint_listing(glimpse::checkpoint(path));
            if (std::fputs(listing.c_str(), stdout) < 0 || std::fflush(stdout) != 0)
                throw glimpse::error("cannot write to standard output");
            return 0;
        },
        /*one_line=*/true);
}
