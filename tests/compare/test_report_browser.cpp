// The batch report in a real browser: glimpse-compare --batch on the tiny checkpoints, its
// index.html (or, from a driver that does not write one yet, the page report_html makes of the
// run's JSONs and CSVs) loaded by headless Chromium with --dump-dom. After the page's script
// ran: one image row per image, the failed one marked, the summary's numbers those of
// summary_referring.csv, and the view the URL's hash asks for (sort, filter).
// Without Chromium (Debian's `chromium`) or the tool the test is skipped.

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <glimpse/compare/report_html.hpp>

#include "csv.hpp"
#include "temp_dir.hpp"
#include "test_files.hpp"
#include "test_skip.hpp"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string find_chromium() {
    if (const char* path = std::getenv("PATH")) {
        std::istringstream dirs(path);
        for (std::string d; std::getline(dirs, d, ':');) {
            const fs::path p = fs::path(d.empty() ? "." : d) / "chromium";
            if (fs::is_regular_file(p) && ::access(p.c_str(), X_OK) == 0) return p.string();
        }
    }
    return ::access("/usr/bin/chromium", X_OK) == 0 ? "/usr/bin/chromium" : "";
}

using glimpse::test::csv_rows;

// What an attribute's serialized value means (Chromium writes &amp; and &quot;, newer
// versions &lt; and &gt; too).
std::string unescape(const std::string& s) {
    static const std::pair<const char*, const char*> refs[] = {
        {"&quot;", "\""}, {"&lt;", "<"}, {"&gt;", ">"}, {"&#39;", "'"}, {"&nbsp;", "\xC2\xA0"}, {"&amp;", "&"}};
    std::string o;
    for (std::size_t i = 0; i < s.size();) {
        bool hit = false;
        for (const auto& [ref, ch] : refs)
            if (s.compare(i, std::char_traits<char>::length(ref), ref) == 0) {
                o += ch;
                i += std::char_traits<char>::length(ref);
                hit = true;
                break;
            }
        if (!hit) o += s[i++];
    }
    return o;
}

// The DOM without the text of its <script> elements: what the page shows, not the code that builds it.
std::string without_scripts(const std::string& dom) {
    std::string o;
    std::size_t at = 0;
    for (auto p = dom.find("<script", at); p != std::string::npos; p = dom.find("<script", at)) {
        o += dom.substr(at, p - at);
        const auto e = dom.find("</script>", p);
        if (e == std::string::npos) return o;
        at = e + 9;
    }
    return o + dom.substr(at);
}

struct dom_row {
    std::string cls, id;
};

// The image rows of a dumped DOM, in document order.
std::vector<dom_row> image_rows(const std::string& dom) {
    std::vector<dom_row> out;
    for (auto p = dom.find("<tr class=\"image-row"); p != std::string::npos;
         p = dom.find("<tr class=\"image-row", p + 1)) {
        const auto end = dom.find('>', p);
        const std::string tag = dom.substr(p, end - p);
        const auto cls_end = tag.find('"', 11);
        dom_row r;
        r.cls = tag.substr(11, cls_end - 11);
        const auto a = tag.find("data-id=\"");
        if (a != std::string::npos) r.id = unescape(tag.substr(a + 9, tag.find('"', a + 9) - a - 9));
        out.push_back(r);
    }
    return out;
}

std::size_t count(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
}

// The page's DOM after its scripts ran, scripts removed; `hash` selects the view.
std::string dump_dom(const std::string& chromium, const fs::path& home, const fs::path& tmp, const fs::path& page,
                     const std::string& hash) {
    const std::string url = "file://" + compare::report_detail::url_path(fs::absolute(page).string()) + hash;
    const fs::path dom = tmp / "dom.html";
    const std::string c =
        "HOME=" + q(home.string()) + " timeout 60 " + q(chromium) +
        " --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir=" + q((home / "profile").string()) +
        " --dump-dom " + q(url) + " >" + q(dom.string()) + " 2>" + q((tmp / "chromium.err").string());
    const int s = std::system(c.c_str());
    INFO(c << "\n" << test::read_file(tmp / "chromium.err"));
    REQUIRE(WIFEXITED(s));
    REQUIRE(WEXITSTATUS(s) == 0);
    return without_scripts(test::read_file(dom));
}

}  // namespace

