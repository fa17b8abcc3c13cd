// safetensors reading and writing on well-formed input: round trips, metadata,
// checkpoint directories, and the errors a correct program can still meet.

#include <catch2/catch.hpp>

#include <unistd.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/fnv1a64.hpp"
#include "glimpse/io/safetensors.hpp"
#include "test_files.hpp"
#include "test_util.hpp"

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using glimpse::cview;
using glimpse::dtype;
using glimpse::tensor;

namespace {

using glimpse::test::write_file;

using glimpse::test::temp_dir;

tensor iota(const glimpse::shape& s, dtype t, float scale = 0.5f) {
    tensor f(s);
    for (std::int64_t i = 0; i < f.numel(); ++i) f.ptr<float>()[i] = static_cast<float>(i) * scale - 3.0f;
    return f.to(t);
}

// Element-wise equality through f32 over any strides (exact: same dtype both sides).
bool same_values(const cview& a, const cview& b) {
    if (a.type() != b.type() || !(a.shape() == b.shape())) return false;
    const auto n = a.numel();
    std::array<std::int64_t, glimpse::max_rank> idx{};
    const auto r = static_cast<std::size_t>(a.rank());
    for (std::int64_t i = 0; i < n; ++i) {
        const float x = glimpse::load_f32(a.data(), a.type(), a.offset({idx.data(), r}));
        const float y = glimpse::load_f32(b.data(), b.type(), b.offset({idx.data(), r}));
        if (std::memcmp(&x, &y, sizeof x) != 0) return false;
        for (std::size_t d = r; d-- > 0;) {
            if (++idx[d] < a.shape()[static_cast<int>(d)]) break;
            idx[d] = 0;
        }
    }
    return true;
}

// A safetensors file built by hand: 8-byte length, header, data.
std::string raw_file(const std::string& header, const std::string& data = {}) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return out + header + data;
}

