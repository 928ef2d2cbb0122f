#include "queue/dsn.h"

#include "base/durable_file.h"

#include "base/time_format.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <set>
#include <string_view>
#include <system_error>

namespace mb::queue {
namespace {

constexpr std::size_t kMaxHeaderCopy = 64 * 1024;  // octets of the original's header section
constexpr std::size_t kMaxLineOctets = 998;         // RFC 5322 §2.1.1, without CRLF
constexpr std::size_t kWrapWidth = 76;
constexpr std::size_t kMaxErrorText = 4096;         // a provider's error text, before wrapping
constexpr std::size_t kMaxAddress = 512;
constexpr std::size_t kMaxIdChars = 24;
constexpr int kBoundaryAttempts = 8;
constexpr std::string_view kCrlf = "\r\n";

// ---- text -----------------------------------------------------------------

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629 §4: no overlong
// forms, no surrogates, nothing above U+10FFFF) and its code point; 0 when
// the octet there does not start one.
std::size_t utf8Sequence(std::string_view s, std::size_t i, char32_t& cp) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = at(i);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xbf) return 0;
  }
  cp = c & (0x7f >> len);
  for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (at(i + k) & 0x3f);
  return len;
}

bool isAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool isControl(char32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029; }

// Where to cut `s` at most `max` octets in, without splitting a UTF-8
// sequence (when there is one to keep whole).
std::size_t cutPoint(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s.size();
  std::size_t cut = max;
  for (int back = 0; back < 3 && cut > 1; ++back) {
    const auto c = static_cast<unsigned char>(s[cut]);
    if (c < 0x80 || c > 0xbf) break;
    --cut;
  }
  const auto c = static_cast<unsigned char>(s[cut]);
  return (c >= 0x80 && c <= 0xbf) ? max : cut;
}

// Free text from outside (a provider's error) made safe for a line: valid
// UTF-8 ('?' for bad octets), control characters (CR, LF, TAB, NUL, C1, the
// Unicode line separators) as spaces, runs of spaces collapsed, at most
// `max_len` octets.
std::string sanitiseText(std::string_view in, std::size_t max_len) {
  std::string out;
  out.reserve(std::min(in.size(), max_len));
  bool space = true;  // drops leading spaces
  for (std::size_t i = 0; i < in.size();) {
    char32_t cp = 0;
    const std::size_t len = utf8Sequence(in, i, cp);
    if (len == 0 || isControl(cp) || cp == ' ') {
      if (len == 0) {
        out += '?';
        space = false;
      } else if (!space) {
        out += ' ';
        space = true;
      }
      i += len == 0 ? 1 : len;
      continue;
    }
    out.append(in.substr(i, len));
    space = false;
    i += len;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.size() > max_len) {
    out.resize(cutPoint(out, max_len));
    out += "...";
  }
  return out;
}

std::string asciiOnly(std::string_view in) {
  std::string out(in);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) >= 0x80) c = '?';
  }
  return out;
}

// An address as one token: valid UTF-8, no spaces, controls or angle
// brackets (which could close "<...>" in a header and start another).
std::string sanitiseAddress(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size() && out.size() < kMaxAddress;) {
    char32_t cp = 0;
    const std::size_t len = utf8Sequence(in, i, cp);
    if (len == 0 || isControl(cp) || cp == ' ' || cp == '<' || cp == '>') {
      out += '?';
      i += len == 0 ? 1 : len;
    } else {
      out.append(in.substr(i, len));
      i += len;
    }
  }
  return out;
}

// Characters a host name, queue id or boundary may carry.
std::string keepOnly(std::string_view in, std::string_view extra, std::size_t max_len) {
  std::string out;
  for (char c : in) {
    if (out.size() >= max_len) break;
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (alnum || extra.find(c) != std::string_view::npos) out += c;
  }
  return out;
}

// RFC 6533 §3 utf-8-addr-xtext: the ASCII form of a utf-8 address, as
// message/delivery-status needs it. '\', '+', '=', controls and everything
// beyond ASCII become "\x{HEX}" (upper case, at least two digits).
std::string utf8AddrXtext(std::string_view addr) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (std::size_t i = 0; i < addr.size();) {
    char32_t cp = 0;
    std::size_t len = utf8Sequence(addr, i, cp);
    if (len == 0) {
      cp = '?';
      len = 1;
    }
    i += len;
    if (cp > 0x20 && cp < 0x7f && cp != '\\' && cp != '+' && cp != '=') {
      out += static_cast<char>(cp);
      continue;
    }
    std::string hex;
    for (char32_t v = cp; v != 0; v >>= 4) hex.insert(hex.begin(), kHex[v & 0xf]);
    while (hex.size() < 2) hex.insert(hex.begin(), '0');
    out += "\\x{" + hex + "}";
  }
  return out;
}

