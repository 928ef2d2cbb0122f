#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mb::oauth {

/// Encoders for token requests: percent-encoding for form bodies and URL path
/// segments, and base64url for JWTs. Pure functions; thread-safe.

/// RFC 3986 §2.1 percent-encoding: the unreserved characters (ALPHA, DIGIT,
/// '-', '.', '_', '~') pass, every other octet becomes %XX with upper-case
/// hex (space too: %20, which form decoders read as well as '+'). Safe for a
/// value in an application/x-www-form-urlencoded body (a '+', '&' or '=' in a
/// client secret stays data) and for one URL path segment.
std::string percentEncode(std::string_view in);

/// An application/x-www-form-urlencoded body: name=value pairs, both
/// percent-encoded, joined with '&', in the given order.
std::string formEncode(const std::vector<std::pair<std::string, std::string>>& fields);

/// Base64 with padding, no line breaks (RFC 4648 §4): what Graph takes for
/// MIME bodies and contentBytes. Not constant-time: for content, not keys.
std::string base64Encode(std::string_view bytes);

/// Base64url without padding (RFC 4648 §5, RFC 7515 §2): JWTs and Gmail's
/// raw messages. Not constant-time either.
std::string base64UrlEncode(std::string_view bytes);

/// The reverse, through libsodium; nullopt for anything but unpadded
/// base64url.
std::optional<std::string> base64UrlDecode(std::string_view text);

}  // namespace mb::oauth
