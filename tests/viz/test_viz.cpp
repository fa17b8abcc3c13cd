// viz/: the hot colormap at its anchor points, canvas drawing, map upsampling,
// text, PNG round trip, ticks, and the figure's layout and box-edge colours.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <stb/stb_image.h>

#include <glimpse/viz/canvas.hpp>
#include <glimpse/viz/colormap.hpp>
#include <glimpse/viz/figure.hpp>
#include <glimpse/viz/font.hpp>
#include <glimpse/viz/png.hpp>

#include "temp_dir.hpp"

using namespace glimpse;

TEST_CASE("hot colormap: matplotlib's segment data at its anchors, its 256-entry table and byte rounding", "[viz]") {
    // _hot_data anchors (matplotlib/_cm.py), exactly.
    auto c = viz::hot_continuous(0.0);
    CHECK(c.r == 0.0416);
    CHECK(c.g == 0.0);
    CHECK(c.b == 0.0);
    c = viz::hot_continuous(0.365079);
    CHECK(c.r == 1.0);
    CHECK(c.g == 0.0);
    c = viz::hot_continuous(0.746032);
    CHECK(c.g == 1.0);
    CHECK(c.b == 0.0);
    c = viz::hot_continuous(1.0);
    CHECK((c.r == 1.0 && c.g == 1.0 && c.b == 1.0));
    // Between anchors: linear.
    c = viz::hot_continuous(0.365079 / 2);
    CHECK(c.r == Approx((0.0416 + 1.0) / 2).epsilon(1e-12));
    // LUT entry i is the value at i/255; lookup index floor(256 x), clipped.
    CHECK(viz::hot_lut()[128].g == Approx((128.0 / 255 - 0.365079) / (0.746032 - 0.365079)).epsilon(1e-12));
    CHECK(viz::hot(0.5).g == viz::hot_lut()[128].g);
    CHECK(viz::hot(0.999).r == 1.0);
    CHECK(viz::hot(-3).r == 0.0416);
    CHECK(viz::hot(7).b == 1.0);
    // bytes=True truncates v * 255.
    CHECK(viz::hot_u8(0.0) == viz::rgb8{10, 0, 0});
    CHECK(viz::hot_u8(1.0) == viz::rgb8{255, 255, 255});
    CHECK(viz::hot_u8(std::nan("")) == viz::rgb8{0, 0, 0});
    // Monotone in every channel: the colour bar reads one way.
    for (int i = 1; i < 256; ++i) {
        const auto& a = viz::hot_lut()[static_cast<std::size_t>(i - 1)];
        const auto& b = viz::hot_lut()[static_cast<std::size_t>(i)];
        REQUIRE((b.r >= a.r && b.g >= a.g && b.b >= a.b));
    }
}

TEST_CASE("canvas: rectangles drawn inside their edges, blending, blits", "[viz]") {
    viz::canvas c(20, 10, viz::white);
    c.stroke_rect(2, 3, 12, 9, viz::box_green, 2);
    CHECK(c.at(2, 3) == viz::box_green);   // top-left corner pixel
    CHECK(c.at(11, 8) == viz::box_green);  // bottom-right: [x0, x1) x [y0, y1)
    CHECK(c.at(3, 5) == viz::box_green);   // 2 px thick
    CHECK(c.at(4, 5) == viz::white);       // inside
    CHECK(c.at(12, 5) == viz::white);      // outside
    CHECK(c.at(1, 3) == viz::white);
    c.blend(0, 0, viz::black, 0.5);
    CHECK(c.at(0, 0) == viz::rgb8{128, 128, 128});
    c.fill_rect(-5, -5, 100, 1, viz::box_cyan);  // clipped
    CHECK(c.at(19, 0) == viz::box_cyan);
    viz::canvas s(2, 2, viz::box_yellow);
    c.blit(s, 19, 9);  // partly outside
    CHECK(c.at(19, 9) == viz::box_yellow);
}

