#include "policy/sender_policy.h"

#include <algorithm>
#include <utility>

#include "base/text.h"
#include "policy/recipient_policy.h"

namespace mb::policy {
namespace {

constexpr std::size_t kMaxLocalPart = 64;  // RFC 5321 §4.5.3.1.1

// Characters that never appear in an unquoted local part, or that would make
// a pattern ambiguous in the configuration; quoted local parts are not
// supported in patterns.
bool isLocalPartChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x80) return true;
  if (u <= 0x20 || u == 0x7f) return false;
  return std::string_view("<>()[],;:\\\"@").find(c) == std::string_view::npos;
}

Status checkAddress(std::string_view text, std::string_view what) {
  auto fail = [&](std::string_view why) {
    return Error{
        "invalid " + std::string(what) + " '" + printable(text, 64) + "': " + std::string(why), 0};
  };
  const std::size_t at = text.rfind('@');
  if (at == std::string_view::npos) {
    return fail("expected an address such as scanner@example.com");
  }
  const std::string_view local = text.substr(0, at);
  if (local.empty()) return fail("the part before '@' is empty");
  if (local.size() > kMaxLocalPart) return fail("the part before '@' is longer than 64 characters");
  if (!std::all_of(local.begin(), local.end(), isLocalPartChar)) {
    return fail("the part before '@' holds a space, a control character or one of <>()[],;:\\\"@");
  }
  if (Status st = RecipientPolicy::validateDomain(text.substr(at + 1)); !st) {
    return fail(st.error().message);
  }
  return {};
}

}  // namespace

SenderPolicy::SenderPolicy(config::SenderConfig config) : config_(std::move(config)) {}

const std::vector<std::string>* SenderPolicy::listFor(const config::UserConfig* user, std::string& name) const {
  if (user != nullptr && !user->allowed_senders.empty()) {
    name = "allowed_senders of user '" + printable(user->name, 64) + "'";
    return &user->allowed_senders;
  }
  if (!config_.allowed.empty()) {
    name = "senders.allowed";
    return &config_.allowed;
  }
  return nullptr;
}

SenderDecision SenderPolicy::decide(std::string_view sender, const config::UserConfig* user) const {
  SenderDecision d;
  const std::string who = user != nullptr ? "user '" + printable(user->name, 64) + "'"
                                          : std::string("anonymous client");
  if (user != nullptr && !user->sender_override.empty()) {
    d.allowed = true;
    d.effective_sender = user->sender_override;
    d.reason = "sender_override of " + who;
    d.overridden = true;
    return d;
  }
  if (!config_.override_address.empty()) {
    d.allowed = true;
    d.effective_sender = config_.override_address;
    d.reason = "senders.override";
    d.overridden = true;
    return d;
  }

  d.effective_sender = std::string(sender);
  std::string replaced;
  if (RecipientPolicy::domainOf(sender).empty() && !config_.default_address.empty()) {
    d.effective_sender = config_.default_address;
    replaced = sender.empty() ? "null sender replaced by senders.default; "
                              : "sender without a domain replaced by senders.default; ";
  }

  std::string list_name;
  const std::vector<std::string>* list = listFor(user, list_name);
  if (list == nullptr) {
    d.allowed = true;
    d.reason = replaced + "no sender list applies";
    return d;
  }
  const auto hit = std::find_if(list->begin(), list->end(), [&](const std::string& p) {
    return matches(d.effective_sender, p);
  });
  if (hit != list->end()) {
    d.allowed = true;
    d.reason = replaced + "matches '" + printable(*hit, 128) + "' in " + list_name;
    return d;
  }
  d.allowed = false;
  if (d.effective_sender.empty()) {
    d.reason = "null sender, and " + list_name + " applies (set senders.default to replace it)";
  } else if (RecipientPolicy::domainOf(d.effective_sender).empty()) {
    d.reason = "sender without a domain, and " + list_name +
               " applies (set senders.default to replace it)";
  } else {
    d.reason = replaced + "not in " + list_name;
  }
  return d;
}

bool SenderPolicy::allows(std::string_view address, const config::UserConfig* user, std::string* reason) const {
  std::string list_name;
  const std::vector<std::string>* list = listFor(user, list_name);
  if (list == nullptr) return true;
  const bool hit = std::any_of(list->begin(), list->end(), [&](const std::string& p) { return matches(address, p); });
  if (!hit && reason != nullptr) *reason = "not in " + list_name;
  return hit;
}

Status SenderPolicy::validatePattern(std::string_view pattern) {
  if (pattern.empty()) return Error{"invalid sender pattern '': empty", 0};
  if (pattern.front() == '@') {
    if (Status st = RecipientPolicy::validateDomain(pattern.substr(1)); !st) {
      return Error{"invalid sender pattern '" + printable(pattern, 64) + "': " + st.error().message,
                   0};
    }
    return {};
  }
  return checkAddress(pattern, "sender pattern");
}

Status SenderPolicy::validateAddress(std::string_view address) {
  if (address.empty()) return Error{"invalid address '': empty", 0};
  return checkAddress(address, "address");
}

bool SenderPolicy::matches(std::string_view sender, std::string_view pattern) {
  if (pattern.empty()) return false;
  const std::string_view domain = RecipientPolicy::domainOf(sender);
  if (domain.empty()) return false;
  if (pattern.front() == '@') return iequals(domain, pattern.substr(1));
  return iequals(sender, pattern);
}

}  // namespace mb::policy
