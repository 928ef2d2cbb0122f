#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/config.h"

namespace mb::policy {

/// RecipientPolicy: which RCPT TO domains a client may send to. The
/// authenticated user's `allowed_recipient_domains` if it has any, else the
/// global `recipients.allowed_domains` if any, else every domain. Domains
/// match exactly (no subdomains), without regard to ASCII case. A recipient
/// refused here gets 550 5.7.1 from the server.
///
/// Also holds the domain rules the configuration loader and SenderPolicy
/// share. Immutable after construction: safe from any thread.
class RecipientPolicy {
 public:
  explicit RecipientPolicy(config::RecipientConfig config);

  /// `rcpt` is the mailbox from RCPT TO (local@domain, no brackets); `user`
  /// the authenticated user or nullptr. A recipient without a domain is
  /// refused whenever a list applies.
  bool allowed(std::string_view rcpt, const config::UserConfig* user) const;

  /// A domain name as written in the configuration: dot-separated labels of
  /// letters, digits and '-' (bytes >= 0x80 too, for U-labels), 1 to 63
  /// octets each, not starting or ending in '-', at most 253 in all. The
  /// error message quotes the domain and says what is wrong.
  static Status validateDomain(std::string_view domain);

  /// What follows the last '@' of `address`; empty when there is none.
  static std::string_view domainOf(std::string_view address);

  /// Whether `domain` is one of `domains` (ASCII case-insensitive, exact).
  static bool domainIn(std::string_view domain, const std::vector<std::string>& domains);

 private:
  config::RecipientConfig config_;
};

}  // namespace mb::policy