TEST_CASE("upsample: cell centres line up, nearest keeps cells, bilinear interpolates between centres", "[viz]") {
    const std::vector<float> m = {0, 1, 2, 3};  // 2x2
    const auto n = viz::upsample(m, 2, 2, 4, 4, viz::interpolation::nearest);
    CHECK(n[0] == 0);
    CHECK(n[1] == 0);
    CHECK(n[2] == 1);
    CHECK(n[3] == 1);
    CHECK(n[15] == 3);
    const auto b = viz::upsample(m, 2, 2, 4, 4, viz::interpolation::bilinear);
    CHECK(b[0] == 0);             // border clamps to the cell value
    CHECK(b[1] == Approx(0.25));  // x = 1.5 -> grid 0.25
    CHECK(b[15] == 3);
    const std::vector<float> flat(6, 0.5f);  // constant stays constant, non-square
    for (float v : viz::upsample(flat, 2, 3, 17, 9, viz::interpolation::bilinear)) REQUIRE(v == Approx(0.5f));
    CHECK_THROWS_WITH(viz::upsample(m, 3, 3, 4, 4, viz::interpolation::nearest),
                      Catch::Contains("4 values for a 3x3 grid"));
}

TEST_CASE("font: DejaVu measured and rendered, a missing font file is a clear error", "[viz]") {
    std::string warn;
    const auto f = viz::font::system_default(false, &warn);
    if (f.builtin()) WARN("no DejaVu font on this machine: " << warn);
    const auto a = f.measure("Base", 20), b = f.measure("Base model", 20);
    CHECK(a.width > 20);
    CHECK(b.width > a.width);
    CHECK(a.height() == Approx(20).margin(f.builtin() ? 20 : 0.5));
    const auto m = f.render("Hg", 24);
    int ink = 0;
    for (auto v : m.a) ink += v > 128;
    CHECK(ink > 30);
    // Drawn turned: ink stays in a column narrower than the text is long.
    viz::canvas c(60, 200, viz::white);
    f.draw(c, "Fine-tuned", 40, 190, 20, viz::black, true);
    std::int64_t minx = 60, maxx = 0, miny = 200, maxy = 0;
    for (std::int64_t y = 0; y < 200; ++y)
        for (std::int64_t x = 0; x < 60; ++x)
            if (c.at(x, y).r < 128)
                minx = std::min(minx, x), maxx = std::max(maxx, x), miny = std::min(miny, y), maxy = std::max(maxy, y);
    CHECK(maxy - miny > 2 * (maxx - minx));
    CHECK(maxy <= 190);
    CHECK_THROWS_WITH(viz::font::load("/nonexistent/font.ttf"), Catch::Contains("cannot open"));
    // The built-in fallback draws too.
    const viz::font builtin;
    CHECK(builtin.builtin());
    CHECK(builtin.measure("abc", 20).width > 10);
}

TEST_CASE("png: written atomically and read back pixel for pixel", "[viz]") {
    test::temp_dir dir("png");
    viz::canvas c(7, 5, viz::white);
    c.set(3, 2, viz::box_cyan);
    const auto p = dir / "x.png";
    viz::write_png(c, p);
    int w = 0, h = 0, n = 0;
    std::unique_ptr<stbi_uc, void (*)(void*)> px(stbi_load(p.c_str(), &w, &h, &n, 3), stbi_image_free);
    REQUIRE(px);
    CHECK(w == 7);
    CHECK(h == 5);
    CHECK(px.get()[(2 * 7 + 3) * 3 + 1] == 255);
    CHECK(px.get()[(2 * 7 + 3) * 3 + 0] == 0);
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator{}) == 1);
    CHECK_THROWS_WITH(viz::write_png(c, dir / "no/such/dir/x.png"), Catch::Contains("cannot write PNG"));
}

TEST_CASE("nice ticks", "[viz]") {
    auto t = viz::nice_ticks(0, 0.0173);
    REQUIRE(t.values.size() >= 3);
    CHECK(t.values.front() == 0);
    CHECK(t.values.back() <= 0.0173);
    CHECK(viz::format_fixed(t.values[1], t.decimals) == "0.005");
    t = viz::nice_ticks(0, 1);
    CHECK(t.values.size() == 5);  // 0, .25, .5, .75, 1
    CHECK(viz::format_fixed(t.values[1], t.decimals) == "0.25");
}

