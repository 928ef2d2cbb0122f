#include "oauth/credential_scrub.h"

#include <openssl/crypto.h>

namespace mb::oauth {
namespace {

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

}  // namespace mb::oauth
