// A .safetensors file: the header is parsed and validated when the file opens;
// every tensor it admits is then read in full (as a tool would), so an offset the
// validation let through shows up as an out-of-bounds read under ASan.
#include <glimpse/io/safetensors.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = glimpse::fuzz::write("f.safetensors", data, size);
    try {
        const glimpse::safetensors_file f(path);
        double sum = 0;
        for (const auto& e : f.entries()) {
            if (!e.dtype) continue;  // stored, not computed with: nothing to read
            const glimpse::tensor t = f.load(e.name).to(glimpse::dtype::f32);
            for (std::int64_t i = 0; i < t.numel(); ++i) sum += static_cast<double>(t.ptr<float>()[i]);
        }
        for (const auto& [k, v] : f.metadata()) sum += static_cast<double>(k.size() + v.size());
        (void)sum;
    } catch (const glimpse::error&) {
    }
    return 0;
}
