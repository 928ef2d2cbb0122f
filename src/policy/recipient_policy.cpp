#include "policy/recipient_policy.h"

#include <algorithm>
#include <utility>

#include "base/text.h"

namespace mb::policy {
namespace {

constexpr std::size_t kMaxDomain = 253;
constexpr std::size_t kMaxLabel = 63;

Error bad(std::string_view domain, std::string_view why) {
  return Error{"invalid domain '" + printable(domain, 64) + "': " + std::string(why), 0};
}

bool isLabelChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         u >= 0x80;
}

}  // namespace

RecipientPolicy::RecipientPolicy(config::RecipientConfig config) : config_(std::move(config)) {}

bool RecipientPolicy::allowed(std::string_view rcpt, const config::UserConfig* user) const {
  const std::vector<std::string>* list = nullptr;
  if (user != nullptr && !user->allowed_recipient_domains.empty()) {
    list = &user->allowed_recipient_domains;
  } else if (!config_.allowed_domains.empty()) {
    list = &config_.allowed_domains;
  }
  if (list == nullptr) return true;
  return domainIn(domainOf(rcpt), *list);
}

Status RecipientPolicy::validateDomain(std::string_view domain) {
  if (domain.empty()) return bad(domain, "empty");
  if (domain.front() == '@') return bad(domain, "write the domain without '@'");
  if (domain.find('@') != std::string_view::npos) {
    return bad(domain, "expected a domain such as example.com, not an address");
  }
  if (domain.size() > kMaxDomain) return bad(domain, "longer than 253 characters");
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = domain.find('.', start);
    const std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return bad(domain, "empty label (two dots, or a dot at an end)");
    if (label.size() > kMaxLabel) return bad(domain, "a label is longer than 63 characters");
    if (!std::all_of(label.begin(), label.end(), isLabelChar)) {
      return bad(domain, "only letters, digits, '-' and '.' are allowed");
    }
    if (label.front() == '-' || label.back() == '-') {
      return bad(domain, "a label may not start or end with '-'");
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return {};
}

std::string_view RecipientPolicy::domainOf(std::string_view address) {
  const std::size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

bool RecipientPolicy::domainIn(std::string_view domain, const std::vector<std::string>& domains) {
  if (domain.empty()) return false;
  return std::any_of(domains.begin(), domains.end(),
                     [&](const std::string& d) { return iequals(d, domain); });
}

}  // namespace mb::policy