TEST_CASE("batch report in headless Chromium: one row per image, the CSV's summary, sort and filter from the URL",
          "[compare][report][browser]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    const std::string chromium = find_chromium();
    if (chromium.empty()) {
        WARN("chromium not found (PATH, /usr/bin/chromium): test skipped");
        return;
    }
    test::temp_dir tmp("report-browser");
    const fs::path jl = tmp / "b.jsonl", out = tmp / "out", home = tmp / "home";
    fs::create_directories(home);
    const std::string square = std::string(GLIMPSE_TEST_DATA_DIR) + "/images/square_100x100.png";
    const std::string tall = std::string(GLIMPSE_TEST_DATA_DIR) + "/images/tall_240x90.png";
    // An id and labels that try to end the JSON block, break an attribute or start an entity.
    const std::string evil_id = "a&b \"c\" <d>";
    test::write_file(jl, "{\"image\": \"" + square +
                             "\", \"person_box\": [0, 0, 60, 100], \"object_box\": [50, 50, 100, 100], \"id\": "
                             "\"a&b \\\"c\\\" <d>\", \"action\": \"</script><script>alert(1)</script>\", "
                             "\"object_category\": \"x&y\"}\n"
                             "{\"image\": \"" +
                             tall +
                             "\", \"person_box\": [0, 0, 50, 130], \"object_box\": [40, 150, 90, 240], "
                             "\"action\": \"riding\", \"object_category\": \"horse\"}\n"
                             "{\"image\": \"" +
                             square +
                             "\", \"person_box\": [10, 10, 40, 90], \"object_box\": [30, 0, 100, 50], \"id\": "
                             "\"third\", \"action\": \"riding\", \"object_category\": \"horse\"}\n"
                             "{\"image\": \"" +
                             std::string(GLIMPSE_TEST_DATA_DIR) +
                             "/images/no_such_image.png\", \"person_box\": [0, 0, 5, 5], \"id\": \"gone\"}\n");
    const std::string cmd =
        q(GLIMPSE_COMPARE_EXE) + " --base_model " + q(std::string(GLIMPSE_TEST_DATA_DIR) + "/qwen3_vl_tiny") +
        " --finetuned_model " + q(std::string(GLIMPSE_EXAMPLES_DATA_DIR) + "/qwen3_vl_tiny_finetuned") +
        " --threads 2 --panel_size 64 --batch " + q(jl.string()) + " --output_dir " + q(out.string()) + " >" +
        q((tmp / "out.txt").string()) + " 2>" + q((tmp / "err.txt").string());
    const int status = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(status));
    INFO(test::read_file(tmp / "out.txt") << test::read_file(tmp / "err.txt"));
    REQUIRE(WEXITSTATUS(status) == 1);  // the missing image fails, the run goes on
    const auto per_image = csv_rows(test::read_file(out / "per_image_referring.csv"));
    const auto summary = csv_rows(test::read_file(out / "summary_referring.csv"));
    REQUIRE(per_image.size() == 4);
    REQUIRE(summary.size() == 3);

    const fs::path page = out / "index.html";
    if (!fs::exists(page)) {
        // A driver that does not write the page yet: what it would write, from its own files.
        std::vector<compare::image_row> rows;
        for (const auto& r : per_image) {
            const std::string id = r.at("id");
            compare::image_row row;
            if (r.at("status").rfind("failed", 0) == 0) {
                row.id = id;
                row.image = r.at("image");
            } else
                row = compare::row_from_json(out / id / "attention_comparison_referring.json", id);
            row.status = r.at("status");
            row.index = static_cast<std::int64_t>(rows.size());
            rows.push_back(row);
        }
        std::vector<compare::image_row> ok;
        for (const auto& r : rows)
            if (!r.failed()) ok.push_back(r);
        const std::vector<compare::task_summary> sums = {
            {compare::task_type::referring, compare::summarize(ok, compare::task_type::referring),
             out / "summary_referring.csv", out / "per_image_referring.csv"}};
        test::write_file(page, compare::report_html(rows, sums, {"glimpse-compare: b.jsonl", {{"images", "4"}}}));
    }

    const auto dump = [&](const std::string& hash) { return dump_dom(chromium, home, tmp.path, page, hash); };

    // The default view: every image, in the file's order, the failed one marked and without a figure.
    const std::string dom = dump("");
    REQUIRE(dom.find("</html>") != std::string::npos);
    const auto rows = image_rows(dom);
    CHECK(count(dom, "class=\"image-row") == per_image.size());
    REQUIRE(rows.size() == per_image.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        CHECK(rows[i].id == per_image[i].at("id"));
        CHECK((rows[i].cls.find("failed") != std::string::npos) == (per_image[i].at("status").rfind("failed", 0) == 0));
    }
    CHECK(rows[0].id == evil_id);
    CHECK(rows[3].cls == "image-row failed");
    CHECK(count(dom, "<img loading=\"lazy\"") == 3);
    CHECK(dom.find("src=\"a%26b%20%22c%22%20%3Cd%3E/attention_comparison_referring.png\"") != std::string::npos);
    CHECK(dom.find("</script><script>alert") == std::string::npos);
    CHECK(dom.find("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);

    // The summary: the very strings of summary_referring.csv.
    const auto a = dom.find("id=\"summary-referring\"");
    REQUIRE(a != std::string::npos);
    const std::string table = dom.substr(a, dom.find("</table>", a) - a);
    std::size_t checked = 0;
    for (const auto& r : summary)
        for (const char* col :
             {"base_mean", "base_ci95_lo", "base_ci95_hi", "finetuned_mean", "finetuned_ci95_lo", "finetuned_ci95_hi",
              "diff_base_minus_finetuned_mean", "diff_ci95_lo", "diff_ci95_hi"}) {
            const std::string v = r.at(col);
            if (v.empty()) continue;
            INFO(r.at("box") << " " << col << " = " << v);
            CHECK(table.find(">" + v + "<") != std::string::npos);
            ++checked;
        }
    CHECK(checked >= 9);

    // Sorted by the base model's person mass, descending, from the URL: the failed image (no value) last.
    std::vector<std::pair<double, std::size_t>> order;
    for (std::size_t i = 0; i < per_image.size(); ++i)
        if (!per_image[i].at("base_mass_person").empty())
            order.push_back({std::stod(per_image[i].at("base_mass_person")), i});
    std::stable_sort(order.begin(), order.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    const auto sorted = image_rows(dump("#sort=b:person&desc=1"));
    REQUIRE(sorted.size() == per_image.size());
    for (std::size_t k = 0; k < order.size(); ++k) CHECK(sorted[k].id == per_image[order[k].second].at("id"));
    CHECK(sorted.back().id == "gone");

    // Filters: by action, and the failed ones.
    const auto riding = image_rows(dump("#action=riding"));
    REQUIRE(riding.size() == 2);
    CHECK(riding[0].id == "tall_240x90");
    CHECK(riding[1].id == "third");
    const auto failed = image_rows(dump("#status=failed"));
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].id == "gone");
}

