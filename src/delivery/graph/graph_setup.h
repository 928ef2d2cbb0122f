#pragma once

#include <memory>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "http/curl_client.h"
#include "oauth/client_certificate.h"
#include "oauth/token_source.h"

namespace mb::delivery::graph {

/// How a `type: graph` provider gets its tokens, built from its
/// configuration: one place for the daemon (app/) and the administrator
/// commands (check-provider, test-send), so that both ask Entra ID exactly
/// the same way.
struct GraphCredentials {
  std::unique_ptr<oauth::TokenFetcher> fetcher;               // EntraClientCredentials
  std::shared_ptr<const oauth::ClientCertificate> certificate;  // null with a client secret
};

/// The HTTP client options of a Graph provider (its CA file and proxy).
http::CurlClient::Options graphHttpOptions(const config::ProviderConfig& provider);

/// A client-credentials fetcher for `provider`: with its certificate (PEM or
/// PKCS#12) when one is configured, else with its client secret. A
/// certificate that does not load is an error naming the provider.
/// `http` and `clock` must outlive the fetcher.
Result<GraphCredentials> makeGraphCredentials(const config::ProviderConfig& provider,
                                              http::HttpClient& http, const Clock& clock);

}  // namespace mb::delivery::graph
