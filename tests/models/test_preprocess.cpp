// Qwen image preprocessing against transformers 5.23's Qwen2VLImageProcessor
// (torchvision backend): fixtures from tools/make_preprocess_fixtures.py.
//
// Tolerances: the resize is integer arithmetic and must match torchvision's uint8
// output exactly; the normalisation is the same float32 operations in the same order,
// so pixel_values are required to match to <= 1e-6 absolute and are expected (and
// checked) to be bit-identical.

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <glimpse/io/image.hpp>
#include <glimpse/models/qwen_preprocess.hpp>

#include "test_files.hpp"
#include "test_util.hpp"

using namespace glimpse;
using glimpse::models::preprocess_config;
using glimpse::models::smart_resize;

namespace {

using glimpse::test::read_file;
using glimpse::test::write_file;

std::vector<std::string> split_names(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
    return out;
}

std::filesystem::path temp_file(const std::string& name) {
    return std::filesystem::temp_directory_path() / ("glimpse_pp_" + std::to_string(::getpid()) + "_" + name);
}

// Exact comparison of an image with a fixture [h, w, 3] tensor of levels.
std::int64_t count_diff(const image_u8& img, const cview& ref, int& max_levels) {
    REQUIRE(ref.rank() == 3);
    REQUIRE(ref.size(0) == img.height);
    REQUIRE(ref.size(1) == img.width);
    REQUIRE(ref.size(2) == 3);
    const float* r = ref.ptr<float>();
    std::int64_t n = 0;
    max_levels = 0;
    for (std::size_t i = 0; i < img.rgb.size(); ++i) {
        const int d = std::abs(static_cast<int>(img.rgb[i]) - static_cast<int>(r[i]));
        if (d) ++n;
        max_levels = std::max(max_levels, d);
    }
    return n;
}

// `base`: the family's settings; the fixture's (small) pixel bounds replace its own.
void check_family(const std::string& fixture_name, const preprocess_config& base) {
    test::fixture fx(fixture_name);
    preprocess_config cfg = base;
    cfg.min_pixels = fx.i("min_pixels");
    cfg.max_pixels = fx.i("max_pixels");
    REQUIRE(fx.i("patch_size") == cfg.patch_size);
    REQUIRE(fx.i("temporal_patch_size") == cfg.temporal_patch_size);
    REQUIRE(fx.i("merge_size") == cfg.merge_size);
    const auto names = split_names(fx.s("images"));
    REQUIRE(static_cast<std::int64_t>(names.size()) == fx.i("count"));

    std::vector<image_u8> images;
    for (const auto& n : names) images.push_back(load_image(test::data_path("images/" + n)));

    // 1. The resize alone, bit-exact against torchvision's uint8 output.
    for (std::size_t k = 0; k < images.size(); ++k) {
        const cview ref = fx["resized." + std::to_string(k)];
        const image_u8 r = models::resize_bicubic_antialias(images[k], ref.size(0), ref.size(1));
        int max_levels = 0;
        const auto ndiff = count_diff(r, ref, max_levels);
        INFO(fixture_name << " image " << k << " (" << names[k] << ", " << images[k].height << "x" << images[k].width
                          << " -> " << ref.size(0) << "x" << ref.size(1) << "): " << ndiff
                          << " values differ, by up to " << max_levels << " levels");
        CHECK(ndiff == 0);
    }

    // 2. The whole processor on the batch: grid_thw, sizes, pixel_values per image.
    const auto batch = models::preprocess(std::span<const image_u8>(images), cfg);
    REQUIRE(batch.grid_thw.size() == images.size());
    REQUIRE(batch.pixel_values.size(1) == cfg.patch_dim());
    std::int64_t row = 0;
    for (std::size_t k = 0; k < images.size(); ++k) {
        const std::string ks = std::to_string(k);
        const cview g = fx["grid_thw." + ks];
        INFO(fixture_name << " image " << k << " (" << names[k] << ")");
        for (int d = 0; d < 3; ++d)
            CHECK(batch.grid_thw[k][static_cast<std::size_t>(d)] == static_cast<std::int64_t>(g.at({d})));
        const cview resized = fx["resized." + ks];
        CHECK(batch.resized_hw[k].first == resized.size(0));
        CHECK(batch.resized_hw[k].second == resized.size(1));

        const cview ref = fx["pixel_values." + ks];
        const std::int64_t n = batch.grid_thw[k][1] * batch.grid_thw[k][2];
        REQUIRE(ref.size(0) == n);
        const auto e = test::compare(batch.pixel_values.cv().slice(0, row, row + n), ref);
        INFO("pixel_values max abs diff " << e.max_abs << " (tolerance 1e-6, expected exactly 0)");
        REQUIRE(e.max_abs <= 1e-6);
        CHECK(e.max_abs == 0.0);
        row += n;
    }
    CHECK(row == batch.pixel_values.size(0));
}

}  // namespace

