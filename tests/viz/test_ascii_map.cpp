// viz/ascii_map.hpp: a map as text, scaled to its peak, a box outlined where the map is faint.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <glimpse/viz/ascii_map.hpp>

TEST_CASE("ascii_map: one character and a space per patch, ' ' to '@' by value over the peak", "[viz]") {
    const std::vector<float> map = {0.0f, 0.4f, 1.0f, 0.1f, 0.0f, 0.0f};
    CHECK(glimpse::viz::ascii_map(map, 2, 3) == "    = @ \n  .     \n");
    // A box over columns 0..1 of both rows: '+' on its edge where the map is below 3/9 of the peak.
    CHECK(glimpse::viz::ascii_map(map, 2, 3, glimpse::box{0, 0, 2, 2}, "") == "+ = @ \n+ +   \n");
    const std::vector<float> zero(4, 0.0f);
    CHECK(glimpse::viz::ascii_map(zero, 2, 2, std::nullopt, "") == "    \n    \n");
    CHECK_THROWS_WITH(glimpse::viz::ascii_map(map, 2, 2), Catch::Contains("6 values for a 2x2 grid"));
}
