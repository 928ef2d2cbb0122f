#include "smtp/reply.h"

namespace mb::smtp {

namespace {

// Reply text may come from configuration (the hostname) or from a handler;
// a CR, LF or NUL in it would end the reply line early and let the rest be
// read as another reply, so every control character is flattened.
void appendSafe(std::string& out, std::string_view text) {
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c == 0x7f) ? ' ' : ch;
  }
}

void appendLine(std::string& out, int code, bool last, std::string_view enhanced,
                std::string_view text) {
  out += std::to_string(code);
  std::string rest;
  if (!enhanced.empty()) {
    appendSafe(rest, enhanced);
    if (!text.empty()) rest += ' ';
  }
  appendSafe(rest, text);
  // RFC 5321 §4.2: "Reply-code [ SP textstring ] CRLF" for the last line,
  // "Reply-code "-" [ textstring ] CRLF" for the others.
  if (!last) {
    out += '-';
  } else if (!rest.empty()) {
    out += ' ';
  }
  out += rest;
  out += "\r\n";
}

}  // namespace

std::string Reply::wire() const {
  // A code outside 200..599 would not be a reply a client can parse; it can
  // only come from a programming error, and a temporary local error is the
  // least harmful thing to say instead.
  const bool valid = code >= 200 && code <= 599;
  const int c = valid ? code : 451;
  const std::string_view enh = valid ? std::string_view(enhanced) : std::string_view("4.3.0");
  std::string out;
  out.reserve(16 + text.size() + extra.size() * 24);
  appendLine(out, c, extra.empty(), enh, text);
  for (std::size_t i = 0; i < extra.size(); ++i) {
    appendLine(out, c, i + 1 == extra.size(), enh, extra[i]);
  }
  return out;
}

}  // namespace mb::smtp
