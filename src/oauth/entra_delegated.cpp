#include "oauth/entra_delegated.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/text.h"
#include "oauth/credential_scrub.h"
#include "oauth/encoding.h"
#include "oauth/token_error.h"
#include "oauth/token_request.h"

namespace mb::oauth {
namespace {

using json = nlohmann::json;
using Fields = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kDeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code";
// RFC 8628 §3.2: the interval when the endpoint names none; §3.5: slow_down adds this.
constexpr std::chrono::seconds kDefaultInterval{5};
constexpr std::chrono::seconds kSlowDownStep{5};
constexpr std::chrono::seconds kMaxInterval{300};
constexpr std::chrono::seconds kMaxDeviceCodeLifetime{3600};

bool sodiumReady() {
  static const bool ready = ::sodium_init() >= 0;
  return ready;
}

std::string withoutTrailingSlash(std::string_view s) {
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

// The key of the password tags in cache keys: random per process, so a tag
// seen in a log or a dump cannot be checked against password guesses.
const std::array<unsigned char, crypto_generichash_KEYBYTES>& tagKey() {
  static const auto key = [] {
    std::array<unsigned char, crypto_generichash_KEYBYTES> k{};
    (void)sodiumReady();
    ::randombytes_buf(k.data(), k.size());
    return k;
  }();
  return key;
}

std::string passwordTag(std::string_view password) {
  std::array<unsigned char, 16> digest{};
  const auto& key = tagKey();
  ::crypto_generichash(digest.data(), digest.size(),
                       reinterpret_cast<const unsigned char*>(password.data()), password.size(),
                       key.data(), key.size());
  std::string out(digest.size() * 2 + 1, '\0');
  ::sodium_bin2hex(out.data(), out.size(), digest.data(), digest.size());
  out.pop_back();
  return out;
}

TokenFailure badSuccess(std::string_view endpoint, std::string what) {
  TokenFailure out;
  out.retryable = true;
  out.http_status = 200;
  out.explanation = "the " + std::string(endpoint) + " answered HTTP 200 but " + std::move(what) +
                    " (a proxy or firewall in between?)";
  return out;
}

// A token endpoint's success body with a delegated grant's extras. Wipes
// `body`, which holds the tokens.
DelegatedResult parseTokens(std::string& body, std::chrono::system_clock::time_point requested_at) {
  TokenResult access = parseTokenResponse(body, requested_at);
  if (!access) {
    wipe(body);
    return access.failure();
  }
  DelegatedTokens out;
  out.access = std::move(access).value();
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  wipe(body);
  if (doc.is_object()) {
    if (auto it = doc.find("refresh_token"); it != doc.end() && it->is_string()) {
      out.refresh_token = it->get<std::string>();
      wipe(it->get_ref<std::string&>());
    }
    if (auto it = doc.find("scope"); it != doc.end() && it->is_string()) {
      out.scope = printable(it->get_ref<const std::string&>(), 1024);
    }
    if (auto it = doc.find("access_token"); it != doc.end() && it->is_string()) {
      wipe(it->get_ref<std::string&>());
    }
    if (auto it = doc.find("id_token"); it != doc.end() && it->is_string()) {
      wipe(it->get_ref<std::string&>());
    }
  }
  return out;
}

// AADSTS7000218 on a delegated grant usually means a public client whose
// registration does not allow public client flows, not a missing secret.
void addPublicClientHint(TokenFailure& failure, bool has_client_secret) {
  if (failure.error_code == 7000218 && !has_client_secret) {
    failure.explanation +=
        "; without a client secret the application must be a public client: enable \"Allow "
        "public client flows\" (App registrations > Authentication)";
  }
}


std::string stringField(const json& doc, const char* name) {
  const auto it = doc.find(name);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::chrono::seconds lifetimeOf(const DelegatedTokens& t,
                                std::chrono::system_clock::time_point requested_at) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.access.expires_at - requested_at);
}

std::string loginHint(std::string_view provider) {
  return "run `mailbridge oauth login --provider " + printable(provider, 64) +
         "` to sign in again";
}

// invalid_grant: the refresh token itself is no good any more (expired,
// revoked, malformed, issued to another client, or MFA / consent is now
// required); interaction_required: the user must sign in interactively.
bool needsLogin(const TokenFailure& f) {
  if (f.error == "invalid_grant" || f.error == "interaction_required") return true;
  for (const long code : {70008L, 700082L, 50173L, 9002313L, 70000L, 50076L, 50079L, 65001L}) {
    if (f.error_code == code) return true;
  }
  return false;
}

}  // namespace

std::string entraDelegatedScope(const EntraOptions& options) {
  if (!options.scope.empty()) return options.scope;
  return withoutTrailingSlash(options.graph_endpoint) + "/Mail.Send offline_access";
}

std::string entraDeviceCodeUrl(std::string_view login_endpoint, std::string_view tenant) {
  return withoutTrailingSlash(login_endpoint) + "/" + percentEncode(tenant) +
         "/oauth2/v2.0/devicecode";
}

// ---- EntraPasswordGrant ---------------------------------------------------

EntraPasswordGrant::EntraPasswordGrant(EntraOptions options, std::string username,
                                       config::Secret password,
                                       std::optional<config::Secret> client_secret,
                                       http::HttpClient& http, const Clock& clock,
                                       RefreshTokenCallback on_refresh_token)
    : options_(std::move(options)),
      username_(std::move(username)),
      password_(std::move(password)),
      client_secret_(std::move(client_secret)),
      http_(http),
      clock_(clock),
      on_refresh_token_(std::move(on_refresh_token)),
      token_url_(entraTokenUrl(options_.login_endpoint, options_.tenant)),
      scope_(entraDelegatedScope(options_)),
      password_tag_(passwordTag(password_.reveal())) {}

std::string EntraPasswordGrant::cacheKey() const {
  return "entra-delegated " + token_url_ + " client=" + options_.client_id + " scope=" + scope_ +
         " user=" + asciiLower(username_) + " password=" + password_tag_;
}

DelegatedResult EntraPasswordGrant::fetchTokens() {
  const auto requested_at = clock_.wallNow();
  Fields fields = {
      {"client_id", options_.client_id},
      {"scope", scope_},
      {"grant_type", "password"},
      {"username", username_},
      {"password", password_.reveal()},
  };
  CredentialScrubber scrubber;
  scrubber.add(password_.reveal());
  if (client_secret_) {
    fields.emplace_back("client_secret", client_secret_->reveal());
    scrubber.add(client_secret_->reveal());
  }

  TokenReply reply = postTokenRequest(http_, {token_url_, std::move(fields), options_.timeout},
                                      scrubber, classifyTokenError);
  const auto failed = [&](TokenFailure failure) -> DelegatedResult {
    spdlog::warn("oauth: password grant for user {} (client {}, tenant {}) failed ({}): {}",
                 printable(username_, 254), printable(options_.client_id, 64),
                 printable(options_.tenant, 128),
                 failure.retryable ? "will retry" : "needs an administrator", failure.explanation);
    return failure;
  };
  if (!reply.response) {
    addPublicClientHint(reply.failure, client_secret_.has_value());
    return failed(std::move(reply.failure));
  }
  DelegatedResult tokens = parseTokens(reply.response->body, requested_at);
  if (!tokens) return failed(tokens.failure());
  spdlog::debug("oauth: new delegated token for user {} (password grant), valid for {} s{}",
                printable(username_, 254), lifetimeOf(*tokens, requested_at).count(),
                tokens->refresh_token.empty() ? "" : ", with a refresh token");
  return tokens;
}

TokenResult EntraPasswordGrant::fetch() {
  DelegatedResult result = fetchTokens();
  if (!result) return result.failure();
  if (!result->refresh_token.empty() && on_refresh_token_) {
    if (Status st = on_refresh_token_(result->refresh_token); !st) {
      spdlog::error("oauth: cannot keep the refresh token for user {}: {}",
                    printable(username_, 254), st.error().message);
    }
  }
  wipe(result->refresh_token);
  return std::move(result->access);
}

// ---- EntraRefreshTokenGrant -----------------------------------------------

EntraRefreshTokenGrant::EntraRefreshTokenGrant(EntraOptions options, std::string provider,
                                               std::string user, RefreshTokenStore& store,
                                               std::optional<config::Secret> client_secret,
                                               http::HttpClient& http, const Clock& clock)
    : options_(std::move(options)),
      provider_(std::move(provider)),
      user_(std::move(user)),
      store_(store),
      client_secret_(std::move(client_secret)),
      http_(http),
      clock_(clock),
      token_url_(entraTokenUrl(options_.login_endpoint, options_.tenant)),
      scope_(entraDelegatedScope(options_)) {}

std::string EntraRefreshTokenGrant::cacheKey() const {
  return "entra-delegated " + token_url_ + " client=" + options_.client_id + " scope=" + scope_ +
         " user=" + asciiLower(user_);
}

TokenFailure EntraRefreshTokenGrant::withLoginHint(TokenFailure failure) const {
  failure.retryable = false;
  failure.explanation += "; " + loginHint(provider_);
  return failure;
}

TokenResult EntraRefreshTokenGrant::fetch() {
  std::lock_guard lock(mutex_);
  const auto failed = [&](TokenFailure failure) -> TokenResult {
    spdlog::warn(
        "oauth: refresh token grant for user {} of provider '{}' (client {}, tenant {}) failed "
        "({}): {}",
        printable(user_, 254), printable(provider_, 64), printable(options_.client_id, 64),
        printable(options_.tenant, 128),
        failure.retryable ? "will retry" : "needs an administrator", failure.explanation);
    return failure;
  };

  auto loaded = store_.load(provider_, user_);
  if (!loaded) {
    TokenFailure failure;
    // An I/O error may pass; a file that cannot be trusted will not.
    failure.retryable = loaded.error().sys_errno != 0;
    failure.explanation = "cannot read the stored refresh token: " + loaded.error().message;
    return failed(std::move(failure));
  }
  if (!*loaded) {
    wipe(unsaved_);
    wipe(unsaved_base_);
    TokenFailure failure;
    failure.retryable = false;
    failure.explanation = "no refresh token is stored for user " + printable(user_, 254) +
                          " of provider '" + printable(provider_, 64) +
                          "': run `mailbridge oauth login --provider " +
                          printable(provider_, 64) + "` to sign in";
    return failed(std::move(failure));
  }
  std::string stored = std::move(**loaded);

  // A rotated token that could not be stored last time is the one to redeem,
  // as long as the store still holds the token it replaced.
  std::string current = stored;
  if (!unsaved_.empty()) {
    if (stored == unsaved_base_) {
      current = unsaved_;
      if (Status st = store_.save(provider_, user_, unsaved_); st) {
        spdlog::info("oauth: stored the refresh token for user {} of provider '{}' at last",
                     printable(user_, 254), printable(provider_, 64));
        wipe(stored);
        stored = unsaved_;
        wipe(unsaved_);
        wipe(unsaved_base_);
      }
    } else {
      wipe(unsaved_);  // a new login replaced it meanwhile
      wipe(unsaved_base_);
    }
  }

  const auto requested_at = clock_.wallNow();
  Fields fields = {
      {"client_id", options_.client_id},
      {"scope", scope_},
      {"grant_type", "refresh_token"},
      {"refresh_token", current},
  };
  CredentialScrubber scrubber;
  scrubber.add(current);
  scrubber.add(stored);
  if (client_secret_) {
    fields.emplace_back("client_secret", client_secret_->reveal());
    scrubber.add(client_secret_->reveal());
  }

  TokenReply reply = postTokenRequest(http_, {token_url_, std::move(fields), options_.timeout},
                                      scrubber, classifyTokenError);
  if (!reply.response) {
    wipe(current);
    wipe(stored);
    TokenFailure failure = std::move(reply.failure);
    addPublicClientHint(failure, client_secret_.has_value());
    if (needsLogin(failure)) failure = withLoginHint(std::move(failure));
    return failed(std::move(failure));
  }
  DelegatedResult tokens = parseTokens(reply.response->body, requested_at);
  if (!tokens) {
    wipe(current);
    wipe(stored);
    return failed(tokens.failure());
  }

  // Rotation: the new refresh token replaces the old before the access
  // token is handed out.
  std::string& fresh = tokens->refresh_token;
  if (!fresh.empty() && fresh != current) {
    if (Status st = store_.save(provider_, user_, fresh); st) {
      wipe(unsaved_);
      wipe(unsaved_base_);
    } else {
      spdlog::error(
          "oauth: cannot store the new refresh token for user {} of provider '{}': {}; keeping "
          "it in memory and trying again at the next refresh",
          printable(user_, 254), printable(provider_, 64), st.error().message);
      wipe(unsaved_);
      wipe(unsaved_base_);
      unsaved_ = fresh;
      unsaved_base_ = stored;
    }
  } else if (fresh.empty()) {
    spdlog::debug("oauth: no new refresh token for user {}; the stored one stays",
                  printable(user_, 254));
  }
  spdlog::debug("oauth: new delegated token for user {} of provider '{}', valid for {} s",
                printable(user_, 254), printable(provider_, 64),
                lifetimeOf(*tokens, requested_at).count());
  wipe(fresh);
  wipe(current);
  wipe(stored);
  return std::move(tokens->access);
}

// ---- DeviceCodeFlow -------------------------------------------------------

DeviceCodeFlow::DeviceCodeFlow(EntraOptions options, std::optional<config::Secret> client_secret,
                               http::HttpClient& http, const Clock& clock)
    : options_(std::move(options)),
      client_secret_(std::move(client_secret)),
      http_(http),
      clock_(clock),
      device_code_url_(entraDeviceCodeUrl(options_.login_endpoint, options_.tenant)),
      token_url_(entraTokenUrl(options_.login_endpoint, options_.tenant)),
      scope_(entraDelegatedScope(options_)) {}

GrantResult<DeviceCode> DeviceCodeFlow::start() {
  const auto issued_at = clock_.steadyNow();
  CredentialScrubber scrubber;  // nothing secret goes out; the answer is the secret
  TokenReply reply = postTokenRequest(
      http_,
      {device_code_url_, {{"client_id", options_.client_id}, {"scope", scope_}}, options_.timeout},
      scrubber, classifyTokenError);
  const auto failed = [&](TokenFailure failure) -> GrantResult<DeviceCode> {
    spdlog::warn("oauth: device code request for client {} in tenant {} failed ({}): {}",
                 printable(options_.client_id, 64), printable(options_.tenant, 128),
                 failure.retryable ? "may work later" : "needs an administrator",
                 failure.explanation);
    return failure;
  };
  if (!reply.response) {
    addPublicClientHint(reply.failure, client_secret_.has_value());
    return failed(std::move(reply.failure));
  }

  std::string& body = reply.response->body;
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  wipe(body);
  constexpr std::string_view kEndpoint = "device code endpoint";
  if (doc.is_discarded() || !doc.is_object()) return failed(badSuccess(kEndpoint, "not with JSON"));

  DeviceCode out;
  out.issued_at = issued_at;
  out.device_code = stringField(doc, "device_code");
  if (auto it = doc.find("device_code"); it != doc.end() && it->is_string()) {
    wipe(it->get_ref<std::string&>());
  }
  out.user_code = printable(stringField(doc, "user_code"), 64);
  out.verification_uri = stringField(doc, "verification_uri");
  if (out.verification_uri.empty()) out.verification_uri = stringField(doc, "verification_url");
  out.verification_uri = printable(out.verification_uri, 512);
  out.message = printable(stringField(doc, "message"), 1024);
  if (out.device_code.empty()) return failed(badSuccess(kEndpoint, "without a device_code"));
  if (out.user_code.empty()) return failed(badSuccess(kEndpoint, "without a user_code"));
  if (out.verification_uri.empty()) {
    return failed(badSuccess(kEndpoint, "without a verification_uri"));
  }

  const auto expires = doc.find("expires_in");
  const auto expires_in = expires == doc.end() ? std::nullopt : jsonSeconds(*expires);
  if (!expires_in || *expires_in <= 0) {
    return failed(badSuccess(kEndpoint, "without a usable expires_in"));
  }
  out.expires_in = std::min(std::chrono::seconds(*expires_in), kMaxDeviceCodeLifetime);
  const auto interval = doc.find("interval");
  const auto interval_s = interval == doc.end() ? std::nullopt : jsonSeconds(*interval);
  out.interval = interval_s && *interval_s > 0
                     ? std::min(std::chrono::seconds(*interval_s), kMaxInterval)
                     : kDefaultInterval;
  spdlog::debug("oauth: device code for client {} issued, valid for {} s, poll every {} s",
                printable(options_.client_id, 64), out.expires_in.count(), out.interval.count());
  return out;
}

DevicePoll DeviceCodeFlow::poll(const std::string& device_code) {
  const auto requested_at = clock_.wallNow();
  Fields fields = {
      {"grant_type", std::string(kDeviceCodeGrant)},
      {"client_id", options_.client_id},
      {"device_code", device_code},
  };
  CredentialScrubber scrubber;
  scrubber.add(device_code);
  if (client_secret_) {
    fields.emplace_back("client_secret", client_secret_->reveal());
    scrubber.add(client_secret_->reveal());
  }
  TokenReply reply = postTokenRequest(http_, {token_url_, std::move(fields), options_.timeout},
                                      scrubber, classifyTokenError);

  DevicePoll out;
  if (reply.response) {
    DelegatedResult tokens = parseTokens(reply.response->body, requested_at);
    if (tokens) {
      out.status = DevicePollStatus::Success;
      spdlog::debug("oauth: device code sign-in for client {} done, token valid for {} s{}",
                    printable(options_.client_id, 64), lifetimeOf(*tokens, requested_at).count(),
                    tokens->refresh_token.empty() ? ", but without a refresh token" : "");
      out.tokens = std::move(tokens).value();
      return out;
    }
    out.failure = tokens.failure();
  } else {
    out.failure = std::move(reply.failure);
    const TokenErrorBody& e = reply.error;
    if (e.error == "authorization_pending" || e.hasCode(70016)) {
      out.status = DevicePollStatus::Pending;
      return out;
    }
    if (e.error == "slow_down") {
      out.status = DevicePollStatus::SlowDown;
      return out;
    }
    if (e.error == "authorization_declined" || e.hasCode(70019)) {
      out.status = DevicePollStatus::Declined;
      return out;
    }
    if (e.error == "expired_token" || e.hasCode(70020)) {
      out.status = DevicePollStatus::Expired;
      return out;
    }
    addPublicClientHint(out.failure, client_secret_.has_value());
  }
  out.status = DevicePollStatus::Error;
  spdlog::warn("oauth: device code sign-in for client {} in tenant {} failed ({}): {}",
               printable(options_.client_id, 64), printable(options_.tenant, 128),
               out.failure.retryable ? "will retry" : "needs an administrator",
               out.failure.explanation);
  return out;
}

DevicePoll DeviceCodeFlow::run(const DeviceCode& code, const SleepFunction& sleep,
                               const Clock& clock) {
  const auto deadline = code.issued_at + code.expires_in;
  auto interval = code.interval > std::chrono::seconds(0) ? code.interval : kDefaultInterval;
  int transient = 0;
  for (;;) {
    sleep(interval);
    if (clock.steadyNow() >= deadline) {
      DevicePoll out;
      out.status = DevicePollStatus::Expired;
      out.failure.retryable = false;
      out.failure.explanation = "the device code expired after " +
                                std::to_string(code.expires_in.count()) +
                                " s before the sign-in was completed; start the login again";
      return out;
    }
    DevicePoll result = poll(code.device_code);
    switch (result.status) {
      case DevicePollStatus::Pending:
        transient = 0;
        continue;
      case DevicePollStatus::SlowDown:
        transient = 0;
        interval = std::min(interval + kSlowDownStep, kMaxInterval);
        spdlog::debug("oauth: asked to slow down; polling every {} s", interval.count());
        continue;
      case DevicePollStatus::Error:
        if (result.failure.retryable && ++transient <= kMaxTransientFailures) continue;
        return result;
      case DevicePollStatus::Declined:
      case DevicePollStatus::Expired:
      case DevicePollStatus::Success:
        return result;
    }
    return result;
  }
}

}  // namespace mb::oauth
