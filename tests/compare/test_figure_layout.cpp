// The comparison figure's layout at the extremes: images from 50:1 to 1:50,
// 1-3 columns, referring and grounding, long action / category strings. Every
// text box the canvas records lies inside the image and clear of every other
// text and of every panel (except a panel's own "flat" label), panels keep the
// minimum size, and flat maps are drawn flat and say so. The checker itself is
// shown to catch the old defects (7-px panels, overlapping row labels and
// ticks, a clipped footer) on a canvas laid out the old way.
//
// Set GLIMPSE_FIGURE_DUMP=DIR to write every rendered figure there (to look at).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <glimpse/analysis/attention_stats.hpp>
#include <glimpse/compare/comparison_figure.hpp>
#include <glimpse/viz/figure.hpp>
#include <glimpse/viz/font.hpp>
#include <glimpse/viz/layout_check.hpp>
#include <glimpse/viz/png.hpp>
#include <glimpse/viz/text_fit.hpp>

using namespace glimpse;

namespace {

struct faces {
    viz::font regular, bold;
    faces() {
        std::string w;
        regular = viz::font::system_default(false, &w);
        bold = viz::font::system_default(true, &w);
        if (regular.builtin()) WARN("no DejaVu font on this machine: " << w);
    }
};
const faces& fonts() {
    static const faces f;
    return f;
}

// A W x H picture with some structure (so letterboxing shows).
image_u8 picture(std::int64_t W, std::int64_t H) {
    image_u8 im;
    im.width = W;
    im.height = H;
    im.rgb.resize(static_cast<std::size_t>(W * H * 3));
    for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) {
            auto* p = &im.rgb[static_cast<std::size_t>((y * W + x) * 3)];
            p[0] = static_cast<std::uint8_t>(60 + 120 * x / W);
            p[1] = static_cast<std::uint8_t>(60 + 120 * y / H);
            p[2] = static_cast<std::uint8_t>(((x / 8 + y / 8) % 2) ? 90 : 140);
        }
    return im;
}

tensor map_tensor(const std::vector<float>& v, std::int64_t gh, std::int64_t gw) {
    tensor t(shape{gh, gw});
    std::copy(v.begin(), v.end(), t.ptr<float>());
    return t;
}

// Uniform (exactly 1/S), or a bump at the centre of box b, normalised to sum 1.
std::vector<float> make_map(std::int64_t gh, std::int64_t gw, double W, double H, const heatmap::box* b) {
    const auto S = static_cast<std::size_t>(gh * gw);
    std::vector<float> m(S, 1.0f / static_cast<float>(S));
    if (!b) return m;
    const double cx = (b->x1 + b->x2) / 2 / W * static_cast<double>(gw),
                 cy = (b->y1 + b->y2) / 2 / H * static_cast<double>(gh);
    double sum = 0;
    std::vector<double> d(S);
    for (std::int64_t r = 0; r < gh; ++r)
        for (std::int64_t c = 0; c < gw; ++c) {
            const double dx = (static_cast<double>(c) + 0.5 - cx) / std::max(1.0, static_cast<double>(gw) / 6),
                         dy = (static_cast<double>(r) + 0.5 - cy) / std::max(1.0, static_cast<double>(gh) / 6);
            d[static_cast<std::size_t>(r * gw + c)] = 0.05 + std::exp(-(dx * dx + dy * dy));
            sum += d[static_cast<std::size_t>(r * gw + c)];
        }
    for (std::size_t i = 0; i < S; ++i) m[i] = static_cast<float>(d[i] / sum);
    return m;
}

struct scenario {
    std::int64_t W, H;
    compare::task_type task;
    int boxes;  // referring: 1 = person only (one column), 2 = person + object (three columns)
    bool long_text;
    std::string name() const {
        return std::to_string(W) + "x" + std::to_string(H) + "_" + std::string(compare::name(task)) + "_" +
               std::to_string(boxes) + (long_text ? "_long" : "");
    }
};