// Greedy word wrap at `width` octets; a word longer than that is split (at
// a UTF-8 boundary), which is the price of staying under the line limit.
std::vector<std::string> wrapWords(std::string_view text, std::size_t width) {
  std::vector<std::string> lines;
  std::string line;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    std::size_t end = text.find(' ', i);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(i, end - i);
    i = end;
    while (!word.empty()) {
      const std::size_t room = line.empty() ? width : (line.size() + 1 < width ? width - line.size() - 1 : 0);
      if (word.size() <= room) {
        if (!line.empty()) line += ' ';
        line.append(word);
        word = {};
      } else if (!line.empty()) {
        lines.push_back(std::move(line));
        line.clear();
      } else {
        const std::size_t cut = std::max<std::size_t>(1, cutPoint(word, width));
        lines.emplace_back(word.substr(0, cut));
        word.remove_prefix(cut);
      }
    }
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

// "Name: value" folded at spaces (RFC 5322 §2.2.3), ending in CRLF.
std::string field(std::string_view name, std::string_view value) {
  std::string text(name);
  text += ": ";
  text += value;
  const auto lines = wrapWords(text, kWrapWidth + 2);
  std::string out;
  for (std::size_t k = 0; k < lines.size(); ++k) {
    if (k > 0) out += "\r\n ";
    out += lines[k];
  }
  out += kCrlf;
  return out;
}

void appendWrapped(std::string& out, std::string_view text, std::string_view indent) {
  for (const auto& line : wrapWords(text, kWrapWidth - indent.size())) {
    out += indent;
    out += line;
    out += kCrlf;
  }
}

// ---- the original's header section ------------------------------------------

struct OriginalHeaders {
  bool readable = false;
  bool truncated = false;
  std::string text;   // CRLF line ends, each line at most 998 octets
  std::string error;  // why it could not be read
};

// Reads no more than a header section can use, so a 25 MB message costs
// 64 KiB here, and never past the message's `size` bytes (the spool keeps
// the envelope after them); every emitted line is at least as long as its
// source line.
OriginalHeaders readOriginalHeaders(const std::filesystem::path& path, std::uint64_t size) {
  OriginalHeaders result;
  auto read = fs::readFilePrefix(path, std::min<std::uint64_t>(size, kMaxHeaderCopy + 2));
  if (!read) {
    // No errno: the file ended early.
    result.error = read.error().sys_errno != 0 ? std::generic_category().message(read.error().sys_errno)
                                               : "the file is shorter than the message";
    return result;
  }
  std::string raw = std::move(read).value();
  const bool eof = raw.size() == size;  // the whole message was read
  result.readable = true;

  std::size_t pos = 0;
  bool ended = false;  // saw the empty line that ends the section
  while (pos < raw.size()) {
    std::size_t end = raw.find_first_of("\r\n", pos);
    std::size_t next = 0;
    if (end == std::string::npos) {
      if (!eof) break;  // a partial line at the read limit
      end = raw.size();
      next = end;
    } else {
      next = end + 1;
      if (raw[end] == '\r' && next < raw.size() && raw[next] == '\n') ++next;
    }
    std::string_view line(raw.data() + pos, end - pos);
    pos = next;
    if (line.empty()) {
      ended = true;
      break;
    }
    // Bare CR and LF were line ends above; NUL would upset the reader.
    std::string rendered;
    while (line.size() > kMaxLineOctets) {
      const std::size_t cut = cutPoint(line, kMaxLineOctets - 1);
      rendered.append(line.substr(0, cut));
      rendered += "\r\n ";
      line.remove_prefix(cut);
    }
    rendered.append(line);
    rendered += kCrlf;
    std::replace(rendered.begin(), rendered.end(), '\0', '?');
    if (result.text.size() + rendered.size() > kMaxHeaderCopy) {
      result.truncated = true;
      break;
    }
    result.text += rendered;
  }
  if (!ended && !result.truncated && !(eof && pos >= raw.size())) result.truncated = true;
  return result;
}

// ---- recipients ------------------------------------------------------------

bool isEnhancedStatus(std::string_view s) {
  // class "." subject "." detail, RFC 3463 §2
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  std::size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    std::size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ++i;
      ++digits;
    }
    if (digits == 0 || digits > 3) return false;
    if (part == 0) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  return i == s.size();
}

struct FailedRecipient {
  std::string address;  // sanitised, UTF-8
  int code = 550;
  std::string status;   // "5.1.1"
  std::string text;     // sanitised error text, UTF-8
};

