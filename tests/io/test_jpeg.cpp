// JPEG decoding against transformers' load_image (PIL + libjpeg-turbo, Pillow 13):
// fixtures from tools/make_jpeg_fixtures.py (tests/data/jpeg_expected.safetensors and
// tests/data/images/jpeg/).
//
// Tolerance: none. The decode is libjpeg-turbo with PIL's settings and PIL's integer
// conversions, the orientation a pixel permutation, so every value must be identical;
// the tests count differing values and require 0.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <glimpse/io/exif.hpp>
#include <glimpse/io/image.hpp>
#include <glimpse/io/jpeg.hpp>

#include "temp_dir.hpp"
#include "test_files.hpp"
#include "test_util.hpp"

using namespace glimpse;

namespace {

using glimpse::test::error_of;

using bytes = std::vector<std::uint8_t>;

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
    return out;
}

bytes read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return bytes(std::istreambuf_iterator<char>(f), {});
}

void write_file(const std::filesystem::path& p, std::span<const std::uint8_t> b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::string jpeg_path(const std::string& name) { return test::data_path("images/jpeg/" + name); }

struct jpeg_fixture {
    test::fixture fx{"jpeg_expected.safetensors"};
    std::span<const std::uint8_t> u8(const std::string& name) const {
        const auto* e = fx.file.find(name);
        REQUIRE(e != nullptr);
        REQUIRE(e->dtype_name == "U8");
        const auto b = fx.file.bytes(*e);
        return {reinterpret_cast<const std::uint8_t*>(b.data()), b.size()};
    }
    std::vector<std::int64_t> shape(const std::string& name) const {
        const auto* e = fx.file.find(name);
        REQUIRE(e != nullptr);
        return std::vector<std::int64_t>(e->shape.dims().begin(), e->shape.dims().end());
    }
};

// Values of `img` differing from PIL's HWC bytes (after a shape check).
std::int64_t count_diff(const image_u8& img, std::span<const std::uint8_t> want,
                        const std::vector<std::int64_t>& shape) {
    REQUIRE(shape.size() == 3);
    REQUIRE(img.height == shape[0]);
    REQUIRE(img.width == shape[1]);
    REQUIRE(shape[2] == 3);
    REQUIRE(img.rgb.size() == want.size());
    std::int64_t n = 0;
    for (std::size_t i = 0; i < want.size(); ++i) n += img.rgb[i] != want[i];
    return n;
}

// [start, end) of the first marker segment `marker` before the first scan.
std::pair<std::size_t, std::size_t> find_segment(std::span<const std::uint8_t> d, std::uint8_t marker) {
    std::size_t i = 2;
    while (i + 4 <= d.size() && d[i] == 0xFF) {
        const std::size_t end = i + 2 + (std::size_t{d[i + 2]} << 8 | d[i + 3]);
        if (d[i + 1] == marker) return {i, end};
        REQUIRE(d[i + 1] != 0xDA);
        i = end;
    }
    FAIL("no marker " << int(marker));
    return {0, 0};
}

image_u8 decode(std::span<const std::uint8_t> d, const image_limits& lim = {}, std::string* warning = nullptr) {
    return decode_jpeg(d, "test jpeg", lim, warning);
}

}  // namespace

TEST_CASE("JPEG of every kind decodes bit-identical to transformers' load_image", "[io][jpeg]") {
    const jpeg_fixture j;
    const auto files = split(j.fx.s("files"));
    REQUIRE(files.size() >= 25);
    for (const auto& f : files) {
        INFO(f);
        std::string warning;
        const image_u8 img = load_image(jpeg_path(f), {}, &warning);
        CHECK(count_diff(img, j.u8("rgb." + f), j.shape("rgb." + f)) == 0);
        // Only the deliberately corrupt one makes libjpeg warn (and PIL decodes it the same).
        if (f == "rgb_420_scan_cut.jpg")
            CHECK_THAT(warning, Catch::Contains("libjpeg: Corrupt JPEG data"));
        else
            CHECK(warning.empty());
    }
}