// A comparison result as the comparer would fill it, without models: base flat, fine-tuned focused.
compare::comparison_result synthetic(const scenario& sc) {
    compare::comparison_result r;
    r.req.task = sc.task;
    r.req.image_label = sc.long_text ? "HICO_test2015_00000001_with_a_very_long_file_name_indeed.jpg" : "photo.jpg";
    if (sc.long_text) {
        r.req.action = "riding on the back of a very patient elephant across a river in the rain";
        r.req.object_category = "an extraordinarily long object category name for a small thing";
    } else {
        r.req.action = "holding";
        r.req.object_category = "helmet";
    }
    const double W = static_cast<double>(sc.W), H = static_cast<double>(sc.H);
    r.image_w = r.resized_w = sc.W;
    r.image_h = r.resized_h = sc.H;
    r.grid_h = std::max<std::int64_t>(1, sc.H / 16);
    r.grid_w = std::max<std::int64_t>(1, sc.W / 16);
    r.image = picture(sc.W, sc.H);
    r.req.person = heatmap::box{0.05 * W, 0.1 * H, 0.6 * W, 0.9 * H};
    if (sc.boxes > 1 || sc.task == compare::task_type::grounding)
        r.req.object = heatmap::box{0.5 * W, 0.4 * H, 0.95 * W, 1.0 * H};
    r.boxes = r.req.boxes();
    const analysis::grid_geometry g{r.grid_h, r.grid_w, W, H};
    for (const auto& b : r.boxes) r.uniform_mass[b.key] = analysis::area_fraction(b.b, g);

    for (auto* m : {&r.base, &r.finetuned}) {
        const bool tuned = m == &r.finetuned;
        m->role = tuned ? "finetuned" : "base";
        m->family = "qwen3_vl";
        m->head_trained = tuned;
        m->head_source = tuned ? "trained" : "seeded init (seed 0), untrained";
        m->source.given = tuned && sc.long_text ? "runs/an_unusually_long_directory_name_for_a_fine_tuned_head_run_42"
                                                : (tuned ? "runs/head" : "Qwen3-VL-8B-Instruct");
        m->source.encoder_dir = m->source.given;
        std::vector<compare::named_box> queries = r.boxes;
        if (sc.task == compare::task_type::grounding) queries = {{"uniform", {0, 0, W, H}}};
        for (const auto& q : queries) {
            compare::query_result qr;
            qr.key = q.key;
            qr.query = q.b;
            const auto v = make_map(r.grid_h, r.grid_w, W, H, tuned ? &q.b : nullptr);
            qr.attention.grid_h = r.grid_h;
            qr.attention.grid_w = r.grid_w;
            qr.attention.mean = map_tensor(v, r.grid_h, r.grid_w);
            qr.stats = analysis::stats_of(v, g);
            for (const auto& b : r.boxes) qr.mass_in[b.key] = analysis::mass_in_box(v, b.b, g);
            m->queries.push_back(std::move(qr));
        }
        if (sc.task == compare::task_type::grounding) {
            compare::own_attention own;
            own.map.block = 3;
            own.map.grid_h = r.grid_h;
            own.map.grid_w = r.grid_w;
            const auto v = make_map(r.grid_h, r.grid_w, W, H, nullptr);  // flat on both rows
            own.map.mean = map_tensor(v, r.grid_h, r.grid_w);
            own.stats = analysis::stats_of(v, g);
            m->own = std::move(own);
        }
    }
    return r;
}

void dump(const viz::canvas& c, const std::string& name) {
    if (const char* d = std::getenv("GLIMPSE_FIGURE_DUMP"); d && *d) {
        std::filesystem::create_directories(d);
        viz::write_png(c, std::filesystem::path(d) / (name + ".png"));
    }
}

std::size_t count(const viz::canvas& c, viz::mark_kind k) {
    return static_cast<std::size_t>(
        std::count_if(c.drawn().begin(), c.drawn().end(), [k](const viz::mark& m) { return m.kind == k; }));
}

std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += x + "\n";
    return s;
}

}  // namespace

