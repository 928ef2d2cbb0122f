#include "delivery/smtp/smtp_setup.h"

#include "base/log.h"
#include "delivery/graph/graph_setup.h"
#include "oauth/cached_token_source.h"
#include "oauth/google_service_account.h"
#include "oauth/token_cache.h"
#include "oauth/user_token_sources.h"

namespace mb::delivery::smtp {

Result<SmtpProvider::TokenSelector> makeSmtpTokenSelector(const config::ProviderConfig& p, http::HttpClient& http,
                                                          std::shared_ptr<oauth::TokenCache> cache,
                                                          const Clock& clock,
                                                          const std::filesystem::path& state_dir) {
  if (p.auth != config::SmtpAuth::XOAuth2) return SmtpProvider::TokenSelector{};
  if (p.oauth == config::SmtpOAuth::Google) {
    auto account = oauth::GoogleServiceAccount::fromJsonFile(p.service_account_file);
    if (!account) return Error{"provider " + p.name + ": " + account.error().message};
    spdlog::info("provider {}: service account {}", p.name, (*account)->clientEmail());
    auto sources = std::make_shared<oauth::UserTokenSources>(
        std::move(cache), [account = *account, p, &http, &clock](const std::string& user) {
          return std::make_unique<oauth::GoogleJwtBearer>(account, user, p.scope, http, clock, p.token_uri,
                                                          p.timeout);
        });
    return SmtpProvider::TokenSelector([sources](const std::string& user) { return sources->forUser(user); });
  }
  // Entra ID asks the same way for Exchange's SMTP as for Graph; only the
  // scope differs (the loader set it).
  auto credentials = graph::makeGraphCredentials(p, http, clock, state_dir);
  if (!credentials) return credentials.error();
  if (credentials->certificate) {
    spdlog::info("provider {}: certificate {}", p.name, credentials->certificate->describe());
  }
  std::shared_ptr<oauth::TokenSource> tokens =
      std::make_shared<oauth::CachedTokenSource>(std::move(cache), std::move(credentials->fetcher));
  return SmtpProvider::TokenSelector([tokens](const std::string&) { return tokens; });
}

}  // namespace mb::delivery::smtp
