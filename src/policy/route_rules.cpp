#include "policy/route_rules.h"

#include <algorithm>

#include "base/text.h"
#include "policy/recipient_policy.h"
#include "policy/sender_policy.h"

namespace mb::policy {
namespace {

bool anyOf(const std::vector<std::string>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

bool allIn(const std::vector<std::string>& domains, const std::vector<std::string>& recipients) {
  if (recipients.empty()) return false;
  return std::all_of(recipients.begin(), recipients.end(), [&](const std::string& rcpt) {
    const std::string_view domain = RecipientPolicy::domainOf(rcpt);
    return std::any_of(domains.begin(), domains.end(), [&](const std::string& d) { return iequals(d, domain); });
  });
}

}  // namespace

RouteRules::RouteRules(std::vector<config::RouteConfig> routes) : routes_(std::move(routes)) {}

RouteRules::Choice RouteRules::choose(std::string_view mailbox, std::string_view user, std::string_view listener,
                                      const std::vector<std::string>& recipients) const {
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const config::RouteConfig& r = routes_[i];
    if (!r.from.empty() && std::none_of(r.from.begin(), r.from.end(), [&](const std::string& p) {
          return SenderPolicy::matches(mailbox, p);
        })) {
      continue;
    }
    if (!r.users.empty() && !anyOf(r.users, user)) continue;
    if (!r.listeners.empty() && !anyOf(r.listeners, listener)) continue;
    if (!r.to_domains.empty() && !allIn(r.to_domains, recipients)) continue;
    return Choice{r.provider, i};
  }
  return Choice{};
}

}  // namespace mb::policy