TEST_CASE("figure layout: 50:1 to 1:50, 1-3 columns, both tasks, long strings: nothing overlaps or is clipped",
          "[viz][layout][compare]") {
    const auto& f = fonts();
    std::vector<scenario> all;
    for (auto [W, H] : {std::pair<std::int64_t, std::int64_t>{2000, 40}, {40, 2000}, {300, 300}})
        for (const bool lng : {false, true}) {
            all.push_back({W, H, compare::task_type::referring, 1, lng});
            all.push_back({W, H, compare::task_type::grounding, 1, lng});
            all.push_back({W, H, compare::task_type::referring, 2, lng});
        }
    for (const auto& sc : all) {
        INFO(sc.name());
        const auto r = synthetic(sc);
        compare::figure_options o;
        o.panel_long_side = 120;  // small: fast
        o.model_note = "The bundled encoder is tiny and random.";
        const auto spec = compare::make_figure(r, o);
        viz::figure_layout lay;
        const viz::canvas c = viz::render_figure(spec, viz::canvas::from(r.image), f.regular, f.bold, &lay);
        dump(c, sc.name());
        const auto problems = viz::layout_problems(c);
        INFO(joined(problems));
        CHECK(problems.empty());
        const std::size_t cols = sc.task == compare::task_type::grounding ? 2 : sc.boxes == 1 ? 1 : 3;
        REQUIRE(lay.panels.size() == 2);
        REQUIRE(lay.panels[0].size() == cols);
        CHECK(count(c, viz::mark_kind::panel) == 2 * cols);
        CHECK(count(c, viz::mark_kind::colorbar) == 2 * cols);
        CHECK(c.width() == lay.width);
        CHECK(c.height() == lay.height);
        CHECK(lay.min_side == 96);
        for (const auto& m : c.drawn())
            if (m.kind == viz::mark_kind::panel) {
                CHECK(m.box.w() >= 96);
                CHECK(m.box.h() >= 96);
            }
        for (const auto& row : lay.panels)
            for (const auto& p : row) {
                CHECK(p.frame.w() >= 96);
                CHECK(p.frame.h() >= 96);
                CHECK(std::max(p.w, p.h) <= 2 * 120);  // an elongated image grows at most to twice the panel size
                CHECK((p.x >= p.frame.x0 && p.x + p.w <= p.frame.x1 && p.y >= p.frame.y0 && p.y + p.h <= p.frame.y1));
                CHECK(p.bar.h() == p.frame.h());
                CHECK(!p.ticks.empty());
            }
        // The row labels and the footer's last words made it onto the figure.
        bool base = false, tuned = false, foot_end = false;
        for (const auto& m : c.drawn()) {
            base = base || m.text.find("Base") != std::string::npos;
            tuned = tuned || m.text.find("Fine-tuned") != std::string::npos;
            foot_end = foot_end || m.text.find("tiny and random.") != std::string::npos;
        }
        CHECK(base);
        CHECK(tuned);
        CHECK(foot_end);
    }
}

TEST_CASE("figure layout: elongated images keep readable panels (min side, letterbox, fewer ticks)", "[viz][layout]") {
    const auto& f = fonts();
    const auto r = synthetic({2000, 40, compare::task_type::referring, 2, false});
    compare::figure_options o;
    o.panel_long_side = 120;
    viz::figure_layout lay;
    const viz::canvas c =
        viz::render_figure(compare::make_figure(r, o), viz::canvas::from(r.image), f.regular, f.bold, &lay);
    const auto& p = lay.panels[0][0];
    // 2000x40 at 120 px would be 120x2 (the old 7-px strip at 360); it grows to 240 px long
    // (twice the panel size), 5 px short, letterboxed in a 240x96 frame.
    CHECK(p.w == 240);
    CHECK(p.h == 5);
    CHECK(p.frame.w() == 240);
    CHECK(p.frame.h() == 96);
    CHECK(c.at(p.frame.x0 + 1, p.frame.y0 + 1) == viz::letterbox_grey);
    // 96 px of bar hold fewer ticks than a 360-px one, at least a text line and a half apart.
    const double tick_h = static_cast<double>(f.regular.box_height(14));
    CHECK(p.ticks.size() >= 2);
    CHECK(p.ticks.size() <= 4);
    for (std::size_t i = 1; i < p.ticks.size(); ++i)
        CHECK((p.ticks[i] - p.ticks[i - 1]) / (p.vmax - p.vmin) * (p.frame.h() - 1) >= 1.4 * tick_h);
    // 2:1: the short side grows to the minimum (120x60 -> 192x96), no letterbox.
    const auto r2 = synthetic({200, 100, compare::task_type::referring, 1, false});
    viz::figure_layout lay2;
    (void)viz::render_figure(compare::make_figure(r2, o), viz::canvas::from(r2.image), f.regular, f.bold, &lay2);
    const auto& q = lay2.panels[0][0];
    CHECK(q.w == 192);
    CHECK(q.h == 96);
    CHECK(q.frame == viz::rect{q.x, q.y, q.x + q.w, q.y + q.h});
    // 4:1: 96 px short would make it 384 long, past 2 x 120: 240x60 in a 240x96 frame.
    const auto r3 = synthetic({400, 100, compare::task_type::referring, 1, false});
    viz::figure_layout lay3;
    (void)viz::render_figure(compare::make_figure(r3, o), viz::canvas::from(r3.image), f.regular, f.bold, &lay3);
    CHECK(lay3.panels[0][0].w == 240);
    CHECK(lay3.panels[0][0].h == 60);
    CHECK(lay3.panels[0][0].frame.h() == 96);
}

