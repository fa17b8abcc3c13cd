#pragma once
// decode_jpeg: a JPEG file's bytes decoded to RGB exactly as transformers' load_image
// sees them (PIL.Image.open -> ImageOps.exif_transpose -> convert("RGB"), Pillow 13).
//
// PIL decodes with libjpeg-turbo through the libjpeg API, and so does this: the same
// library (Debian's libjpeg62-turbo; any libjpeg-turbo >= 2.0 gives the same samples), the
// same settings (PIL's JpegDecode.c outside draft mode: ISLOW integer IDCT, fancy
// upsampling, libjpeg's default block smoothing and colour-space guess from the
// JFIF / Adobe markers), the same conversions after it:
//  * 1 component (L): grey replicated to R = G = B;
//  * 3 components: libjpeg's YCbCr (or RGB) -> RGB;
//  * 4 components (CMYK, or YCCK which libjpeg turns into CMYK): PIL always reads them
//    inverted ("CMYK;I", Adobe's convention, marker or not), then Convert.c's cmyk2rgb:
//    nk = 255 - k, channel = nk - round(c * nk / 255), on the inverted values.
// Other component counts and 12-bit samples are refused, as PIL refuses them.
//
// Errors and truncation. libjpeg reports errors through error_exit, which must not
// return; it longjmps back into one of two small functions that hold no C++ object with
// a destructor (so a jump skips nothing), and the error becomes a glimpse::error. A
// truncated file is only a *warning* to libjpeg (it pads with a fake EOI and fills the
// missing rows with grey); PIL's suspending source raises "image file is truncated"
// instead, so the source manager here stops at the end of the data as an error, unless
// every row is already decoded (then a missing EOI is accepted, as PIL accepts it). Other
// libjpeg warnings ("Corrupt JPEG data: ...") leave the image as libjpeg decodes it,
// which is what PIL returns; they are reported through `warning`.
//
// The pixel budget (image_limits) is checked from the frame header, before libjpeg
// allocates the image or decodes a single scan.

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>  // jpeglib.h uses FILE and size_t without declaring them
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <jpeglib.h>

#include "glimpse/core/error.hpp"
#include "glimpse/io/exif.hpp"
#include "glimpse/io/image_limits.hpp"

#if !defined(LIBJPEG_TURBO_VERSION_NUMBER) || LIBJPEG_TURBO_VERSION_NUMBER < 2000000
#error "glimpse decodes JPEG with libjpeg-turbo >= 2.0 (as PIL does); this jpeglib.h is another libjpeg"
#endif

namespace glimpse {

// PIL's JPEG test: the file starts FF D8 FF.
inline bool is_jpeg(std::span<const std::uint8_t> head) noexcept {
    return head.size() >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF;
}

namespace detail {

// Everything libjpeg's callbacks touch. Only trivially destructible members besides
// the decompressor, which the destructor releases whatever state a jump left it in.
struct jpeg_session {
    jpeg_decompress_struct cinfo;
    jpeg_error_mgr err;
    jpeg_source_mgr src;
    jpeg_progress_mgr progress;
    std::jmp_buf jump;
    int max_scans;
    bool rows_done;  // every scanline read: the end of the data may come before EOI
    bool truncated;
    bool too_many_scans;
    long warnings;
    char message[JMSG_LENGTH_MAX];
    char first_warning[JMSG_LENGTH_MAX];

