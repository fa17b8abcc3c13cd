#pragma once
// glimpse::error — the one exception type the library throws.
//
// Every message names what it is about (a tensor, a file, a shape) so a user
// reading one line knows where to look; `detail::fail` builds such messages
// from any streamable pieces.

#include <sstream>
#include <stdexcept>
#include <string>
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

}  // namespace detail
}  // namespace glimpse
