#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "http/http_client.h"
#include "oauth/token_source.h"

namespace mb::oauth {

/// The error body of the Microsoft identity platform's token endpoint
/// (RFC 6749 §5.2 plus Microsoft's fields):
///   {"error":"invalid_client","error_description":"AADSTS7000215: ...",
///    "error_codes":[7000215],"timestamp":"2026-01-09 02:02:12Z",
///    "trace_id":"<guid>","correlation_id":"<guid>", ...}
/// Fields that are missing or of another type stay empty; all but
/// error_description (raw, cut at 4 KiB) are made printable (base/text.h). `json` is false
/// when the body was not a JSON object at all (an HTML page from a proxy, an
/// empty body); `snippet` then holds the start of it, made printable.
/// When `error_codes` is missing, codes are taken from "AADSTSnnnn" in the
/// description.
struct TokenErrorBody {
  bool json = false;
  std::string error;
  std::string error_description;
  std::vector<long> error_codes;
  std::string trace_id;
  std::string correlation_id;
  std::string timestamp;
  std::string snippet;  // non-JSON bodies only

  bool hasCode(long code) const;
};

/// Never fails: whatever `body` holds gives a TokenErrorBody.
TokenErrorBody parseTokenErrorBody(std::string_view body);

/// True when the same request may succeed later by itself: HTTP 5xx, 429 or
/// 408, `temporarily_unavailable`, AADSTS50033 (retry on a transient error)
/// or AADSTS90024 (request timeout / throttling at the service).
bool isRetryableTokenError(long http_status, const TokenErrorBody& body);

/// What an administrator should do about the error, in one line: the cause in
/// plain words for the AADSTS codes we know (wrong or expired secret, unknown
/// app or tenant, missing consent, bad certificate assertion, clock skew; for
/// delegated grants wrong password, MFA, unknown, locked or disabled user,
/// expired password, expired, revoked or invalid refresh token, device code
/// pending, declined or expired), else the identity platform's own
/// description; followed by the code, HTTP status, trace id and correlation
/// id, which Microsoft support asks for. Built only from the response, which
/// never echoes the credential.
std::string explainTokenError(long http_status, const TokenErrorBody& body);

/// A refused token request (any non-2xx response) as a TokenFailure.
TokenFailure classifyTokenResponse(const http::Response& response);

/// The same with `body` already parsed from the response (by
/// postTokenRequest, token_request.h, after scrubbing it): the identity
/// platform's RefusalClassifier.
TokenFailure classifyTokenError(const http::Response& response, const TokenErrorBody& body);

/// No response at all: always retryable. `endpoint` names where we tried.
TokenFailure classifyTransportError(const http::TransportError& error, std::string_view endpoint);

}  // namespace mb::oauth
