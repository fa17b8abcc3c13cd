#pragma once
// Fitting text into a width: one line truncated with an ellipsis, or a
// paragraph wrapped at spaces into at most N lines (a word wider than the
// line is broken between code points; text left over after the last line is
// cut with an ellipsis). Widths are font::box_width, the pixels draw() covers,
// so a fitted line always lies inside the width it was fitted to.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "glimpse/viz/font.hpp"

namespace glimpse::viz {

namespace detail {

// Byte offsets of the code point starts of a UTF-8 string, plus its size.
inline std::vector<std::size_t> codepoint_starts(std::string_view s) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < s.size(); ++i)
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) out.push_back(i);
    out.push_back(s.size());
    return out;
}

inline std::string_view trim_right(std::string_view s) {
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
}

// The longest prefix (whole code points) of `s` for which width(prefix + tail) <= max_w; may be empty.
template <class Fits>
std::size_t longest_prefix(std::string_view s, Fits fits) {
    const auto starts = codepoint_starts(s);
    std::size_t lo = 0, hi = starts.size() - 1;  // code point counts; fits(0 cps) assumed by callers
    while (lo < hi) {
        const std::size_t mid = (lo + hi + 1) / 2;
        if (fits(s.substr(0, starts[mid])))
            lo = mid;
        else
            hi = mid - 1;
    }
    return starts[lo];
}

}  // namespace detail

// `text` if it fits in max_w pixels, else its longest prefix followed by an
// ellipsis that fits; "" when not even the ellipsis fits.
inline std::string fit_line(const font& f, std::string_view text, double px, std::int64_t max_w) {
    if (f.box_width(text, px) <= max_w) return std::string(text);
    const std::string ell = f.ellipsis();
    if (f.box_width(ell, px) > max_w) return {};
    const std::size_t n = detail::longest_prefix(
        text, [&](std::string_view p) { return f.box_width(std::string(detail::trim_right(p)) + ell, px) <= max_w; });
    return std::string(detail::trim_right(text.substr(0, n))) + ell;
}

// `text` wrapped at spaces into lines of at most max_w pixels, at most max_lines of them.
inline std::vector<std::string> wrap_text(const font& f, std::string_view text, double px, std::int64_t max_w,
                                          std::size_t max_lines) {
    std::vector<std::string> lines;
    if (max_lines == 0 || text.empty()) return lines;
    const auto fits = [&](std::string_view s) { return f.box_width(s, px) <= max_w; };
    std::string_view rest = text;
    while (!rest.empty()) {
        while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
        if (rest.empty()) break;
        if (lines.size() + 1 == max_lines) {  // the last line allowed: all that is left, cut if need be
            lines.push_back(fit_line(f, detail::trim_right(rest), px, max_w));
            break;
        }
        // Greedy: the most words that fit; else as much of the first word as fits.
        std::size_t end = 0;
        for (std::size_t i = 0; i <= rest.size(); ++i)
            if (i == rest.size() || rest[i] == ' ') {
                if (!fits(detail::trim_right(rest.substr(0, i)))) break;
                end = i;
            }
        if (end == 0) end = detail::longest_prefix(rest, fits);
        if (end == 0) {  // not one code point fits
            lines.push_back(fit_line(f, rest, px, max_w));
            break;
        }
        lines.emplace_back(detail::trim_right(rest.substr(0, end)));
        rest.remove_prefix(end);
    }
    return lines;
}

}  // namespace glimpse::viz