TEST_CASE("figure: dimensions from the layout, boxes in their colours on their edges", "[viz]") {
    std::string warn;
    const auto regular = viz::font::system_default(false, &warn);
    const auto bold = viz::font::system_default(true, &warn);
    const viz::canvas image(200, 100, viz::rgb8{90, 90, 90});
    viz::figure_spec s;
    s.title = "title";
    s.subtitle = "subtitle";
    s.col_labels = {"Person box", "Object box", "Interaction"};
    s.row_labels = {"Base", "Fine-tuned"};
    s.row_sublabels = {"untrained", "trained"};
    s.panel_long_side = 160;  // scale 0.8
    s.panel_min_side = 64;    // 80 px short side: no growth
    const heatmap::box person{10, 5, 110, 95}, object{100, 20, 200, 100};
    for (int r = 0; r < 2; ++r) {
        std::vector<viz::panel_spec> row;
        for (int k = 0; k < 3; ++k) {
            viz::panel_spec p;
            p.grid_h = 4;
            p.grid_w = 8;
            p.map.assign(32, 1.0f / 32);
            p.map[static_cast<std::size_t>(r * 8 + k)] = 0.2f;
            p.title = {"mass in box 0.5", "entropy 0.9"};
            const heatmap::box b = k == 0 ? person : k == 1 ? object : heatmap::union_of(person, object);
            p.boxes.push_back({b, k == 0 ? viz::box_green : k == 1 ? viz::box_cyan : viz::box_yellow, 3});
            row.push_back(std::move(p));
        }
        s.panels.push_back(std::move(row));
    }
    s.legend = {{viz::box_green, "person"}};
    s.footer = "footer";
    viz::figure_layout lay;
    const auto c = viz::render_figure(s, image, regular, bold, &lay);
    CHECK(c.width() == lay.width);
    CHECK(c.height() == lay.height);
    REQUIRE(lay.panels.size() == 2);
    REQUIRE(lay.panels[0].size() == 3);
    for (const auto& row : lay.panels)
        for (std::size_t k = 0; k < 3; ++k) {
            const auto& p = row[k];
            CHECK(p.w == 160);
            CHECK(p.h == 80);
            CHECK(p.x + p.w < c.width());
            const heatmap::box b = k == 0 ? person : k == 1 ? object : heatmap::union_of(person, object);
            const viz::rgb8 col = k == 0 ? viz::box_green : k == 1 ? viz::box_cyan : viz::box_yellow;
            const auto X = [&](double x) { return p.x + static_cast<std::int64_t>(std::floor(x * p.scale)); };
            const auto Y = [&](double y) { return p.y + static_cast<std::int64_t>(std::floor(y * p.scale)); };
            const std::int64_t x1 = std::min(p.x + p.w, p.x + static_cast<std::int64_t>(std::ceil(b.x2 * p.scale)));
            const std::int64_t ymid = (Y(b.y1) + Y(b.y2)) / 2, xmid = (X(b.x1) + x1) / 2;
            CHECK(c.at(X(b.x1), ymid) == col);      // left edge
            CHECK(c.at(X(b.x1) + 2, ymid) == col);  // 3 px thick
            CHECK(c.at(x1 - 1, ymid) == col);       // right edge (inside the box)
            CHECK(c.at(xmid, Y(b.y1)) == col);      // top edge
            CHECK(c.at(X(b.x1) + 4, ymid) != col);  // not filled
            // The colour bar's top is the colormap's maximum, its bottom the minimum.
            CHECK(c.at(p.bar_x + 5, p.y) == viz::hot_u8(1.0 - 0.5 / static_cast<double>(p.h)));
            CHECK(c.at(p.bar_x + 5, p.y + p.h - 1) == viz::hot_u8(0.5 / static_cast<double>(p.h)));
        }
    CHECK_THROWS_WITH(viz::render_figure(viz::figure_spec{}, image, regular, bold), Catch::Contains("no panels"));
}