FailedRecipient describe(const RecipientEntry& r) {
  FailedRecipient f;
  f.address = sanitiseAddress(r.address);
  // A permanent failure reports 5.x.x; 4.x.x stays for one that expired
  // after temporary failures (RFC 3464 §2.3.4 allows it with "failed").
  f.status = isEnhancedStatus(r.enhanced) && r.enhanced[0] != '2' ? r.enhanced : "5.0.0";
  if (r.smtp_code >= 400 && r.smtp_code <= 599) {
    f.code = r.smtp_code;
  } else {
    f.code = f.status[0] == '4' ? 451 : 550;
  }
  std::string text = sanitiseText(r.last_error, kMaxErrorText);
  // Providers often keep the whole reply; do not say "550 5.1.1" twice.
  std::string_view rest = text;
  const std::string code = std::to_string(f.code);
  if (rest.substr(0, code.size()) == code && (rest.size() == code.size() || rest[code.size()] == ' ' ||
                                              rest[code.size()] == '-')) {
    rest.remove_prefix(std::min(rest.size(), code.size() + 1));
    const std::size_t sp = rest.find(' ');
    if (isEnhancedStatus(rest.substr(0, sp))) rest.remove_prefix(sp == std::string_view::npos ? rest.size() : sp + 1);
    text = std::string(rest);
  }
  f.text = std::move(text);
  return f;
}

std::string plural(std::size_t n, std::string_view word) {
  return std::to_string(n) + " " + std::string(word) + (n == 1 ? "" : "s");
}

Result<std::string> randomHex(std::size_t bytes) {
  static const bool ok = sodium_init() >= 0;
  if (!ok) return Error{"libsodium could not be initialised"};
  std::vector<unsigned char> buf(bytes);
  randombytes_buf(buf.data(), buf.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), buf.data(), buf.size());
  hex.resize(bytes * 2);
  return hex;
}

}  // namespace

bool shouldBounce(const Envelope& env) { return !env.sender.empty() && env.sender != "<>"; }

