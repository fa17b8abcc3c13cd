// The training data format (train/dataset.hpp): every kind of bad line is
// reported with file:line and its reason; skip keeps the good lines, reject
// throws one error listing them all; the held-out split is by image.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include <glimpse/train/dataset.hpp>

#include "temp_dir.hpp"
#include "test_util.hpp"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary);
    f << text;
}

// A directory with one good 100x100 image (a copy of a test PNG), a corrupt
// one, and a .jsonl made of `lines`.
struct data_dir {
    test::temp_dir dir{"train-data"};
    fs::path jsonl;
    explicit data_dir(const std::string& lines) {
        fs::create_directories(dir / "img");
        fs::copy_file(test::data_path("images/square_100x100.png"), dir / "img" / "sq.png");
        write(dir / "img" / "broken.png", std::string("\x89PNG\r\n\x1a\n garbage, not an image", 30));
        jsonl = dir / "train.jsonl";
        write(jsonl, lines);
    }
};

}  // namespace

TEST_CASE("dataset: good lines parse, paths resolve against the file's directory", "[train]") {
    data_dir d(
        "{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 50, 100], \"object_box\": [40.5, 10, 100, 60], \"id\": 7}\n"
        "\n"
        "{\"image\": \"img/sq.png\", \"person_box\": [1, 2, 3, 4], \"object_box\": [5, 6, 7, 8]}\r\n");
    const auto ds = train::load_dataset(d.jsonl, train::bad_line_policy::reject);
    REQUIRE(ds.examples.size() == 2);
    CHECK(ds.blank_lines == 1);
    CHECK(ds.examples[0].image == (d.dir.path / "img" / "sq.png").lexically_normal());
    CHECK(ds.examples[0].image_w == 100);
    CHECK(ds.examples[0].object.x1 == 40.5);
    CHECK(ds.examples[1].line == 3);
}

TEST_CASE("dataset: every bad-line kind is reported with file:line and reason", "[train]") {
    const std::string good =
        "{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 50, 100], \"object_box\": [40, 10, 100, 60]}";
    const std::pair<std::string, std::string> cases[] = {
        {"{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 50, 100]", "not valid JSON"},  // 2: truncated
        {"{\"image\": \"img/sq.png\", \"person_box\": [NaN, 0, 50, 100], \"object_box\": [0, 0, 1, 1]}",
         "NaN is not a JSON number"},  // 3
        {"{\"image\": \"img/none.png\", \"person_box\": [0, 0, 5, 5], \"object_box\": [0, 0, 1, 1]}",
         "no such file"},  // 4
        {"{\"image\": \"img/broken.png\", \"person_box\": [0, 0, 5, 5], \"object_box\": [0, 0, 1, 1]}",
         "cannot be read"},  // 5
        {"{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 50, 101], \"object_box\": [0, 0, 1, 1]}",
         "person_box [0, 0, 50, 101] is outside the 100x100 image"},  // 6
        {"{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 5, 5], \"object_box\": [30, 0, 10, 10]}",
         "object_box [30, 0, 10, 10] is inverted or empty"},  // 7
        {"{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 5, 5], \"object_box\": [3, 3, 3, 9]}",
         "inverted or empty"},  // 8: empty
        {"{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 5, 1e999], \"object_box\": [0, 0, 1, 1]}",
         "must be a finite number"},                                                              // 9
        {"{\"image\": \"img/sq.png\", \"object_box\": [0, 0, 1, 1]}", "missing \"person_box\""},  // 10
        {"{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 5], \"object_box\": [0, 0, 1, 1]}",
         "must be an array of 4 numbers"},  // 11
        {"{\"image\": \"img/sq.png\", \"person_box\": [0, 0, \"5\", 5], \"object_box\": [0, 0, 1, 1]}",
         "must be an array of 4 numbers"},  // 12
        {"{\"image\": 3, \"person_box\": [0, 0, 5, 5], \"object_box\": [0, 0, 1, 1]}",
         "\"image\" must be a non-empty string"},  // 13
        {"[1, 2, 3]", "not a JSON object"},        // 14
        {"{\"image\": \"img/sq.png\", \"person_box\": [0, 0, 5, 5], \"person_box\": [0, 0, 6, 6], \"object_box\": [0, "
         "0, 1, 1]}",
         "key 'person_box' appears twice"},  // 15
        // 16: a box nested 20,000 arrays deep (crashed the process: stack overflow while the
        // error message dumped it)
        {"{\"image\": \"img/sq.png\", \"person_box\": " + std::string(20000, '[') + std::string(20000, ']') +
             ", \"object_box\": [0, 0, 1, 1]}",
         "nested more than 64 levels deep"},
    };
    std::string text = good + "\n";
    for (const auto& [line, _] : cases) text += line + "\n";
    data_dir d(text);

    const auto ds = train::load_dataset(d.jsonl, train::bad_line_policy::skip);
    REQUIRE(ds.examples.size() == 1);
    REQUIRE(ds.bad.size() == std::size(cases));
    for (std::size_t i = 0; i < std::size(cases); ++i) {
        INFO(ds.bad[i].str());
        CHECK(ds.bad[i].line == i + 2);
        CHECK(ds.bad[i].str().starts_with(d.jsonl.string() + ":" + std::to_string(i + 2) + ": "));
        CHECK(ds.bad[i].reason.find(cases[i].second) != std::string::npos);
    }

    // reject: one error naming every bad line.
    try {
        (void)train::load_dataset(d.jsonl, train::bad_line_policy::reject);
        FAIL("reject accepted bad lines");
    } catch (const glimpse::error& e) {
        const std::string msg = e.what();
        INFO(msg);
        CHECK(msg.find(std::to_string(std::size(cases)) + " bad lines") != std::string::npos);
        for (std::size_t i = 0; i < std::size(cases); ++i)
            CHECK(msg.find(d.jsonl.string() + ":" + std::to_string(i + 2) + ": ") != std::string::npos);
    }
}

