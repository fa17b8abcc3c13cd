// A sharded checkpoint's model.safetensors.index.json (the input) beside one
// valid shard: names, shard file names (no path may leave the directory),
// duplicate and missing entries.
#include <glimpse/io/safetensors.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fs = std::filesystem;
    static const fs::path dir = [] {
        const auto d = glimpse::fuzz::scratch() / "ckpt";
        fs::create_directories(d);
        glimpse::tensor a(glimpse::shape{2, 3}), b(glimpse::shape{4});
        glimpse::save_safetensors(d / "model-00001-of-00001.safetensors",
                                  std::vector<std::pair<std::string, glimpse::cview>>{{"a", a.cv()}, {"b", b.cv()}});
        return d;
    }();
    {
        std::ofstream(dir / "model.safetensors.index.json", std::ios::binary | std::ios::trunc)
            .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const glimpse::checkpoint ck(dir);
        for (const auto& n : ck.names()) (void)ck.get(n);
    } catch (const glimpse::error&) {
    }
    return 0;
}
