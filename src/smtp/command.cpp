#include "smtp/command.h"

#include <array>
#include <limits>
#include <utility>

#include "base/text.h"
#include "smtp/address.h"

namespace mb::smtp {

namespace {

struct VerbEntry {
  std::string_view name;
  Verb verb;
};

constexpr std::array<VerbEntry, 14> kVerbs{{
    {"EHLO", Verb::Ehlo},
    {"HELO", Verb::Helo},
    {"MAIL", Verb::Mail},
    {"RCPT", Verb::Rcpt},
    {"DATA", Verb::Data},
    {"RSET", Verb::Rset},
    {"NOOP", Verb::Noop},
    {"QUIT", Verb::Quit},
    {"VRFY", Verb::Vrfy},
    {"EXPN", Verb::Expn},
    {"HELP", Verb::Help},
    {"STARTTLS", Verb::Starttls},
    {"AUTH", Verb::Auth},
    {"BDAT", Verb::Bdat},
}};

Reply unrecognised() { return Reply{500, "5.5.2", "Command not recognized", {}}; }
Reply badArguments() { return Reply{501, "5.5.4", "Syntax error in parameters or arguments", {}}; }
Reply unknownParameter() { return Reply{555, "5.5.4", "Unsupported parameter", {}}; }

bool isBlank(char c) { return c == ' ' || c == '\t'; }

bool isAlnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// RFC 5321 §4.1.2 esmtp-keyword and esmtp-value.
bool isKeyword(std::string_view k) {
  if (k.empty() || !isAlnum(static_cast<unsigned char>(k[0]))) return false;
  for (char ch : k) {
    if (!isAlnum(static_cast<unsigned char>(ch)) && ch != '-') return false;
  }
  return true;
}

bool isValue(std::string_view v) {
  if (v.empty()) return false;
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 33 || c > 126 || c == '=') return false;
  }
  return true;
}

// Index of the first `stop` byte at or after `from` that is not inside a
// quoted string (a quoted local part may hold '>' and spaces), or npos.
std::size_t findUnquoted(std::string_view s, std::size_t from, char stop) {
  bool quoted = false;
  for (std::size_t i = from; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == stop) {
      return i;
    }
  }
  return std::string_view::npos;
}

// size-value ::= 1*20DIGIT (RFC 1870; RFC 3030 uses the same for BDAT). A
// number too big for 64 bits is still a well-formed "too big", so it
// saturates rather than fails.
std::optional<std::uint64_t> parseSize(std::string_view digits) {
  if (digits.empty() || digits.size() > 20) return std::nullopt;
  std::uint64_t n = 0;
  for (char ch : digits) {
    if (ch < '0' || ch > '9') return std::nullopt;
    const auto d = static_cast<std::uint64_t>(ch - '0');
    const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
    n = (n > (max - d) / 10) ? max : n * 10 + d;
  }
  return n;
}

// Splits `arg` at runs of spaces; at most `max` words, false if there are more.
template <std::size_t N>
bool splitWords(std::string_view arg, std::array<std::string_view, N>& words, std::size_t& count) {
  count = 0;
  std::size_t pos = 0;
  while (true) {
    while (pos < arg.size() && arg[pos] == ' ') ++pos;
    if (pos >= arg.size()) return true;
    if (count == N) return false;
    std::size_t end = arg.find(' ', pos);
    if (end == std::string_view::npos) end = arg.size();
    words[count++] = arg.substr(pos, end - pos);
    pos = end;
  }
}

// "BDAT" SP chunk-size [SP end-marker] (RFC 3030 §2).
void parseBdat(std::string_view arg, ParsedCommand& out) {
  std::array<std::string_view, 2> words;
  std::size_t count = 0;
  const bool fits = splitWords(arg, words, count);
  if (count >= 1) out.command.chunk_size = parseSize(words[0]);
  const bool last_ok = count < 2 || iequals(words[1], "LAST");
  if (!fits || !out.command.chunk_size || !last_ok) {
    out.error = badArguments();
    return;
  }
  out.command.last = count == 2;
}

// "AUTH" SP sasl-mech [SP initial-response] (RFC 4954 §4). The mechanism is
// judged by the session, which answers the command sequence first.
void parseAuth(std::string_view arg, ParsedCommand& out) {
  std::array<std::string_view, 2> words;
  std::size_t count = 0;
  if (!splitWords(arg, words, count) || count == 0) {
    out.error = badArguments();
    return;
  }
  out.command.mechanism = std::string(words[0]);
  if (count == 2) out.command.initial_response = std::string(words[1]);
}

struct MailParams {
  std::optional<std::uint64_t> size;
  bool body_8bitmime = false;
  bool smtputf8 = false;
};