TEST_CASE("smart_resize matches transformers' worked examples", "[models][preprocess]") {
    using P = std::pair<std::int64_t, std::int64_t>;
    const auto q25 = preprocess_config::qwen2_5_vl();
    const auto q3 = preprocess_config::qwen3_vl();
    // 1920x1080 (w x h): factor 28 -> 1932x1092, factor 32 -> 1920x1088.
    CHECK(smart_resize(1080, 1920, 28, q25.min_pixels, q25.max_pixels) == P{1092, 1932});
    CHECK(smart_resize(1080, 1920, 32, q3.min_pixels, q3.max_pixels) == P{1088, 1920});
    CHECK(smart_resize(4000, 3000, 28, q25.min_pixels, q25.max_pixels) == P{4004, 2996});
    // Python round is half-to-even: 70/28 = 2.5 -> 2, 98/28 = 3.5 -> 4, 126/28 = 4.5 -> 4.
    CHECK(smart_resize(70, 98, 28, 3136, 12845056) == P{56, 112});
    CHECK(smart_resize(126, 98, 28, 3136, 12845056) == P{112, 112});
    // max_pixels branch (scales the original size), with and without the max(factor, .) clamp.
    CHECK(smart_resize(1000, 1000, 28, 3136, 28 * 28 * 100) == P{280, 280});
    CHECK(smart_resize(1080, 1920, 28, 3136, 28 * 28 * 1280) == P{728, 1316});
    CHECK(smart_resize(20, 1900, 28, 3136, 7840) == P{28, 840});
    // min_pixels branch, including a side that rounds to 0 first.
    CHECK(smart_resize(31, 45, 28, 3136, 12845056) == P{56, 84});
    CHECK(smart_resize(31, 45, 32, 65536, 16777216) == P{224, 320});
    CHECK(smart_resize(10, 1900, 28, 3136, 7840) == P{28, 784});
    // Aspect ratio 200 is allowed, 201 is not.
    CHECK(smart_resize(1, 200, 28, 3136, 12845056) == P{28, 812});
    CHECK_THROWS_AS(smart_resize(1, 201, 28, 3136, 12845056), glimpse::error);
    CHECK_THROWS_AS(smart_resize(201, 1, 28, 3136, 12845056), glimpse::error);
    CHECK_THROWS_AS(smart_resize(0, 10, 28, 3136, 12845056), glimpse::error);
}

