// formatReceived() and rfc5322Date(), declared in server_session.h.

#include <array>
#include <cstdint>
#include <string>

#include "smtp/server_session.h"

namespace mb::smtp {

namespace {

constexpr std::size_t kMaxHelo = 255;

// The HELO name is the client's text. Outside printable ASCII it could fold
// or end the header; '(' ')' would open or close a comment and ';' would
// start the date, so another header or a forged "from" could follow.
std::string sanitiseHelo(std::string_view helo) {
  std::string out;
  const std::size_t n = helo.size() < kMaxHelo ? helo.size() : kMaxHelo;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(helo[i]);
    const bool bad = c < 0x20 || c > 0x7e || c == '(' || c == ')' || c == ';' || c == '\\';
    out += bad ? '?' : helo[i];
  }
  if (out.empty()) out = "unknown";
  return out;
}

// Our own values (address, hostname, queue id, recipient) should be clean
// already; this only makes sure no control character reaches the header.
std::string sanitiseValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c == 0x7f) ? '?' : ch;
  }
  return out;
}

void appendPadded(std::string& out, std::int64_t value, int width) {
  std::string digits = std::to_string(value);
  for (int i = static_cast<int>(digits.size()); i < width; ++i) out += '0';
  out += digits;
}

}  // namespace

std::string formatReceived(const ReceivedInfo& info) {
  std::string out = "Received: from ";
  out += sanitiseHelo(info.helo);
  out += " (";
  out += sanitiseValue(info.client_address);
  out += ")\r\n\tby ";
  out += sanitiseValue(info.by_host);
  out += " (Mailbridge) with ";
  out += sanitiseValue(info.protocol);
  out += " id ";
  out += sanitiseValue(info.id);
  if (info.for_recipient.empty()) {
    out += ";\r\n\t";
  } else {
    out += "\r\n\tfor <";
    out += sanitiseValue(info.for_recipient);
    out += ">; ";
  }
  out += sanitiseValue(info.date);
  out += "\r\n";
  return out;
}

std::string rfc5322Date(std::int64_t unix_seconds) {
  static constexpr std::array<std::string_view, 7> kDays{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<std::string_view, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  // Years 0001..9999 are what the four-digit year of RFC 5322 can show.
  constexpr std::int64_t kMin = -62135596800;  // 0001-01-01T00:00:00Z
  constexpr std::int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  if (unix_seconds < kMin) unix_seconds = kMin;
  if (unix_seconds > kMax) unix_seconds = kMax;

  std::int64_t days = unix_seconds / 86400;
  std::int64_t secs = unix_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    days -= 1;
  }
  // 1970-01-01 was a Thursday.
  const std::int64_t weekday = ((days % 7) + 7 + 4) % 7;

  // Count from 0001-01-01 (day -719162) in whole 400-year cycles (146097
  // days each, the Gregorian calendar's period), then year by year and
  // month by month inside the cycle: at most 400 + 12 steps.
  std::int64_t d = days + 719162;
  std::int64_t year = 1 + (d / 146097) * 400;
  d %= 146097;
  auto isLeap = [](std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; };
  while (true) {
    const std::int64_t len = isLeap(year) ? 366 : 365;
    if (d < len) break;
    d -= len;
    ++year;
  }
  static constexpr std::array<int, 12> kMonthDays{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int month = 0;
  while (true) {
    const std::int64_t len = kMonthDays[static_cast<std::size_t>(month)] + ((month == 1 && isLeap(year)) ? 1 : 0);
    if (d < len) break;
    d -= len;
    ++month;
  }

  std::string out;
  out.reserve(32);
  out += kDays[static_cast<std::size_t>(weekday)];
  out += ", ";
  appendPadded(out, d + 1, 2);
  out += ' ';
  out += kMonths[static_cast<std::size_t>(month)];
  out += ' ';
  appendPadded(out, year, 4);
  out += ' ';
  appendPadded(out, secs / 3600, 2);
  out += ':';
  appendPadded(out, (secs / 60) % 60, 2);
  out += ':';
  appendPadded(out, secs % 60, 2);
  out += " +0000";
  return out;
}

}  // namespace mb::smtp
