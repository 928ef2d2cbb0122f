#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>

namespace mb::smtp {

/// LineEndFinder: the next CR or LF in one input, for the content readers'
/// inner loop. std::string_view::find_first_of("\r\n") looks every input
/// octet up in the two-octet set, a library call per octet (a quarter of
/// the relay's instructions for a 4 KB message); this searches for each of
/// the two octets with memchr and remembers where it found them, so that a
/// whole input costs at most one scan for CR and one for LF, however the
/// two are mixed (a hostile run of bare CRs without an LF stays linear).
///
/// Talks to: nobody. Threading: a value type over one input, one feed call.
class LineEndFinder {
 public:
  explicit LineEndFinder(std::string_view in) : in_(in) {}

  /// The position of the first CR or LF at or after `pos`, or the input's
  /// size when there is none. `pos` must not decrease from call to call.
  std::size_t next(std::size_t pos) {
    if (!found_ || cr_ < pos) cr_ = find('\r', pos);
    if (!found_ || lf_ < pos) lf_ = find('\n', pos);
    found_ = true;
    return cr_ < lf_ ? cr_ : lf_;
  }

 private:
  std::size_t find(char c, std::size_t pos) const {
    if (pos >= in_.size()) return in_.size();
    const void* hit = std::memchr(in_.data() + pos, c, in_.size() - pos);
    return hit != nullptr ? static_cast<std::size_t>(static_cast<const char*>(hit) - in_.data()) : in_.size();
  }

  std::string_view in_;
  std::size_t cr_ = 0;
  std::size_t lf_ = 0;
  bool found_ = false;  // cr_ and lf_ hold searches' results
};

}  // namespace mb::smtp
