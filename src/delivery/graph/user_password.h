#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/clock.h"
#include "config/config.h"
#include "http/http_client.h"

namespace mb::oauth {
class RefreshTokenStore;
class TokenCache;
class TokenSource;
class UserTokenSources;
}  // namespace mb::oauth

namespace mb::delivery::graph {

/// UserPasswordSignIn: a graph provider with `auth_mode: user_password`,
/// where each device signs in over SMTP AUTH with its own Entra ID account.
///
/// verify() checks AUTH credentials with the identity platform's password
/// grant (RFC 6749 §4.3; delegated Mail.Send, Mail.ReadWrite and
/// offline_access). The refresh token that comes back goes, encrypted, into
/// the RefreshTokenStore under (provider, user), so that a delivery — maybe
/// hours later, after a restart — gets its token from it without the
/// password: the password itself is never stored. A success is remembered
/// for the life of the access token under a key made of the user and a
/// keyed hash of the password (oauth::EntraPasswordGrant::cacheKey), so a
/// device that signs in for every message costs one request an hour, and a
/// wrong password never matches a remembered right one.
///
/// tokensFor() gives the TokenSource for one user's deliveries: the
/// refresh-token grant over that store, behind the shared TokenCache.
///
/// Threading: verify() blocks for an HTTP request and may run on several
/// threads at once (the SMTP verification pool); tokensFor() from any
/// thread.
class UserPasswordSignIn {
 public:
  enum class Verdict { Ok, Refused, Unavailable };

  UserPasswordSignIn(config::ProviderConfig provider, http::HttpClient& http, const Clock& clock,
                     std::shared_ptr<oauth::RefreshTokenStore> store, std::shared_ptr<oauth::TokenCache> cache);
  ~UserPasswordSignIn();

  Verdict verify(const std::string& user, const std::string& password);

  std::shared_ptr<oauth::TokenSource> tokensFor(const std::string& user);

 private:
  const config::ProviderConfig provider_;
  http::HttpClient& http_;
  const Clock& clock_;
  const std::shared_ptr<oauth::RefreshTokenStore> store_;
  const std::shared_ptr<oauth::TokenCache> cache_;

  std::unique_ptr<oauth::UserTokenSources> sources_;

  std::mutex mutex_;
  std::map<std::string, Clock::WallTime> verified_;  // cache key -> until
};

}  // namespace mb::delivery::graph
