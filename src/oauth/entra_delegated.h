#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "base/clock.h"
#include "base/result.h"
#include "config/secret.h"
#include "http/http_client.h"
#include "oauth/entra_client_credentials.h"
#include "oauth/refresh_token_store.h"
#include "oauth/token_source.h"

namespace mb::oauth {

// Delegated (per-user) tokens from the Microsoft identity platform: the
// mailbox's own user signs in once (`mailbridge oauth login`, by device code
// or with a password), the refresh token is kept in a RefreshTokenStore, and
// the relay refreshes access tokens from it. Three building blocks:
//   EntraPasswordGrant      RFC 6749 §4.3 (ROPC), a TokenFetcher
//   EntraRefreshTokenGrant  RFC 6749 §6, with rotation into the store, a TokenFetcher
//   DeviceCodeFlow          RFC 8628, start() + poll() + run()
// They share EntraOptions with EntraClientCredentials; an empty
// EntraOptions::scope means entraDelegatedScope(), not "/.default".

/// "{graph_endpoint}/Mail.Send offline_access", or options.scope when set.
/// offline_access is what makes the identity platform issue a refresh token.
std::string entraDelegatedScope(const EntraOptions& options);

/// {login_endpoint}/{tenant}/oauth2/v2.0/devicecode (RFC 8628 §3.1).
std::string entraDeviceCodeUrl(std::string_view login_endpoint, std::string_view tenant);

/// What a delegated grant returns besides the access token.
/// `refresh_token` is a credential (long-lived): store it
/// (RefreshTokenStore), never log it. Empty when none was issued (the scope
/// lacked offline_access).
struct DelegatedTokens {
  AccessToken access;
  std::string refresh_token;
  std::string scope;  // the granted scopes as the endpoint listed them (made printable); may be empty
};

using DelegatedResult = GrantResult<DelegatedTokens>;

/// Called with a newly issued refresh token; typically
/// `[&](const std::string& t) { return store.save(provider, user, t); }`.
using RefreshTokenCallback = std::function<Status(const std::string& refresh_token)>;

/// EntraPasswordGrant: delegated tokens for one user with the resource owner
/// password credentials grant (RFC 6749 §4.3): POST
/// {login_endpoint}/{tenant}/oauth2/v2.0/token with client_id, scope,
/// grant_type=password, username, password and, for a confidential client,
/// client_secret. Microsoft discourages this grant and it cannot satisfy MFA
/// or conditional access (AADSTS50076/50079); the device code flow is the
/// alternative. A public client needs "Allow public client flows" on the app
/// registration.
///
/// fetch() hands a refresh token, when one came (scope with offline_access),
/// to the RefreshTokenCallback; fetchTokens() returns it to the caller
/// instead (`mailbridge oauth login --password`).
///
/// cacheKey() holds tenant, client, scope, the lower-cased user and a keyed
/// BLAKE2b hash of the password under a random per-process key: a changed
/// (or wrong) password never shares a cached token with the right one, and
/// the key gives nothing to crack offline. The password, client secret and
/// tokens never reach a log line or an explanation (scrubbed even from error
/// pages that echo the request).
///
/// Threading: fetch() and fetchTokens() block for one HTTP request and may run
/// on several threads at once; the callback may then be called concurrently.
class EntraPasswordGrant final : public TokenFetcher {
 public:
  EntraPasswordGrant(EntraOptions options, std::string username, config::Secret password,
                     std::optional<config::Secret> client_secret, http::HttpClient& http,
                     const Clock& clock, RefreshTokenCallback on_refresh_token = {});

  // TokenFetcher
  TokenResult fetch() override;
  std::string cacheKey() const override;

  /// One token request; the refresh token (if any) in the result.
  DelegatedResult fetchTokens();

  const std::string& tokenUrl() const { return token_url_; }
  const std::string& scope() const { return scope_; }
  const std::string& username() const { return username_; }

 private:
  EntraOptions options_;
  std::string username_;
  config::Secret password_;
  std::optional<config::Secret> client_secret_;
  http::HttpClient& http_;
  const Clock& clock_;
  RefreshTokenCallback on_refresh_token_;
  std::string token_url_;
  std::string scope_;
  std::string password_tag_;  // keyed hash of the password, hex
};

/// EntraRefreshTokenGrant: access tokens for one user from the refresh token
/// kept in a RefreshTokenStore under (provider, user) (RFC 6749 §6): POST
/// {login_endpoint}/{tenant}/oauth2/v2.0/token with client_id, scope,
/// grant_type=refresh_token, refresh_token and, for a confidential client,
/// client_secret. The identity platform answers with a new refresh token
/// each time; it replaces the old one in the store before fetch() returns.
/// Should storing it fail, the new token is kept in memory and used (and
/// stored again) by the next fetch, unless the store got another token
/// meanwhile (a new login).
///
/// The token is read from the store on every fetch, so a `mailbridge oauth
/// login` run while the relay is up takes effect on the next refresh.
/// invalid_grant (AADSTS70008/700082 expired, 50173 revoked or password
/// changed, 9002313/70000 invalid, 50076/50079 MFA now required, 65001 ...)
/// and interaction_required are permanent failures whose explanation tells
/// the administrator to run `mailbridge oauth login --provider NAME` again;
/// so is an empty store.
///
/// Threading: fetch() blocks for one HTTP request; calls are serialised (a
/// refresh token must not be redeemed twice at once).
class EntraRefreshTokenGrant final : public TokenFetcher {
 public:
  EntraRefreshTokenGrant(EntraOptions options, std::string provider, std::string user,
                         RefreshTokenStore& store, std::optional<config::Secret> client_secret,
                         http::HttpClient& http, const Clock& clock);