    jpeg_session() = default;
    jpeg_session(const jpeg_session&) = delete;
    jpeg_session& operator=(const jpeg_session&) = delete;
    // Safe on a zeroed or half-built decompressor (libjpeg checks its memory manager).
    ~jpeg_session() { jpeg_destroy_decompress(&cinfo); }
};

inline jpeg_session& jpeg_session_of(j_common_ptr c) noexcept { return *static_cast<jpeg_session*>(c->client_data); }
inline jpeg_session& jpeg_session_of(j_decompress_ptr c) noexcept {
    return *static_cast<jpeg_session*>(c->client_data);
}

[[noreturn]] inline void jpeg_on_error(j_common_ptr c) {
    jpeg_session& s = jpeg_session_of(c);
    (*c->err->format_message)(c, s.message);
    std::longjmp(s.jump, 1);
}

inline void jpeg_on_message(j_common_ptr c, int level) {
    if (level >= 0) return;  // trace output
    jpeg_session& s = jpeg_session_of(c);
    if (s.warnings++ == 0) (*c->err->format_message)(c, s.first_warning);
    ++c->err->num_warnings;
}

inline void jpeg_no_output(j_common_ptr) {}  // libjpeg prints nothing (PIL's neither)

inline void jpeg_src_nothing(j_decompress_ptr) {}

// The whole file is in the buffer from the start, so this runs only at its end.
inline boolean jpeg_src_fill(j_decompress_ptr c) {
    jpeg_session& s = jpeg_session_of(c);
    if (!s.rows_done) {
        s.truncated = true;
        std::longjmp(s.jump, 1);
    }
    static const JOCTET eoi[2] = {0xFF, JPEG_EOI};
    c->src->next_input_byte = eoi;
    c->src->bytes_in_buffer = 2;
    return TRUE;
}

inline void jpeg_src_skip(j_decompress_ptr c, long n) {
    if (n <= 0) return;
    jpeg_source_mgr* src = c->src;
    if (static_cast<unsigned long>(n) > src->bytes_in_buffer) {  // a marker runs past the end
        src->bytes_in_buffer = 0;
        (void)jpeg_src_fill(c);
        return;
    }
    src->next_input_byte += n;
    src->bytes_in_buffer -= static_cast<std::size_t>(n);
}

// Called by libjpeg before each scan it consumes.
inline void jpeg_on_progress(j_common_ptr c) {
    jpeg_session& s = jpeg_session_of(c);
    if (reinterpret_cast<j_decompress_ptr>(c)->input_scan_number > s.max_scans) {
        s.too_many_scans = true;
        std::longjmp(s.jump, 1);
    }
}

// The two functions libjpeg may jump back into. Nothing in their frames has a
// destructor, and nothing set after setjmp is read after the jump.
inline bool jpeg_header_phase(jpeg_session* s, const std::uint8_t* data, std::size_t size) {
    s->cinfo.err = jpeg_std_error(&s->err);
    s->err.error_exit = jpeg_on_error;
    s->err.emit_message = jpeg_on_message;
    s->err.output_message = jpeg_no_output;
    s->cinfo.client_data = s;
    if (setjmp(s->jump)) return false;
    jpeg_create_decompress(&s->cinfo);
    s->src.init_source = jpeg_src_nothing;
    s->src.fill_input_buffer = jpeg_src_fill;
    s->src.skip_input_data = jpeg_src_skip;
    s->src.resync_to_restart = jpeg_resync_to_restart;
    s->src.term_source = jpeg_src_nothing;
    s->src.next_input_byte = data;
    s->src.bytes_in_buffer = size;
    s->cinfo.src = &s->src;
    s->progress.progress_monitor = jpeg_on_progress;
    s->cinfo.progress = &s->progress;
    jpeg_save_markers(&s->cinfo, JPEG_APP0 + 1, 0xFFFF);  // Exif, XMP
    // PIL reads on past tables-only datastreams (JPEG_HEADER_TABLES_ONLY) to the image.
    int r = 0;
    do r = jpeg_read_header(&s->cinfo, FALSE);
    while (r == JPEG_HEADER_TABLES_ONLY);
    return r == JPEG_HEADER_OK;
}

// PIL's cmyk2rgb on the inverted samples ("CMYK;I"): with c' = 255 - c, k' = 255 - k,
// nk = 255 - k' = k and out = nk - MULDIV255(c', nk).
inline std::uint8_t cmyk_inverted_to_rgb(std::uint32_t c, std::uint32_t k) noexcept {
    const std::uint32_t nk = k, tmp = (255u - c) * nk + 128u;
    return static_cast<std::uint8_t>(nk - (((tmp >> 8) + tmp) >> 8));  // never negative: MULDIV255(x, nk) <= nk
}

inline bool jpeg_decode_phase(jpeg_session* s, std::uint8_t* rgb, std::uint8_t* row) {
    if (setjmp(s->jump)) return false;
    jpeg_decompress_struct& c = s->cinfo;
    const int comps = c.num_components;
    c.out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    c.dct_method = JDCT_ISLOW;     // libjpeg's default; PIL changes it only in draft mode
    c.do_fancy_upsampling = TRUE;  // likewise
    c.scale_num = c.scale_denom = 1;
    (void)jpeg_start_decompress(&c);  // never suspends: the source never does
    if (c.output_width != c.image_width || c.output_height != c.image_height || c.output_components != comps) {
        std::snprintf(s->message, sizeof s->message, "output %ux%u x %d differs from the frame header",
                      static_cast<unsigned>(c.output_width), static_cast<unsigned>(c.output_height),
                      c.output_components);
        return false;
    }
    const std::size_t w = c.output_width;
    while (c.output_scanline < c.output_height) {
        std::uint8_t* out = rgb + static_cast<std::size_t>(c.output_scanline) * w * 3;
        JSAMPROW dst = comps == 3 ? out : row;
        if (jpeg_read_scanlines(&c, &dst, 1) != 1) {
            std::snprintf(s->message, sizeof s->message, "no scanline returned");
            return false;
        }
        if (comps == 1) {
            for (std::size_t x = 0; x < w; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[x];
        } else if (comps == 4) {
            for (std::size_t x = 0; x < w; ++x)
                for (std::size_t ch = 0; ch < 3; ++ch)
                    out[3 * x + ch] = cmyk_inverted_to_rgb(row[4 * x + ch], row[4 * x + 3]);
        }
    }
    s->rows_done = true;
    (void)jpeg_finish_decompress(&c);
    return true;
}

inline bool starts_with(std::span<const std::uint8_t> s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && std::memcmp(s.data(), prefix.data(), prefix.size()) == 0;
}

}  // namespace detail

// Decodes a JPEG held in memory; `where` names it in errors ("image 'a.jpg'"). Warnings
// (a large image, libjpeg's corrupt-data warnings) are added to *warning if given.
inline image_u8 decode_jpeg(std::span<const std::uint8_t> data, const std::string& where,
                            const image_limits& limits = {}, std::string* warning = nullptr) {
    detail::jpeg_session s{};
    s.max_scans = limits.max_jpeg_scans;
    auto fail_with = [&](const char* stage) {
        if (s.truncated)
            detail::fail(where, ": JPEG data ends before the image does (", stage, "): the image file is truncated");
        if (s.too_many_scans)
            detail::fail(where, ": JPEG has more than ", limits.max_jpeg_scans,
                         " scans (image_limits::max_jpeg_scans; real encoders write about 10)");
        detail::fail(where, ": cannot decode JPEG (", stage, ": ", s.message, ")");
    };
    if (!detail::jpeg_header_phase(&s, data.data(), data.size())) fail_with("header");

    const jpeg_decompress_struct& c = s.cinfo;
    detail::check_pixel_budget(where, c.image_height, c.image_width, limits, warning);
    if (c.num_components != 1 && c.num_components != 3 && c.num_components != 4)
        detail::fail(where, ": cannot decode a JPEG with ", c.num_components,
                     " components (PIL reads 1: L, 3: RGB, 4: CMYK)");

    // The metadata PIL keeps, read before decoding (libjpeg frees the saved markers after).
    std::vector<std::uint8_t> exif, xmp;
    bool have_exif = false;
    for (jpeg_saved_marker_ptr m = c.marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        const std::span<const std::uint8_t> p(m->data, m->data_length);
        if (detail::starts_with(p, std::string_view("Exif\0\0", 6))) {
            // The first segment whole, later ones without their prefix (JpegImagePlugin.APP).
            const auto part = have_exif ? p.subspan(6) : p;
            exif.insert(exif.end(), part.begin(), part.end());
            have_exif = true;
        } else if (detail::starts_with(p, std::string_view("http://ns.adobe.com/xap/1.0/\0", 29))) {
            xmp.assign(p.begin() + 29, p.end());  // the last one wins
        }
    }
    const int orientation = exif_orientation(exif, xmp);

    const std::size_t w = c.image_width, h = c.image_height;
    image_u8 img{static_cast<std::int64_t>(w), static_cast<std::int64_t>(h), std::vector<std::uint8_t>(w * h * 3)};
    std::vector<std::uint8_t> row(w * 4);
    if (!detail::jpeg_decode_phase(&s, img.rgb.data(), row.data())) fail_with("decode");
    if (s.warnings > 0)
        detail::add_warning(warning, where + ": libjpeg: " + s.first_warning +
                                         (s.warnings > 1 ? " (and " + std::to_string(s.warnings - 1) + " more warnings)"
                                                         : std::string()));
    return apply_orientation(std::move(img), orientation);
}

}  // namespace glimpse
