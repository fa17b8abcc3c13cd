// glimpse-train's resume state (train_state.safetensors, the input): the safetensors header,
// its metadata (format, step, the record as JSON text), every parameter's two moments, losses.
// A resumed run trusts nothing in it that load_train_state has not checked.
#include <glimpse/train/head_checkpoint.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fs = std::filesystem;
    static const fs::path dir = [] {
        const auto d = glimpse::fuzz::scratch() / "run";
        fs::create_directories(d);
        return d;
    }();
    (void)glimpse::fuzz::write((fs::path("run") / glimpse::train::state_file_name).string(), data, size);
    try {
        const glimpse::train::train_state st = glimpse::train::load_train_state(dir);
        (void)st.record.dump();
    } catch (const glimpse::error&) {
    }
    return 0;
}
