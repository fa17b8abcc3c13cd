#pragma once
// EXIF orientation as transformers' load_image applies it: `exif_orientation` reads the
// Orientation a file's metadata declares the way PIL.ImageOps.exif_transpose (Pillow 13)
// sees it, and `apply_orientation` turns the stored pixels upright as that function does.
//
// A camera held sideways stores the pixels as the sensor saw them plus an Orientation tag
// (TIFF tag 274 in the Exif IFD0); transformers rotates before preprocessing, so the
// encoder sees the upright image. Skipping this would feed a transposed image.
//
// The bytes are hostile: every read is bounds-checked, and a malformed Exif block yields
// the orientation PIL would find in it (usually 1: nothing to do), never an error, since
// PIL ignores broken Exif as well. PIL's reading, mirrored here:
//  * the Exif block is the payload of the first APP1 segment starting "Exif\0\0", with
//    the payloads (minus those 6 bytes) of any later such segments appended; up to two
//    leading "Exif\0\0" are stripped, then a TIFF header ("II*\0", "MM\0*", and the
//    swapped "II\0*", "MM*\0" PIL tolerates) points to IFD0. A bad or short header, or a
//    BigTIFF one (PIL's 8-byte header read cannot hold its offset), means no tags.
//  * IFD0 entries are read in order until one does not fit; a tag's first stored entry
//    wins; entries of an unknown type or with no data are skipped; out-of-line data
//    counts against the block's size (summed over the entries, PIL's "tag data larger
//    than file" rule) and stops the reading when it runs past the end.
//  * the Orientation is the first value of its entry. Integer types give that integer;
//    RATIONAL / FLOAT values count when they equal an integer (PIL looks the value up in
//    a dict of 2..8, and 6/1 == 6.0 == 6 there); BYTE, ASCII, UNDEFINED never match.
//  * only when IFD0 has no Orientation entry (or no Exif block at all) does PIL look at
//    the XMP packet (APP1 "http://ns.adobe.com/xap/1.0/\0", the last one) for
//    `tiff:Orientation="d"` or `tiff:Orientation>d`.
// Known difference: with an unreadable Exif header AND a JFIF density in dpi, PIL raises
// from exif_transpose (its open-time dpi probe no longer swallows the error); glimpse
// decodes the image unrotated.

#include <bit>
#include <bitset>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

#include "glimpse/core/error.hpp"
#include "glimpse/io/image_limits.hpp"