TEST_CASE("EXIF orientation 1-8 is PIL's exif_transpose", "[io][jpeg][exif]") {
    const jpeg_fixture j;
    // orient_k.jpg hold the same pixels with Orientation k: each is orient_1 transposed.
    const image_u8 upright = load_image(jpeg_path("orient_1.jpg"));
    REQUIRE(upright.height == 23);
    REQUIRE(upright.width == 37);
    for (int o = 1; o <= 8; ++o) {
        INFO("orientation " << o);
        const std::string f = "orient_" + std::to_string(o) + ".jpg";
        const image_u8 t = apply_orientation(upright, o);
        CHECK(count_diff(t, j.u8("rgb." + f), j.shape("rgb." + f)) == 0);
        CHECK((o <= 4 ? t.height == 23 && t.width == 37 : t.height == 37 && t.width == 23));
    }
    CHECK_THROWS_AS(apply_orientation(upright, 0), glimpse::error);
    CHECK_THROWS_AS(apply_orientation(upright, 9), glimpse::error);
}

TEST_CASE("EXIF / XMP orientation of hostile and odd metadata is what PIL makes of it", "[io][jpeg][exif]") {
    const jpeg_fixture j;
    const bytes base = read_file(jpeg_path("rgb_420.jpg"));
    const image_u8 plain = decode(base);
    const auto n = j.fx.i("exif.count");
    REQUIRE(n >= 50);
    int transposed = 0;
    for (std::int64_t k = 0; k < n; ++k) {
        const std::string K = "exif." + std::to_string(k);
        const int want = static_cast<int>(j.fx.i(K + ".orientation"));
        INFO("case " << k << ": " << j.fx.s(K + ".what") << " (PIL: orientation " << want << ")");
        const auto segs = j.u8(K);
        const std::size_t at =
            find_segment(base, static_cast<std::uint8_t>(std::stoi(j.fx.s(K + ".after"), nullptr, 16))).second;
        bytes data(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(at));
        data.insert(data.end(), segs.begin(), segs.end());
        data.insert(data.end(), base.begin() + static_cast<std::ptrdiff_t>(at), base.end());
        std::string warning;
        const image_u8 got = decode(data, {}, &warning);
        const image_u8 expect = apply_orientation(plain, want);
        REQUIRE(got.height == expect.height);
        REQUIRE(got.width == expect.width);
        CHECK(got.rgb == expect.rgb);
        CHECK(warning.empty());
        transposed += want != 1;
    }
    CHECK(transposed >= 25);  // the cases are not all "nothing to do"

    // The parser alone, on blocks no JPEG segment could hold.
    const std::uint8_t tiny[] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 0x2a, 0, 0xff, 0xff, 0xff, 0xff};
    for (std::size_t len = 0; len <= sizeof tiny; ++len)  // every prefix, bounds-checked
        CHECK(exif_orientation(std::span<const std::uint8_t>(tiny, len)) == 1);
}

TEST_CASE("PIL's inverted-CMYK to RGB for every raw (c, k) pair", "[io][jpeg]") {
    const jpeg_fixture j;
    REQUIRE(j.shape("cmyk_to_r") == std::vector<std::int64_t>{256, 256});
    const auto t = j.u8("cmyk_to_r");
    int bad = 0;
    for (std::uint32_t k = 0; k < 256; ++k)
        for (std::uint32_t c = 0; c < 256; ++c) bad += detail::cmyk_inverted_to_rgb(c, k) != t[k * 256 + c];
    CHECK(bad == 0);
}