// Parses "KEY[=VALUE] KEY[=VALUE]..." for MAIL (RCPT has no parameters we
// support). Returns the error reply or nullopt.
std::optional<Reply> parseParams(std::string_view rest, bool mail, MailParams& out) {
  bool seen_size = false, seen_body = false, seen_utf8 = false, seen_auth = false;
  std::size_t pos = 0;
  while (true) {
    while (pos < rest.size() && rest[pos] == ' ') ++pos;
    if (pos >= rest.size()) return std::nullopt;
    std::size_t end = rest.find(' ', pos);
    if (end == std::string_view::npos) end = rest.size();
    const std::string_view param = rest.substr(pos, end - pos);
    pos = end;

    const std::size_t eq = param.find('=');
    const std::string_view key = param.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view value = has_value ? param.substr(eq + 1) : std::string_view();
    if (!isKeyword(key) || (has_value && !isValue(value))) return badArguments();
    if (!mail) return unknownParameter();

    if (iequals(key, "SIZE")) {
      // RFC 1870: size-value ::= 1*20DIGIT. A number too big for 64 bits
      // is still a well-formed "too big", so it saturates rather than fails.
      if (seen_size || !has_value) return badArguments();
      out.size = parseSize(value);
      if (!out.size) return badArguments();
      seen_size = true;
    } else if (iequals(key, "BODY")) {
      if (seen_body || !has_value) return badArguments();
      if (iequals(value, "8BITMIME")) {
        out.body_8bitmime = true;
      } else if (!iequals(value, "7BIT")) {
        return badArguments();
      }
      seen_body = true;
    } else if (iequals(key, "SMTPUTF8")) {
      if (seen_utf8 || has_value) return badArguments();
      seen_utf8 = true;
      out.smtputf8 = true;
    } else if (iequals(key, "AUTH")) {
      // RFC 4954 §5: clients that authenticated (Exim, for one) send
      // AUTH=<> or AUTH=<mailbox> once AUTH is advertised. We do not trust
      // a claimed original submitter, and RFC 4954 lets a server that does
      // not trust it behave as if it were AUTH=<>: accept and drop it.
      if (seen_auth || !has_value) return badArguments();
      seen_auth = true;
    } else {
      return unknownParameter();
    }
  }
}

// "FROM:<path> params" / "TO:<path> params".
void parsePathCommand(std::string_view arg, std::string_view prefix, PathRole role,
                      bool smtputf8_transaction, ParsedCommand& out) {
  if (!istartsWith(arg, prefix)) {
    out.error = badArguments();
    return;
  }
  std::size_t pos = prefix.size();
  // Many devices write "MAIL FROM: <a@b>".
  while (pos < arg.size() && arg[pos] == ' ') ++pos;
  if (pos >= arg.size()) {
    out.error = badArguments();
    return;
  }

  std::string_view inner;
  std::size_t after = 0;
  if (arg[pos] == '<') {
    const std::size_t close = findUnquoted(arg, pos + 1, '>');
    if (close == std::string_view::npos) {
      out.error = Address::replyFor(AddressProblem::Syntax, role);
      return;
    }
    inner = arg.substr(pos + 1, close - pos - 1);
    after = close + 1;
  } else {
    // A bare address, as some scripts send: it ends at the first space.
    std::size_t end = findUnquoted(arg, pos, ' ');
    if (end == std::string_view::npos) end = arg.size();
    inner = arg.substr(pos, end - pos);
    after = end;
  }
  if (after < arg.size() && arg[after] != ' ') {
    out.error = Address::replyFor(AddressProblem::Syntax, role);
    return;
  }

  MailParams params;
  if (auto err = parseParams(arg.substr(after), role == PathRole::Sender, params)) {
    out.error = std::move(err);
    return;
  }
  const bool utf8 = role == PathRole::Sender ? params.smtputf8 : smtputf8_transaction;
  PathCheck path = Address::checkPath(inner, role, utf8);
  if (!path.ok()) {
    out.error = Address::replyFor(path.problem, role);
    return;
  }
  out.command.address = std::move(path.mailbox);
  out.command.size = params.size;
  out.command.body_8bitmime = params.body_8bitmime;
  out.command.smtputf8 = params.smtputf8;
}

bool isPrintableAscii(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

std::string_view Command::verbName(Verb verb) {
  for (const auto& e : kVerbs) {
    if (e.verb == verb) return e.name;
  }
  return "?";
}

ParsedCommand Command::parse(std::string_view line, bool smtputf8_transaction) {
  ParsedCommand out;
  if (line.find('\0') != std::string_view::npos) {
    // A NUL is never part of a command; some software stops reading a string
    // there, so a line with one could mean different things to us and a log.
    out.error = unrecognised();
    return out;
  }
  while (!line.empty() && isBlank(line.back())) line.remove_suffix(1);

  std::size_t verb_end = line.find(' ');
  if (verb_end == std::string_view::npos) verb_end = line.size();
  const std::string_view verb = line.substr(0, verb_end);
  for (const auto& e : kVerbs) {
    if (iequals(verb, e.name)) {
      out.command.verb = e.verb;
      break;
    }
  }
  if (out.command.verb == Verb::Unknown) {
    out.error = unrecognised();
    return out;
  }

  std::size_t arg_start = verb_end;
  while (arg_start < line.size() && line[arg_start] == ' ') ++arg_start;
  const std::string_view arg = line.substr(arg_start);
  out.command.argument = std::string(arg);

  switch (out.command.verb) {
    case Verb::Ehlo:
    case Verb::Helo:
      // The name goes into a Received: header; it is checked here and
      // sanitised again there.
      if (arg.empty() || !isPrintableAscii(arg)) out.error = badArguments();
      break;
    case Verb::Mail:
      parsePathCommand(arg, "FROM:", PathRole::Sender, false, out);
      break;
    case Verb::Rcpt:
      parsePathCommand(arg, "TO:", PathRole::Recipient, smtputf8_transaction, out);
      break;
    case Verb::Data:
    case Verb::Rset:
    case Verb::Starttls:  // RFC 3207 §4: no parameters
      if (!arg.empty()) out.error = badArguments();
      break;
    case Verb::Auth:
      parseAuth(arg, out);
      break;
    case Verb::Bdat:
      parseBdat(arg, out);
      break;
    case Verb::Vrfy:
      if (arg.empty()) out.error = badArguments();
      break;
    case Verb::Quit:  // RFC 5321 has no argument; a client that wants to leave may leave
    case Verb::Noop:  // "NOOP [SP String]"
    case Verb::Help:  // "HELP [SP String]"
    case Verb::Expn:  // answered 502 whatever follows
    case Verb::Unknown:
      break;
  }
  return out;
}

}  // namespace mb::smtp
