#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "http/curl_client.h"
#include "oauth/client_certificate.h"
#include "oauth/entra_client_credentials.h"
#include "oauth/token_source.h"

namespace mb::delivery::graph {

/// How a `type: graph` provider gets its tokens, built from its
/// configuration: one place for the daemon (app/) and the administrator
/// commands (check-provider, test-send), so that both ask Entra ID exactly
/// the same way.
struct GraphCredentials {
  std::unique_ptr<oauth::TokenFetcher> fetcher;               // EntraClientCredentials, or
                                                              // EntraRefreshTokenGrant (refresh_token)
  std::shared_ptr<const oauth::ClientCertificate> certificate;  // null with a client secret
};

/// Where delegated providers keep their users' refresh tokens
/// (oauth::FileRefreshTokenStore): `<state_dir>/oauth`.
std::filesystem::path refreshTokenDir(const std::filesystem::path& state_dir);

/// The Entra ID endpoints, tenant, client and scope of `provider`.
oauth::EntraOptions entraOptions(const config::ProviderConfig& provider);

/// The client secret of a delegated provider: none for a public client.
std::optional<config::Secret> delegatedClientSecret(const config::ProviderConfig& provider);

/// The token fetcher for `provider`. auth_mode app: client credentials with
/// its certificate (PEM or PKCS#12) when one is configured, else with its
/// client secret. auth_mode refresh_token: the refresh-token grant for
/// `provider.user`, from the store in refreshTokenDir(state_dir). A
/// certificate that does not load is an error naming the provider.
/// `http` and `clock` must outlive the fetcher.
Result<GraphCredentials> makeGraphCredentials(const config::ProviderConfig& provider,
                                              http::HttpClient& http, const Clock& clock,
                                              const std::filesystem::path& state_dir);

}  // namespace mb::delivery::graph