Result<std::string> buildDsn(const DsnInput& in) {
  if (in.envelope == nullptr) return Error{"DSN without an envelope"};
  const Envelope& env = *in.envelope;
  if (in.failed.empty()) return Error{"DSN for " + env.id + " without failed recipients"};
  std::set<std::size_t> failed_set;
  std::vector<std::size_t> failed;  // in the given order, each once
  for (std::size_t idx : in.failed) {
    if (idx >= env.recipients.size()) {
      return Error{"DSN for " + env.id + ": recipient index " + std::to_string(idx) + " out of range"};
    }
    if (failed_set.insert(idx).second) failed.push_back(idx);
  }
  const std::string to = sanitiseAddress(in.to_address);
  if (to.empty()) return Error{"DSN for " + env.id + " without a To address"};

  std::string host = keepOnly(in.reporting_host, ".-", 255);
  if (host.empty()) host = "localhost";
  std::string from = sanitiseAddress(in.from_address);
  if (from.empty()) from = "MAILER-DAEMON@" + host;
  std::string id = keepOnly(env.id, "", kMaxIdChars);
  if (id.empty()) id = "unknown";
  const std::string now = rfc5322Date(in.now);
  const std::string arrival = rfc5322Date(env.arrival);

  std::vector<FailedRecipient> recipients;
  recipients.reserve(failed.size());
  for (std::size_t idx : failed) recipients.push_back(describe(env.recipients[idx]));

  std::size_t delivered = 0, pending = 0, failed_other = 0;
  for (std::size_t k = 0; k < env.recipients.size(); ++k) {
    if (failed_set.count(k) != 0) continue;
    switch (env.recipients[k].state) {
      case RecipientState::Delivered: ++delivered; break;
      case RecipientState::Pending: ++pending; break;
      case RecipientState::Failed: ++failed_other; break;
    }
  }

  const OriginalHeaders original = readOriginalHeaders(in.original_content, in.original_size);
  const bool have_headers = original.readable && !original.text.empty();

  // Part 1: for people.
  std::string human;
  appendWrapped(human,
                "This is the mail system at " + host + ". Your message could not be delivered to " +
                    plural(recipients.size(), "recipient") + " listed below. Delivery to " +
                    (recipients.size() == 1 ? "it" : "them") + " has been given up.",
                "");
  human += kCrlf;
  human += "Queue ID: " + id + "\r\n";
  human += "Arrived:  " + arrival + "\r\n";
  human += kCrlf;
  for (const auto& r : recipients) {
    appendWrapped(human, "<" + r.address + ">:", "");
    human += "    SMTP code " + std::to_string(r.code) + ", status " + r.status + "\r\n";
    appendWrapped(human, r.text.empty() ? "(no further details)" : r.text, "    ");
    human += kCrlf;
  }
  if (delivered + pending + failed_other > 0) {
    if (delivered > 0) {
      appendWrapped(human, "The message was delivered to " + plural(delivered, "other recipient") + ".", "");
    }
    if (pending > 0) {
      appendWrapped(human,
                    "Delivery to " + plural(pending, "other recipient") +
                        " is still being tried; you will be told if it fails.",
                    "");
    }
    if (failed_other > 0) {
      appendWrapped(human, "Delivery to " + plural(failed_other, "other recipient") + " failed as well.", "");
    }
    human += kCrlf;
  }
  if (!original.readable) {
    appendWrapped(human,
                  "The original message could not be read (" + sanitiseText(original.error, 200) +
                      "), so its headers are not attached.",
                  "");
  } else if (!have_headers) {
    appendWrapped(human, "The original message had no header section to attach.", "");
  } else if (original.truncated) {
    appendWrapped(human,
                  "The headers of your message are attached, cut after " + std::to_string(original.text.size()) +
                      " octets because they were longer than that. Its body is not returned.",
                  "");
  } else {
    appendWrapped(human, "The headers of your message are attached; its body is not returned.", "");
  }

  // Part 2: for machines (RFC 3464 §2.2, §2.3).
  std::string status;
  status += field("Reporting-MTA", "dns; " + host);
  status += field("X-Mailbridge-Queue-ID", id);
  const std::string client = keepOnly(env.client_address, ".:", 64);
  if (!client.empty()) {
    const bool v6 = client.find(':') != std::string::npos;
    status += field("Received-From-MTA", "dns; [" + std::string(v6 ? "IPv6:" : "") + client + "]");
  }
  status += field("Arrival-Date", arrival);
  for (const auto& r : recipients) {
    status += kCrlf;
    status += field("Final-Recipient", isAscii(r.address) ? "rfc822; " + r.address
                                                          : "utf-8; " + utf8AddrXtext(r.address));
    status += field("Action", "failed");
    status += field("Status", r.status);
    std::string diag = "smtp; " + std::to_string(r.code) + " " + r.status;
    if (!r.text.empty()) diag += " " + asciiOnly(r.text);
    status += field("Diagnostic-Code", diag);
    status += field("Last-Attempt-Date", now);
  }

  // Part 3: the original's header section.
  std::string headers = original.text;
  if (original.truncated) headers += "X-Mailbridge-Note: header section cut at a line boundary\r\n";
  const bool headers_ascii = isAscii(headers);

  std::string boundary;
  for (int attempt = 0; attempt < kBoundaryAttempts && boundary.empty(); ++attempt) {
    auto hex = randomHex(16);
    if (!hex.ok()) return hex.error();
    const std::string candidate = "=_mb_" + id + "_" + *hex;
    const bool clash = human.find(candidate) != std::string::npos || status.find(candidate) != std::string::npos ||
                       headers.find(candidate) != std::string::npos;
    if (!clash) boundary = candidate;
  }
  if (boundary.empty()) return Error{"DSN for " + env.id + ": no boundary free of the content"};

  const bool human_ascii = isAscii(human);
  const bool eight_bit = !human_ascii || (have_headers && !headers_ascii);

  std::string msg;
  msg += field("From", "Mail Delivery System <" + from + ">");
  msg += field("To", "<" + to + ">");
  msg += field("Subject", "Undelivered Mail Returned to Sender");
  msg += field("Date", now);
  msg += field("Message-ID", "<dsn." + id + "." + std::to_string(in.now) + "@" + host + ">");
  msg += field("Auto-Submitted", "auto-replied");
  msg += field("MIME-Version", "1.0");
  msg += field("Content-Type", "multipart/report; report-type=delivery-status; boundary=\"" + boundary + "\"");
  if (eight_bit) msg += field("Content-Transfer-Encoding", "8bit");
  msg += kCrlf;
  msg += "This is a MIME-encapsulated message.\r\n\r\n";

  msg += "--" + boundary + "\r\n";
  msg += field("Content-Description", "Notification");
  msg += field("Content-Type", "text/plain; charset=utf-8");
  if (!human_ascii) msg += field("Content-Transfer-Encoding", "8bit");
  msg += kCrlf;
  msg += human;

  msg += "--" + boundary + "\r\n";
  msg += field("Content-Description", "Delivery report");
  msg += field("Content-Type", "message/delivery-status");
  msg += kCrlf;
  msg += status;

  if (have_headers) {
    msg += "--" + boundary + "\r\n";
    msg += field("Content-Description", "Undelivered message headers");
    msg += field("Content-Type", headers_ascii ? "text/rfc822-headers" : "message/global-headers");
    if (!headers_ascii) msg += field("Content-Transfer-Encoding", "8bit");
    msg += kCrlf;
    msg += headers;
  }
  msg += "--" + boundary + "--\r\n";
  return msg;
}

}  // namespace mb::queue
