// formatReceived(), declared in server_session.h.

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


}  // namespace mb::smtp
