// libFuzzer target: one command line through Command::parse(), with and
// without SMTPUTF8 in the transaction. Checks that what the parser accepts
// is what the address rules accept, that AUTH and BDAT arguments are only
// set for their commands, and that every refusal is one clean reply line.
// The same bytes go through the SASL decoders (an AUTH continuation line is
// read with them): strict base64 must round-trip exactly, and a PLAIN
// message must split into fields without NULs.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "smtp/address.h"
#include "smtp/command.h"
#include "smtp/sasl.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool cleanReply(const mb::smtp::Reply& r) {
  const std::string wire = r.wire();
  if (wire.size() < 5 || wire.compare(wire.size() - 2, 2, "\r\n") != 0) return false;
  for (std::size_t i = 0; i < wire.size(); ++i) {
    const char c = wire[i];
    if (c == '\0') return false;
    if (c == '\r' && (i + 1 >= wire.size() || wire[i + 1] != '\n')) return false;
    if (c == '\n' && (i == 0 || wire[i - 1] != '\r')) return false;
  }
  return r.code >= 400 && r.code <= 599;
}

void fuzzOne(std::string_view line, bool utf8) {
  using mb::smtp::Verb;
  const mb::smtp::ParsedCommand p = mb::smtp::Command::parse(line, utf8);
  if (p.command.verb != Verb::Bdat) check(!p.command.chunk_size && !p.command.last);
  if (p.command.verb != Verb::Auth) check(p.command.mechanism.empty() && !p.command.initial_response);
  if (!p.ok()) {
    check(cleanReply(*p.error));
    check(!p.command.last);
    return;
  }
  if (p.command.verb == Verb::Bdat) check(p.command.chunk_size.has_value());
  if (p.command.verb == Verb::Auth) {
    check(!p.command.mechanism.empty());
    check(p.command.mechanism.find(' ') == std::string::npos);
    if (p.command.initial_response) {
      check(!p.command.initial_response->empty());
      check(p.command.initial_response->find(' ') == std::string::npos);
    }
  }
  if (p.command.verb == Verb::Starttls) check(p.command.argument.empty());
  check(p.command.verb != Verb::Unknown);
  check(line.find('\0') == std::string_view::npos);
  const std::string& a = p.command.address;
  for (char ch : a) {
    const auto c = static_cast<unsigned char>(ch);
    check(c >= 0x20 && c != 0x7f);
  }
  if (p.command.verb == Verb::Mail) {
    if (!a.empty()) {
      check(mb::smtp::Address::checkMailbox(a, mb::smtp::PathRole::Sender, p.command.smtputf8) ==
            mb::smtp::AddressProblem::None);
    }
  } else if (p.command.verb == Verb::Rcpt) {
    check(!a.empty());
    check(a.find('@') != std::string::npos);
    check(mb::smtp::Address::checkMailbox(a, mb::smtp::PathRole::Recipient, utf8) == mb::smtp::AddressProblem::None);
    check(a.size() + 2 <= mb::smtp::Address::kMaxPath);
  } else {
    check(a.empty());
  }
  if (p.command.verb == Verb::Ehlo || p.command.verb == Verb::Helo) {
    check(!p.command.argument.empty());
    for (char ch : p.command.argument) check(ch >= 0x20 && ch <= 0x7e);
  }
}


void fuzzSasl(std::string_view text) {
  std::string decoded;
  if (mb::smtp::decodeBase64(text, decoded)) {
    check(text.size() % 4 == 0);
    check(decoded.size() <= text.size() / 4 * 3);
    check(mb::smtp::encodeBase64(decoded) == text);
  } else {
    check(decoded.empty());
  }
  mb::smtp::AuthRequest request;
  if (mb::smtp::splitPlainMessage(text, request)) {
    check(request.authzid.size() + request.user.size() + request.password.size() + 2 == text.size());
    check(request.authzid.find('\0') == std::string::npos);
    check(request.user.find('\0') == std::string::npos);
    check(request.password.find('\0') == std::string::npos);
  }
  std::string copy(text);
  mb::smtp::wipe(copy);
  check(copy.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  fuzzOne(line, false);
  fuzzOne(line, true);
  fuzzSasl(line);
  return 0;
}
