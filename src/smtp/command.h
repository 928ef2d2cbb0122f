#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "smtp/reply.h"

namespace mb::smtp {

/// The commands the session knows (EXPN is recognised so that it can be
/// answered 502 5.5.1 rather than 500 5.5.2).
enum class Verb {
  Unknown,
  Ehlo,
  Helo,
  Mail,
  Rcpt,
  Data,
  Rset,
  Noop,
  Quit,
  Vrfy,
  Expn,
  Help,
  Starttls,
  Auth,
  Bdat,
};

struct ParsedCommand;

/// Command: one SMTP command line, parsed (RFC 5321 §4.1.1 commands,
/// §4.1.2 argument syntax, RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8
/// and RFC 4954 §5 AUTH parameters, RFC 4954 AUTH and RFC 3030 BDAT
/// arguments). Tolerates what real devices send: a space after "FROM:",
/// an address without angle brackets, trailing blanks; accepts and drops a
/// source route (§4.1.1.3, Appendix C). Addresses are checked by Address
/// (address.h).
///
/// The parser is a pure function of the line; no state, any thread. The
/// ServerSession calls it once per line, after removing the line ending and
/// enforcing the line length limit.
struct Command {
  Verb verb = Verb::Unknown;
  /// Everything after the verb and its spaces, trailing blanks removed (the
  /// EHLO name, VRFY string, ...). Raw client text: log it with printable(),
  /// never echo it.
  std::string argument;
  /// MAIL / RCPT: the mailbox, source route removed; empty for `<>`.
  std::string address;
  /// MAIL parameters.
  std::optional<std::uint64_t> size;  // SIZE=; saturates at UINT64_MAX
  bool body_8bitmime = false;         // BODY=8BITMIME (BODY=7BIT leaves it false)
  bool smtputf8 = false;              // SMTPUTF8
  /// AUTH (RFC 4954 §4): the mechanism as sent and the initial response, if
  /// any ("=" is an empty one). Credentials: never log or echo them.
  std::string mechanism;
  std::optional<std::string> initial_response;
  /// BDAT (RFC 3030 §2): the chunk size, set whenever it parses even if the
  /// rest of the line does not (that many octets follow the line all the
  /// same); saturates at UINT64_MAX. `last` for the LAST keyword.
  std::optional<std::uint64_t> chunk_size;
  bool last = false;

  /// Parses `line`, which has no CR LF. `smtputf8_transaction` says whether
  /// the current transaction's MAIL declared SMTPUTF8 (it allows UTF-8 in
  /// RCPT addresses).
  static ParsedCommand parse(std::string_view line, bool smtputf8_transaction = false);

  /// "EHLO", "MAIL", ... ("?" for Unknown); for logs.
  static std::string_view verbName(Verb verb);
};

/// The outcome of Command::parse(): the command, whose verb is set even when
/// the arguments are wrong (the session checks the command sequence first),
/// and the reply that refuses the line when it is not acceptable.
struct ParsedCommand {
  Command command;
  std::optional<Reply> error;
  bool ok() const { return !error.has_value(); }
};

}  // namespace mb::smtp
