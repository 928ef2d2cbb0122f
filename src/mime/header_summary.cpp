#include "mime/header_summary.h"

#include "base/text.h"
#include "mime/gmime_support.h"
#include "mime/header_block.h"
#include "mime/recipient_rewrite.h"

namespace mb::mime {
namespace {

constexpr std::size_t kMaxText = 998;

// One line of text from a field's value: folds undone (RFC 5322 §2.2.3),
// line ends gone, surrounding white space trimmed.
std::string unfold(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\r' || c == '\n') continue;
    out += c;
  }
  const auto first = out.find_first_not_of(" \t");
  if (first == std::string::npos) return {};
  out.erase(0, first);
  out.erase(out.find_last_not_of(" \t") + 1);
  return out;
}

// Control characters out (a decoded word may carry any), length bounded
// without cutting a UTF-8 character.
std::string clean(std::string text) {
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      if (c == '\t') out += ' ';
      continue;
    }
    out += c;
  }
  if (out.size() > kMaxText) {
    std::size_t cut = kMaxText;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  return out;
}

std::string decodeWords(const std::string& text) {
  detail::ensureGMime();
  detail::GCharPtr decoded(g_mime_utils_header_decode_text(nullptr, text.c_str()));
  return decoded ? std::string(decoded.get()) : text;
}

}  // namespace

HeaderSummary summarizeHeader(std::string_view header) {
  HeaderSummary out;
  auto block = headerBlockOf(header);
  if (!block) return out;
  out.from = headerFromAddress(*block);
  bool have_subject = false;
  bool have_id = false;
  for (const HeaderField& field : block->fields()) {
    if (!have_subject && iequals(field.name, "Subject")) {
      out.subject = clean(decodeWords(unfold(field.value)));
      have_subject = true;
    } else if (!have_id && iequals(field.name, "Message-ID")) {
      out.message_id = clean(unfold(field.value));
      have_id = true;
    }
  }
  return out;
}

}  // namespace mb::mime
