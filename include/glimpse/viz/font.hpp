#pragma once
// Text for figures: a TrueType font rasterised by stb_truetype (the compiled
// one in Debian's libstb, like stb_image), with measured extents so layouts can
// be computed before anything is drawn.
//
// The default face is DejaVu Sans from Debian's fonts-dejavu-core, found at run
// time ($GLIMPSE_FONT first, then the usual Debian / Fedora / macOS paths).
// Without any TrueType font, `font::system_default` falls back on stb_easy_font's
// built-in stroke font (legible, not pretty) and says so through `warning`.
//
// Sizes are pixel heights (ascent - descent, stb's ScaleForPixelHeight).
// Text is UTF-8; glyphs missing from the face render as the face's .notdef box.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <stb/stb_easy_font.h>
#include <stb/stb_truetype.h>

#include "glimpse/core/error.hpp"
#include "glimpse/viz/canvas.hpp"

namespace glimpse::viz {

// Coverage of rendered text: w x h bytes (0..255), `baseline` rows from the top.
struct text_mask {
    std::int64_t w = 0, h = 0, baseline = 0;
    std::vector<std::uint8_t> a;
    std::uint8_t at(std::int64_t x, std::int64_t y) const { return a[static_cast<std::size_t>(y * w + x)]; }
};

struct text_extent {
    double width = 0;    // advance width of the whole string
    double ascent = 0;   // above the baseline (the face's ascent, not the string's)
    double descent = 0;  // below the baseline, positive
    double height() const { return ascent + descent; }
};

namespace detail {

// UTF-8 -> code points; invalid bytes become U+FFFD.
inline std::vector<int> utf8_codepoints(std::string_view s) {
    std::vector<int> out;
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (n < 0 || i + static_cast<std::size_t>(n) >= s.size() + (n == 0 ? 1 : 0)) {
            out.push_back(0xFFFD);
            ++i;
            continue;
        }
        int cp = n == 0 ? c : (c & (0x3F >> n));
        bool ok = true;
        for (int k = 1; k <= n; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
            ok = ok && (cc >> 6) == 2;
            cp = (cp << 6) | (cc & 0x3F);
        }
        out.push_back(ok ? cp : 0xFFFD);
        i += ok ? static_cast<std::size_t>(n) + 1 : 1;
    }
    return out;
}

}  // namespace detail

class font {
public:
    // The font file at `path` (TTF / OTF with TrueType outlines).
    static font load(const std::filesystem::path& path) {
        std::ifstream in(path, std::ios::binary);
        glimpse::detail::check(static_cast<bool>(in), "font '", path.string(), "': cannot open");
        auto f = font();
        f.data_ = std::make_shared<std::vector<unsigned char>>(std::istreambuf_iterator<char>(in),
                                                               std::istreambuf_iterator<char>());
        const int off = stbtt_GetFontOffsetForIndex(f.data_->data(), 0);
        glimpse::detail::check(!f.data_->empty() && off >= 0 && stbtt_InitFont(&f.info_, f.data_->data(), off),
                               "font '", path.string(), "': not a TrueType font");
        stbtt_GetFontVMetrics(&f.info_, &f.ascent_, &f.descent_, &f.line_gap_);
        f.path_ = path;
        return f;
    }

    // Where the default face is looked for, in order.
    static std::vector<std::filesystem::path> default_paths(bool bold = false) {
        std::vector<std::filesystem::path> p;
        if (const char* env = std::getenv(bold ? "GLIMPSE_FONT_BOLD" : "GLIMPSE_FONT"); env && *env)
            p.emplace_back(env);
        const char* name = bold ? "DejaVuSans-Bold.ttf" : "DejaVuSans.ttf";
        for (const char* dir : {"/usr/share/fonts/truetype/dejavu/", "/usr/share/fonts/dejavu/",
                                "/usr/share/fonts/dejavu-sans-fonts/", "/usr/local/share/fonts/", "/Library/Fonts/"})
            p.emplace_back(std::string(dir) + name);
        return p;
    }

    // DejaVu Sans (or Bold), else the built-in stroke font with `warning` set.
    static font system_default(bool bold = false, std::string* warning = nullptr) {
        std::error_code ec;
        for (const auto& p : default_paths(bold))
            if (std::filesystem::is_regular_file(p, ec)) return load(p);
        if (warning)
            *warning = std::string("no TrueType font found (looked for ") +
                       default_paths(bold).back().filename().string() +
                       " under /usr/share/fonts/truetype/dejavu/; install fonts-dejavu-core or set GLIMPSE_FONT); "
                       "labels use stb_easy_font's built-in stroke font";
        return font();
    }

