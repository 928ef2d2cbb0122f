#include "oauth/cached_token_source.h"

#include <utility>

namespace mb::oauth {

CachedTokenSource::CachedTokenSource(std::shared_ptr<TokenCache> cache,
                                     std::unique_ptr<TokenFetcher> fetcher)
    : cache_(std::move(cache)), fetcher_(std::move(fetcher)), key_(fetcher_->cacheKey()) {}

TokenResult CachedTokenSource::token() {
  return cache_->get(key_, *fetcher_);
}

std::optional<AccessToken> CachedTokenSource::cached() {
  return cache_->fresh(key_);
}

void CachedTokenSource::invalidate(const std::string& value) {
  cache_->invalidate(key_, value);
}

}  // namespace mb::oauth
