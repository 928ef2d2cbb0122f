#include "smtp/address.h"

#include <cstdint>

#include "base/text.h"

namespace mb::smtp {

namespace {

bool isAlpha(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool isDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool isHex(unsigned char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 5322 §3.2.3 atext, as RFC 5321 §4.1.2 uses it for Dot-string.
bool isAtext(unsigned char c) {
  if (isAlpha(c) || isDigit(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '/': case '=': case '?': case '^': case '_': case '`': case '{':
    case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

// RFC 5321 qtextSMTP: printable ASCII except '"' and '\'.
bool isQtext(unsigned char c) { return c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126); }

// Length of the well-formed UTF-8 sequence (RFC 3629) of a non-ASCII
// character at `s[i]`, or 0. Overlong forms, surrogates and C1 controls are
// refused: each is a way to smuggle a byte the checks above would have
// stopped, or a control character that has no place in an address.
std::size_t utf8Length(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
    cp = b0 & 0x1fu;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    cp = b0 & 0x0fu;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    cp = b0 & 0x07u;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0u) != 0x80u) return 0;
    cp = (cp << 6) | (b & 0x3fu);
  }
  if (len == 3 && cp < 0x800) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;
  if (cp <= 0x9f) return 0;  // C1 controls (U+0080..U+009F)
  return len;
}

bool isDotString(std::string_view s, bool utf8) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  bool prev_dot = false;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '.') {
      if (prev_dot) return false;
      prev_dot = true;
      ++i;
      continue;
    }
    prev_dot = false;
    if (c >= 0x80) {
      const std::size_t n = utf8 ? utf8Length(s, i) : 0;
      if (n == 0) return false;
      i += n;
    } else if (isAtext(c)) {
      ++i;
    } else {
      return false;
    }
  }
  return true;
}

// Returns the index just past the closing quote of the Quoted-string that
// starts at s[0], or 0 when it is not one.
std::size_t quotedStringEnd(std::string_view s, bool utf8) {
  if (s.empty() || s[0] != '"') return 0;
  for (std::size_t i = 1; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 >= s.size()) return 0;
      const auto q = static_cast<unsigned char>(s[i + 1]);
      if (q < 32 || q > 126) return 0;  // quoted-pairSMTP: %d92 %d32-126
      i += 2;
    } else if (c >= 0x80) {
      const std::size_t n = utf8 ? utf8Length(s, i) : 0;
      if (n == 0) return 0;
      i += n;
    } else if (isQtext(c)) {
      ++i;
    } else {
      return 0;
    }
  }
  return 0;
}

bool isLabel(std::string_view label, bool utf8) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  for (std::size_t i = 0; i < label.size();) {
    const auto c = static_cast<unsigned char>(label[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8 ? utf8Length(label, i) : 0;
      if (n == 0) return false;
      i += n;
    } else if (isAlpha(c) || isDigit(c) || c == '-') {
      ++i;
    } else {
      return false;
    }
  }
  return true;
}

bool isIpv4(std::string_view s) {
  int parts = 0;
  std::size_t i = 0;
  while (true) {
    std::size_t digits = 0;
    int value = 0;
    while (i < s.size() && isDigit(static_cast<unsigned char>(s[i])) && digits < 4) {
      value = value * 10 + (s[i] - '0');
      ++digits;
      ++i;
    }
    if (digits == 0 || digits > 3 || value > 255) return false;
    ++parts;
    if (i == s.size()) break;
    if (s[i] != '.' || parts == 4) return false;
    ++i;
  }
  return parts == 4;
}

// Counts the 16-bit pieces of a ':'-separated run of hex groups, the last of
// which may be a dotted IPv4 address when `v4_allowed`; -1 when malformed.
int ipv6Pieces(std::string_view s, bool v4_allowed) {
  if (s.empty()) return 0;
  int pieces = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t colon = s.find(':', start);
    const std::string_view group = s.substr(start, colon == std::string_view::npos ? s.npos : colon - start);
    if (colon == std::string_view::npos && v4_allowed && group.find('.') != std::string_view::npos) {
      if (!isIpv4(group)) return -1;
      return pieces + 2;
    }
    if (group.empty() || group.size() > 4) return -1;
    for (char ch : group) {
      if (!isHex(static_cast<unsigned char>(ch))) return -1;
    }
    ++pieces;
    if (colon == std::string_view::npos) return pieces;
    start = colon + 1;
  }
}

bool isIpv6(std::string_view s) {
  const std::size_t gap = s.find("::");
  if (gap == std::string_view::npos) return ipv6Pieces(s, true) == 8;
  if (s.find("::", gap + 1) != std::string_view::npos) return false;
  const int left = ipv6Pieces(s.substr(0, gap), false);
  const int right = ipv6Pieces(s.substr(gap + 2), true);
  if (left < 0 || right < 0) return false;
  // RFC 5321 asks for at least two zero groups behind "::"; RFC 4291 allows
  // one, and clients format addresses with their system's library, so
  // accept what RFC 4291 accepts.
  return left + right <= 7;
}

}  // namespace

