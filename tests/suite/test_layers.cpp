// The layer rules of docs/design.md, held: every header under include/glimpse/<layer>/ may
// include glimpse headers of its own layer and of the layers the design's "layer rules" block
// lists for it, nothing else; the per-SIMD-level sources (*.inc) include nothing at all (a
// header first included inside a target region would give its inline functions that level's
// instructions). The rules are read from design.md itself, so the document and the check
// cannot drift apart.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = fs::path(GLIMPSE_TEST_DATA_DIR).parent_path().parent_path();

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// design.md's block: a fenced block whose first line is "layer rules", then "layer: allowed ...".
std::map<std::string, std::set<std::string>> layer_rules() {
    std::istringstream in(read_text(kRoot / "docs" / "design.md"));
    std::map<std::string, std::set<std::string>> rules;
    std::string line;
    bool inside = false, fenced = false;
    while (std::getline(in, line)) {
        if (line.rfind("```", 0) == 0) {
            if (inside) break;
            fenced = true;
            continue;
        }
        if (fenced && !inside) {
            inside = line.rfind("layer rules", 0) == 0;
            fenced = inside;
            continue;
        }
        if (!inside) continue;
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::istringstream deps(line.substr(colon + 1));
        auto& allowed = rules[line.substr(0, colon)];
        for (std::string d; deps >> d;) allowed.insert(d);
    }
    return rules;
}

}  // namespace

TEST_CASE("layer rules: every header includes only its own layer and the layers design.md allows it",
          "[suite][layers]") {
    const auto rules = layer_rules();
    REQUIRE(rules.size() >= 10);  // the block was found and read
    REQUIRE(rules.count("core"));
    REQUIRE(rules.at("core").empty());
    const std::regex include_re(R"re(^\s*#\s*include\s*[<"]glimpse/([a-z_0-9]+)/)re");
    const std::regex any_include_re(R"re(^\s*#\s*include\b)re");
    std::vector<std::string> broken;
    std::size_t files = 0, edges = 0;
    for (const auto& e : fs::recursive_directory_iterator(kRoot / "include" / "glimpse")) {
        if (!e.is_regular_file()) continue;
        const fs::path rel = fs::relative(e.path(), kRoot / "include" / "glimpse");
        if (rel.begin() == rel.end() || std::next(rel.begin()) == rel.end()) continue;  // glimpse.hpp: the umbrella
        const std::string layer = rel.begin()->string(), ext = e.path().extension().string();
        if (ext != ".hpp" && ext != ".inc") continue;
        ++files;
        if (!rules.count(layer)) {
            broken.push_back(rel.string() + ": layer '" + layer + "' is not in design.md's layer rules");
            continue;
        }
        std::istringstream in(read_text(e.path()));
        std::string line;
        int n = 0;
        while (std::getline(in, line)) {
            ++n;
            if (ext == ".inc" && std::regex_search(line, any_include_re)) {
                broken.push_back(rel.string() + ":" + std::to_string(n) + ": a per-level source includes " + line);
                continue;
            }
            std::smatch m;
            if (!std::regex_search(line, m, include_re)) continue;
            ++edges;
            const std::string dep = m[1].str();
            if (dep != layer && !rules.at(layer).count(dep))
                broken.push_back(rel.string() + ":" + std::to_string(n) + ": " + layer + " includes " + dep);
        }
    }
    INFO(files << " headers, " << edges << " includes of glimpse headers");
    std::string all;
    for (const auto& b : broken) all += b + "\n";
    INFO(all);
    CHECK(files > 50);
    CHECK(broken.empty());
}
