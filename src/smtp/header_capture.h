#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mb::smtp {

/// HeaderCapture: keeps the start of a message's content up to and
/// including the empty line that ends its header section, fed the content
/// in chunks of any split. Capture stops at the empty line or at `limit`
/// bytes, whichever comes first; what follows the header section (the
/// body) is never kept, so a message read in 64 KB chunks leaves a copy of
/// its header, not of its first chunk.
/// A content that starts with an empty line has an empty header section.
///
/// Talks to: nobody; the server feeds it a transaction's content.
/// Threading: a value type, one session's.
class HeaderCapture {
 public:
  static constexpr std::size_t kDefaultLimit = 64 * 1024;

  explicit HeaderCapture(std::size_t limit = kDefaultLimit) : limit_(limit) {}

  /// Takes what it still needs of `bytes`; nothing once complete().
  void feed(std::string_view bytes);

  /// The empty line (or the limit) has been seen.
  bool complete() const { return complete_; }

  /// What was kept so far.
  const std::string& header() const { return header_; }

  /// Hands over what was kept and starts again for the next message.
  std::string take();

 private:
  std::size_t limit_;
  std::string header_;
  bool complete_ = false;
};

}  // namespace mb::smtp
