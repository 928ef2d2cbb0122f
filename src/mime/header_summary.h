#pragma once

#include <string>
#include <string_view>

namespace mb::mime {

/// What the mail log keeps of a message's header section.
struct HeaderSummary {
  std::string from;        // the first From mailbox's address (headerFromAddress)
  std::string subject;     // unfolded, RFC 2047 words decoded to UTF-8, control characters dropped
  std::string message_id;  // unfolded and trimmed, as written ("<id@host>")
};

/// Reads From, Subject and Message-ID from `header` (the start of a
/// message, as much of its header section as is at hand). Missing fields
/// are empty. Text is cut to 998 octets (one header line's worth). Safe to
/// call from several threads at once.
HeaderSummary summarizeHeader(std::string_view header);

}  // namespace mb::mime
