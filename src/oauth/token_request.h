#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "http/http_client.h"
#include "oauth/credential_scrub.h"
#include "oauth/token_error.h"
#include "oauth/token_source.h"

namespace mb::oauth {

/// The one way the fetchers (entra_client_credentials.h, entra_delegated.h,
/// google_service_account.h) ask a token endpoint: a form POSTed with
/// credentials in it (RFC 6749 §4.3, §4.4, §6; RFC 7523 §2.1; RFC 8628 §3.1,
/// §3.4), and the answer scrubbed of them and classified.
///
/// postTokenRequest(): the form is encoded and its fields wiped; the POST
/// goes out (Content-Type application/x-www-form-urlencoded, Accept
/// application/json) and its body is wiped. No answer: the transport
/// message is scrubbed and classifyTransportError() explains it. A non-2xx
/// answer: its body is scrubbed before anything reads it (a proxy's error
/// page may quote the request, and an explanation cut to length could hide
/// half a credential from the search), parsed as a TokenErrorBody and
/// classified by the endpoint's RefusalClassifier. Either way the
/// explanation is scrubbed once more. A 2xx answer is handed back as it
/// came; its body holds tokens. Logging stays with the fetcher, which knows
/// whom the token is for.
///
/// Talks to the endpoint through http::HttpClient only. Threading: free
/// functions, as thread-safe as the HttpClient (which must be) and the
/// classifier.

/// One token request. `fields` (name, value, in order) hold credentials:
/// they are wiped once encoded.
struct TokenRequest {
  std::string url;
  std::vector<std::pair<std::string, std::string>> fields;
  std::chrono::milliseconds timeout;
};

/// How an endpoint explains a refused request (non-2xx), from the response
/// and its parsed error body, both already scrubbed: retryable or not, what
/// to do, the OAuth error, Retry-After. The Microsoft identity platform's is
/// classifyTokenError() (token_error.h, AADSTS codes); Google's is
/// GoogleJwtBearer's.
using RefusalClassifier =
    std::function<TokenFailure(const http::Response& response, const TokenErrorBody& body)>;

/// What a token endpoint answered to one request.
struct TokenReply {
  std::optional<http::Response> response;  // a 2xx answer; wipe its body once read
  TokenFailure failure;                    // otherwise: classified and scrubbed
  TokenErrorBody error;                    // a refused request's error body (scrubbed)
};

/// POSTs `request` and scrubs and classifies a failure, as described above.
TokenReply postTokenRequest(http::HttpClient& http, TokenRequest request,
                            const CredentialScrubber& scrubber, const RefusalClassifier& classify);

/// postTokenRequest() for a grant that gives an access token only: a 2xx
/// answer is read by parseTokenResponse() (token_response.h; `requested_at`
/// is when the request went out) and its body wiped.
TokenResult requestAccessToken(http::HttpClient& http, TokenRequest request,
                               const CredentialScrubber& scrubber,
                               const RefusalClassifier& classify,
                               std::chrono::system_clock::time_point requested_at);

}  // namespace mb::oauth
