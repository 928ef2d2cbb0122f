#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace mb::policy {

/// RouteRules: which provider delivers a message, from `routes:`. The rules
/// are tried in order and the first whose conditions all hold wins:
///   from       the sending mailbox matches one pattern (an address, or
///              "@domain" for exactly that domain; SenderPolicy::matches);
///   user       the SMTP AUTH user is one of these names (exactly);
///   listener   the message came in on one of these listeners;
///   to_domain  every recipient of the attempt is in one of these domains
///              (without subdomains, any case); a message with recipients
///              elsewhere too does not match.
/// A rule without conditions matches everything. No rule matching: the
/// caller's default (the first provider).
///
/// Immutable after construction: safe from any thread.
class RouteRules {
 public:
  explicit RouteRules(std::vector<config::RouteConfig> routes);

  struct Choice {
    std::string provider;             // empty: no rule matched
    std::optional<std::size_t> rule;  // index into routes:, when one matched
  };

  Choice choose(std::string_view mailbox, std::string_view user, std::string_view listener,
                const std::vector<std::string>& recipients) const;

  bool empty() const { return routes_.empty(); }

 private:
  std::vector<config::RouteConfig> routes_;
};

}  // namespace mb::policy