TEST_CASE("truncated and corrupt JPEGs are refused with the reason, as PIL refuses them", "[io][jpeg]") {
    const jpeg_fixture j;
    int cuts = 0;
    for (const auto& f : {"rgb_420.jpg", "rgb_420_progressive.jpg", "grey.jpg", "cmyk.jpg", "orient_6.jpg"}) {
        const bytes full = read_file(jpeg_path(f));
        // Every cut point at which PIL raises "image file is truncated" / "Truncated File Read".
        for (const auto& c : split(j.fx.s(std::string("truncate.") + f))) {
            const auto len = static_cast<std::size_t>(std::stoul(c));
            REQUIRE(len < full.size());
            INFO(f << " cut to " << len << " of " << full.size() << " bytes");
            CHECK_THAT(error_of([&] { (void)decode(std::span(full).first(len)); }),
                       Catch::Contains("test jpeg") && Catch::Contains("truncated"));
            ++cuts;
        }
    }
    CHECK(cuts >= 30);

    // Through load_image: the file is named.
    test::temp_dir tmp("jpeg");
    const bytes full = read_file(jpeg_path("rgb_420_progressive.jpg"));
    const auto p = tmp / "cut.jpg";
    write_file(p, std::span(full).first(full.size() - 2));  // without EOI
    CHECK_THAT(error_of([&] { (void)load_image(p); }), Catch::Contains(p.string()) && Catch::Contains("truncated"));

    // PIL refuses each of these ("cannot identify image file"); so must glimpse.
    const auto n = j.fx.i("corrupt.count");
    REQUIRE(n >= 5);
    for (std::int64_t k = 0; k < n; ++k) {
        const std::string K = "corrupt." + std::to_string(k);
        INFO(j.fx.s(K + ".what") << " (PIL: " << j.fx.s(K + ".pil_error") << ")");
        const auto data = j.u8(K);
        const std::string msg = error_of([&] { (void)decode(data); });
        INFO(msg);
        CHECK_THAT(msg, Catch::Contains("test jpeg") && Catch::Contains("JPEG"));
    }
    // Not a JPEG at all.
    const std::uint8_t junk[] = {1, 2, 3, 4, 5};
    CHECK_THAT(error_of([&] { (void)decode(junk); }),
               Catch::Contains("cannot decode JPEG") && Catch::Contains("Not a JPEG"));
    CHECK_THAT(error_of([&] { (void)decode({}); }), Catch::Contains("truncated"));
}

TEST_CASE("pixel budget: PIL's decompression-bomb rule, from the header, before decoding", "[io][jpeg]") {
    const jpeg_fixture j;
    const bytes base = read_file(jpeg_path("rgb_420.jpg"));  // 37x23 = 851 pixels
    // The frame header declares 10000 x 20000 = 2e8 pixels (> 178,956,970): PIL raises
    // DecompressionBombError (fixture metadata); decoding it would take seconds and 600 MB.
    INFO("PIL: " << j.fx.s("bomb"));
    bytes bomb = base;
    const std::size_t sof = find_segment(base, 0xC0).first;  // FF C0, length, precision, height, width
    bomb[sof + 5] = 10000 >> 8, bomb[sof + 6] = 10000 & 0xff, bomb[sof + 7] = 20000 >> 8, bomb[sof + 8] = 20000 & 0xff;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string msg = error_of([&] { (void)decode(bomb); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK_THAT(msg, Catch::Contains("10000x20000") &&
                        Catch::Contains("200000000 pixels exceeds the limit of 178956970") &&
                        Catch::Contains("image_limits::max_pixels"));
    CHECK(s < 1.0);  // refused from the header: microseconds, not the seconds a decode takes

    // The boundaries, as PIL's: more than max_pixels is an error, more than warn_pixels a warning.
    image_limits lim;
    lim.max_pixels = 851;
    lim.warn_pixels = 851;
    std::string warning;
    CHECK_NOTHROW(decode(base, lim, &warning));
    CHECK(warning.empty());
    lim.warn_pixels = 850;
    CHECK_NOTHROW(decode(base, lim, &warning));
    CHECK_THAT(warning, Catch::Contains("23x37 = 851 pixels is larger than 850"));
    lim.max_pixels = 850;
    CHECK_THAT(error_of([&] { (void)decode(base, lim); }), Catch::Contains("851 pixels exceeds the limit of 850"));
    // load_image takes the same limits, for every format.
    CHECK_THAT(error_of([&] { (void)load_image(jpeg_path("rgb_420.jpg"), lim); }),
               Catch::Contains("rgb_420.jpg") && Catch::Contains("exceeds the limit"));
    lim.max_pixels = 100 * 100 - 1;
    CHECK_THAT(error_of([&] { (void)load_image(test::data_path("images/square_100x100.png"), lim); }),
               Catch::Contains("square_100x100.png") && Catch::Contains("10000 pixels exceeds the limit of 9999"));
    lim.max_pixels = 100 * 100;
    CHECK_NOTHROW(load_image(test::data_path("images/square_100x100.png"), lim));

    // The scan limit (a CPU guard PIL lacks): PIL's progressive 4:2:0 file has 10 scans.
    const bytes prog = read_file(jpeg_path("rgb_420_progressive.jpg"));
    lim = {};
    lim.max_jpeg_scans = 9;
    CHECK_THAT(error_of([&] { (void)decode(prog, lim); }), Catch::Contains("more than 9 scans"));
    lim.max_jpeg_scans = 10;
    CHECK_NOTHROW(decode(prog, lim));
}

// stb only gets PNG and BMP, recognised by their signatures (as PIL's plugins recognise
// formats). Left to guess, stb took fill bytes before an SOI (FF FF ... FF D8) as a JPEG and
// ran its own decoder, which read out of bounds in its Huffman setup (fuzz/fuzz_image found
// it; the input is fuzz/regressions/fuzz_image/stb_jpeg_after_fill_bytes).
TEST_CASE("load_image: what is neither JPEG nor PNG nor BMP is refused before any decoder runs", "[io][jpeg]") {
    const test::temp_dir tmp("image-formats");
    std::vector<std::uint8_t> fill(64, 0xFF);
    fill.push_back(0xD8);
    fill.insert(fill.end(), 64, 0xFF);
    const std::uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0};
    const std::uint8_t tga[] = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 24, 0, 0, 0, 0};
    for (const auto& [name, data] : std::vector<std::pair<std::string, std::span<const std::uint8_t>>>{
             {"fill.jpg", fill}, {"x.gif", gif}, {"x.tga", tga}}) {
        INFO(name);
        write_file(tmp / name, data);
        CHECK_THAT(error_of([&] { (void)load_image(tmp / name); }),
                   Catch::Contains("cannot decode (not a JPEG, PNG or BMP file)"));
    }
    // PNG and BMP still go to stb.
    CHECK(load_image(test::data_path("images/tiny_31x45.png")).width == 45);  // 31 high, 45 wide
}