TEST_CASE("flat maps: one colour, labelled \"flat\", and a degenerate shared scale is not painted white",
          "[viz][layout]") {
    const auto& f = fonts();
    const viz::canvas image(64, 64, viz::rgb8{100, 100, 100});
    const auto panel = [](std::vector<float> m, double vmin, double vmax) {
        viz::panel_spec p;
        p.grid_h = 4;
        p.grid_w = 4;
        p.map = std::move(m);
        p.title = {"t"};
        p.vmin = vmin;
        p.vmax = vmax;
        return p;
    };
    const float u = 1.0f / 16;
    std::vector<float> flat(16, u), focused(16, 0.01f);
    focused[5] = 1 - 15 * 0.01f;
    std::vector<float> nearly = flat;  // spread just under 1/256 of the value: flat
    nearly[3] = u * (1 + 0.9f / 256);
    std::vector<float> grain = flat;  // just over: not flat
    grain[3] = u * (1 + 1.2f / 256);
    CHECK(viz::is_flat(viz::summarize(flat)));
    CHECK(viz::is_flat(viz::summarize(nearly)));
    CHECK_FALSE(viz::is_flat(viz::summarize(grain)));
    CHECK(viz::is_flat(viz::summarize(std::vector<float>(16, 0.0f))));
    CHECK_FALSE(viz::is_flat(viz::summarize(std::vector<float>(16, std::nanf("")))));

    viz::figure_spec s;
    s.panel_long_side = 96;
    s.alpha = 1.0;  // the colormap alone, to read colours back exactly
    s.interp = viz::interpolation::nearest;
    // Column 0: two flat maps on a shared scale taken from them ([0, u]): degenerate.
    // Column 1: flat beside focused on their shared [0, max]: the flat one dark.
    // Column 2: auto scale ([0, its max]) on a flat and a nearly flat map: degenerate each.
    s.panels = {{panel(flat, 0, u), panel(flat, 0, focused[5]), panel(flat, 0, 0)},
                {panel(flat, 0, u), panel(focused, 0, focused[5]), panel(nearly, 0, 0)}};
    viz::figure_layout lay;
    const viz::canvas c = viz::render_figure(s, image, f.regular, f.bold, &lay);
    dump(c, "flat_maps");
    INFO(joined(viz::layout_problems(c)));
    CHECK(viz::layout_problems(c).empty());
    const auto flat_labels = [&](std::int64_t idx) {
        return std::count_if(c.drawn().begin(), c.drawn().end(), [&](const viz::mark& m) {
            return m.kind == viz::mark_kind::text && m.text == "flat" && m.owner == idx;
        });
    };
    for (std::size_t r = 0; r < 2; ++r)
        for (std::size_t k = 0; k < 3; ++k) {
            const auto& p = lay.panels[r][k];
            const bool expect_flat = !(r == 1 && k == 1);
            INFO("panel " << r << "," << k);
            CHECK(p.flat == expect_flat);
            CHECK(flat_labels(static_cast<std::int64_t>(r * 3 + k)) == (expect_flat ? 1 : 0));
            if (!expect_flat) continue;
            // One colour over the whole image area (away from the label at the top).
            const viz::rgb8 c0 = c.at(p.x, p.y + p.h - 1);
            for (std::int64_t y = p.y + p.h / 2; y < p.y + p.h; ++y)
                for (std::int64_t x = p.x; x < p.x + p.w; ++x) REQUIRE(c.at(x, y) == c0);
            CHECK(c0 == viz::hot_u8((p.flat_value - p.vmin) / (p.vmax - p.vmin)));
        }
    // Degenerate scales become [0, 2 x value]: the colormap's middle, not white.
    for (const auto& [r, k] : {std::pair{0, 0}, std::pair{1, 0}, std::pair{0, 2}}) {
        const auto& p = lay.panels[static_cast<std::size_t>(r)][static_cast<std::size_t>(k)];
        CHECK(p.vmin == 0);
        CHECK(p.vmax == Approx(2 * u));
        CHECK(c.at(p.x, p.y + p.h - 1) == viz::hot_u8(0.5));
        CHECK(c.at(p.x, p.y + p.h - 1) != viz::white);
    }
    CHECK(lay.panels[1][2].vmax == Approx(2 * viz::summarize(nearly).mean).epsilon(1e-12));
    // Beside a focused map the shared scale stays: the flat map is dark.
    const auto& p01 = lay.panels[0][1];
    CHECK(p01.vmax == Approx(focused[5]));
    CHECK(c.at(p01.x, p01.y + p01.h - 1) == viz::hot_u8(u / focused[5]));

    // The comparison figure tops every scale up to twice the uniform value, so two
    // flat rows sit at the colormap's middle whatever the scale mode.
    const auto r = synthetic({300, 300, compare::task_type::grounding, 1, false});
    for (auto mode : {compare::color_scale::column, compare::color_scale::panel, compare::color_scale::figure}) {
        compare::figure_options o;
        o.scale = mode;
        o.panel_long_side = 96;
        const auto spec = compare::make_figure(r, o);
        const double S = static_cast<double>(r.grid_h * r.grid_w);
        for (const auto& row : spec.panels) {
            CHECK(row[0].vmax >= 2 / S);
            if (mode != compare::color_scale::figure) CHECK(row[1].vmax == Approx(2 / S));  // encoder: flat
        }
        if (mode == compare::color_scale::panel) CHECK(spec.panels[0][0].vmax == Approx(2 / S));  // base: flat
        if (mode == compare::color_scale::figure) CHECK(spec.panels[0][1].vmax == spec.panels[1][0].vmax);
    }
}

