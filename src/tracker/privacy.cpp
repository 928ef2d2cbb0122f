#include "tracker/privacy.h"

#include <vector>

namespace mb::tracker {
namespace {

// Splits `s` into UTF-8 characters (a stray byte is a character of its own).
std::vector<std::string_view> characters(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    std::size_t n = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
    if (i + n > s.size()) n = 1;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) {
        n = 1;
        break;
      }
    }
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

std::string maskWord(std::string_view word) {
  const auto chars = characters(word);
  std::string out;
  if (chars.empty()) return out;
  if (chars.size() == 1) return "*";
  out += chars.front();
  out.append(chars.size() > 2 ? chars.size() - 2 : 1, '*');
  if (chars.size() > 2) out += chars.back();
  return out;
}

}  // namespace

Privacy::Privacy(const config::TrackerConfig& config)
    : store_addresses_(config.store_addresses),
      store_subject_(config.store_subject),
      partial_(config.masking == config::Masking::Partial) {}

std::string Privacy::address(std::string_view address) const {
  if (!store_addresses_) return std::string(kHidden);
  if (address.empty()) return {};  // the null sender stays recognisable
  return partial_ ? maskAddress(address) : std::string(address);
}

std::string Privacy::subject(std::string_view subject) const {
  if (!store_subject_) return std::string(kHidden);
  return partial_ ? maskSubject(subject) : std::string(subject);
}

std::string maskAddress(std::string_view address) {
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos) return maskWord(address);
  std::string out = maskWord(address.substr(0, at));
  out += '@';
  std::string_view domain = address.substr(at + 1);
  // Every label but the last (the top-level domain, which says little).
  const std::size_t last_dot = domain.rfind('.');
  std::string_view masked = last_dot == std::string_view::npos ? domain : domain.substr(0, last_dot);
  std::size_t start = 0;
  while (start <= masked.size()) {
    const std::size_t dot = masked.find('.', start);
    const std::size_t end = dot == std::string_view::npos ? masked.size() : dot;
    out += maskWord(masked.substr(start, end - start));
    if (dot == std::string_view::npos) break;
    out += '.';
    start = dot + 1;
  }
  if (last_dot != std::string_view::npos) out += domain.substr(last_dot);
  return out;
}

std::string maskSubject(std::string_view subject) {
  const auto chars = characters(subject);
  if (chars.size() <= Privacy::kSubjectChars) return std::string(subject);
  std::string out;
  for (std::size_t i = 0; i < Privacy::kSubjectChars; ++i) out += chars[i];
  out += "\xE2\x80\xA6";  // …
  return out;
}

}  // namespace mb::tracker