    // Built-in (stb_easy_font) when no TrueType face is loaded.
    bool builtin() const noexcept { return !data_; }
    const std::filesystem::path& path() const noexcept { return path_; }

    text_extent measure(std::string_view text, double px) const {
        if (builtin()) {
            std::string s(text);
            const double k = px / kEasyHeight;
            return {k * stb_easy_font_width(s.data()), k * 8.0, k * 2.0};
        }
        const double sc = scale(px);
        double x = 0;
        const auto cps = detail::utf8_codepoints(text);
        for (std::size_t i = 0; i < cps.size(); ++i) {
            int adv = 0, lsb = 0;
            stbtt_GetCodepointHMetrics(&info_, cps[i], &adv, &lsb);
            x += adv * sc;
            if (i + 1 < cps.size()) x += sc * stbtt_GetCodepointKernAdvance(&info_, cps[i], cps[i + 1]);
        }
        return {x, ascent_ * sc, -descent_ * sc};
    }

    // The string's coverage mask, anti-aliased, with sub-pixel glyph placement.
    text_mask render(std::string_view text, double px) const {
        const text_extent e = measure(text, px);
        text_mask m;
        m.baseline = static_cast<std::int64_t>(std::ceil(e.ascent));
        m.w = static_cast<std::int64_t>(std::ceil(e.width)) + 2;
        m.h = m.baseline + static_cast<std::int64_t>(std::ceil(e.descent)) + 1;
        m.a.assign(static_cast<std::size_t>(m.w * m.h), 0);
        if (builtin()) {
            render_builtin(text, px, m);
            return m;
        }
        const double sc = scale(px);
        const auto cps = detail::utf8_codepoints(text);
        double x = 0;
        std::vector<unsigned char> glyph;
        for (std::size_t i = 0; i < cps.size(); ++i) {
            const double shift = x - std::floor(x);
            int x0, y0, x1, y1;
            stbtt_GetCodepointBitmapBoxSubpixel(&info_, cps[i], static_cast<float>(sc), static_cast<float>(sc),
                                                static_cast<float>(shift), 0.0f, &x0, &y0, &x1, &y1);
            const int gw = x1 - x0, gh = y1 - y0;
            if (gw > 0 && gh > 0) {
                glyph.assign(static_cast<std::size_t>(gw * gh), 0);
                stbtt_MakeCodepointBitmapSubpixel(&info_, glyph.data(), gw, gh, gw, static_cast<float>(sc),
                                                  static_cast<float>(sc), static_cast<float>(shift), 0.0f, cps[i]);
                const auto ox = static_cast<std::int64_t>(std::floor(x)) + x0, oy = m.baseline + y0;
                for (int gy = 0; gy < gh; ++gy)
                    for (int gx = 0; gx < gw; ++gx) {
                        const std::int64_t tx = ox + gx, ty = oy + gy;
                        if (tx < 0 || ty < 0 || tx >= m.w || ty >= m.h) continue;
                        auto& d = m.a[static_cast<std::size_t>(ty * m.w + tx)];
                        d = static_cast<std::uint8_t>(std::min(255, d + glyph[static_cast<std::size_t>(gy * gw + gx)]));
                    }
            }
            int adv = 0, lsb = 0;
            stbtt_GetCodepointHMetrics(&info_, cps[i], &adv, &lsb);
            x += adv * sc;
            if (i + 1 < cps.size()) x += sc * stbtt_GetCodepointKernAdvance(&info_, cps[i], cps[i + 1]);
        }
        return m;
    }

    // The size of the pixel box a string's mask covers (render()'s w x h): what
    // layouts reserve and what draw() records, so the two always agree.
    std::int64_t box_width(std::string_view text, double px) const {
        return static_cast<std::int64_t>(std::ceil(measure(text, px).width)) + 2;
    }
    std::int64_t box_height(double px) const {
        const text_extent e = measure("", px);
        return static_cast<std::int64_t>(std::ceil(e.ascent)) + static_cast<std::int64_t>(std::ceil(e.descent)) + 1;
    }
    // Rows from the top of the box to the baseline.
    std::int64_t box_ascent(double px) const { return static_cast<std::int64_t>(std::ceil(measure("", px).ascent)); }