TEST_CASE("layout check: catches the old figure's defects on a canvas laid out the old way", "[viz][layout]") {
    const auto& f = fonts();
    // The old layout of a 2000x40 image at 360 px: 7-px panels 26 px apart, row labels
    // turned and centred on each panel, five ticks on a 7-px bar, a footer centred on a
    // canvas narrower than it.
    viz::canvas c(600, 200, viz::white);
    const std::int64_t ph = 7, y0 = 60, y1 = y0 + ph + 26 + 40;
    for (std::int64_t y : {y0, y1}) {
        c.record({viz::mark_kind::panel, {}, {80, y, 440, y + ph}, y == y0 ? 0 : 1});
        c.record({viz::mark_kind::colorbar, {}, {449, y - 1, 471, y + ph + 1}, y == y0 ? 0 : 1});
        for (int t = 0; t < 5; ++t)
            f.regular.draw(c, viz::format_fixed(0.01 * t, 2), 475, static_cast<double>(y + ph - t * 1.5) + 5, 14,
                           viz::black);
    }
    f.bold.draw(c, "Base", 28 + 18, static_cast<double>(y0 + ph / 2) + f.bold.measure("Base", 21).width / 2, 21,
                viz::black, true);
    f.bold.draw(c, "Fine-tuned", 28 + 18, static_cast<double>(y1 + ph / 2) + f.bold.measure("Fine-tuned", 21).width / 2,
                21, viz::black, true);
    const std::string footer =
        "Colour: attention the box's patches place on every patch, mean over heads (each map sums to 1).";
    f.regular.draw(c, footer, (600 - f.regular.measure(footer, 16).width) / 2, 185, 16, viz::text_grey);
    const auto problems = viz::layout_problems(c);
    const std::string all = joined(problems);
    INFO(all);
    CHECK(all.find("text 'Base'") != std::string::npos);  // the row labels run into each other
    CHECK(all.find("overlaps text 'Fine-tuned'") != std::string::npos);
    CHECK(all.find("text '0.00'") != std::string::npos);  // ticks on top of each other
    CHECK(all.find("overlaps text '0.01'") != std::string::npos);
    CHECK(all.find("runs outside the 600x200 image") != std::string::npos);  // the footer is clipped
    // Text over a panel is caught unless it is the panel's own overlay label.
    viz::canvas d(200, 200, viz::white);
    d.record({viz::mark_kind::panel, {}, {10, 10, 150, 150}, 0});
    f.bold.draw(d, "flat", 40, 40, 14, viz::black, false, 0);
    CHECK(viz::layout_problems(d).empty());
    f.bold.draw(d, "title", 40, 80, 14, viz::black);
    f.bold.draw(d, "stray", 40, 120, 14, viz::black, false, 1);
    const std::string dd = joined(viz::layout_problems(d));
    CHECK(dd.find("text 'title'") != std::string::npos);
    CHECK(dd.find("'stray' [") != std::string::npos);
    CHECK(dd.find("not inside its panel #1") != std::string::npos);
}