// A whole test split is ~10,000 rows: the page lays out 500 at a time (all 10,000 rows' table
// took Chromium 10-15 s here, a page of 500 under a second), sorted and filtered over all.
TEST_CASE("batch report in headless Chromium: a large batch is shown 500 rows a page, sorted over all of them",
          "[compare][report][browser]") {
    const std::string chromium = find_chromium();
    if (chromium.empty()) {
        WARN("chromium not found (PATH, /usr/bin/chromium): test skipped");
        return;
    }
    test::temp_dir tmp("report-pages");
    const fs::path home = tmp / "home";
    fs::create_directories(home);
    std::vector<compare::image_row> rows;
    for (int i = 0; i < 1234; ++i) {
        compare::image_row r;
        r.index = i;
        r.line = i + 1;
        r.id = "img" + std::to_string(i);
        r.status = "computed";
        r.values["person"] = {static_cast<double>((i * 7919) % 1234) / 1234.0, 0.5};
        rows.push_back(r);
    }
    const fs::path page = tmp / "index.html";
    test::write_file(page, compare::report_html(rows, {}, {"pages", {}}));
    const auto first = image_rows(dump_dom(chromium, home, tmp.path, page, ""));
    REQUIRE(first.size() == 500);
    CHECK(first.front().id == "img0");
    CHECK(first.back().id == "img499");
    const std::string third_dom = dump_dom(chromium, home, tmp.path, page, "#page=3");
    const auto third = image_rows(third_dom);
    REQUIRE(third.size() == 234);
    CHECK(third.front().id == "img1000");
    CHECK(third_dom.find("1001\u20131234 (page 3 of 3)") != std::string::npos);
    // Sorted by the base value, descending, over all 1,234 rows: the largest value is on page 1.
    const auto sorted = image_rows(dump_dom(chromium, home, tmp.path, page, "#sort=b:person&desc=1"));
    REQUIRE(sorted.size() == 500);
    int best = 0;
    for (int i = 0; i < 1234; ++i)
        if ((i * 7919) % 1234 > (best * 7919) % 1234) best = i;
    CHECK(sorted.front().id == "img" + std::to_string(best));
}