TEST_CASE("dataset: a file with no usable line, or no file, is an error", "[train]") {
    data_dir d("{\"image\": \"img/none.png\", \"person_box\": [0, 0, 5, 5], \"object_box\": [0, 0, 1, 1]}\n");
    REQUIRE_THROWS_WITH(train::load_dataset(d.jsonl, train::bad_line_policy::skip),
                        Catch::Contains("no usable example"));
    REQUIRE_THROWS_WITH(train::load_dataset(d.dir / "nope.jsonl", train::bad_line_policy::skip),
                        Catch::Contains("no such file"));
}

TEST_CASE("dataset: the held-out split is by image, seeded, and leaves both sides non-empty", "[train]") {
    data_dir d("");
    std::string text;
    for (int i = 0; i < 6; ++i) {
        fs::copy_file(test::data_path("images/square_100x100.png"), d.dir / "img" / ("s" + std::to_string(i) + ".png"));
        for (int j = 0; j < 2; ++j)
            text += "{\"image\": \"img/s" + std::to_string(i) +
                    ".png\", \"person_box\": [0, 0, 50, 100], "
                    "\"object_box\": [" +
                    std::to_string(j) + ", 0, 60, 60]}\n";
    }
    write(d.jsonl, text);
    auto a = train::load_dataset(d.jsonl, train::bad_line_policy::reject);
    auto b = train::load_dataset(d.jsonl, train::bad_line_policy::reject);
    const auto ha = train::split_heldout(a, 0.34, 5);
    const auto hb = train::split_heldout(b, 0.34, 5);
    REQUIRE(ha.size() == 4);  // 2 of 6 images, 2 lines each
    REQUIRE(a.examples.size() == 8);
    for (std::size_t i = 0; i < ha.size(); ++i) CHECK(ha[i].image == hb[i].image);
    for (const auto& h : ha)
        for (const auto& t : a.examples) CHECK(h.image != t.image);
}
