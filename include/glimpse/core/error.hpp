#pragma once
// glimpse::error — the one exception type the library throws.
//
// Every message names what it is about (a tensor, a file, a shape) so a user
// reading one line knows where to look; `detail::fail` builds such messages
// from any streamable pieces.

#include <algorithm>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace glimpse {

class error : public std::runtime_error {
public:
    explicit error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
    std::ostringstream os;
    (os << ... << std::forward<Parts>(parts));
    throw error(os.str());
}

template <class... Parts>
void check(bool ok, Parts&&... parts) {
    if (!ok) fail(std::forward<Parts>(parts)...);
}

// Names and parser messages come from untrusted bytes: escape control bytes
// (and, for text that may not be UTF-8, every non-ASCII byte) and cap the
// length so an error stays one readable line.
inline std::string printable(std::string_view s, bool ascii_only = false, std::size_t max_len = 160) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    const std::size_t n = std::min(s.size(), max_len);
    for (std::size_t i = 0; i < n; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f || (ascii_only && c >= 0x80)) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (s.size() > max_len) out += "...";
    return out;
}

inline std::string quote_name(std::string_view s) { return "'" + printable(s) + "'"; }

}  // namespace detail
}  // namespace glimpse
