#include "oauth/user_token_sources.h"

#include "base/text.h"
#include "oauth/cached_token_source.h"

namespace mb::oauth {

UserTokenSources::UserTokenSources(std::shared_ptr<TokenCache> cache, FetcherFactory make)
    : cache_(std::move(cache)), make_(std::move(make)) {}

std::shared_ptr<TokenSource> UserTokenSources::forUser(const std::string& user) {
  if (user.empty()) return nullptr;
  std::lock_guard lock(mutex_);
  auto& source = sources_[asciiLower(user)];
  if (!source) source = std::make_shared<CachedTokenSource>(cache_, make_(user));
  return source;
}

}  // namespace mb::oauth
