// Every fixture is tied to the generator that wrote it (tools/provenance.py): each
// generator's manifest, tests/data/provenance/<generator>.json, records the FNV-1a 64 of
// the generator and the tools/ modules it imported, the library versions, and the hash of
// every file it wrote. This test fails when
//   - a generator or the PyTorch reference changed after its fixtures were written
//     (rerun tools/regenerate_fixtures.py --write in the venv and commit what it writes),
//   - a fixture's bytes differ from what its generator wrote (edited by hand, truncated),
//   - a file under tests/data belongs to no generator,
//   - a safetensors fixture's own stamp names another generator or another hash.
// Regenerating and diffing the contents needs torch and is done by hand
// (tools/regenerate_fixtures.py, documented in tools/README.md).
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include <glimpse/core/fnv1a64.hpp>
#include <glimpse/io/safetensors.hpp>

#include "test_files.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;

fs::path repo_root() { return fs::weakly_canonical(fs::path(GLIMPSE_TEST_DATA_DIR) / ".." / ".."); }

std::string bytes_hash(const fs::path& p) {
    const std::string b = glimpse::test::read_file(p);
    glimpse::fnv1a64 h;
    h.add(b.data(), b.size());
    return h.hex();
}

// tools/provenance.py sources_hash: path, NUL, bytes, NUL per source, in the listed order.
std::string sources_hash(const fs::path& root, const nlohmann::json& sources) {
    glimpse::fnv1a64 h;
    for (const auto& s : sources) {
        const std::string rel = s.get<std::string>();
        h.add(rel);
        const std::string b = glimpse::test::read_file(root / rel);
        h.add(std::string_view(b));
    }
    return h.hex();
}

}  // namespace

TEST_CASE("FNV-1a 64 agrees with tools/provenance.py", "[suite][fixtures]") {
    // Known digests (FNV's published test vectors; provenance.fnv1a64 gives the same).
    glimpse::fnv1a64 e;
    CHECK(e.hex() == "cbf29ce484222325");
    glimpse::fnv1a64 a;
    a.add("a", 1);
    CHECK(a.hex() == "af63dc4c8601ec8c");
    glimpse::fnv1a64 f;
    f.add("foobar", 6);
    CHECK(f.hex() == "85944171f73967e8");
}

TEST_CASE("every fixture was written by its generator's current sources", "[suite][fixtures]") {
    const fs::path root = repo_root();
    const fs::path dir = fs::path(GLIMPSE_TEST_DATA_DIR) / "provenance";
    REQUIRE(fs::is_directory(dir));
    std::map<std::string, std::string> owner;  // file -> generator
    int manifests = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".json") continue;
        ++manifests;
        const auto m = nlohmann::json::parse(glimpse::test::read_file(entry.path()));
        const std::string gen = m.at("generator");
        INFO("manifest " << entry.path().filename().string() << " (" << gen << ")");
        REQUIRE(m.at("sources").size() >= 1);
        CHECK(m.at("sources").front() != "");
        for (const auto& s : m.at("sources")) REQUIRE(fs::exists(root / s.get<std::string>()));
        const std::string want = m.at("fnv1a64"), got = sources_hash(root, m.at("sources"));
        INFO("the sources hash to " << got << ", the fixtures were written by sources hashing to " << want
                                    << ": rerun tools/regenerate_fixtures.py --write (tools/README.md)");
        CHECK(got == want);
        REQUIRE(m.at("files").size() >= 1);
        for (const auto& [file, hash] : m.at("files").items()) {
            INFO(file);
            REQUIRE(fs::exists(root / file));
            CHECK(bytes_hash(root / file) == hash.get<std::string>());
            const auto [it, fresh] = owner.emplace(file, gen);
            CHECK(fresh);  // one generator per file
            if (file.size() > 12 && file.ends_with(".safetensors")) {
                const glimpse::safetensors_file st(root / file);
                const auto& meta = st.metadata();
                if (meta.count("generator")) {  // written through provenance.save_file
                    CHECK(meta.at("generator") == gen);
                    CHECK(meta.at("generator.fnv1a64") == want);
                    CHECK(meta.count("generator.versions") == 1);
                }
            }
        }
    }
    CHECK(manifests >= 12);
    // No fixture without a generator.
    std::set<std::string> orphans;
    for (const auto& e : fs::recursive_directory_iterator(GLIMPSE_TEST_DATA_DIR)) {
        if (!e.is_regular_file()) continue;
        const std::string rel = fs::relative(fs::weakly_canonical(e.path()), root).generic_string();
        if (rel.rfind("tests/data/provenance/", 0) == 0) continue;
        if (!owner.count(rel)) orphans.insert(rel);
    }
    INFO("files under tests/data that no generator's manifest lists: " << orphans.size());
    for (const auto& o : orphans) UNSCOPED_INFO(o);
    CHECK(orphans.empty());
}
