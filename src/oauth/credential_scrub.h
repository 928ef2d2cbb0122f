#pragma once

#include <string>
#include <string_view>

namespace mb::oauth {

/// Keeping credentials (client secrets, assertions, tokens) out of memory
/// once used and out of text that may reach a log: what every fetcher does
/// with its request body and with whatever came back. Pure functions over
/// their arguments; thread-safe.

/// Overwrites the string's bytes (OPENSSL_cleanse, which the compiler may
/// not drop) and empties it.
void wipe(std::string& s);

/// Replaces every occurrence of `credential` in `text` with "[redacted]".
/// Credentials shorter than 4 characters are not searched for: a one-letter
/// "secret" would blank out every such letter, and leaking it would hardly
/// matter.
void redact(std::string& text, std::string_view credential);

}  // namespace mb::oauth
