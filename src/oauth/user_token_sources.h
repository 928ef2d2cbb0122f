#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "oauth/token_source.h"

namespace mb::oauth {

class TokenCache;

/// UserTokenSources: one TokenSource per user, for providers whose tokens
/// are per sending user (Gmail's service account acting as each user,
/// Graph's user_password mode). The first request for a user makes its
/// fetcher with `make` and puts it behind the shared TokenCache; later ones
/// get the same source. Users compare case-insensitively (ASCII).
///
/// Threading: forUser() from any thread.
class UserTokenSources {
 public:
  using FetcherFactory = std::function<std::unique_ptr<TokenFetcher>(const std::string& user)>;

  UserTokenSources(std::shared_ptr<TokenCache> cache, FetcherFactory make);

  /// nullptr for an empty user.
  std::shared_ptr<TokenSource> forUser(const std::string& user);

 private:
  const std::shared_ptr<TokenCache> cache_;
  const FetcherFactory make_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<TokenSource>> sources_;  // lower-cased user
};

}  // namespace mb::oauth
