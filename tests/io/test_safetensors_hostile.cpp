// Hostile safetensors input: every malformed file must end in one
// glimpse::error that says what is wrong — never a crash, an out-of-bounds
// read (run these under ASan) or a huge allocation.

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "glimpse/io/safetensors.hpp"
#include "test_files.hpp"
#include "test_skip.hpp"

#ifndef GLIMPSE_INSPECT_EXE
#define GLIMPSE_INSPECT_EXE ""
#endif

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

using glimpse::test::read_file;
using glimpse::test::write_file;

using glimpse::test::temp_dir;

std::string le64(std::uint64_t n) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    return out;
}

// 8-byte length (the header's own unless given), header, data.
std::string raw_file(const std::string& header, const std::string& data = {}) {
    return le64(header.size()) + header + data;
}

// Writes `bytes` as a file in a fresh directory and opens it; the directory
// lives as long as the returned object.
struct hostile {
    temp_dir dir{"case"};
    fs::path file;
    explicit hostile(const std::string& bytes) : file(dir / "h.safetensors") { write_file(file, bytes); }
    void open() const { glimpse::safetensors_file f(file); }
};

// One F32 tensor "w" of shape [2] with the given field text spliced in.
std::string entry_header(const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return R"({"w":{"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
}

const std::string eight_bytes(8, '\x01');

}  // namespace

TEST_CASE("safetensors hostile: empty file", "[io][hostile]") {
    hostile h("");
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("0 bytes") && Contains("h.safetensors"));
}

TEST_CASE("safetensors hostile: 7-byte file", "[io][hostile]") {
    hostile h(std::string("\x02\0\0\0\0\0\0", 7));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("7 bytes"));
}

TEST_CASE("safetensors hostile: header length past the end of the file", "[io][hostile]") {
    hostile h(le64(100) + "{}" + std::string(8, ' '));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("header length 100") && Contains("past the end"));
}

TEST_CASE("safetensors hostile: header length 2^63", "[io][hostile]") {
    hostile h(le64(std::uint64_t{1} << 63) + "{}");
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("9223372036854775808") && Contains("limit"));
}

TEST_CASE("safetensors hostile: header length all ones", "[io][hostile]") {
    hostile h(le64(~std::uint64_t{0}) + "{}");
    REQUIRE_THROWS_WITH(h.open(), Contains("limit"));
}

TEST_CASE("safetensors hostile: header length huge but file small", "[io][hostile]") {
    SECTION("above the 100 MB limit") {
        hostile h(le64(200'000'000) + "{}");
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("limit"));
    }
    SECTION("below the limit, past the end") {
        hostile h(le64(99'000'000) + "{}");
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("past the end"));
    }
    SECTION("one byte too long") {
        hostile h(le64(3) + "{}");
        REQUIRE_THROWS_WITH(h.open(), Contains("past the end"));
    }
}

TEST_CASE("safetensors hostile: header of length 0", "[io][hostile]") {
    hostile h(le64(0));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("not valid JSON"));
}

TEST_CASE("safetensors hostile: header not JSON", "[io][hostile]") {
    for (const std::string header : {"this is not json", "{", "{\"w\":", "{}}", "{} x", "{'w': 1}", "{\"a\" 1}"}) {
        INFO(header);
        hostile h(raw_file(header));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("not valid JSON") && Contains("h.safetensors"));
    }
    hostile nul(raw_file(std::string("{}\0\0\0\0\0\0", 8)));
    REQUIRE_THROWS_WITH(nul.open(), Contains("not valid JSON"));
}

TEST_CASE("safetensors hostile: header JSON but not an object", "[io][hostile]") {
    for (const std::string header : {"[]", "[1, 2]", "42", "-1", "3.5", "\"str\"", "null", "true"}) {
        INFO(header);
        hostile h(raw_file(header));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("not a JSON object"));
    }
}

TEST_CASE("safetensors hostile: deeply nested arrays", "[io][hostile]") {
    const std::string deep(1'000'000, '[');
    hostile top(raw_file(deep));
    REQUIRE_THROWS_WITH(top.open(), Contains("not a JSON object"));
    hostile in_shape(raw_file(entry_header("\"F32\"", deep, "[0,8]")));
    REQUIRE_THROWS_WITH(in_shape.open(), Contains("shape"));
}

