#include "delivery/graph/user_password.h"

#include "base/log.h"
#include "base/text.h"
#include "delivery/graph/graph_setup.h"
#include "oauth/user_token_sources.h"
#include "oauth/entra_delegated.h"
#include "oauth/refresh_token_store.h"
#include "oauth/token_cache.h"

namespace mb::delivery::graph {

UserPasswordSignIn::UserPasswordSignIn(config::ProviderConfig provider, http::HttpClient& http, const Clock& clock,
                                       std::shared_ptr<oauth::RefreshTokenStore> store,
                                       std::shared_ptr<oauth::TokenCache> cache)
    : provider_(std::move(provider)),
      http_(http),
      clock_(clock),
      store_(std::move(store)),
      cache_(std::move(cache)),
      sources_(std::make_unique<oauth::UserTokenSources>(cache_, [this](const std::string& user) {
        return std::make_unique<oauth::EntraRefreshTokenGrant>(entraOptions(provider_), provider_.name, user, *store_,
                                                               delegatedClientSecret(provider_), http_, clock_);
      })) {}

UserPasswordSignIn::~UserPasswordSignIn() = default;

UserPasswordSignIn::Verdict UserPasswordSignIn::verify(const std::string& user, const std::string& password) {
  if (user.empty() || password.empty()) return Verdict::Refused;
  oauth::EntraPasswordGrant grant(entraOptions(provider_), user,
                                  config::Secret(config::Secret::Source::Inline, "SMTP AUTH", password),
                                  delegatedClientSecret(provider_), http_, clock_);
  const std::string key = grant.cacheKey();
  const auto now = clock_.wallNow();
  {
    std::lock_guard lock(mutex_);
    if (auto it = verified_.find(key); it != verified_.end()) {
      if (it->second > now) return Verdict::Ok;
      verified_.erase(it);
    }
  }
  auto got = grant.fetchTokens();
  if (!got) {
    const oauth::TokenFailure& f = got.failure();
    spdlog::warn("provider {}: Entra ID refused the sign-in of {}: {}", provider_.name, printable(user),
                 f.explanation);
    return f.retryable ? Verdict::Unavailable : Verdict::Refused;
  }
  if (got->refresh_token.empty()) {
    spdlog::error("provider {}: Entra ID signed {} in but issued no refresh token (offline_access not granted); "
                  "the relay could not deliver later",
                  provider_.name, printable(user));
    return Verdict::Refused;
  }
  if (Status st = store_->save(provider_.name, user, got->refresh_token); !st) {
    spdlog::error("provider {}: cannot store the refresh token of {}: {}", provider_.name, printable(user),
                  st.error().message);
    return Verdict::Unavailable;
  }
  std::lock_guard lock(mutex_);
  for (auto it = verified_.begin(); it != verified_.end();) {
    it = it->second <= now ? verified_.erase(it) : std::next(it);
  }
  verified_[key] = got->access.expires_at;
  return Verdict::Ok;
}

std::shared_ptr<oauth::TokenSource> UserPasswordSignIn::tokensFor(const std::string& user) {
  return sources_->forUser(user);
}

}  // namespace mb::delivery::graph
