#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "config/secret.h"
#include "http/http_client.h"
#include "oauth/client_certificate.h"
#include "oauth/token_response.h"  // parseTokenResponse, jsonSeconds: once declared here
#include "oauth/token_source.h"

namespace mb::oauth {

/// Where and as whom EntraClientCredentials asks for tokens. The endpoints
/// select the cloud (docs: National clouds): global login.microsoftonline.com
/// + graph.microsoft.com, US Government login.microsoftonline.us +
/// graph.microsoft.us (or dod-graph.microsoft.us), China
/// login.chinacloudapi.cn + microsoftgraph.chinacloudapi.cn.
struct EntraOptions {
  std::string login_endpoint = "https://login.microsoftonline.com";
  std::string graph_endpoint = "https://graph.microsoft.com";
  std::string scope;      // empty: "{graph_endpoint}/.default"
  std::string tenant;     // directory (tenant) id or a verified domain
  std::string client_id;  // application (client) id
  std::chrono::milliseconds timeout{30000};
};

/// EntraClientCredentials: gets app-only tokens from the Microsoft identity
/// platform with the OAuth 2.0 client credentials grant (RFC 6749 §4.4):
/// POST {login_endpoint}/{tenant}/oauth2/v2.0/token with a form body
/// (client_id, scope, grant_type=client_credentials) and either the client
/// secret or a client assertion signed with the app's certificate
/// (RFC 7523 §2.2, see client_assertion.h).
///
/// Talks to the identity platform through http::HttpClient; reads time from
/// the injected Clock (the assertion's nbf/exp and the token's expires_at).
/// No cache: wrap it in a CachedTokenSource. Failures are classified by
/// token_error.h and logged once per request, without the secret, the
/// assertion or the token; explanations are scrubbed of the credential too,
/// in case something between us and Microsoft echoes the request.
///
/// Threading: fetch() blocks for one HTTP request and may be called from
/// several threads at once (the cache calls it from one at a time).
class EntraClientCredentials final : public TokenFetcher {
 public:
  EntraClientCredentials(EntraOptions options, config::Secret client_secret, http::HttpClient& http,
                         const Clock& clock);
  EntraClientCredentials(EntraOptions options, std::shared_ptr<const ClientCertificate> cert,
                         http::HttpClient& http, const Clock& clock);

  // TokenFetcher
  TokenResult fetch() override;
  std::string cacheKey() const override;

  /// {login_endpoint}/{tenant}/oauth2/v2.0/token; also the assertion's aud.
  const std::string& tokenUrl() const { return token_url_; }
  const std::string& scope() const { return scope_; }

 private:
  using Credential = std::variant<config::Secret, std::shared_ptr<const ClientCertificate>>;

  EntraClientCredentials(EntraOptions options, Credential credential, http::HttpClient& http,
                         const Clock& clock);
  TokenResult fail(TokenFailure failure) const;  // logs it

  EntraOptions options_;
  Credential credential_;
  http::HttpClient& http_;
  const Clock& clock_;
  std::string token_url_;
  std::string scope_;
};

/// {login_endpoint}/{tenant}/oauth2/v2.0/token, a trailing '/' on the
/// endpoint ignored and the tenant percent-encoded as a path segment.
std::string entraTokenUrl(std::string_view login_endpoint, std::string_view tenant);

}  // namespace mb::oauth