TEST_CASE("safetensors hostile: non-UTF-8 key bytes", "[io][hostile]") {
    hostile h(raw_file("{\"w\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight_bytes));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("UTF-8"));
    // The message itself stays printable ASCII: raw bytes are escaped.
    try {
        h.open();
    } catch (const glimpse::error& e) {
        const std::string what = e.what();
        REQUIRE(std::all_of(what.begin(), what.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }));
    }
    hostile overlong(raw_file("{\"w\":{\"dtype\":\"F\xc0\xb2\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight_bytes));
    REQUIRE_THROWS_WITH(overlong.open(), Contains("UTF-8"));
    hostile surrogate(raw_file(R"({"w\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight_bytes));
    REQUIRE_THROWS_WITH(surrogate.open(), Contains("not valid JSON"));
}

TEST_CASE("safetensors hostile: unknown dtype F33", "[io][hostile]") {
    hostile h(raw_file(entry_header("\"F33\"", "[2]", "[0,8]"), eight_bytes));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("F33") && Contains("'w'") && Contains("not a safetensors dtype"));
    hostile lower(raw_file(entry_header("\"f32\"", "[2]", "[0,8]"), eight_bytes));
    REQUIRE_THROWS_WITH(lower.open(), Contains("f32"));
}

TEST_CASE("safetensors hostile: dtype that is not a string", "[io][hostile]") {
    for (const std::string dt : {"32", "null", "[\"F32\"]", "{}"}) {
        INFO(dt);
        hostile h(raw_file(entry_header(dt, "[2]", "[0,8]"), eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("'dtype' must be a string") && Contains("'w'"));
    }
}

TEST_CASE("safetensors hostile: shape with a negative extent", "[io][hostile]") {
    hostile h(raw_file(entry_header("\"F32\"", "[-2]", "[0,8]"), eight_bytes));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("negative") && Contains("'w'"));
}

TEST_CASE("safetensors hostile: shape with a float extent", "[io][hostile]") {
    for (const std::string shape : {"[2.0]", "[2.5]", "[1e1]", "[99999999999999999999999]", "[9223372036854775808]"}) {
        INFO(shape);
        hostile h(raw_file(entry_header("\"F32\"", shape, "[0,8]"), eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("shape extent") && Contains("'w'"));
    }
}

TEST_CASE("safetensors hostile: shape that is not an array of integers", "[io][hostile]") {
    for (const std::string shape : {"2", "\"2\"", "null", "{}", "[\"2\"]", "[[2]]", "[null]", "[true]", "[{}]"}) {
        INFO(shape);
        hostile h(raw_file(entry_header("\"F32\"", shape, "[0,8]"), eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("shape") && Contains("'w'"));
    }
}

TEST_CASE("safetensors hostile: shape whose element count overflows", "[io][hostile]") {
    for (const std::string shape : {"[4294967296, 4294967296]", "[9223372036854775807, 2]",
                                    "[65536, 65536, 65536, 65536]", "[3037000500, 3037000500]"}) {
        INFO(shape);
        hostile h(raw_file(entry_header("\"F32\"", shape, "[0,8]"), eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("more elements than fit") && Contains("'w'"));
    }
    // Fits in int64 elements, not in bytes.
    hostile bytes(raw_file(entry_header("\"F32\"", "[4611686018427387904]", "[0,8]"), eight_bytes));
    REQUIRE_THROWS_WITH(bytes.open(), Contains("2^64 bytes"));
    // A product that fits int64 is then caught by the size check, not trusted.
    hostile big(raw_file(entry_header("\"F32\"", "[1000000000, 1000000000]", "[0,8]"), eight_bytes));
    REQUIRE_THROWS_WITH(big.open(), Contains("needs 4000000000000000000"));
}

TEST_CASE("safetensors hostile: rank 20", "[io][hostile]") {
    hostile h(raw_file(entry_header("\"F32\"", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2]", "[0,8]"), eight_bytes));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("more than 6 dimensions") && Contains("'w'"));
}

TEST_CASE("safetensors hostile: negative data_offsets", "[io][hostile]") {
    for (const std::string off : {"[-8,0]", "[0,-8]", "[-9223372036854775808,8]"}) {
        INFO(off);
        hostile h(raw_file(entry_header("\"F32\"", "[2]", off), eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("negative") && Contains("data_offsets"));
    }
}

TEST_CASE("safetensors hostile: data_offsets that are not integers", "[io][hostile]") {
    for (const std::string off : {"[0.0,8]", "[0,8.5]", "[0,18446744073709551616]", "[0,1e30]", "[\"0\",8]", "[0,null]",
                                  "[[0],8]", "\"0,8\"", "{}"}) {
        INFO(off);
        hostile h(raw_file(entry_header("\"F32\"", "[2]", off), eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("data_offsets") && Contains("'w'"));
    }
}

TEST_CASE("safetensors hostile: data_offsets reversed", "[io][hostile]") {
    hostile h(raw_file(entry_header("\"F32\"", "[2]", "[8,0]"), eight_bytes));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("reversed") && Contains("'w'"));
}

TEST_CASE("safetensors hostile: data_offsets past the end of the file", "[io][hostile]") {
    for (const std::string off : {"[0,9]", "[8,16]", "[18446744073709551607,18446744073709551615]"}) {
        INFO(off);
        hostile h(raw_file(entry_header("\"F32\"", "[2]", off), eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("past the end of the data section") && Contains("'w'"));
    }
}

TEST_CASE("safetensors hostile: data_offsets of length 0, 1 or 3", "[io][hostile]") {
    for (const std::string off : {"[]", "[0]", "[0,8,16]"}) {
        INFO(off);
        hostile h(raw_file(entry_header("\"F32\"", "[2]", off), eight_bytes + eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("2 values") && Contains("'w'"));
    }
}

TEST_CASE("safetensors hostile: byte size does not match the shape", "[io][hostile]") {
    for (const std::string shape : {"[3]", "[1]", "[]", "[0]", "[2, 2]"}) {
        INFO(shape);
        hostile h(raw_file(entry_header("\"F32\"", shape, "[0,8]"), eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("needs") && Contains("'w'"));
    }
    hostile dt(raw_file(entry_header("\"F64\"", "[2]", "[0,8]"), eight_bytes));
    REQUIRE_THROWS_WITH(dt.open(), Contains("F64 needs 16"));
}

TEST_CASE("safetensors hostile: overlapping tensors", "[io][hostile]") {
    const std::string data(16, '\x01');
    hostile h(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                       data));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("overlap") && Contains("'a'") && Contains("'b'"));
    // Same range twice, and one range nested inside a bigger one after a gap.
    hostile same(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})",
                          data));
    REQUIRE_THROWS_WITH(same.open(), Contains("overlap"));
    hostile nested(raw_file(R"({"big":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                            R"("c":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                            R"("d":{"dtype":"U8","shape":[2],"data_offsets":[10,12]}})",
                            data));
    REQUIRE_THROWS_WITH(nested.open(), Contains("overlap") && Contains("'big'"));
    // Empty tensors occupy no bytes and overlap nothing.
    hostile empty_ok(raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                              R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                              data));
    REQUIRE_NOTHROW(empty_ok.open());
}

TEST_CASE("safetensors hostile: entry that is not an object", "[io][hostile]") {
    for (const std::string v : {"5", "\"F32\"", "[0,8]", "null"}) {
        INFO(v);
        hostile h(raw_file("{\"w\":" + v + "}", eight_bytes));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("'w'") && Contains("must be an object"));
    }
}

TEST_CASE("safetensors hostile: missing, extra and repeated fields", "[io][hostile]") {
    hostile missing(raw_file(R"({"w":{"dtype":"F32","shape":[2]}})", eight_bytes));
    REQUIRE_THROWS_WITH(missing.open(), Contains("missing field 'data_offsets'") && Contains("'w'"));
    hostile empty(raw_file(R"({"w":{}})", eight_bytes));
    REQUIRE_THROWS_WITH(empty.open(), Contains("missing field 'dtype'"));
    hostile extra(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"stride":[1]}})", eight_bytes));
    REQUIRE_THROWS_WITH(extra.open(), Contains("unexpected field 'stride'"));
    hostile twice(raw_file(R"({"w":{"dtype":"F32","shape":[2],"dtype":"F16","data_offsets":[0,8]}})", eight_bytes));
    REQUIRE_THROWS_WITH(twice.open(), Contains("'dtype' appears twice"));
}

TEST_CASE("safetensors hostile: duplicate tensor names", "[io][hostile]") {
    hostile h(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       eight_bytes));
    REQUIRE_THROWS_AS(h.open(), glimpse::error);
    REQUIRE_THROWS_WITH(h.open(), Contains("'w' appears twice"));
}

TEST_CASE("safetensors hostile: __metadata__ with a non-string value", "[io][hostile]") {
    for (const std::string v : {"1", "null", "true", "[]", "{}", "[\"a\"]"}) {
        INFO(v);
        hostile h(raw_file(R"({"__metadata__":{"ok":"x","bad":)" + v + "}}"));
        REQUIRE_THROWS_AS(h.open(), glimpse::error);
        REQUIRE_THROWS_WITH(h.open(), Contains("__metadata__") && Contains("'bad'") && Contains("must be a string"));
    }
    hostile not_object(raw_file(R"({"__metadata__":"format=pt"})"));
    REQUIRE_THROWS_WITH(not_object.open(), Contains("__metadata__ must be an object"));
    hostile twice(raw_file(R"({"__metadata__":{},"__metadata__":{}})"));
    REQUIRE_THROWS_WITH(twice.open(), Contains("'__metadata__' twice"));
    hostile key_twice(raw_file(R"({"__metadata__":{"k":"a","k":"b"}})"));
    REQUIRE_THROWS_WITH(key_twice.open(), Contains("'k' twice"));
}

TEST_CASE("safetensors hostile: index.json pointing outside the directory", "[io][hostile]") {
    temp_dir dir("index-escape");
    const glimpse::tensor a = glimpse::tensor::from({2}, std::vector<float>{1, 2});
    glimpse::save_safetensors(dir / "model.safetensors", {{"w", a.cv()}});
    for (const std::string target :
         {"../etc/passwd", "/etc/passwd", "..", ".", "", "sub/model.safetensors", "..\\model.safetensors"}) {
        INFO(target);
        std::string escaped;
        for (char c : target) escaped += c == '\\' ? std::string("\\\\") : std::string(1, c);
        write_file(dir / "model.safetensors.index.json", R"({"weight_map":{"w":")" + escaped + "\"}}");
        REQUIRE_THROWS_AS(glimpse::checkpoint(dir.path), glimpse::error);
        REQUIRE_THROWS_WITH(glimpse::checkpoint(dir.path), Contains("not a plain file name") && Contains("'w'"));
    }
}

TEST_CASE("safetensors hostile: index.json naming a tensor its shard lacks", "[io][hostile]") {
    temp_dir dir("index-missing");
    const glimpse::tensor a = glimpse::tensor::from({2}, std::vector<float>{1, 2});
    glimpse::save_safetensors(dir / "model.safetensors", {{"w", a.cv()}});
    write_file(dir / "model.safetensors.index.json",
               R"({"weight_map":{"w":"model.safetensors","ghost":"model.safetensors"}})");
    REQUIRE_THROWS_AS(glimpse::checkpoint(dir.path), glimpse::error);
    REQUIRE_THROWS_WITH(glimpse::checkpoint(dir.path),
                        Contains("'ghost'") && Contains("no such tensor") && Contains(dir.path.string()));
}

TEST_CASE("safetensors hostile: malformed index.json", "[io][hostile]") {
    temp_dir dir("index-bad");
    const glimpse::tensor a = glimpse::tensor::from({2}, std::vector<float>{1, 2});
    glimpse::save_safetensors(dir / "model.safetensors", {{"w", a.cv()}});
    const auto index = dir / "model.safetensors.index.json";
    struct bad_index {
        std::string text, reason;
    };
    for (const auto& [text, reason] : std::vector<bad_index>{
             {"not json", "not valid JSON"},
             {"[]", "not a JSON object"},
             {R"({"metadata":{}})", "no \"weight_map\""},
             {R"({"weight_map":[]})", "no \"weight_map\""},
             {R"({"weight_map":{"w":7}})", "not a file name"},
             {R"({"weight_map":{"w":"model.safetensors","w":"other.safetensors"}})", "'w' appears twice"},
             {R"({"weight_map":{"w":"absent.safetensors"}})", "no such file"},
             {"{\"weight_map\":{\"w\xff\":\"model.safetensors\"}}", "UTF-8"},
             {std::string(100'000, '[') + std::string(100'000, ']'), "nested more than 64 levels deep"},
         }) {
        INFO(text.substr(0, 80));
        write_file(index, text);
        REQUIRE_THROWS_AS(glimpse::checkpoint(dir.path), glimpse::error);
        REQUIRE_THROWS_WITH(glimpse::checkpoint(dir.path), Contains(reason));
    }
}

TEST_CASE("safetensors hostile: a FIFO or directory where a file should be", "[io][hostile]") {
    temp_dir dir("fifo");
    const auto fifo = dir / "pipe.safetensors";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    // Must fail at once, not block waiting for a writer.
    REQUIRE_THROWS_WITH(glimpse::safetensors_file(fifo), Contains("not a regular file"));
    fs::create_directory(dir / "sub.safetensors");
    REQUIRE_THROWS_WITH(glimpse::safetensors_file(dir / "sub.safetensors"), Contains("not a regular file"));
    // A directory holding only such entries has no checkpoint files.
    REQUIRE_THROWS_WITH(glimpse::checkpoint(dir.path), Contains("no .safetensors files"));
}

TEST_CASE("safetensors hostile: every truncation of a valid file", "[io][hostile]") {
    temp_dir dir("truncate");
    const glimpse::tensor a = glimpse::tensor::from({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
    const glimpse::tensor b = a.to(glimpse::dtype::bf16);
    const auto full = dir / "full.safetensors";
    glimpse::save_safetensors(full, {{"a", a.cv()}, {"b", b.cv()}}, {{"format", "pt"}});
    const std::string bytes = read_file(full);
    REQUIRE_NOTHROW(glimpse::safetensors_file(full));
    const auto cut = dir / "cut.safetensors";
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        INFO("prefix of " << n << " of " << bytes.size() << " bytes");
        write_file(cut, bytes.substr(0, n));
        REQUIRE_THROWS_AS(glimpse::safetensors_file(cut), glimpse::error);
    }
}

TEST_CASE("safetensors hostile: single-byte corruptions never escape as anything but glimpse::error", "[io][hostile]") {
    temp_dir dir("mutate");
    const glimpse::tensor a = glimpse::tensor::from({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
    const glimpse::tensor b = a.to(glimpse::dtype::f16);
    const auto full = dir / "full.safetensors";
    glimpse::save_safetensors(full, {{"a", a.cv()}, {"b", b.cv()}}, {{"k", "v"}});
    const std::string bytes = read_file(full);
    std::size_t header_end = 8;
    for (int i = 7; i >= 0; --i)
        header_end += static_cast<std::size_t>(static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]))
                      << (8 * i);
    REQUIRE(header_end < bytes.size());
    const auto mutated = dir / "m.safetensors";
    int opened = 0, rejected = 0;
    for (std::size_t i = 0; i < header_end; ++i) {
        for (const char c : {'\0', '\xff', '"', '[', '}', ',', '-', '9', 'e'}) {
            std::string m = bytes;
            m[i] = c;
            write_file(mutated, m);
            try {
                const glimpse::safetensors_file f(mutated);
                for (const auto& e : f.entries())
                    if (e.dtype) (void)f.load(e.name);  // whatever opened is in bounds
                ++opened;
            } catch (const glimpse::error&) {
                ++rejected;
            }
        }
    }
    // Every mutation either opens (a benign byte, e.g. in the metadata value) or is refused
    // with glimpse::error; anything else escaped the try above and already failed the test.
    REQUIRE(opened + rejected == static_cast<int>(header_end) * 9);
    REQUIRE(rejected > 0);
    REQUIRE(opened > 0);
}

TEST_CASE("safetensors hostile: glimpse-inspect exits 1 on a hostile file and 0 on a valid one", "[io][hostile]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_INSPECT_EXE);
    const std::string exe = GLIMPSE_INSPECT_EXE;
    temp_dir dir("inspect");
    const auto quote = [](const fs::path& p) { return "'" + p.string() + "'"; };
    const auto run = [&](const fs::path& arg) {
        const std::string cmd =
            quote(exe) + " " + quote(arg) + " >" + quote(dir / "out.txt") + " 2>" + quote(dir / "err.txt");
        const int status = std::system(cmd.c_str());
        REQUIRE(WIFEXITED(status));
        return WEXITSTATUS(status);
    };

    write_file(dir / "bad.safetensors", le64(std::uint64_t{1} << 63) + "{}");
    REQUIRE(run(dir / "bad.safetensors") == 1);
    const std::string err = read_file(dir / "err.txt");
    REQUIRE(err.rfind("glimpse-inspect: ", 0) == 0);
    REQUIRE(std::count(err.begin(), err.end(), '\n') == 1);
    REQUIRE_THAT(err, Contains("bad.safetensors"));

    const glimpse::tensor a = glimpse::tensor::from({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
    glimpse::save_safetensors(dir / "good.safetensors", {{"blocks.0.weight", a.cv()}}, {{"format", "pt"}});
    REQUIRE(run(dir / "good.safetensors") == 0);
    const std::string out = read_file(dir / "out.txt");
    REQUIRE_THAT(out, Contains("blocks.0.weight") && Contains("[2, 3]") && Contains("format = pt") &&
                          Contains("6 parameters") && Contains("24 bytes"));
    REQUIRE(read_file(dir / "err.txt").empty());

    REQUIRE(run(dir / "absent") == 1);
}
