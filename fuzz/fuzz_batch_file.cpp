// A glimpse-compare batch file (the input): JSON lines naming images, boxes in either format,
// task types, ids (unique file names), comments; then every item made a request for a 100 x 100
// image, as glimpse-compare does once an image is decoded (boxes from arbitrary numbers).
#include <glimpse/compare/batch.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace gc = glimpse::compare;
    const auto path = glimpse::fuzz::write("batch.jsonl", data, size);
    try {
        const gc::batch_file b = gc::read_batch(path);
        for (const auto& w : b.warnings()) (void)w.size();
        for (const auto& it : b.items) {
            try {
                (void)gc::make_request(100.0, 100.0, it.task.value_or(gc::task_type::referring),
                                       it.format.value_or(gc::box_format::pixels), it.person_box, it.object_box,
                                       it.action, it.object_category, it.id);
            } catch (const glimpse::error&) {
            }
        }
    } catch (const glimpse::error&) {
    }
    return 0;
}
