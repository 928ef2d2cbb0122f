#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "base/result.h"

namespace mb::oauth {

/// An OAuth2 access token as a provider puts it in an Authorization header.
/// `value` is a credential: it must never reach a log line or an error text.
struct AccessToken {
  std::string value;
  std::chrono::system_clock::time_point expires_at;
};

/// Why no token could be had. For administrators (logs, admin UI), never for
/// SMTP clients.
///
/// `retryable`: the same request may succeed later without anyone changing
/// anything (5xx, throttling, `temporarily_unavailable`, a network problem).
/// Otherwise the failure is permanent until an administrator acts (wrong or
/// expired secret, unknown tenant ...). Permanent here says nothing about the
/// mail: a provider should defer, not bounce, when its credentials are broken.
struct TokenFailure {
  bool retryable = true;
  std::string explanation;  // what went wrong and what to do; may hold AADSTS code and trace id
  long http_status = 0;     // 0 when no response arrived
  std::string error;        // OAuth `error` ("invalid_client"), if the answer had one
  long error_code = 0;      // first AADSTS code, 0 if none
  std::optional<std::chrono::seconds> retry_after;  // from a Retry-After header, if any
};

/// GrantResult<T>: a T or a TokenFailure (base's BasicResult with room for
/// `retryable`). TokenResult is the one for an access token; the delegated
/// grants use it for what else they return. failure() names error().
template <typename T>
class [[nodiscard]] GrantResult : public BasicResult<T, TokenFailure> {
 public:
  using BasicResult<T, TokenFailure>::BasicResult;
  const TokenFailure& failure() const { return this->error(); }
};

using TokenResult = GrantResult<AccessToken>;

/// TokenSource: where a provider (delivery/graph, delivery/smtp with XOAUTH2)
/// gets the bearer token for its requests. Implementations cache tokens and
/// refresh them ahead of expiry (see CachedTokenSource).
///
/// Threading: token() blocks its caller (possibly for a whole HTTP request)
/// and may be called from any number of worker threads at once; never call it
/// from an I/O thread. invalidate() may be called from any thread.
class TokenSource {
 public:
  virtual ~TokenSource() = default;

  /// A token valid for a while yet, from the cache or freshly fetched.
  virtual TokenResult token() = 0;

  /// The token token() would return at once, without a request and without
  /// waiting for one: the cached token while it is fresh (not yet due for
  /// refresh). nullopt otherwise — then token(), on a thread that may block.
  /// Never blocks; callable from any thread, I/O threads included.
  virtual std::optional<AccessToken> cached() { return std::nullopt; }

  /// The resource server refused `value` (Graph 401 InvalidAuthenticationToken):
  /// if it is still the cached token, drop it so that the next token() fetches
  /// anew. A provider calls this once, fetches once more and retries once.
  virtual void invalidate(const std::string& value) = 0;
};

/// TokenFetcher: one request for a fresh token, nothing cached. What a
/// CachedTokenSource wraps; implemented per grant (EntraClientCredentials ...).
///
/// Threading: fetch() blocks; the cache calls it for one key from one thread
/// at a time, but fetchers for different keys run concurrently.
class TokenFetcher {
 public:
  virtual ~TokenFetcher() = default;

  virtual TokenResult fetch() = 0;

  /// Identifies the token this fetcher gets: equal keys mean interchangeable
  /// tokens (same authority, tenant, client, scope, and later user).
  virtual std::string cacheKey() const = 0;
};

}  // namespace mb::oauth
