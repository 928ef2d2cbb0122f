// libFuzzer target: arbitrary bytes as a stored message, against a fixed
// envelope. Checks the invariants a provider relies on: a changed block is
// all CRLF lines of at most 998 octets ending with the blank line, an
// unchanged one is the message's own prefix.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mime/recipient_rewrite.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view message(reinterpret_cast<const char*>(data), size);
  auto block = mb::mime::headerBlockOf(message, 64 * 1024);
  if (!block) return 0;
  auto r = mb::mime::rewriteRecipients(*block, {"alice@example.com", "Bob@Example.COM", "user@xn--mnchen-3ya.de"});
  if (!r) return 0;
  if (r->body_offset > size) std::abort();
  if (!r->changed) {
    if (message.substr(0, r->body_offset) != r->headers) std::abort();
    return 0;
  }
  const std::string& h = r->headers;
  if (h.size() < 2 || h.compare(h.size() - 2, 2, "\r\n") != 0) std::abort();
  std::size_t start = 0;
  while (start < h.size()) {
    const std::size_t nl = h.find('\n', start);
    if (nl == std::string::npos || nl == start || h[nl - 1] != '\r' || nl - 1 - start > 998) std::abort();
    start = nl + 1;
  }
  return 0;
}
