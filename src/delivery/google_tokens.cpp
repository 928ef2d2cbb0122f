#include "delivery/google_tokens.h"

#include "base/log.h"
#include "oauth/google_service_account.h"
#include "oauth/user_token_sources.h"

namespace mb::delivery {

Result<UserTokenSelector> googleUserTokens(const config::ProviderConfig& p, http::HttpClient& http,
                                           std::shared_ptr<oauth::TokenCache> cache, const Clock& clock) {
  auto account = oauth::GoogleServiceAccount::fromJsonFile(p.service_account_file);
  if (!account) return Error{"provider " + p.name + ": " + account.error().message};
  spdlog::info("provider {}: service account {}", p.name, (*account)->clientEmail());
  auto sources = std::make_shared<oauth::UserTokenSources>(
      std::move(cache), [account = *account, p, &http, &clock](const std::string& user) {
        return std::make_unique<oauth::GoogleJwtBearer>(account, user, p.scope, http, clock, p.token_uri, p.timeout);
      });
  return UserTokenSelector([sources](const std::string& user) { return sources->forUser(user); });
}

}  // namespace mb::delivery
