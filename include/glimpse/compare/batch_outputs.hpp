#pragma once
// What a whole batch leaves in its output directory beside the per-image files:
// per_image_{task}.csv and summary_{task}.csv for each task its lines have, and index.html,
// the page to browse them. One function, so an unsharded run and a merge of shards
// (compare/shards.hpp) write the same bytes from the same rows.

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "glimpse/compare/batch_table.hpp"
#include "glimpse/compare/report_html.hpp"

namespace glimpse::compare {

// `rows`: every image of the file, in file order. Returns the summaries written.
inline std::vector<task_summary> write_batch_tables(const std::filesystem::path& output_dir,
                                                    const std::vector<image_row>& rows, const report_meta& meta) {
    std::vector<task_summary> out;
    for (const task_type t : {task_type::referring, task_type::grounding}) {
        if (std::none_of(rows.begin(), rows.end(), [&](const image_row& r) { return r.task == t; })) continue;
        task_summary s{t, summarize(rows, t), output_dir / ("summary_" + std::string(name(t)) + ".csv"),
                       output_dir / ("per_image_" + std::string(name(t)) + ".csv")};
        write_text_atomic(s.per_image_csv, per_image_csv(rows, t));
        write_text_atomic(s.summary_csv, summary_csv(s.rows, t));
        out.push_back(std::move(s));
    }
    write_text_atomic(output_dir / "index.html", report_html(rows, out, meta));
    return out;
}

}  // namespace glimpse::compare