namespace glimpse {

namespace detail {

class tiff_reader {
public:
    tiff_reader(std::span<const std::uint8_t> data, bool big_endian) : d_(data), be_(big_endian) {}
    std::size_t size() const noexcept { return d_.size(); }
    bool fits(std::uint64_t off, std::uint64_t n) const noexcept { return off <= d_.size() && n <= d_.size() - off; }
    // Callers check fits() first.
    std::uint64_t uint(std::size_t off, int bytes) const noexcept {
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i) {
            const std::uint64_t b = d_[off + static_cast<std::size_t>(i)];
            v |= be_ ? b << (8 * (bytes - 1 - i)) : b << (8 * i);
        }
        return v;
    }

private:
    std::span<const std::uint8_t> d_;
    bool be_;
};

// Byte size of one value of each TIFF type PIL's ImageFileDirectory_v2 reads; 0: unknown.
inline int tiff_type_size(std::uint32_t type) noexcept {
    switch (type) {
        case 1:
        case 2:
        case 6:
        case 7:
            return 1;  // BYTE ASCII SBYTE UNDEFINED
        case 3:
        case 8:
            return 2;  // SHORT SSHORT
        case 4:
        case 9:
        case 11:
        case 13:
            return 4;  // LONG SLONG FLOAT IFD
        case 5:
        case 10:
        case 12:
        case 16:
            return 8;  // RATIONAL SRATIONAL DOUBLE LONG8
        default:
            return 0;
    }
}

// The orientation (2..8) a first value of `type` stands for in exif_transpose's dict
// lookup, or 1 (no transposition).
inline int orientation_of_value(const tiff_reader& r, std::size_t off, std::uint32_t type) noexcept {
    auto in_range = [](std::int64_t v) { return v >= 2 && v <= 8 ? static_cast<int>(v) : 1; };
    auto sext = [](std::uint64_t v, int bits) { return static_cast<std::int64_t>(v << (64 - bits)) >> (64 - bits); };
    auto ratio = [&](std::int64_t num, std::int64_t den) {  // Fraction(num, den) == k, k in 2..8
        if (den == 0) return 1;                             // PIL: NaN
        for (int k = 2; k <= 8; ++k)
            if (num == k * den) return k;
        return 1;
    };
    auto real = [&](double v) {
        for (int k = 2; k <= 8; ++k)
            if (v == k) return k;
        return 1;
    };
    switch (type) {
        case 3:
            return in_range(static_cast<std::int64_t>(r.uint(off, 2)));
        case 4:
        case 13:
            return in_range(static_cast<std::int64_t>(r.uint(off, 4)));
        case 16: {
            const std::uint64_t v = r.uint(off, 8);
            return v <= 8 ? in_range(static_cast<std::int64_t>(v)) : 1;
        }
        case 6:
            return in_range(sext(r.uint(off, 1), 8));
        case 8:
            return in_range(sext(r.uint(off, 2), 16));
        case 9:
            return in_range(sext(r.uint(off, 4), 32));
        case 5:
            return ratio(static_cast<std::int64_t>(r.uint(off, 4)), static_cast<std::int64_t>(r.uint(off + 4, 4)));
        case 10:
            return ratio(sext(r.uint(off, 4), 32), sext(r.uint(off + 4, 4), 32));
        case 11:
            return real(std::bit_cast<float>(static_cast<std::uint32_t>(r.uint(off, 4))));
        case 12:
            return real(std::bit_cast<double>(r.uint(off, 8)));
        default:
            return 1;  // BYTE, ASCII, UNDEFINED: bytes / str, never equal to an int
    }
}

enum class exif_ifd0 { unreadable, no_orientation, found };

// IFD0 of an Exif block (the "Exif\0\0" prefixes still on), PIL's way; see the header
// comment. On `found`, `orientation` is 1..8.
inline exif_ifd0 read_exif_ifd0(std::span<const std::uint8_t> exif, int& orientation) noexcept {
    static constexpr std::uint8_t prefix[6] = {'E', 'x', 'i', 'f', 0, 0};
    for (int i = 0; i < 2 && exif.size() >= 6 && std::memcmp(exif.data(), prefix, 6) == 0; ++i) exif = exif.subspan(6);
    if (exif.empty()) return exif_ifd0::no_orientation;
    if (exif.size() < 4) return exif_ifd0::unreadable;
    const std::uint8_t* h = exif.data();
    const bool ii = h[0] == 'I' && h[1] == 'I', mm = h[0] == 'M' && h[1] == 'M';
    const bool ok =
        (ii && ((h[2] == 0x2a && h[3] == 0) || (h[2] == 0 && h[3] == 0x2a) || (h[2] == 0x2b && h[3] == 0))) ||
        (mm && ((h[2] == 0 && h[3] == 0x2a) || (h[2] == 0x2a && h[3] == 0) || (h[2] == 0 && h[3] == 0x2b)));
    // PIL reads BigTIFF from byte 2 == 0x2b only (so "MM\0+" is read as classic TIFF), and
    // then fails: its 8-byte header read has no room for the 8-byte offset.
    if (!ok || h[2] == 0x2b || exif.size() < 8) return exif_ifd0::unreadable;
    const tiff_reader r(exif, mm);
    const std::uint64_t ifd = r.uint(4, 4);
    if (!r.fits(ifd, 2)) return exif_ifd0::no_orientation;
    const std::uint64_t count = r.uint(static_cast<std::size_t>(ifd), 2);
    std::uint64_t out_of_line = 0;
    std::bitset<65536> stored;  // PIL skips an entry of a tag already stored, before any accounting
    for (std::uint64_t i = 0; i < count; ++i) {
        const std::uint64_t e = ifd + 2 + 12 * i;
        if (!r.fits(e, 12)) break;
        const auto at = static_cast<std::size_t>(e);
        const auto tag = static_cast<std::uint32_t>(r.uint(at, 2));
        const auto type = static_cast<std::uint32_t>(r.uint(at + 2, 2));
        const std::uint64_t n = r.uint(at + 4, 4);
        if (stored[tag]) continue;
        const int unit = tiff_type_size(type);
        if (unit == 0) continue;  // not stored: a later entry of the tag may be
        const std::uint64_t bytes = n * static_cast<std::uint64_t>(unit);
        std::uint64_t data = e + 8;
        if (bytes > 4) {
            data = r.uint(at + 8, 4);
            out_of_line += bytes;
            if (out_of_line > r.size()) continue;
            if (!r.fits(data, bytes)) break;  // PIL's _safe_read raises: the IFD ends here
        }
        if (bytes == 0) continue;
        stored[tag] = true;
        if (tag == 274) {  // the first stored entry is the one PIL returns
            orientation = orientation_of_value(r, static_cast<std::size_t>(data), type);
            return exif_ifd0::found;
        }
    }
    return exif_ifd0::no_orientation;
}

// PIL's re.search(rb'tiff:Orientation(="|>)([0-9])', xmp).
inline std::optional<int> xmp_orientation(std::span<const std::uint8_t> xmp) noexcept {
    const std::string_view s(reinterpret_cast<const char*>(xmp.data()), xmp.size());
    constexpr std::string_view key = "tiff:Orientation";
    for (std::size_t p = s.find(key); p != std::string_view::npos; p = s.find(key, p + 1)) {
        std::size_t q = p + key.size();
        if (q < s.size() && s[q] == '>')
            q += 1;
        else if (q + 1 < s.size() && s[q] == '=' && s[q + 1] == '"')
            q += 2;
        else
            continue;
        if (q < s.size() && s[q] >= '0' && s[q] <= '9') return s[q] - '0';
    }
    return std::nullopt;
}

}  // namespace detail

