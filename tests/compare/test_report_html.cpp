// glimpse::compare::report_html, the batch's index.html: one JSON entry per image, ids and
// labels that try to close the script or break an attribute stay text, the summary shows
// the very strings of summary_<task>.csv, failed images are marked, and 10,000 images make a
// page of a sane size. (What a browser makes of it: test_report_browser.cpp.)

#include <catch2/catch.hpp>

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <glimpse/compare/report_html.hpp>

using namespace glimpse;

namespace {

compare::image_row make_row(std::int64_t i, const std::string& id, double shift = 0) {
    compare::image_row r;
    r.index = i;
    r.line = i + 1;
    r.id = id;
    r.image = "/data/" + id + ".jpg";
    r.status = "computed";
    r.action = i % 2 ? "holding" : "riding";
    r.object_category = i % 3 ? "bicycle" : "horse";
    r.width = 640;
    r.height = 480;
    r.boxes["person"] = {10, 20.5, 300, 470};
    r.boxes["object"] = {200, 100, 630, 400};
    const double b = 0.1 + 0.8 * static_cast<double>(i % 97) / 97.0;
    r.values["person"] = {b, b + 0.05 + shift};
    r.values["object"] = {b / 2, b / 2 + 0.1 + shift};
    r.values["interaction"] = {b + 0.01, b + 0.02 + shift};
    r.uniform_mass = {{"person", 0.4}, {"object", 0.3}, {"interaction", 0.6}};
    return r;
}

compare::image_row failed_row(std::int64_t i, const std::string& id, const std::string& why) {
    compare::image_row r;
    r.index = i;
    r.id = id;
    r.status = "failed: " + why;
    r.action = "holding";
    return r;
}

std::vector<compare::task_summary> summaries_of(const std::vector<compare::image_row>& rows) {
    std::vector<compare::task_summary> out;
    for (auto t : {compare::task_type::referring, compare::task_type::grounding}) {
        bool any = false;
        for (const auto& r : rows) any = any || r.task == t;
        if (!any) continue;
        std::vector<compare::image_row> ok;
        for (const auto& r : rows)
            if (!r.failed()) ok.push_back(r);
        const std::string n(compare::name(t));
        out.push_back({t, compare::summarize(ok, t), "/out/summary_" + n + ".csv", "/out/per_image_" + n + ".csv"});
    }
    return out;
}

// The text between `open` and the next `close` after it ("" when absent).
std::string between(const std::string& s, const std::string& open, const std::string& close) {
    const auto a = s.find(open);
    if (a == std::string::npos) return "";
    const auto b = s.find(close, a + open.size());
    if (b == std::string::npos) return "";
    return s.substr(a + open.size(), b - a - open.size());
}

nlohmann::json rows_json(const std::string& page) {
    const std::string open = "<script type=\"application/json\" id=\"rows\">";
    REQUIRE(page.find(open) != std::string::npos);
    return nlohmann::json::parse(between(page, open, "</script>"));
}

std::size_t count(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("report_html: one JSON entry per image, in order, with the per-image CSV's numbers", "[compare][report]") {
    std::vector<compare::image_row> rows;
    for (int i = 0; i < 5; ++i) rows.push_back(make_row(i, "img_" + std::to_string(i)));
    rows.push_back(failed_row(5, "gone", "image 'gone.jpg': no such file"));
    const auto page = compare::report_html(rows, summaries_of(rows), {"glimpse-compare: t.jsonl", {}});
    const auto j = rows_json(page);
    REQUIRE(j.is_array());
    REQUIRE(j.size() == rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        CHECK(j[i]["id"] == rows[i].id);
        CHECK(j[i]["i"] == rows[i].index);
        CHECK(j[i]["status"] == rows[i].status);
    }
    CHECK(j[0]["v"]["person"][0] == compare::num(rows[0].values["person"].first));
    CHECK(j[0]["v"]["interaction"][1] == compare::num(rows[0].values["interaction"].second));
    CHECK(j[0]["fig"] == "img_0/attention_comparison_referring.png");
    CHECK(j[0]["boxes"] == "person 10, 20.5, 300, 470\nobject 200, 100, 630, 400");
    CHECK(j[0]["action"] == "riding");
    CHECK(j[1]["object"] == "bicycle");
    CHECK(page.find("<table id=\"images\" data-n=\"6\"") != std::string::npos);
    // Every metric has a sortable base and fine-tuned column.
    for (const char* m : {"person", "object", "interaction"}) {
        CHECK(page.find("data-key=\"b:" + std::string(m) + "\"") != std::string::npos);
        CHECK(page.find("data-key=\"f:" + std::string(m) + "\"") != std::string::npos);
    }
    // Self-contained: nothing fetched but the figures it links.
    CHECK(count(page, "http://") == count(page, "xmlns=\"http://www.w3.org/2000/svg\""));
    CHECK(page.find("https://") == std::string::npos);
    CHECK(page.find("<link") == std::string::npos);
    CHECK(page.find("<script src") == std::string::npos);
}

TEST_CASE("report_html: hostile ids, actions and titles stay text", "[compare][report]") {
    const std::string evil = "</script><script>alert(1)</script>";
    const std::string u2028 = "line\xE2\x80\xA8sep\xE2\x80\xA9par";
    std::vector<compare::image_row> rows = {make_row(0, evil), make_row(1, "a \"quoted\" & <b>"), make_row(2, u2028),
                                            make_row(3, "dir/with space#x?y%z")};
    rows[0].action = evil;
    rows[1].object_category = "o'\"&<>";
    rows.push_back(failed_row(4, "f<i>", "<img src=x onerror=alert(1)>"));
    compare::report_meta meta{"t <b>\"&'", {{"base model", "/m/<script>alert(2)</script>"}, {"a&b", "\"x\""}}};
    const auto page = compare::report_html(rows, summaries_of(rows), meta);

    CHECK(page.find("</script><script>") == std::string::npos);
    CHECK(page.find("<script>alert") == std::string::npos);
    CHECK(page.find("<b>") == std::string::npos);
    CHECK(page.find("<img src=x") == std::string::npos);
    CHECK(page.find("\xE2\x80\xA8") == std::string::npos);
    CHECK(page.find("\xE2\x80\xA9") == std::string::npos);
    // Exactly two <script> elements open and close: the JSON block, the code, nothing else.
    CHECK(count(page, "<script") == 2);
    CHECK(count(page, "</script>") == 2);
    CHECK(page.find("<title>t &lt;b&gt;&quot;&amp;&#39;</title>") != std::string::npos);
    CHECK(page.find("<td>/m/&lt;script&gt;alert(2)&lt;/script&gt;</td>") != std::string::npos);
    CHECK(page.find("<th>a&amp;b</th><td>&quot;x&quot;</td>") != std::string::npos);
    // The scatter plot's tooltips carry the ids too.
    CHECK(page.find("<title>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;: base") != std::string::npos);

    // JSON.parse gives back the very strings.
    const auto j = rows_json(page);
    REQUIRE(j.size() == rows.size());
    CHECK(j[0]["id"] == evil);
    CHECK(j[0]["action"] == evil);
    CHECK(j[1]["id"] == rows[1].id);
    CHECK(j[1]["object"] == "o'\"&<>");
    CHECK(j[2]["id"] == u2028);
    CHECK(j[4]["status"] == "failed: <img src=x onerror=alert(1)>");
    // The figure's URL: each path segment percent-encoded, the '/' kept.
    CHECK(j[1]["fig"] == "a%20%22quoted%22%20%26%20%3Cb%3E/attention_comparison_referring.png");
    CHECK(j[3]["fig"] == "dir/with%20space%23x%3Fy%25z/attention_comparison_referring.png");
}

TEST_CASE("report_html: summary cells are num() of the summary, per task, with the interval method",
          "[compare][report]") {
    std::vector<compare::image_row> rows;
    for (int i = 0; i < 12; ++i) rows.push_back(make_row(i, "r" + std::to_string(i), 0.01 * i));
    for (int i = 0; i < 4; ++i) {
        compare::image_row g = make_row(12 + i, "g" + std::to_string(i));
        g.task = compare::task_type::grounding;
        g.values.clear();
        g.values["head_normalized_entropy"] = {0.9 - 0.01 * i, 0.7};
        g.values["encoder_normalized_entropy"] = {0.95, 0.94 + 0.001 * i};
        g.values["head_mass_person"] = {0.3 + 0.02 * i, 0.6};
        g.values["head_mass_interaction"] = {0.5, 0.55 + 0.03 * i};
        rows.push_back(g);
    }
    const auto sums = summaries_of(rows);
    REQUIRE(sums.size() == 2);
    const auto page = compare::report_html(rows, sums, {"t", {}});
    CHECK(page.find(compare::ci_method) != std::string::npos);
    for (const auto& s : sums) {
        const std::string task(compare::name(s.task));
        const auto table = between(page, "<table class=\"summary\" id=\"summary-" + task + "\">", "</table>");
        REQUIRE(!table.empty());
        CHECK(count(table, "<tr class=\"summary-row\"") == s.rows.size());
        REQUIRE(!s.rows.empty());
        for (const auto& r : s.rows) {
            INFO(task << " " << r.label);
            const auto tr = between(table, "<tr class=\"summary-row\" data-label=\"" + r.label + "\">", "</tr>");
            REQUIRE(!tr.empty());
            CHECK(tr.find("<td class=\"label\">" + r.label + "</td>") != std::string::npos);
            CHECK(tr.find("<td class=\"num n\">" + std::to_string(r.base.n) + "</td>") != std::string::npos);
            const auto cells = [&](const std::string& c, const analysis::bootstrap_ci& v) {
                CHECK(tr.find("<td class=\"num " + c + "-mean\">" + compare::num(v.mean) + "</td>") !=
                      std::string::npos);
                CHECK(tr.find("<span class=\"" + c + "-lo\">" + compare::num(v.lo) + "</span>") != std::string::npos);
                CHECK(tr.find("<span class=\"" + c + "-hi\">" + compare::num(v.hi) + "</span>") != std::string::npos);
            };
            cells("base", r.base);
            cells("finetuned", r.finetuned);
            cells("diff", r.diff);
            CHECK(tr.find("<td class=\"num uniform\">" + compare::num(r.uniform_mean) + "</td>") != std::string::npos);
            // The same strings summary_<task>.csv holds.
            const auto csv = compare::summary_csv(s.rows, s.task);
            CHECK(csv.find("," + compare::num(r.diff.mean) + ",") != std::string::npos);
        }
        CHECK(page.find("<a href=\"summary_" + task + ".csv\">summary_" + task + ".csv</a>") != std::string::npos);
    }
    // One scatter plot per task, one point per image of that task, on the metric the doc names.
    const auto ref = between(page, "<figure class=\"scatter\" id=\"scatter-referring\">", "</figure>");
    const auto gr = between(page, "<figure class=\"scatter\" id=\"scatter-grounding\">", "</figure>");
    CHECK(count(ref, "<circle ") == 12);
    CHECK(count(gr, "<circle ") == 4);
    CHECK(ref.find("<figcaption>interaction:") != std::string::npos);
    CHECK(gr.find("<figcaption>head_mass_interaction:") != std::string::npos);
    // A JSON-less browser still has the summary: it is outside every <script>.
    CHECK(page.find("id=\"summary-referring\"") < page.find("<script"));
}

TEST_CASE("report_html: failed images are marked, with their error, without a figure", "[compare][report]") {
    std::vector<compare::image_row> rows = {make_row(0, "ok"), failed_row(1, "bad", "box outside the image"),
                                            make_row(2, "ok2")};
    const auto page = compare::report_html(rows, summaries_of(rows), {"t", {}});
    const auto j = rows_json(page);
    REQUIRE(j.size() == 3);
    CHECK(j[0]["failed"] == false);
    CHECK(j[1]["failed"] == true);
    CHECK(j[1]["fig"] == "");
    CHECK(j[1]["status"] == "failed: box outside the image");
    CHECK(j[1]["v"].empty());
    CHECK(j[2]["fig"] == "ok2/attention_comparison_referring.png");
    // The renderer gives a failed image's row the class the stylesheet marks.
    CHECK(page.find("tr.failed{") != std::string::npos);
    CHECK(page.find("'image-row' + (r.failed ? ' failed' : '')") != std::string::npos);
    // ... and nothing but a rendered row says class="image-row (what a test of the DOM counts).
    CHECK(page.find("class=\"image-row") == std::string::npos);
    // Failed images are neither summarised nor plotted.
    CHECK(count(between(page, "id=\"scatter-referring\">", "</figure>"), "<circle ") == 2);
    CHECK(page.find("<td class=\"num n\">2</td>") != std::string::npos);
}

TEST_CASE("report_html: no images, and a task with nothing computed", "[compare][report]") {
    const auto page = compare::report_html({}, {}, {"empty", {{"images", "0"}}});
    CHECK(rows_json(page) == nlohmann::json::array());
    CHECK(page.find("data-n=\"0\"") != std::string::npos);
    CHECK(page.find("<svg") == std::string::npos);
    CHECK(page.find("</html>") != std::string::npos);

    const std::vector<compare::image_row> rows = {failed_row(0, "x", "no such file")};
    const auto page2 = compare::report_html(
        rows, {{compare::task_type::referring, {}, "/o/summary_referring.csv", "/o/per_image_referring.csv"}},
        {"t", {}});
    CHECK(rows_json(page2).size() == 1);
    CHECK(page2.find("No image of this task was computed.") != std::string::npos);
    CHECK(page2.find("id=\"summary-referring\"") == std::string::npos);
    CHECK(page2.find("<svg") == std::string::npos);
}

TEST_CASE("report_html: 10,000 images make one page of a sane size", "[compare][report]") {
    std::vector<compare::image_row> rows;
    rows.reserve(10000);
    for (int i = 0; i < 10000; ++i) rows.push_back(make_row(i, "HICO_test2015_" + std::to_string(100000000 + i)));
    for (int i = 0; i < 10000; i += 97) rows[static_cast<std::size_t>(i)] = failed_row(i, rows[i].id, "no such file");
    const auto page = compare::report_html(rows, summaries_of(rows), {"big", {}});
    // ~0.3 KB of JSON and ~0.1 KB of plot per image: a few MB, which a browser parses in well under a second.
    CHECK(page.size() > 10000u * 200u);
    CHECK(page.size() < 10000u * 800u);
    CHECK(rows_json(page).size() == 10000);
    CHECK(page.find("data-n=\"10000\"") != std::string::npos);
}