bool Address::isAddressLiteral(std::string_view literal) {
  if (literal.size() < 3 || literal.front() != '[' || literal.back() != ']') return false;
  const std::string_view inner = literal.substr(1, literal.size() - 2);
  if (istartsWith(inner, "IPv6:")) return isIpv6(inner.substr(5));
  // General-address-literal (a "tag:" other than IPv6) has no registered tag,
  // so nothing could route it.
  return isIpv4(inner);
}

bool Address::isDomain(std::string_view domain, bool smtputf8) {
  if (domain.empty()) return false;
  if (domain.front() == '[') return isAddressLiteral(domain);
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = domain.find('.', start);
    const std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? domain.npos : dot - start);
    if (!isLabel(label, smtputf8)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

AddressProblem Address::checkMailbox(std::string_view mailbox, PathRole role, bool smtputf8) {
  if (mailbox.empty()) return AddressProblem::Syntax;
  bool eight_bit = false;
  for (char ch : mailbox) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return AddressProblem::Syntax;
    if (c >= 0x80) eight_bit = true;
  }
  if (eight_bit && !smtputf8) return AddressProblem::NeedsSmtpUtf8;

  std::size_t local_end = 0;
  if (mailbox.front() == '"') {
    local_end = quotedStringEnd(mailbox, smtputf8);
    if (local_end == 0) return AddressProblem::Syntax;
  } else {
    local_end = mailbox.find('@');
    if (local_end == std::string_view::npos) local_end = mailbox.size();
    if (!isDotString(mailbox.substr(0, local_end), smtputf8)) return AddressProblem::Syntax;
  }
  if (local_end > kMaxLocalPart) return AddressProblem::TooLong;

  if (local_end == mailbox.size()) {
    // A sender without a domain is what many printers send (MAIL FROM:<scan>);
    // policy may rewrite it. A recipient needs somewhere to go.
    return role == PathRole::Sender ? AddressProblem::None : AddressProblem::MissingDomain;
  }
  if (mailbox[local_end] != '@') return AddressProblem::Syntax;
  const std::string_view domain = mailbox.substr(local_end + 1);
  if (domain.size() > kMaxDomain) return AddressProblem::TooLong;
  if (!isDomain(domain, smtputf8)) return AddressProblem::Syntax;
  return AddressProblem::None;
}

PathCheck Address::checkPath(std::string_view inner, PathRole role, bool smtputf8) {
  PathCheck out;
  if (inner.empty()) {
    if (role != PathRole::Sender) out.problem = AddressProblem::Syntax;
    return out;
  }
  if (inner.size() + 2 > kMaxPath) {
    out.problem = AddressProblem::TooLong;
    return out;
  }
  std::size_t pos = 0;
  if (inner.front() == '@') {
    // A-d-l = At-domain *( "," At-domain ) ":" (RFC 5321 §4.1.2). Servers
    // must accept it and may ignore it (§4.1.1.3, Appendix C); relaying along
    // a client-chosen route is exactly what an open-relay probe wants, so the
    // route is checked for syntax and then forgotten.
    while (true) {
      if (pos >= inner.size() || inner[pos] != '@') {
        out.problem = AddressProblem::Syntax;
        return out;
      }
      ++pos;
      std::size_t end = pos;
      if (end < inner.size() && inner[end] == '[') {
        end = inner.find(']', end);
        end = end == std::string_view::npos ? inner.size() : end + 1;
      } else {
        end = inner.find_first_of(",:", pos);
        if (end == std::string_view::npos) end = inner.size();
      }
      const std::string_view hop = inner.substr(pos, end - pos);
      bool eight_bit = false;
      for (char ch : hop) eight_bit = eight_bit || static_cast<unsigned char>(ch) >= 0x80;
      if (eight_bit && !smtputf8) {
        out.problem = AddressProblem::NeedsSmtpUtf8;
        return out;
      }
      if (!isDomain(hop, smtputf8) || end >= inner.size()) {
        out.problem = AddressProblem::Syntax;
        return out;
      }
      pos = end + 1;
      if (inner[end] == ':') break;
      if (inner[end] != ',') {
        out.problem = AddressProblem::Syntax;
        return out;
      }
    }
  }
  const std::string_view mailbox = inner.substr(pos);
  out.problem = checkMailbox(mailbox, role, smtputf8);
  if (out.ok()) out.mailbox = std::string(mailbox);
  return out;
}

Reply Address::replyFor(AddressProblem problem, PathRole role) {
  const bool sender = role == PathRole::Sender;
  switch (problem) {
    case AddressProblem::None:
      return sender ? Reply{250, "2.1.0", "Sender OK", {}} : Reply{250, "2.1.5", "Recipient OK", {}};
    case AddressProblem::Syntax:
      return sender ? Reply{501, "5.1.7", "Bad sender address syntax", {}}
                    : Reply{501, "5.1.3", "Bad recipient address syntax", {}};
    case AddressProblem::TooLong:
      return Reply{553, "5.1.3", "Address too long", {}};
    case AddressProblem::NeedsSmtpUtf8:
      return Reply{553, "5.6.7", "SMTPUTF8 required for a UTF-8 address", {}};
    case AddressProblem::MissingDomain:
      return Reply{553, "5.1.3", "Recipient address must include a domain", {}};
  }
  return Reply{501, "5.5.4", "Syntax error in parameters", {}};
}

}  // namespace mb::smtp
