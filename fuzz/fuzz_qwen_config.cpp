// config.json of both families (the first byte picks which file the rest is:
// config.json or preprocessor_config.json). Every integer is range-checked before
// arithmetic; UBSan turns a signed overflow into a crash.
#include <glimpse/models/qwen_config.hpp>
#include <glimpse/models/qwen_preprocess.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    try {
        if (data[0] & 1) {
            const auto p = glimpse::fuzz::write("preprocessor_config.json", data + 1, size - 1);
            (void)glimpse::models::preprocess_config::from_json(p);
        } else {
            (void)glimpse::fuzz::write("config.json", data + 1, size - 1);
            const auto c = glimpse::models::qwen_vision_config::load(glimpse::fuzz::scratch());
            (void)c.head_dim();
            (void)c.pos_side();
        }
    } catch (const glimpse::error&) {
    }
    return 0;
}