    // The pixel box draw() may touch for these arguments.
    rect box_of(std::string_view text, double x, double baseline, double px, bool rotated = false) const {
        const auto X = static_cast<std::int64_t>(std::lround(x)), Y = static_cast<std::int64_t>(std::lround(baseline));
        const std::int64_t w = box_width(text, px), h = box_height(px), a = box_ascent(px);
        if (!rotated) return {X, Y - a, X + w, Y - a + h};
        return {X - a, Y - w + 1, X - a + h, Y + 1};
    }

    // "…" where the face has it, else "..." (the built-in font is ASCII).
    std::string ellipsis() const {
        if (!builtin() && stbtt_FindGlyphIndex(&info_, 0x2026) != 0) return "\u2026";
        return "...";
    }

    // Draws `text` with its baseline's left end at (x, baseline). rotated: turned
    // 90 degrees counter-clockwise (reads bottom to top); (x, baseline) is then
    // the left end of the baseline in the turned frame (x: the baseline column,
    // baseline: the row where the text starts, text going up). Records the text
    // and its box on the canvas (`owner`: the panel it labels, -1 for none).
    void draw(canvas& c, std::string_view text, double x, double baseline, double px, rgb8 color, bool rotated = false,
              std::int64_t owner = -1) const {
        if (text.empty()) return;
        c.record({mark_kind::text, std::string(text), box_of(text, x, baseline, px, rotated), owner});
        const text_mask m = render(text, px);
        const auto X = static_cast<std::int64_t>(std::lround(x)), Y = static_cast<std::int64_t>(std::lround(baseline));
        for (std::int64_t my = 0; my < m.h; ++my)
            for (std::int64_t mx = 0; mx < m.w; ++mx) {
                const std::uint8_t a = m.at(mx, my);
                if (!a) continue;
                if (!rotated)
                    c.blend(X + mx, Y - m.baseline + my, color, a / 255.0);
                else  // (mx, my) -> column X + (my - baseline), row Y - mx
                    c.blend(X + (my - m.baseline), Y - mx, color, a / 255.0);
            }
    }

    // Horizontal text whose box (box_width x box_height) has its top-left corner at (left, top).
    void draw_in_box(canvas& c, std::string_view text, std::int64_t left, std::int64_t top, double px, rgb8 color,
                     std::int64_t owner = -1) const {
        draw(c, text, static_cast<double>(left), static_cast<double>(top + box_ascent(px)), px, color, false, owner);
    }
    // Turned text (reading upwards) whose box (box_height wide, box_width tall)
    // has its left edge at `left` and its bottom edge (exclusive) at `bottom`.
    void draw_turned_in_box(canvas& c, std::string_view text, std::int64_t left, std::int64_t bottom, double px,
                            rgb8 color, std::int64_t owner = -1) const {
        draw(c, text, static_cast<double>(left + box_ascent(px)), static_cast<double>(bottom - 1), px, color, true,
             owner);
    }

private:
    static constexpr double kEasyHeight = 10.0;  // stb_easy_font: caps 7 px, descenders to ~9

    double scale(double px) const { return stbtt_ScaleForPixelHeight(&info_, static_cast<float>(px)); }

    static void render_builtin(std::string_view text, double px, text_mask& m) {
        std::string s(text);
        std::vector<char> buf(s.size() * 300 + 64);
        unsigned char col[4] = {255, 255, 255, 255};
        const int quads = stb_easy_font_print(0, 0, s.data(), col, buf.data(), static_cast<int>(buf.size()));
        const double k = px / kEasyHeight;
        const double top = static_cast<double>(m.baseline) - 8.0 * k;  // easy_font's y=0 is ~8 units above its baseline
        for (int q = 0; q < quads; ++q) {
            const auto* v = reinterpret_cast<const float*>(buf.data() + q * 64);
            const double x0 = v[0] * k, y0 = v[1] * k + top, x1 = v[8] * k, y1 = v[9] * k + top;
            for (auto y = static_cast<std::int64_t>(std::floor(y0)); y < static_cast<std::int64_t>(std::ceil(y1)); ++y)
                for (auto x = static_cast<std::int64_t>(std::floor(x0)); x < static_cast<std::int64_t>(std::ceil(x1));
                     ++x)
                    if (x >= 0 && y >= 0 && x < m.w && y < m.h) m.a[static_cast<std::size_t>(y * m.w + x)] = 255;
        }
    }

    std::shared_ptr<std::vector<unsigned char>> data_;  // stbtt_fontinfo points into it
    stbtt_fontinfo info_{};
    int ascent_ = 0, descent_ = 0, line_gap_ = 0;
    std::filesystem::path path_;
};

}  // namespace glimpse::viz
