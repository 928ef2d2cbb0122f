#include "delivery/smtp/smtp_setup.h"

#include "base/log.h"
#include "delivery/google_tokens.h"
#include "delivery/graph/graph_setup.h"
#include "oauth/cached_token_source.h"
#include "oauth/token_cache.h"

namespace mb::delivery::smtp {

Result<SmtpProvider::TokenSelector> makeSmtpTokenSelector(const config::ProviderConfig& p, http::HttpClient& http,
                                                          std::shared_ptr<oauth::TokenCache> cache,
                                                          const Clock& clock,
                                                          const std::filesystem::path& state_dir) {
  if (p.auth != config::SmtpAuth::XOAuth2) return SmtpProvider::TokenSelector{};
  if (p.oauth == config::SmtpOAuth::Google) return googleUserTokens(p, http, std::move(cache), clock);
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
