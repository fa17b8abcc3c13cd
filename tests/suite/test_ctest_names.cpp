// Every TEST_CASE is its own CTest test (catch_discover_tests), run as
// `glimpse_tests "<name>"`. Catch2 v2's discovery escapes ',', '[' and ']' but splits the
// listing on ';' (a CMake list) and passes the name as one argument, so a name with ';'
// becomes two tests that match nothing, and a name starting with '-' is read as an option
// ("Unrecognised token"). ctest also runs each entry with `-w NoTests` (tests/CMakeLists.txt),
// so an entry that matches nothing fails instead of passing with zero assertions.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace {

// Why `name` cannot be a ctest entry of its own, or empty when it can.
std::string ctest_name_problem(const std::string& name) {
    if (name.empty()) return "empty";
    if (name.find(';') != std::string::npos) return "contains ';' (CMake splits the list there)";
    if (name.front() == '-') return "starts with '-' (Catch2 reads it as an option)";
    if (name.front() == '~' || name.front() == '*' || name.back() == '*')
        return "starts with '~' or starts/ends with '*' (a Catch2 test-spec operator)";
    if (name.front() == ' ' || name.back() == ' ') return "leading or trailing space";
    if (name.find('\\') != std::string::npos) return "contains '\\' (Catch2's escape)";
    return {};
}

}  // namespace

TEST_CASE("every test name survives ctest discovery as one test", "[suite]") {
    SECTION("the rule refuses the names that broke discovery") {
        CHECK_FALSE(ctest_name_problem("a; b").empty());
        CHECK_FALSE(ctest_name_problem("--device cuda:0 refuses").empty());
        CHECK_FALSE(ctest_name_problem(" leading").empty());
        CHECK(ctest_name_problem("a [0, 1]-bounded mean, per head").empty());
    }
    const auto& all = Catch::getRegistryHub().getTestCaseRegistry().getAllTests();
    REQUIRE(all.size() > 1);  // this one and the suite it checks
    std::vector<std::string> bad;
    for (const auto& tc : all) {
        const std::string why = ctest_name_problem(tc.name);
        if (!why.empty()) bad.push_back("\"" + tc.name + "\": " + why);
    }
    for (const auto& b : bad) UNSCOPED_INFO(b);
    CHECK(bad.empty());
}
