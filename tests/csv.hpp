#pragma once
// The CSV files glimpse-compare writes, read back for tests: RFC 4180 fields ("" inside
// quotes is one quote; a status or the interval method may hold commas), one row per line.

#include <cstddef>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace glimpse::test {

inline std::vector<std::string> csv_split(const std::string& line) {
    std::vector<std::string> out(1);
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                out.back() += '"';
                ++i;
            } else if (c == '"')
                quoted = false;
            else
                out.back() += c;
        } else if (c == '"')
            quoted = true;
        else if (c == ',')
            out.emplace_back();
        else
            out.back() += c;
    }
    return out;
}

// The rows of a CSV file as column name -> value.
inline std::vector<std::map<std::string, std::string>> csv_rows(const std::string& text) {
    std::istringstream in(text);
    std::string l;
    std::getline(in, l);
    const auto head = csv_split(l);
    std::vector<std::map<std::string, std::string>> rows;
    while (std::getline(in, l)) {
        const auto f = csv_split(l);
        std::map<std::string, std::string> r;
        for (std::size_t i = 0; i < head.size() && i < f.size(); ++i) r[head[i]] = f[i];
        rows.push_back(r);
    }
    return rows;
}

}  // namespace glimpse::test
