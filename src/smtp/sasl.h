#pragma once

#include <string>
#include <string_view>

#include "smtp/server_session.h"

namespace mb::smtp {

/// SASL helpers for AUTH PLAIN and LOGIN (RFC 4954 §4, RFC 4616 §2): the
/// base64 of RFC 4648 §4 and the PLAIN message. The decoder is strict
/// (RFC 4648 §3.3, §3.5): only the alphabet, whole groups of four, padding
/// only at the end, unused bits zero; SMTP has no reason to accept anything
/// else, and a lenient decoder would give two spellings to one credential.
///
/// Pure functions, any thread. ServerSession uses them; the client session
/// will encode with them.

/// `in` as base64, with padding.
std::string encodeBase64(std::string_view in);

/// Decodes `in` into `out` (replacing what it held). Returns false, and
/// leaves `out` wiped and empty, when `in` is not strict base64. The empty
/// string decodes to the empty string.
bool decodeBase64(std::string_view in, std::string& out);

/// Splits a decoded PLAIN message, [authzid] NUL authcid NUL passwd, into
/// `out.authzid`, `out.user` and `out.password`. False when it does not
/// hold exactly two NULs (the fields may be empty; the caller judges that).
bool splitPlainMessage(std::string_view message, AuthRequest& out);

/// Overwrites the bytes of `s` with stores the compiler may not drop, then
/// clears it: for copies of passwords.
void wipe(std::string& s);

}  // namespace mb::smtp
