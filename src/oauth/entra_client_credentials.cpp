#include "oauth/entra_client_credentials.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "base/text.h"
#include "oauth/client_assertion.h"
#include "oauth/credential_scrub.h"
#include "oauth/encoding.h"
#include "oauth/token_error.h"
#include "oauth/token_response.h"

namespace mb::oauth {
namespace {

using json = nlohmann::json;

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

std::vector<std::string> EntraClientCredentials::credentialForms(
    const std::string& assertion) const {
  std::vector<std::string> out;
  if (const auto* secret = std::get_if<config::Secret>(&credential_)) {
    const std::string& value = secret->reveal();
    out.push_back(value);
    out.push_back(percentEncode(value));
    // As a JSON string holds it (quotes, backslashes, control characters).
    std::string quoted = json(value).dump(-1, ' ', false, json::error_handler_t::replace);
    out.push_back(quoted.substr(1, quoted.size() - 2));
  }
  if (!assertion.empty()) out.push_back(assertion);
  return out;
}

TokenResult EntraClientCredentials::fail(TokenFailure failure,
                                         const std::vector<std::string>& credentials) const {
  for (const auto& c : credentials) redact(failure.explanation, c);
  spdlog::warn("oauth: token request for client {} in tenant {} failed ({}): {}",
               printable(options_.client_id, 64), printable(options_.tenant, 128),
               failure.retryable ? "will retry" : "needs an administrator", failure.explanation);
  return failure;
}

TokenResult EntraClientCredentials::fetch() {
  const auto requested_at = clock_.wallNow();

  std::vector<std::pair<std::string, std::string>> fields = {
      {"client_id", options_.client_id},
      {"scope", scope_},
      {"grant_type", "client_credentials"},
  };
  std::string assertion;
  if (const auto* secret = std::get_if<config::Secret>(&credential_)) {
    fields.emplace_back("client_secret", secret->reveal());
  } else {
    const auto& cert = std::get<std::shared_ptr<const ClientCertificate>>(credential_);
    auto signed_jwt = makeClientAssertion(*cert, options_.client_id, token_url_, requested_at);
    if (!signed_jwt) {
      TokenFailure failure;
      failure.retryable = false;
      failure.explanation = "cannot sign the client assertion with the certificate (" +
                            cert->describe() + "): " + signed_jwt.error().message;
      return fail(std::move(failure), {});
    }
    assertion = std::move(signed_jwt).value();
    fields.emplace_back("client_assertion_type", std::string(kAssertionType));
    fields.emplace_back("client_assertion", assertion);
  }

  http::Request request;
  request.method = "POST";
  request.url = token_url_;
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                     {"Accept", "application/json"}};
  request.body = formEncode(fields);
  request.timeout = options_.timeout;
  for (auto& field : fields) wipe(field.second);

  http::Outcome outcome = http_.perform(request);
  wipe(request.body);

  // Nothing Microsoft sends contains the credential, but a proxy's error page
  // might quote the request it refused: what came back is scrubbed before it
  // is cut to length for the explanation (a cut would hide half a secret
  // from the search), and the explanation once more after.
  std::vector<std::string> credentials = credentialForms(assertion);
  wipe(assertion);
  std::optional<TokenFailure> refused;
  if (auto* error = std::get_if<http::TransportError>(&outcome)) {
    for (const auto& c : credentials) redact(error->message, c);
    refused = classifyTransportError(*error, token_url_);
  } else if (auto& response = std::get<http::Response>(outcome);
             response.status < 200 || response.status > 299) {
    for (const auto& c : credentials) redact(response.body, c);
    refused = classifyTokenResponse(response);
  }
  std::optional<TokenResult> failed;
  if (refused) failed = fail(std::move(*refused), credentials);
  for (auto& c : credentials) wipe(c);
  if (failed) return std::move(*failed);

  auto& response = std::get<http::Response>(outcome);
  TokenResult result = parseTokenResponse(response.body, requested_at);
  wipe(response.body);  // it holds the token
  if (!result) return fail(result.failure(), {});
  spdlog::debug(
      "oauth: new token for client {} in tenant {}, valid for {} s",
      printable(options_.client_id, 64), printable(options_.tenant, 128),
      std::chrono::duration_cast<std::chrono::seconds>(result->expires_at - requested_at).count());
  return result;
}

}  // namespace mb::oauth
