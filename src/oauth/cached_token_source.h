#pragma once

#include <memory>
#include <string>

#include "oauth/token_cache.h"
#include "oauth/token_source.h"

namespace mb::oauth {

/// CachedTokenSource: the TokenSource a provider is given — one TokenFetcher
/// (EntraClientCredentials ...) behind a TokenCache that may be shared with
/// other sources (same key, same token). See TokenCache for the refresh,
/// single-flight and back-off rules.
///
/// Threading: as TokenSource; token() and invalidate() from any thread.
class CachedTokenSource final : public TokenSource {
 public:
  CachedTokenSource(std::shared_ptr<TokenCache> cache, std::unique_ptr<TokenFetcher> fetcher);

  // TokenSource
  TokenResult token() override;
  std::optional<AccessToken> cached() override;
  void invalidate(const std::string& value) override;

  const std::string& cacheKey() const { return key_; }

 private:
  std::shared_ptr<TokenCache> cache_;
  std::unique_ptr<TokenFetcher> fetcher_;
  const std::string key_;
};

}  // namespace mb::oauth
