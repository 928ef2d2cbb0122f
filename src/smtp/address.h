#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "smtp/reply.h"

namespace mb::smtp {

/// Which envelope path an address came from: MAIL FROM accepts the null
/// sender `<>` and a bare local part (devices send `MAIL FROM:<scanner>`);
/// RCPT TO needs a full mailbox.
enum class PathRole { Sender, Recipient };

/// What is wrong with an address, from the protocol's point of view only;
/// whether the relay will accept it is policy, decided elsewhere.
enum class AddressProblem {
  None,
  Syntax,          // not a RFC 5321 Path / Mailbox (501 5.1.7 sender, 501 5.1.3 recipient)
  TooLong,         // local part > 64, domain > 255, path > 256 (553 5.1.3)
  NeedsSmtpUtf8,   // a byte >= 0x80 without SMTPUTF8 on MAIL (553 5.6.7)
  MissingDomain,   // a recipient without "@domain" (553 5.1.3)
};

/// The checked content of a path: the mailbox with any source route removed.
struct PathCheck {
  AddressProblem problem = AddressProblem::None;
  std::string mailbox;  // empty for the null sender
  bool ok() const { return problem == AddressProblem::None; }
};

/// Address validation for the SMTP envelope: RFC 5321 §4.1.2 (Path,
/// Mailbox, Local-part as Dot-string or Quoted-string, Domain, address
/// literals of §4.1.3), the length limits of §4.5.3.1, source routes of
/// §4.1.1.3 / Appendix C (accepted, dropped) and RFC 6531 §3.3 (UTF-8 in
/// addresses only when SMTPUTF8 was declared).
///
/// Pure functions, no state: safe from any thread. Used by the command
/// parser (command.h); the session never sees an address that failed here.
class Address {
 public:
  static constexpr std::size_t kMaxLocalPart = 64;
  static constexpr std::size_t kMaxDomain = 255;
  static constexpr std::size_t kMaxPath = 256;  // with the angle brackets

  /// Checks what stood between `<` and `>` (the brackets not included): an
  /// optional source route, then a mailbox; for a Sender the empty string is
  /// the null sender. `smtputf8` allows UTF-8 (well-formed only).
  static PathCheck checkPath(std::string_view inner, PathRole role, bool smtputf8);

  /// Checks one mailbox (local-part "@" domain, no route, no brackets).
  static AddressProblem checkMailbox(std::string_view mailbox, PathRole role, bool smtputf8);

  /// A domain name or address literal as in RFC 5321 §4.1.2 (U-labels when
  /// `smtputf8`). Not a length check beyond the 63-octet label limit.
  static bool isDomain(std::string_view domain, bool smtputf8);

  /// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3).
  static bool isAddressLiteral(std::string_view literal);

  /// The generic reply for a problem (never echoes the address).
  static Reply replyFor(AddressProblem problem, PathRole role);
};

}  // namespace mb::smtp