std::vector<std::string> dir_listing(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

TEST_CASE("safetensors: round trip of F32, BF16 and F16, contiguous and strided", "[io]") {
    temp_dir dir("roundtrip");
    const tensor a = iota({2, 3}, dtype::f32);
    const tensor b = iota({4}, dtype::bf16);
    const tensor c = iota({3, 2, 2}, dtype::f16);
    const tensor m = iota({3, 4}, dtype::f32);
    const cview mt = m.cv().transpose(0, 1);                     // [4, 3], strided
    const cview cs = c.cv().slice(1, 1, 2).select(1, 0);         // [3, 2], strided
    const tensor s = iota({}, dtype::f32);                       // rank 0 scalar
    const tensor z = tensor(glimpse::shape{0, 5}, dtype::bf16);  // no elements
    REQUIRE_FALSE(mt.is_contiguous());
    REQUIRE_FALSE(cs.is_contiguous());

    const std::vector<std::pair<std::string, cview>> items = {{"a", a},        {"b", b},      {"c", c},    {"m.t", mt},
                                                              {"c.slice", cs}, {"scalar", s}, {"empty", z}};
    const fs::path file = dir / "model.safetensors";
    glimpse::save_safetensors(file, items);

    const glimpse::safetensors_file f(file);
    REQUIRE(f.path() == file);
    REQUIRE(f.entries().size() == items.size());
    REQUIRE(std::is_sorted(f.entries().begin(), f.entries().end(),
                           [](const auto& x, const auto& y) { return x.name < y.name; }));
    REQUIRE(f.metadata().empty());
    for (const auto& [name, v] : items) {
        INFO(name);
        const auto* e = f.find(name);
        REQUIRE(e != nullptr);
        REQUIRE(e->dtype == v.type());
        REQUIRE(e->dtype_name == glimpse::safetensors_name(v.type()));
        REQUIRE(e->shape == v.shape());
        REQUIRE(e->nbytes() == static_cast<std::uint64_t>(v.numel()) * glimpse::itemsize(v.type()));
        const tensor t = f.load(name);
        REQUIRE(t.type() == v.type());
        REQUIRE(same_values(t.cv(), v));
    }
    // Laid out in the given order, back to back.
    std::uint64_t at = 0;
    for (const auto& [name, v] : items) {
        const auto* e = f.find(name);
        CHECK(e->begin == at);
        at = e->end;
    }
    // a, b are aligned (F32 first at offset 0, BF16 after 24 bytes): zero-copy views work.
    REQUIRE(same_values(f.get("a"), a.cv()));
    REQUIRE(same_values(f.get("b"), b.cv()));
    REQUIRE(f.get("a").data() != a.data());
    REQUIRE(f.contains("scalar"));
    REQUIRE_FALSE(f.contains("nope"));
    REQUIRE(f.find("nope") == nullptr);
}

TEST_CASE("safetensors: the header is space-padded to a multiple of 8", "[io]") {
    temp_dir dir("padding");
    const tensor a = iota({3}, dtype::f32);
    for (const std::string name : {"x", "xy", "xyz", "abcdefgh", "abcdefghi"}) {
        const fs::path file = dir / (name + ".safetensors");
        glimpse::save_safetensors(file, {{name, a.cv()}});
        std::ifstream in(file, std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        REQUIRE(bytes.size() >= 8);
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
        REQUIRE(n % 8 == 0);
        REQUIRE(bytes.size() == 8 + n + 12);
        REQUIRE(bytes[8] == '{');
        const auto last = bytes.find_last_not_of(' ', 8 + n - 1);
        REQUIRE(bytes[last] == '}');
    }
}

TEST_CASE("safetensors: metadata round trip", "[io]") {
    temp_dir dir("metadata");
    const tensor a = iota({2}, dtype::f32);
    const std::map<std::string, std::string> meta = {
        {"format", "pt"}, {"note", "quotes \" and \\ and\nnewline"}, {"unicode", "h\xc3\xa9llo"}, {"empty", ""}};
    glimpse::save_safetensors(dir / "m.safetensors", {{"a", a.cv()}}, meta);
    const glimpse::safetensors_file f(dir / "m.safetensors");
    REQUIRE(f.metadata() == meta);
    REQUIRE(f.entries().size() == 1);
}

TEST_CASE("safetensors: a misaligned tensor is refused by get() and copied by load()", "[io]") {
    temp_dir dir("align");
    const tensor h = iota({1}, dtype::bf16);  // 2 bytes: shifts what follows off 4-byte alignment
    const tensor a = iota({3}, dtype::f32);
    glimpse::save_safetensors(dir / "x.safetensors", {{"h", h.cv()}, {"a", a.cv()}});
    const glimpse::safetensors_file f(dir / "x.safetensors");
    REQUIRE(f.find("a")->begin == 2);
    REQUIRE_THROWS_WITH(f.get("a"), Catch::Contains("'a'") && Catch::Contains("load()"));
    const tensor t = f.load("a");
    REQUIRE(same_values(t.cv(), a.cv()));
    REQUIRE(same_values(f.get("h"), h.cv()));
}

TEST_CASE("safetensors: moving a file keeps its views valid", "[io]") {
    temp_dir dir("move");
    const tensor a = iota({5}, dtype::f32);
    glimpse::save_safetensors(dir / "x.safetensors", {{"a", a.cv()}});
    glimpse::safetensors_file f(dir / "x.safetensors");
    const cview v = f.get("a");
    glimpse::safetensors_file g(std::move(f));
    REQUIRE(same_values(v, a.cv()));
    REQUIRE(g.get("a").data() == v.data());
    glimpse::safetensors_file h(dir / "x.safetensors");
    h = std::move(g);
    REQUIRE(same_values(h.get("a"), a.cv()));
}

TEST_CASE("safetensors: missing tensors are named in the error", "[io]") {
    temp_dir dir("missing");
    const tensor a = iota({2}, dtype::f32);
    glimpse::save_safetensors(dir / "x.safetensors", {{"a", a.cv()}});
    const glimpse::safetensors_file f(dir / "x.safetensors");
    REQUIRE_THROWS_AS(f.get("blocks.0.attn.qkv.weight"), glimpse::error);
    REQUIRE_THROWS_WITH(f.get("blocks.0.attn.qkv.weight"),
                        Catch::Contains("blocks.0.attn.qkv.weight") && Catch::Contains("x.safetensors"));
    REQUIRE_THROWS_WITH(f.load("head.bias"), Catch::Contains("head.bias"));

    const glimpse::checkpoint ck(dir / "x.safetensors");
    REQUIRE_THROWS_WITH(ck.get("head.bias"), Catch::Contains("head.bias") && Catch::Contains("checkpoint"));
    REQUIRE_THROWS_WITH(ck.load("head.bias"), Catch::Contains("head.bias"));
    REQUIRE(ck.find("head.bias").first == nullptr);
    REQUIRE(ck.find("head.bias").second == nullptr);
}

TEST_CASE("safetensors: a dtype glimpse cannot use opens but get/load name it", "[io]") {
    temp_dir dir("i64");
    std::string data(16, '\0');
    data[0] = 7;
    data[8] = 9;
    const tensor a = iota({2}, dtype::f32);
    std::string fdata(8, '\0');
    std::memcpy(fdata.data(), a.data(), 8);
    write_file(dir / "ids.safetensors", raw_file(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                                                 R"("w":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
                                                 data + fdata));
    const glimpse::safetensors_file f(dir / "ids.safetensors");
    const auto* e = f.find("ids");
    REQUIRE(e != nullptr);
    REQUIRE(e->dtype_name == "I64");
    REQUIRE_FALSE(e->dtype.has_value());
    REQUIRE(e->numel() == 2);
    REQUIRE(f.bytes(*e).size() == 16);
    REQUIRE(static_cast<int>(f.bytes(*e)[8]) == 9);
    REQUIRE_THROWS_AS(f.get("ids"), glimpse::error);
    REQUIRE_THROWS_WITH(f.get("ids"), Catch::Contains("I64") && Catch::Contains("ids"));
    REQUIRE_THROWS_WITH(f.load("ids"), Catch::Contains("I64"));
    REQUIRE(same_values(f.load("w").cv(), a.cv()));  // the usable neighbour still loads

    const glimpse::checkpoint ck(dir / "ids.safetensors");
    REQUIRE_THROWS_WITH(ck.load("ids"), Catch::Contains("I64"));
    REQUIRE(ck.total_parameters() == 4);
}

TEST_CASE("safetensors: checkpoint of a sharded directory with an index", "[io]") {
    temp_dir dir("sharded");
    const tensor a = iota({2, 2}, dtype::f32);
    const tensor b = iota({3}, dtype::bf16);
    const tensor c = iota({5}, dtype::f16);
    glimpse::save_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", a.cv()}, {"b", b.cv()}});
    glimpse::save_safetensors(dir / "model-00002-of-00002.safetensors", {{"c", c.cv()}});
    // Not named by the index: must be ignored, not merged.
    glimpse::save_safetensors(dir / "stray.safetensors", {{"a", c.cv()}});
    write_file(dir / "model.safetensors.index.json", R"({
        "metadata": {"total_size": 34},
        "weight_map": {"c": "model-00002-of-00002.safetensors",
                       "a": "model-00001-of-00002.safetensors",
                       "b": "model-00001-of-00002.safetensors"}})");

    const glimpse::checkpoint ck(dir.path);
    REQUIRE(ck.path() == dir.path);
    REQUIRE(ck.names() == std::vector<std::string>{"a", "b", "c"});
    REQUIRE(ck.files().size() == 2);  // each shard opened once
    REQUIRE(ck.contains("c"));
    REQUIRE_FALSE(ck.contains("d"));
    const auto [file, entry] = ck.find("c");
    REQUIRE(file != nullptr);
    REQUIRE(file->path().filename() == "model-00002-of-00002.safetensors");
    REQUIRE(entry->name == "c");
    REQUIRE(same_values(ck.get("a"), a.cv()));
    REQUIRE(same_values(ck.load("b").cv(), b.cv()));
    REQUIRE(same_values(ck.load("c").cv(), c.cv()));
    REQUIRE(ck.total_parameters() == 4 + 3 + 5);
}

TEST_CASE("safetensors: checkpoint of a directory of plain files", "[io]") {
    temp_dir dir("plain");
    const tensor a = iota({2}, dtype::f32);
    const tensor b = iota({2, 3}, dtype::bf16);
    glimpse::save_safetensors(dir / "one.safetensors", {{"enc.a", a.cv()}});
    glimpse::save_safetensors(dir / "two.safetensors", {{"dec.b", b.cv()}}, {{"k", "v"}});
    write_file(dir / "README.md", "not a checkpoint");

    glimpse::checkpoint ck(dir.path);
    REQUIRE(ck.names() == std::vector<std::string>{"dec.b", "enc.a"});
    REQUIRE(ck.files().size() == 2);
    REQUIRE(ck.total_parameters() == 8);
    REQUIRE(same_values(ck.get("enc.a"), a.cv()));
    REQUIRE(same_values(ck.load("dec.b").cv(), b.cv()));
    REQUIRE(ck.find("dec.b").first->metadata().at("k") == "v");

    // A checkpoint moves without invalidating what it indexes.
    glimpse::checkpoint moved(std::move(ck));
    REQUIRE(same_values(moved.get("enc.a"), a.cv()));
}

TEST_CASE("safetensors: a tensor in two files of a directory is an error naming both", "[io]") {
    temp_dir dir("dup");
    const tensor a = iota({2}, dtype::f32);
    glimpse::save_safetensors(dir / "one.safetensors", {{"w", a.cv()}});
    glimpse::save_safetensors(dir / "two.safetensors", {{"w", a.cv()}});
    REQUIRE_THROWS_AS(glimpse::checkpoint(dir.path), glimpse::error);
    REQUIRE_THROWS_WITH(glimpse::checkpoint(dir.path), Catch::Contains("'w'") && Catch::Contains("one.safetensors") &&
                                                           Catch::Contains("two.safetensors"));
}

TEST_CASE("safetensors: a directory without checkpoint files is an error", "[io]") {
    temp_dir dir("emptydir");
    REQUIRE_THROWS_WITH(glimpse::checkpoint(dir.path), Catch::Contains("no .safetensors files"));
    REQUIRE_THROWS_WITH(glimpse::checkpoint(dir / "absent"), Catch::Contains("no such file"));
    REQUIRE_THROWS_WITH(glimpse::safetensors_file(dir / "absent.safetensors"), Catch::Contains("no such file"));
    REQUIRE_THROWS_WITH(glimpse::safetensors_file(dir.path), Catch::Contains("not a regular file"));
}

TEST_CASE("safetensors: writes are atomic and leave no temporary file", "[io]") {
    temp_dir dir("atomic");
    const tensor a = iota({4}, dtype::f32);
    const tensor b = iota({2}, dtype::f16);
    const fs::path file = dir / "w.safetensors";
    glimpse::save_safetensors(file, {{"a", a.cv()}});
    REQUIRE(dir_listing(dir.path) == std::vector<std::string>{"w.safetensors"});

    // Overwriting replaces the file whole.
    glimpse::save_safetensors(file, {{"b", b.cv()}});
    REQUIRE(dir_listing(dir.path) == std::vector<std::string>{"w.safetensors"});
    {
        const glimpse::safetensors_file f(file);
        REQUIRE(f.entries().size() == 1);
        REQUIRE(f.contains("b"));
    }

    // Rejected input writes nothing at all: the old file survives untouched.
    REQUIRE_THROWS_WITH(glimpse::save_safetensors(file, {{"x", a.cv()}, {"x", b.cv()}}), Catch::Contains("twice"));
    REQUIRE_THROWS_WITH(glimpse::save_safetensors(dir / "n.safetensors", {{"__metadata__", a.cv()}}),
                        Catch::Contains("reserved"));
    REQUIRE_THROWS_WITH(glimpse::save_safetensors(dir / "n.safetensors", {{"bad\xff", a.cv()}}),
                        Catch::Contains("UTF-8"));
    REQUIRE(dir_listing(dir.path) == std::vector<std::string>{"w.safetensors"});
    REQUIRE(glimpse::safetensors_file(file).contains("b"));

    // An unwritable destination fails cleanly.
    REQUIRE_THROWS_AS(glimpse::save_safetensors(dir / "no-such-dir" / "x.safetensors", {{"a", a.cv()}}),
                      glimpse::error);
    REQUIRE(dir_listing(dir.path) == std::vector<std::string>{"w.safetensors"});
}

// A file glimpse wrote (glimpse-train's bundled head) as Python's safetensors read it:
// tools/make_roundtrip_fixture.py rewrote what safe_open returned. Same names, dtypes,
// shapes and bytes, and the metadata Python saw is the metadata glimpse wrote.
TEST_CASE("safetensors: a glimpse-written file reads the same in Python's safetensors", "[io]") {
    const fs::path ours = fs::path(GLIMPSE_EXAMPLES_DATA_DIR) / "qwen3_vl_tiny_finetuned" / "heatmap_head.safetensors";
    const glimpse::safetensors_file a(ours);
    const glimpse::safetensors_file b(glimpse::test::data_path("roundtrip_glimpse_to_python.safetensors"));
    glimpse::fnv1a64 h;
    const std::string bytes = glimpse::test::read_file(ours);
    h.add(bytes.data(), bytes.size());
    INFO("the bundled head changed since the fixture was written: rerun tools/make_roundtrip_fixture.py");
    REQUIRE(b.metadata().at("source.fnv1a64") == h.hex());
    REQUIRE(std::stoul(b.metadata().at("source.tensors")) == a.entries().size());
    REQUIRE(a.entries().size() == b.entries().size());
    for (const auto& e : a.entries()) {
        INFO(e.name);
        REQUIRE(b.contains(e.name));
        const cview x = a.get(e.name), y = b.get(e.name);
        CHECK(x.type() == y.type());
        CHECK(x.shape() == y.shape());
        CHECK(std::memcmp(x.data(), y.data(), static_cast<std::size_t>(x.numel()) * glimpse::itemsize(x.type())) == 0);
    }
    const auto seen = nlohmann::json::parse(b.metadata().at("source.metadata"));
    CHECK(seen.size() == a.metadata().size());
    for (const auto& [k, v] : a.metadata()) {
        INFO(k);
        CHECK(seen.at(k) == v);
    }
}
