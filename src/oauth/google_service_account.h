#pragma once

#include <openssl/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "http/http_client.h"
#include "oauth/token_source.h"

namespace mb::oauth {

struct TokenErrorBody;  // token_error.h

/// A Google service account's JSON key file.
///
/// GoogleServiceAccount: the identity and RSA private key of a Google Cloud
/// service account, as the JSON key file the Cloud console downloads holds
/// them (IAM & Admin > Service accounts > Keys; fields type, client_email,
/// client_id, private_key_id, private_key, token_uri). Signs the JWTs that
/// GoogleJwtBearer trades for access tokens; the key never leaves the object.
///
/// Talks to OpenSSL 3 only. Loading returns errors as Result, never throws;
/// error texts name the file (or `origin`) and the field, never key material.
///
/// Threading: immutable once loaded; signRs256() may be called from any
/// number of threads at once (each call has its own EVP_MD_CTX; the key is
/// only read).
class GoogleServiceAccount {
 public:
  ~GoogleServiceAccount();
  GoogleServiceAccount(const GoogleServiceAccount&) = delete;
  GoogleServiceAccount& operator=(const GoogleServiceAccount&) = delete;

  /// Reads and checks the key file (type "service_account", client_email,
  /// private_key (PEM, RSA >= 2048 bits), private_key_id, token_uri). Errors
  /// name the file and the field, never quote the key.
  static Result<std::shared_ptr<const GoogleServiceAccount>> fromJsonFile(
      const std::filesystem::path& file);
  /// The same from the file's text; `origin` names it in error texts.
  static Result<std::shared_ptr<const GoogleServiceAccount>> fromJson(std::string_view json,
                                                                      std::string_view origin);

  const std::string& clientEmail() const { return client_email_; }
  const std::string& clientId() const { return client_id_; }  // may be empty
  const std::string& keyId() const { return key_id_; }        // private_key_id
  const std::string& tokenUri() const { return token_uri_; }  // from the file
  /// The file name (or `origin`) it was loaded from, for messages.
  const std::string& origin() const { return origin_; }

  /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3) over
  /// `signing_input`. Returns the raw signature octets.
  Result<std::string> signRs256(std::string_view signing_input) const;

 private:
  GoogleServiceAccount() = default;

  EVP_PKEY* key_ = nullptr;  // owned
  std::string client_email_;
  std::string client_id_;
  std::string key_id_;
  std::string token_uri_;
  std::string origin_;
};

/// Tokens for one impersonated user (domain-wide delegation): the JWT bearer
/// grant (RFC 7523) with header {"alg":"RS256","typ":"JWT","kid":keyId},
/// claims iss=clientEmail, sub=subject, scope, aud=token URI, iat=now,
/// exp=now+3600. `token_uri` empty: the key file's. cacheKey() holds the
/// account, subject (lower-cased) and scope.
///
/// GoogleJwtBearer: POSTs grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
/// and the signed assertion (form-encoded) to the token URI, which is also
/// the assertion's aud ("Using OAuth 2.0 for Server to Server Applications").
/// `scope` is space separated (https://www.googleapis.com/auth/gmail.send);
/// an empty `subject` leaves `sub` out: a token for the service account
/// itself, which has no mailbox. `account` must not be null.
///
/// Talks to Google through http::HttpClient; reads time from the injected
/// Clock (iat/exp and the token's expires_at). No cache: wrap it in a
/// CachedTokenSource. Failures are explained for administrators
/// (delegation missing, deleted key, clock skew, unknown user, bad scope,
/// unknown or disabled account), logged once per request, and scrubbed of
/// the assertion; the token never reaches a log line.
///
/// Threading: fetch() blocks for one HTTP request and may be called from
/// several threads at once (the cache calls it from one at a time).
class GoogleJwtBearer final : public TokenFetcher {
 public:
  GoogleJwtBearer(std::shared_ptr<const GoogleServiceAccount> account, std::string subject,
                  std::string scope, http::HttpClient& http, const Clock& clock,
                  std::string token_uri = {},
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // TokenFetcher
  TokenResult fetch() override;
  std::string cacheKey() const override;

 private:
  Result<std::string> makeAssertion(std::chrono::system_clock::time_point now) const;
  TokenFailure classify(const http::Response& response, const TokenErrorBody& body,
                        std::chrono::system_clock::time_point requested_at) const;
  TokenResult fail(TokenFailure failure) const;  // logs it

  std::shared_ptr<const GoogleServiceAccount> account_;
  std::string subject_;
  std::string scope_;
  http::HttpClient& http_;
  const Clock& clock_;
  std::string token_uri_;
  std::chrono::milliseconds timeout_;
};

}  // namespace mb::oauth
