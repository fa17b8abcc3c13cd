// io/checkpoint_listing.hpp: glimpse-inspect's table (the CLI tests hold the tool's output and
// its hostile-file refusals).

#include <catch2/catch.hpp>

#include <string>

#include <glimpse/io/checkpoint_listing.hpp>

#include "test_util.hpp"

TEST_CASE("checkpoint_listing: a row per tensor under a header, the metadata, the totals", "[io][safetensors]") {
    CHECK(glimpse::human_bytes(512) == "512 B");
    CHECK(glimpse::human_bytes(1536) == "1.50 KiB");
    CHECK(glimpse::human_bytes(3ull << 30) == "3.00 GiB");

    const glimpse::checkpoint ck(glimpse::test::data_path("qwen3_vl_tiny"));
    const std::string text = glimpse::checkpoint_listing(ck);
    CHECK(text.rfind("name ", 0) == 0);
    for (const auto& n : ck.names()) CHECK(text.find("\n" + n + " ") != std::string::npos);
    CHECK(text.find("\ntotal: " + std::to_string(ck.names().size()) + " tensors in ") != std::string::npos);
    CHECK(text.find(std::to_string(ck.total_parameters()) + " parameters") != std::string::npos);
}