TEST_CASE("preprocess_config defaults and preprocessor_config.json", "[models][preprocess]") {
    const auto q25 = preprocess_config::qwen2_5_vl();
    CHECK(q25.patch_size == 14);
    CHECK(q25.factor() == 28);
    CHECK(q25.patch_dim() == 1176);
    CHECK(q25.min_pixels == 3136);
    CHECK(q25.max_pixels == 12845056);
    CHECK(q25.mean[0] == 0.48145466f);
    CHECK(q25.std[2] == 0.27577711f);
    const auto q3 = preprocess_config::qwen3_vl();
    CHECK(q3.patch_size == 16);
    CHECK(q3.patch_dim() == 1536);
    CHECK(q3.min_pixels == 65536);
    CHECK(q3.max_pixels == 16777216);
    CHECK(q3.mean[1] == 0.5f);

    const auto p = temp_file("preprocessor_config.json");
    // Qwen2.5-VL-7B's file: top-level min/max_pixels.
    write_file(p, R"({"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
        "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "rescale_factor": 0.00392156862745098,
        "image_processor_type": "Qwen2VLImageProcessor"})");
    auto c = preprocess_config::from_json(p);
    CHECK(c.patch_size == 14);
    CHECK(c.min_pixels == 3136);
    CHECK(c.max_pixels == 12845056);
    CHECK(c.mean == q25.mean);
    CHECK(c.std == q25.std);
    // Qwen3-VL-8B's file: size.shortest_edge / longest_edge.
    write_file(p, R"({"size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16,
        "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})");
    c = preprocess_config::from_json(p);
    CHECK(c.patch_size == 16);
    CHECK(c.min_pixels == 65536);
    CHECK(c.max_pixels == 16777216);
    CHECK(c.mean == q3.mean);
    // Both forms: min/max_pixels win.
    write_file(p, R"({"size": {"longest_edge": 16777216, "shortest_edge": 65536}, "min_pixels": 1000,
        "max_pixels": 2000000})");
    c = preprocess_config::from_json(p);
    CHECK(c.min_pixels == 1000);
    CHECK(c.max_pixels == 2000000);
    // Refused: unsupported settings, bad values, not JSON.
    write_file(p, R"({"resample": 2})");
    CHECK_THROWS_AS(preprocess_config::from_json(p), glimpse::error);
    write_file(p, R"({"do_normalize": false})");
    CHECK_THROWS_AS(preprocess_config::from_json(p), glimpse::error);
    write_file(p, R"({"patch_size": "14"})");
    CHECK_THROWS_AS(preprocess_config::from_json(p), glimpse::error);
    write_file(p, R"({"image_std": [0.5, 0, 0.5]})");
    CHECK_THROWS_AS(preprocess_config::from_json(p), glimpse::error);
    write_file(p, R"({"min_pixels": 5000, "max_pixels": 4000})");
    CHECK_THROWS_AS(preprocess_config::from_json(p), glimpse::error);
    write_file(p, "{not json");
    CHECK_THROWS_AS(preprocess_config::from_json(p), glimpse::error);
    std::filesystem::remove(p);
    CHECK_THROWS_WITH(preprocess_config::from_json(p), Catch::Contains("no such file"));
}

TEST_CASE("load_image: PNG decode, alpha composited onto white, grey expanded", "[models][preprocess]") {
    // Compositing an opaque pixel is the identity; a transparent one is white.
    for (std::uint32_t c = 0; c < 256; ++c) {
        REQUIRE(glimpse::detail::composite_on_white(c, 255) == c);
        REQUIRE(glimpse::detail::composite_on_white(c, 0) == 255);
    }
    test::fixture fx("preprocess_qwen2_5_vl.safetensors");
    const auto names = split_names(fx.s("images"));
    int checked = 0;
    for (std::size_t k = 0; k < names.size(); ++k) {
        const std::string key = "input." + std::to_string(k);
        if (!fx.file.find(key)) continue;  // stored for the RGBA and grey images only
        const image_u8 img = load_image(test::data_path("images/" + names[k]));
        int max_levels = 0;
        INFO(names[k]);
        CHECK(count_diff(img, fx[key], max_levels) == 0);
        ++checked;
    }
    CHECK(checked == 2);
}

TEST_CASE("resize_bicubic_antialias is the identity when the size is unchanged", "[models][preprocess]") {
    // Identity when the size does not change.
    const image_u8 img = load_image(test::data_path("images/tiny_31x45.png"));
    const image_u8 same = models::resize_bicubic_antialias(img, img.height, img.width);
    CHECK(same.rgb == img.rgb);
}