// The EXIF orientation (1..8) exif_transpose applies. `exif`: the Exif block as PIL
// assembles it from a JPEG's APP1 segments (empty: none); `xmp`: the XMP packet after
// its namespace NUL (empty: none).
inline int exif_orientation(std::span<const std::uint8_t> exif, std::span<const std::uint8_t> xmp = {}) noexcept {
    int o = 1;
    if (!exif.empty()) {
        const auto r = detail::read_exif_ifd0(exif, o);
        if (r == detail::exif_ifd0::found) return o;
        if (r == detail::exif_ifd0::unreadable) return 1;  // PIL's open already gave up on the Exif
    }
    const auto x = detail::xmp_orientation(xmp);
    return x && *x >= 2 && *x <= 8 ? *x : 1;
}

// The upright image for an orientation, as exif_transpose's Image.transpose:
// 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270,
// 7 TRANSVERSE, 8 ROTATE_90 (PIL's rotations are counter-clockwise); 5..8 swap the sides.
inline image_u8 apply_orientation(image_u8 img, int orientation) {
    detail::check(orientation >= 1 && orientation <= 8, "apply_orientation: orientation ", orientation, " is not 1..8");
    if (orientation == 1) return img;
    detail::check(
        img.height > 0 && img.width > 0 && static_cast<std::int64_t>(img.rgb.size()) == img.height * img.width * 3,
        "apply_orientation: ", img.rgb.size(), " bytes for a ", img.height, "x", img.width, " RGB image");
    const std::int64_t H = img.height, W = img.width;
    const bool swap = orientation >= 5;
    image_u8 out{swap ? H : W, swap ? W : H, std::vector<std::uint8_t>(img.rgb.size())};
    for (std::int64_t y = 0; y < out.height; ++y)
        for (std::int64_t x = 0; x < out.width; ++x) {
            std::int64_t sy = y, sx = x;  // source pixel of output (y, x)
            switch (orientation) {
                case 2:
                    sx = W - 1 - x;
                    break;
                case 3:
                    sy = H - 1 - y;
                    sx = W - 1 - x;
                    break;
                case 4:
                    sy = H - 1 - y;
                    break;
                case 5:
                    sy = x;
                    sx = y;
                    break;
                case 6:
                    sy = H - 1 - x;
                    sx = y;
                    break;
                case 7:
                    sy = H - 1 - x;
                    sx = W - 1 - y;
                    break;
                default:
                    sy = x;
                    sx = W - 1 - y;
                    break;  // 8
            }
            const auto d = static_cast<std::size_t>((y * out.width + x) * 3);
            const auto s = static_cast<std::size_t>((sy * W + sx) * 3);
            out.rgb[d] = img.rgb[s];
            out.rgb[d + 1] = img.rgb[s + 1];
            out.rgb[d + 2] = img.rgb[s + 2];
        }
    return out;
}

}  // namespace glimpse
