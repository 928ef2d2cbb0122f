#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mb::smtp {

/// An SMTP reply (RFC 5321 §4.2) with its enhanced status code (RFC 3463).
/// Text is generic: what went wrong in detail belongs in the log, not here.
struct Reply {
  Reply() = default;
  Reply(int code_in, std::string enhanced_in, std::string text_in,
        std::vector<std::string> extra_in = {})
      : code(code_in),
        enhanced(std::move(enhanced_in)),
        text(std::move(text_in)),
        extra(std::move(extra_in)) {}

  int code = 250;
  std::string enhanced;            // "2.1.0"; empty for 220/221 greetings and 334/354
  std::string text;                // one line, no CR/LF
  std::vector<std::string> extra;  // further lines of a multi-line reply (EHLO)

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }

  /// The bytes on the wire: "250-first\r\n250 last\r\n", each line
  /// "CODE[-| ]ENHANCED TEXT". CR, LF and NUL in the text are replaced.
  std::string wire() const;
};

}  // namespace mb::smtp