  // TokenFetcher
  TokenResult fetch() override;
  std::string cacheKey() const override;

  const std::string& tokenUrl() const { return token_url_; }
  const std::string& scope() const { return scope_; }

 private:
  TokenFailure withLoginHint(TokenFailure failure) const;

  EntraOptions options_;
  std::string provider_;
  std::string user_;
  RefreshTokenStore& store_;
  std::optional<config::Secret> client_secret_;
  http::HttpClient& http_;
  const Clock& clock_;
  std::string token_url_;
  std::string scope_;

  std::mutex mutex_;
  std::string unsaved_;       // a rotated token the store refused, or empty
  std::string unsaved_base_;  // the stored token it replaced
};

/// What the device authorization endpoint answered (RFC 8628 §3.2). The
/// texts are made printable (they go to a terminal).
struct DeviceCode {
  std::string device_code;  // a credential while it lives: never log it
  std::string user_code;
  std::string verification_uri;
  std::string message;  // Microsoft's instructions for the user, ready to print
  std::chrono::seconds interval{5};
  std::chrono::seconds expires_in{900};
  Clock::SteadyTime issued_at{};  // when start() sent its request (the flow's clock)
};

/// One poll's outcome (RFC 8628 §3.5).
enum class DevicePollStatus {
  Pending,   // authorization_pending, AADSTS70016: poll again after the interval
  SlowDown,  // slow_down: add 5 s to the interval, then poll again
  Declined,  // authorization_declined, AADSTS70019: the user said no
  Expired,   // expired_token, AADSTS70020: start again
  Error,     // anything else; see `failure` (retryable for network trouble)
  Success,   // `tokens` holds them
};

struct DevicePoll {
  DevicePollStatus status = DevicePollStatus::Error;
  std::optional<DelegatedTokens> tokens;  // Success only
  TokenFailure failure;                   // all others: the answer, explained
};

/// DeviceCodeFlow: signs a user in on another device (RFC 8628) for
/// `mailbridge oauth login`. start() asks
/// {login_endpoint}/{tenant}/oauth2/v2.0/devicecode for a code (client_id,
/// scope); the user opens verification_uri and enters user_code; poll()
/// makes one token request (grant_type=urn:ietf:params:oauth:grant-type:device_code,
/// client_id, device_code, and client_secret for a confidential client);
/// run() polls at the interval until the user finished, declined, or the
/// code expired. The scope should include offline_access, or no refresh
/// token comes back (entraDelegatedScope() does).
///
/// Threading: one flow per login; start()/poll()/run() may be called from
/// any one thread at a time, and block (run() for up to expires_in).
class DeviceCodeFlow {
 public:
  /// Waits the given time; tests pass one that advances a ManualClock.
  using SleepFunction = std::function<void(std::chrono::seconds)>;

  /// Network failures in a row that run() rides out before giving up.
  static constexpr int kMaxTransientFailures = 3;

  DeviceCodeFlow(EntraOptions options, std::optional<config::Secret> client_secret,
                 http::HttpClient& http, const Clock& clock);

  GrantResult<DeviceCode> start();

  /// One token request for `device_code`.
  DevicePoll poll(const std::string& device_code);

  /// Polls every `code.interval` (first after one interval; +5 s per
  /// slow_down) until an outcome other than Pending/SlowDown, riding out up
  /// to kMaxTransientFailures network failures in a row. Stops without a
  /// further request once `clock` reaches code.issued_at + code.expires_in,
  /// answering Expired. `clock` must share the steady time line of the clock
  /// the flow was built with (normally both SystemClock::instance()).
  DevicePoll run(const DeviceCode& code, const SleepFunction& sleep, const Clock& clock);

  const std::string& deviceCodeUrl() const { return device_code_url_; }
  const std::string& tokenUrl() const { return token_url_; }
  const std::string& scope() const { return scope_; }

 private:
  EntraOptions options_;
  std::optional<config::Secret> client_secret_;
  http::HttpClient& http_;
  const Clock& clock_;
  std::string device_code_url_;
  std::string token_url_;
  std::string scope_;
};

}  // namespace mb::oauth