// Both cases check the uint8 resize alone (bit-exact against torchvision) and then the
// whole processor: shrink, grow, and one axis shrinking while the other grows.
TEST_CASE("Qwen2.5-VL preprocessing matches transformers", "[models][preprocess]") {
    check_family("preprocess_qwen2_5_vl.safetensors", preprocess_config::qwen2_5_vl());
}

TEST_CASE("Qwen3-VL preprocessing matches transformers", "[models][preprocess]") {
    check_family("preprocess_qwen3_vl.safetensors", preprocess_config::qwen3_vl());
}

TEST_CASE("preprocess and load_image errors name the file and the reason", "[models][preprocess]") {
    // Missing file.
    const auto missing = temp_file("does_not_exist.png");
    CHECK_THROWS_WITH(load_image(missing), Catch::Contains(missing.string()) && Catch::Contains("no such file"));

    const std::string png = read_file(test::data_path("images/square_100x100.png"));
    REQUIRE(png.size() > 1000);
    // Truncated PNG (header intact, image data cut).
    const auto trunc = temp_file("truncated.png");
    write_file(trunc, png.substr(0, png.size() / 2));
    CHECK_THROWS_WITH(load_image(trunc), Catch::Contains(trunc.string()) && Catch::Contains("cannot decode"));
    // Empty file and a file that is no image.
    write_file(trunc, "");
    CHECK_THROWS_WITH(load_image(trunc), Catch::Contains(trunc.string()));
    write_file(trunc, "hello, I am not an image");
    CHECK_THROWS_WITH(load_image(trunc), Catch::Contains(trunc.string()) && Catch::Contains("cannot decode"));

    // IHDR width/height live at bytes 16..23 (big-endian); stb does not check CRCs.
    auto patched = [&](std::uint32_t w, std::uint32_t h) {
        std::string s = png;
        for (int i = 0; i < 4; ++i) {
            s[static_cast<std::size_t>(16 + i)] = static_cast<char>((w >> (24 - 8 * i)) & 0xff);
            s[static_cast<std::size_t>(20 + i)] = static_cast<char>((h >> (24 - 8 * i)) & 0xff);
        }
        return s;
    };
    write_file(trunc, patched(0, 100));  // zero-size
    CHECK_THROWS_WITH(load_image(trunc), Catch::Contains(trunc.string()));
    // 17000² = 2.9e8 pixels > PIL's 2 x MAX_IMAGE_PIXELS, yet within stb's own limit (2^30
    // bytes): refused by the header check, before any decoding or allocation.
    write_file(trunc, patched(17000, 17000));
    CHECK_THROWS_WITH(load_image(trunc), Catch::Contains(trunc.string()) && Catch::Contains("exceeds the limit"));
    std::filesystem::remove(trunc);

    // A directory is not an image.
    CHECK_THROWS_WITH(load_image(test::data_path("images")), Catch::Contains("not a regular file"));

    // from_rgb and preprocess refuse inconsistent or impossible images.
    std::vector<std::uint8_t> px(1 * 201 * 3, 128);
    CHECK_THROWS_AS(from_rgb(1, 200, px), glimpse::error);  // wrong byte count
    CHECK_THROWS_AS(from_rgb(0, 201, {}), glimpse::error);  // zero-size
    const image_u8 thin = from_rgb(1, 201, px);             // aspect 201
    CHECK_THROWS_WITH(models::preprocess(thin, preprocess_config::qwen2_5_vl()), Catch::Contains("aspect ratio"));
    image_u8 broken = thin;
    broken.rgb.pop_back();
    CHECK_THROWS_AS(models::preprocess(broken, preprocess_config::qwen2_5_vl()), glimpse::error);
    CHECK_THROWS_AS(models::resize_bicubic_antialias(broken, 28, 28), glimpse::error);
    CHECK_THROWS_AS(models::preprocess(std::span<const image_u8>(), preprocess_config::qwen2_5_vl()), glimpse::error);
}
