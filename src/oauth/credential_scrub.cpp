#include "oauth/credential_scrub.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "oauth/encoding.h"

namespace mb::oauth {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMinRedactable = 4;
constexpr std::string_view kMark = "[redacted]";

}  // namespace

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

void redact(std::string& text, std::string_view credential) {
  if (credential.size() < kMinRedactable) return;
  // The search goes on after the mark, so that a credential that is part of
  // the mark itself ("dact") cannot make it loop.
  for (std::size_t pos = text.find(credential); pos != std::string::npos;
       pos = text.find(credential, pos + kMark.size())) {
    text.replace(pos, credential.size(), kMark);
  }
}

// ---- CredentialScrubber -----------------------------------------------------

CredentialScrubber::~CredentialScrubber() {
  for (auto& s : spellings_) wipe(s);
}

void CredentialScrubber::add(std::string_view credential) {
  addSpelling(std::string(credential));
  addSpelling(percentEncode(credential));
  // Bad UTF-8 is replaced rather than thrown about: an echo through JSON
  // would have replaced it the same way.
  json value = std::string(credential);
  std::string quoted = value.dump(-1, ' ', false, json::error_handler_t::replace);
  wipe(value.get_ref<std::string&>());
  addSpelling(quoted.substr(1, quoted.size() - 2));
  wipe(quoted);
  std::stable_sort(spellings_.begin(), spellings_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

void CredentialScrubber::apply(std::string& text) const {
  for (const auto& spelling : spellings_) redact(text, spelling);
}

void CredentialScrubber::addSpelling(std::string spelling) {
  if (spelling.empty() ||
      std::find(spellings_.begin(), spellings_.end(), spelling) != spellings_.end()) {
    wipe(spelling);
    return;
  }
  spellings_.push_back(std::move(spelling));
}

}  // namespace mb::oauth