// A zero-length IDAT chunk is legal PNG and PIL decodes it; Debian's stb_image called
// memcpy(NULL, src, 0) for one (UBSan; fuzz/regressions/fuzz_image/png_zero_length_idat).
// glimpse leaves empty IDATs out before stb, which changes no pixel: the same image with
// empty IDATs before and after its data decodes to the same bytes as without them.
TEST_CASE("load_image: a PNG with zero-length IDAT chunks decodes as PIL decodes it", "[io][png]") {
    const test::temp_dir tmp("png-empty-idat");
    const auto path = test::data_path("images/tiny_31x45.png");
    const bytes png = read_file(path);
    // CRC-32 of the 4 type bytes "IDAT" with no data (what zlib.crc32(b"IDAT") gives).
    const bytes empty_idat = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
    bytes with = {png.begin(), png.begin() + 8};
    std::size_t pos = 8;
    int idats = 0;
    while (pos + 12 <= png.size()) {
        const std::size_t len = (std::size_t{png[pos]} << 24) | (std::size_t{png[pos + 1]} << 16) |
                                (std::size_t{png[pos + 2]} << 8) | png[pos + 3];
        const bool idat = std::string(png.begin() + pos + 4, png.begin() + pos + 8) == "IDAT";
        if (idat) with.insert(with.end(), empty_idat.begin(), empty_idat.end());
        with.insert(with.end(), png.begin() + pos, png.begin() + pos + 12 + len);
        if (idat) with.insert(with.end(), empty_idat.begin(), empty_idat.end()), ++idats;
        pos += 12 + len;
    }
    REQUIRE(pos == png.size());
    REQUIRE(idats >= 1);
    write_file(tmp / "empty_idat.png", with);
    const image_u8 a = load_image(tmp / "empty_idat.png");
    const image_u8 b = load_image(path);
    CHECK(a.width == b.width);
    CHECK(a.height == b.height);
    CHECK(a.rgb == b.rgb);
    // Only empty IDATs: no image data at all, refused.
    bytes none = {png.begin(), png.begin() + 33};  // signature + IHDR
    none.insert(none.end(), empty_idat.begin(), empty_idat.end());
    const bytes iend = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
    none.insert(none.end(), iend.begin(), iend.end());
    write_file(tmp / "no_data.png", none);
    CHECK_THAT(error_of([&] { (void)load_image(tmp / "no_data.png"); }), Catch::Contains("cannot decode"));
}