TEST_CASE("text fitting: ellipsis, wrapping within the width and the line count", "[viz][layout]") {
    const auto& f = fonts().regular;
    const std::string s = "the quick brown fox jumps over the lazy dog";
    CHECK(viz::fit_line(f, s, 16, 10000) == s);
    const std::int64_t w = f.box_width("the quick brown", 16);
    const std::string cut = viz::fit_line(f, s, 16, w);
    CHECK(cut.size() < s.size());
    CHECK(cut.substr(cut.size() - f.ellipsis().size()) == f.ellipsis());
    CHECK(f.box_width(cut, 16) <= w);
    CHECK(viz::fit_line(f, s, 16, 3).empty());  // not even the ellipsis fits
    const auto lines = viz::wrap_text(f, s, 16, w, 10);
    REQUIRE(lines.size() >= 3);
    std::string back;
    for (const auto& l : lines) {
        CHECK(f.box_width(l, 16) <= w);
        back += (back.empty() ? "" : " ") + l;
    }
    CHECK(back == s);  // wrapped at spaces, nothing lost
    const auto two = viz::wrap_text(f, s, 16, w, 2);
    REQUIRE(two.size() == 2);
    CHECK(two[1].substr(two[1].size() - f.ellipsis().size()) == f.ellipsis());
    // A word wider than the line is broken between code points (here multi-byte ones).
    const std::string word = "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9";
    const auto broken = viz::wrap_text(f, word, 16, f.box_width("\u00e9\u00e9\u00e9\u00e9", 16), 10);
    REQUIRE(broken.size() == 3);
    for (const auto& l : broken) CHECK(l == "\u00e9\u00e9\u00e9\u00e9");
    CHECK(viz::wrap_text(f, "", 16, 100, 3).empty());
}

TEST_CASE("colour bar ticks: as many as the bar holds at the text's height", "[viz][layout]") {
    const double gap = 24;
    for (std::int64_t h : {32, 64, 96, 200, 360, 720}) {
        INFO(h);
        const auto t = viz::bar_ticks(0, 0.0173, h, gap);
        REQUIRE(!t.values.empty());
        CHECK(t.values.size() <= 5);
        for (std::size_t i = 1; i < t.values.size(); ++i)
            CHECK((t.values[i] - t.values[i - 1]) / 0.0173 * static_cast<double>(h - 1) >= gap);
        if (h >= 96) CHECK(t.values.size() >= 2);
    }
    CHECK(viz::bar_ticks(0, 1, 360, gap).values.size() == 5);  // 0, .25, .5, .75, 1 as before
    CHECK(viz::bar_ticks(0, 1, 40, gap).values.size() <= 2);
}
