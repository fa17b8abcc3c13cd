#pragma once
// Writing a comparison: {out}/attention_comparison_{task}.png, .json and
// .safetensors, all or nothing. Everything is rendered in memory first; the
// three files are written under temporary names in the output directory and
// renamed into place only when all three exist — the JSON last, so its
// presence means the image is done (what batch mode's resume looks for).

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/compare/comparison_figure.hpp"
#include "glimpse/io/safetensors.hpp"
#include "glimpse/viz/png.hpp"

namespace glimpse::compare {

struct fonts {
    viz::font regular, bold;
    std::string warning;  // non-empty: fell back on the built-in font
    static fonts system_default() {
        fonts f;
        f.regular = viz::font::system_default(false, &f.warning);
        std::string w2;
        f.bold = viz::font::system_default(true, &w2);
        if (f.bold.builtin() && !f.regular.builtin()) f.bold = f.regular;  // no bold face: regular
        return f;
    }
};

struct written {
    std::filesystem::path png, json, maps;
};

inline written output_paths(const std::filesystem::path& dir, task_type t) {
    const std::string stem = output_stem(t);
    return {dir / (stem + ".png"), dir / (stem + ".json"), dir / (stem + ".safetensors")};
}

// `annotations`: members added to the JSON's top level after to_json's (batch
// mode's "fingerprint").
inline written write_outputs(const comparison_result& r, const std::filesystem::path& dir, const fonts& f,
                             const figure_options& fo = {}, stage_timings* t = nullptr,
                             const nlohmann::ordered_json& annotations = nlohmann::ordered_json::object()) {
    namespace fs = std::filesystem;
    stopwatch wr;
    const viz::canvas img = viz::canvas::from(r.image);
    const viz::canvas fig = viz::render_figure(make_figure(r, fo), img, f.regular, f.bold);
    const double render_ms = wr.ms();
    if (t) t->add("render figure", render_ms);

    stopwatch ww;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) glimpse::detail::fail("output directory '", dir.string(), "': ", ec.message());
    const written out = output_paths(dir, r.req.task);
    const fs::path tpng = viz::temp_path_for(out.png), tjson = viz::temp_path_for(out.json),
                   tmaps = viz::temp_path_for(out.maps);
    const auto cleanup = [&] {
        std::error_code e;
        for (const auto& p : {tpng, tjson, tmaps}) fs::remove(p, e);
    };
    try {
        viz::write_png_file(fig, tpng);
        const maps_payload mp = maps_of(r);
        save_safetensors(tmaps, mp.tensors, mp.metadata);
        std::map<std::string, double> extra;
        if (t)
            for (const auto& [k, v] : t->ms) extra[k] = v;
        auto j = to_json(r, extra);
        for (auto it = annotations.begin(); it != annotations.end(); ++it) j[it.key()] = it.value();
        {
            std::ofstream o(tjson);
            if (!o) glimpse::detail::fail("cannot write '", tjson.string(), "'");
            o << j.dump(2) << "\n";
            o.flush();
            if (!o) glimpse::detail::fail("cannot write '", tjson.string(), "'");
        }
        for (const auto& [from, to] :
             {std::pair{tmaps, out.maps}, std::pair{tpng, out.png}, std::pair{tjson, out.json}}) {
            fs::rename(from, to, ec);
            if (ec) glimpse::detail::fail("cannot write '", to.string(), "': ", ec.message());
        }
    } catch (...) {
        cleanup();
        throw;
    }
    if (t) t->add("write outputs", ww.ms());
    return out;
}

}  // namespace glimpse::compare
