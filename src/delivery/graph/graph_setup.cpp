#include "delivery/graph/graph_setup.h"

#include "oauth/entra_delegated.h"
#include "oauth/refresh_token_store.h"

namespace mb::delivery::graph {
namespace {

// The refresh-token grant with the store it reads, which it must outlive.
class DelegatedFetcher final : public oauth::TokenFetcher {
 public:
  DelegatedFetcher(const config::ProviderConfig& provider, http::HttpClient& http, const Clock& clock,
                   const std::filesystem::path& state_dir)
      : store_(refreshTokenDir(state_dir)),
        grant_(entraOptions(provider), provider.name, provider.user, store_, delegatedClientSecret(provider), http,
               clock) {}

  // TokenFetcher
  oauth::TokenResult fetch() override { return grant_.fetch(); }
  std::string cacheKey() const override { return grant_.cacheKey(); }

 private:
  oauth::FileRefreshTokenStore store_;
  oauth::EntraRefreshTokenGrant grant_;
};

}  // namespace

std::filesystem::path refreshTokenDir(const std::filesystem::path& state_dir) { return state_dir / "oauth"; }

oauth::EntraOptions entraOptions(const config::ProviderConfig& provider) {
  oauth::EntraOptions entra;
  entra.login_endpoint = provider.login_endpoint;
  entra.graph_endpoint = provider.graph_endpoint;
  entra.tenant = provider.tenant_id;
  entra.client_id = provider.client_id;
  entra.timeout = provider.timeout;  // the provider's one timeout covers token requests too
  entra.scope = provider.scope;
  return entra;
}

std::optional<config::Secret> delegatedClientSecret(const config::ProviderConfig& provider) {
  if (provider.client_secret.empty()) return std::nullopt;
  return provider.client_secret;
}

Result<GraphCredentials> makeGraphCredentials(const config::ProviderConfig& provider, http::HttpClient& http,
                                              const Clock& clock, const std::filesystem::path& state_dir) {
  GraphCredentials out;
  if (provider.auth_mode == config::GraphAuthMode::UserPassword) {
    return Error{"provider " + provider.name +
                 ": auth_mode user_password signs each SMTP AUTH user in with their own password; there is no "
                 "token of the provider's own"};
  }
  if (provider.auth_mode == config::GraphAuthMode::RefreshToken) {
    out.fetcher = std::make_unique<DelegatedFetcher>(provider, http, clock, state_dir);
    return out;
  }
  const oauth::EntraOptions entra = entraOptions(provider);
  if (!provider.cert_file.empty() || !provider.pkcs12_file.empty()) {
    auto cert = provider.pkcs12_file.empty()
                    ? oauth::ClientCertificate::fromPemFiles(provider.cert_file, provider.key_file)
                    : oauth::ClientCertificate::fromPkcs12File(provider.pkcs12_file, provider.pkcs12_password);
    if (!cert) return Error{"provider " + provider.name + ": " + cert.error().message};
    out.certificate = *cert;
    out.fetcher = std::make_unique<oauth::EntraClientCredentials>(entra, out.certificate, http, clock);
  } else {
    out.fetcher = std::make_unique<oauth::EntraClientCredentials>(entra, provider.client_secret, http, clock);
  }
  return out;
}

}  // namespace mb::delivery::graph
