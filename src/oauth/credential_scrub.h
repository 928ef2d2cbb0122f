#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mb::oauth {

/// Keeping credentials (client secrets, assertions, passwords, device codes,
/// tokens) out of memory once used and out of text that may reach a log:
/// what every fetcher does with its request body and with whatever came back
/// (token_request.h does it for all of them). wipe() and redact() are pure
/// functions over their arguments; thread-safe.

/// Overwrites the string's bytes (OPENSSL_cleanse, which the compiler may
/// not drop) and empties it.
void wipe(std::string& s);

/// Replaces every occurrence of `credential` in `text` with "[redacted]".
/// Credentials shorter than 4 characters are not searched for: a one-letter
/// "secret" would blank out every such letter, and leaking it would hardly
/// matter.
void redact(std::string& text, std::string_view credential);

/// CredentialScrubber: the credentials of one token request in every
/// spelling an echo of the request could show (a proxy's error page, a
/// transport message): raw, percent-encoded as the form body carried it
/// (encoding.h), and as a JSON string holds it. apply() redacts them all,
/// longest first so that a spelling holding another is found whole; each
/// spelling goes through redact(), so short ones are not searched for.
/// Holds copies, wiped when it goes.
///
/// Threading: add() and apply() on one object from one thread at a time;
/// apply() alone is const and may run concurrently.
class CredentialScrubber {
 public:
  CredentialScrubber() = default;
  CredentialScrubber(const CredentialScrubber&) = delete;
  CredentialScrubber& operator=(const CredentialScrubber&) = delete;
  ~CredentialScrubber();

  /// Adds `credential` in each of its spellings (each one once).
  void add(std::string_view credential);

  /// Redacts every spelling added so far from `text`.
  void apply(std::string& text) const;

 private:
  void addSpelling(std::string spelling);

  std::vector<std::string> spellings_;  // longest first
};

}  // namespace mb::oauth
