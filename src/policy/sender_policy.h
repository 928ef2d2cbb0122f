#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/config.h"

namespace mb::policy {

/// What SenderPolicy decided about one MAIL FROM.
struct SenderDecision {
  bool allowed = false;
  std::string effective_sender;  // the envelope sender to use; empty = null sender <>
  std::string reason;            // for the log; never holds the client's text
  bool overridden = false;       // a sender_override or senders.override decided
};

/// SenderPolicy: decides the envelope sender of a message from the MAIL FROM
/// address, the authenticated user (config::UserConfig, or none) and the
/// global `senders:` rules. In this order:
///  1. the user's `sender_override`, else the global `override`: the
///     sender becomes that address, allowed whatever the client sent;
///  2. the null sender `<>` or an address without "@domain" becomes the
///     global `default` when one is set, else stays as it is;
///  3. the sender (after step 2) must match the user's `allowed_senders` if
///     it has any, else the global `allowed` if any; with neither list, any
///     sender is allowed. A pattern is a whole address (compared without
///     regard to ASCII case) or "@domain" (that domain exactly, no
///     subdomains). The null sender and addresses without a domain match no
///     pattern, so a list refuses them unless `default` replaced them.
/// A refusal gets 550 5.7.1 from the server.
///
/// Immutable after construction: safe from any thread.
class SenderPolicy {
 public:
  explicit SenderPolicy(config::SenderConfig config);

  /// `sender` is the mailbox from MAIL FROM without brackets (empty for
  /// <>); `user` the authenticated user or nullptr.
  SenderDecision decide(std::string_view sender, const config::UserConfig* user) const;

  /// Whether `address` (a From header's, with use_from_header) passes the
  /// list that step 3 would apply to it; with no list, any address does.
  /// `reason` says which list refused it.
  bool allows(std::string_view address, const config::UserConfig* user, std::string* reason = nullptr) const;

  bool useFromHeader() const { return config_.use_from_header; }

  /// A pattern for `allowed` / `allowed_senders`: "local@domain" or
  /// "@domain". The error quotes the pattern and says what is wrong.
  static Status validatePattern(std::string_view pattern);

  /// A whole address for `override`, `default` and `sender_override`.
  static Status validateAddress(std::string_view address);

  /// Whether `sender` matches `pattern` (see above).
  static bool matches(std::string_view sender, std::string_view pattern);

 private:
  // The list step 3 applies for `user` (its allowed_senders, else
  // senders.allowed), named in `name`; nullptr when neither has entries.
  const std::vector<std::string>* listFor(const config::UserConfig* user, std::string& name) const;

  config::SenderConfig config_;
};

}  // namespace mb::policy
