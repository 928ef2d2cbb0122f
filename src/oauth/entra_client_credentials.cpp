#include "oauth/entra_client_credentials.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "base/text.h"
#include "oauth/client_assertion.h"
#include "oauth/encoding.h"
#include "oauth/token_error.h"
#include "oauth/token_request.h"

namespace mb::oauth {
namespace {

constexpr std::string_view kAssertionType =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

std::string withoutTrailingSlash(std::string_view s) {
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

std::string entraTokenUrl(std::string_view login_endpoint, std::string_view tenant) {
  return withoutTrailingSlash(login_endpoint) + "/" + percentEncode(tenant) + "/oauth2/v2.0/token";
}

EntraClientCredentials::EntraClientCredentials(EntraOptions options, config::Secret client_secret,
                                               http::HttpClient& http, const Clock& clock)
    : EntraClientCredentials(std::move(options), Credential(std::move(client_secret)), http,
                             clock) {}

EntraClientCredentials::EntraClientCredentials(EntraOptions options,
                                               std::shared_ptr<const ClientCertificate> cert,
                                               http::HttpClient& http, const Clock& clock)
    : EntraClientCredentials(std::move(options), Credential(std::move(cert)), http, clock) {}

EntraClientCredentials::EntraClientCredentials(EntraOptions options, Credential credential,
                                               http::HttpClient& http, const Clock& clock)
    : options_(std::move(options)),
      credential_(std::move(credential)),
      http_(http),
      clock_(clock),
      token_url_(entraTokenUrl(options_.login_endpoint, options_.tenant)),
      scope_(options_.scope.empty() ? withoutTrailingSlash(options_.graph_endpoint) + "/.default"
                                    : options_.scope) {}

std::string EntraClientCredentials::cacheKey() const {
  return "entra " + token_url_ + " client=" + options_.client_id + " scope=" + scope_;
}

TokenResult EntraClientCredentials::fail(TokenFailure failure) const {
  spdlog::warn("oauth: token request for client {} in tenant {} failed ({}): {}",
               printable(options_.client_id, 64), printable(options_.tenant, 128),
               failure.retryable ? "will retry" : "needs an administrator", failure.explanation);
  return failure;
}

TokenResult EntraClientCredentials::fetch() {
  const auto requested_at = clock_.wallNow();

  // Nothing Microsoft sends contains the credential, but a proxy's error page
  // might quote the request it refused.
  CredentialScrubber scrubber;
  std::vector<std::pair<std::string, std::string>> fields = {
      {"client_id", options_.client_id},
      {"scope", scope_},
      {"grant_type", "client_credentials"},
  };
  if (const auto* secret = std::get_if<config::Secret>(&credential_)) {
    fields.emplace_back("client_secret", secret->reveal());
    scrubber.add(secret->reveal());
  } else {
    const auto& cert = std::get<std::shared_ptr<const ClientCertificate>>(credential_);
    auto signed_jwt = makeClientAssertion(*cert, options_.client_id, token_url_, requested_at);
    if (!signed_jwt) {
      TokenFailure failure;
      failure.retryable = false;
      failure.explanation = "cannot sign the client assertion with the certificate (" +
                            cert->describe() + "): " + signed_jwt.error().message;
      return fail(std::move(failure));
    }
    std::string assertion = std::move(signed_jwt).value();
    scrubber.add(assertion);
    fields.emplace_back("client_assertion_type", std::string(kAssertionType));
    fields.emplace_back("client_assertion", std::move(assertion));
  }

  TokenResult result = requestAccessToken(http_, {token_url_, std::move(fields), options_.timeout},
                                          scrubber, classifyTokenError, requested_at);
  if (!result) return fail(result.failure());
  spdlog::debug(
      "oauth: new token for client {} in tenant {}, valid for {} s",
      printable(options_.client_id, 64), printable(options_.tenant, 128),
      std::chrono::duration_cast<std::chrono::seconds>(result->expires_at - requested_at).count());
  return result;
}

}  // namespace mb::oauth
