#include "oauth/entra_delegated.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/testing/temp_dir.h"
#include "http/testing/fake_http_client.h"
#include "oauth/cached_token_source.h"
#include "oauth/encoding.h"
#include "oauth/testing/entra_app.h"
#include "oauth/testing/log_capture.h"
#include "oauth/testing/token_requests.h"

namespace mb::oauth {
namespace {

using namespace std::chrono_literals;
using http::testing::FakeHttpClient;
using namespace testing;  // oauth/testing/: the Entra app, form decoding, LogCapture
using json = nlohmann::json;

constexpr const char* kDeviceUrl =
    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode";
constexpr const char* kScope = "https://graph.microsoft.com/Mail.Send offline_access";
constexpr const char* kUser = "Relay@Contoso.example";
constexpr const char* kProvider = "m365-user";
constexpr const char* kDeviceGrant = "urn:ietf:params:oauth:grant-type:device_code";
// Every character that needs care in a form body, and in JSON.
const std::string kPassword = "P@ss w0rd+&=%\"\\secret_PW";
const std::string kClientSecret = "Qx8~Z.client+/=&secret_CS";
const std::string kAccess = "eyJ0eXAiOiJKV1QifQ.eyJzY3AiOiJNYWlsLlNlbmQifQ.c2lnbmF0dXJl";
const std::string kRefresh1 = "1.AQEAx_refresh_one_0123456789";
const std::string kRefresh2 = "1.AQEAx_refresh_two_9876543210";
const std::string kRefresh3 = "1.AQEAx_refresh_three_555555";
const std::string kDeviceCode = "DAQABAAEAAAD-device-code-secret-value_xyz";

// ---- helpers ---------------------------------------------------------------

std::string tokenBody(const std::string& refresh = "", long expires_in = 3599) {
  json j = {{"token_type", "Bearer"},
            {"scope", "https://graph.microsoft.com/Mail.Send"},
            {"expires_in", expires_in},
            {"ext_expires_in", expires_in},
            {"access_token", kAccess}};
  if (!refresh.empty()) j["refresh_token"] = refresh;
  return j.dump();
}

// The identity platform's error body, as tests/fakes/fake_microsoft.py builds it.
std::string errorBody(const std::string& error, long code, const std::string& text = "Some text.") {
  return json({{"error", error},
               {"error_description", "AADSTS" + std::to_string(code) + ": " + text +
                                         " Trace ID: t-1 Correlation ID: c-1 Timestamp: x"},
               {"error_codes", {code}},
               {"timestamp", "2026-01-09 02:02:12Z"},
               {"trace_id", "t-1"},
               {"correlation_id", "c-1"}})
      .dump();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A RefreshTokenStore in memory whose saves can be made to fail.
class MemoryStore final : public RefreshTokenStore {
 public:
  Result<std::optional<std::string>> load(std::string_view provider,
                                          std::string_view user) override {
    std::lock_guard lock(mutex_);
    if (load_error) return *load_error;
    const auto it = tokens_.find(keyOf(provider, user));
    if (it == tokens_.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status save(std::string_view provider, std::string_view user,
              std::string_view refresh_token) override {
    std::lock_guard lock(mutex_);
    ++saves;
    if (fail_saves) return Error{"disk full", 28};
    tokens_[keyOf(provider, user)] = std::string(refresh_token);
    return {};
  }
  Status remove(std::string_view provider, std::string_view user) override {
    std::lock_guard lock(mutex_);
    tokens_.erase(keyOf(provider, user));
    return {};
  }

  void put(const std::string& token) { tokens_[keyOf(kProvider, kUser)] = token; }
  std::string stored() { return tokens_[keyOf(kProvider, kUser)]; }

  bool fail_saves = false;
  int saves = 0;
  std::optional<Error> load_error;

 private:
  static std::string keyOf(std::string_view provider, std::string_view user) {
    return std::string(provider) + "|" + asciiLower(user);
  }
  std::mutex mutex_;
  std::map<std::string, std::string> tokens_;
};

// ---- EntraPasswordGrant ------------------------------------------------------

TEST(EntraPasswordGrant, RequestForm) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, tokenBody(kRefresh1));
  EntraPasswordGrant grant(entraOptions(), kUser, inlineSecret(kPassword), std::nullopt, http,
                           clock);
  EXPECT_EQ(grant.tokenUrl(), kTokenUrl);
  EXPECT_EQ(grant.scope(), kScope);

  auto token = grant.fetch();
  ASSERT_TRUE(token) << token.failure().explanation;
  EXPECT_EQ(token->value, kAccess);
  EXPECT_EQ(token->expires_at, clock.wallNow() + 3599s);

  const auto requests = http.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& r = requests[0];
  expectFormPost(r, kTokenUrl);
  EXPECT_LE(r.timeout, 30s);
  const auto form = formFields(r.body);
  EXPECT_EQ(form.size(), 5u) << r.body;
  EXPECT_EQ(form.at("client_id"), kClient);
  EXPECT_EQ(form.at("scope"), kScope);
  EXPECT_EQ(form.at("grant_type"), "password");
  EXPECT_EQ(form.at("username"), kUser);
  EXPECT_EQ(form.at("password"), kPassword);
  EXPECT_EQ(form.count("client_secret"), 0u);
  // Encoded, so that '&', '=' and '+' in the password stay data.
  EXPECT_TRUE(contains(r.body, "password=" + percentEncode(kPassword))) << r.body;
}

TEST(EntraPasswordGrant, ConfidentialClientAndOtherScope) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, tokenBody());
  EntraOptions o = entraOptions();
  o.scope = "https://outlook.office365.com/SMTP.Send offline_access";
  EntraPasswordGrant grant(o, kUser, inlineSecret(kPassword), inlineSecret(kClientSecret), http,
                           clock);
  ASSERT_TRUE(grant.fetch());
  const auto form = formFields(http.requests().at(0).body);
  EXPECT_EQ(form.size(), 6u);
  EXPECT_EQ(form.at("client_secret"), kClientSecret);
  EXPECT_EQ(form.at("scope"), "https://outlook.office365.com/SMTP.Send offline_access");

  EntraOptions us = entraOptions();
  us.graph_endpoint = "https://graph.microsoft.us/";
  EXPECT_EQ(entraDelegatedScope(us), "https://graph.microsoft.us/Mail.Send offline_access");
  EXPECT_EQ(entraDeviceCodeUrl("https://login.microsoftonline.us/", "a b"),
            "https://login.microsoftonline.us/a%20b/oauth2/v2.0/devicecode");
}

TEST(EntraPasswordGrant, ExposesTheRefreshToken) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, tokenBody(kRefresh1));
  http.pushResponse(200, tokenBody(kRefresh2));
  http.pushResponse(200, tokenBody());  // no offline_access: no refresh token

  MemoryStore store;
  std::vector<std::string> seen;
  EntraPasswordGrant grant(entraOptions(), kUser, inlineSecret(kPassword), std::nullopt, http,
                           clock, [&](const std::string& rt) {
                             seen.push_back(rt);
                             return store.save(kProvider, kUser, rt);
                           });

  auto direct = grant.fetchTokens();
  ASSERT_TRUE(direct) << direct.failure().explanation;
  EXPECT_EQ(direct->access.value, kAccess);
  EXPECT_EQ(direct->refresh_token, kRefresh1);
  EXPECT_EQ(direct->scope, "https://graph.microsoft.com/Mail.Send");
  EXPECT_TRUE(seen.empty());  // fetchTokens() leaves storing to its caller

  ASSERT_TRUE(grant.fetch());
  EXPECT_EQ(seen, std::vector<std::string>{kRefresh2});
  EXPECT_EQ(store.stored(), kRefresh2);

  ASSERT_TRUE(grant.fetch());
  EXPECT_EQ(seen.size(), 1u);

  // A callback that fails does not cost the access token.
  http.pushResponse(200, tokenBody(kRefresh3));
  store.fail_saves = true;
  auto still = grant.fetch();
  ASSERT_TRUE(still);
  EXPECT_EQ(still->value, kAccess);
}

TEST(EntraPasswordGrant, CacheKeyFollowsThePassword) {
  FakeHttpClient http;
  ManualClock clock;
  EntraPasswordGrant a(entraOptions(), kUser, inlineSecret(kPassword), std::nullopt, http, clock);
  EntraPasswordGrant same(entraOptions(), "relay@contoso.EXAMPLE", inlineSecret(kPassword),
                          std::nullopt, http, clock);
  EntraPasswordGrant wrong(entraOptions(), kUser, inlineSecret(kPassword + "x"), std::nullopt, http,
                           clock);
  EntraPasswordGrant other_user(entraOptions(), "other@contoso.example", inlineSecret(kPassword),
                                std::nullopt, http, clock);
  EntraOptions o = entraOptions();
  o.scope = "https://outlook.office365.com/SMTP.Send offline_access";
  EntraPasswordGrant other_scope(o, kUser, inlineSecret(kPassword), std::nullopt, http, clock);
  o = entraOptions();
  o.tenant = "fabrikam.example";
  EntraPasswordGrant other_tenant(o, kUser, inlineSecret(kPassword), std::nullopt, http, clock);
  o = entraOptions();
  o.client_id = "99999999-2222-3333-4444-555555555555";
  EntraPasswordGrant other_client(o, kUser, inlineSecret(kPassword), std::nullopt, http, clock);

  const std::string key = a.cacheKey();
  EXPECT_EQ(same.cacheKey(), key);  // the user is lower-cased
  EXPECT_TRUE(contains(key, "user=relay@contoso.example")) << key;
  EXPECT_TRUE(contains(key, kTenant));
  EXPECT_TRUE(contains(key, kClient));
  EXPECT_TRUE(contains(key, kScope));
  for (const auto* g : {&wrong, &other_user, &other_scope, &other_tenant, &other_client}) {
    EXPECT_NE(g->cacheKey(), key);
  }
  // Not the password in any spelling, and a tag only: 128 bits in hex.
  EXPECT_FALSE(contains(key, kPassword));
  EXPECT_FALSE(contains(key, percentEncode(kPassword)));
  EXPECT_FALSE(contains(key, "secret_PW"));
  const auto tag = key.substr(key.rfind("password=") + 9);
  EXPECT_EQ(tag.size(), 32u) << key;
  EXPECT_EQ(tag.find_first_not_of("0123456789abcdef"), std::string::npos) << tag;

  // A wrong password never gets the right one's cached token.
  http.pushResponse(200, tokenBody());
  http.pushResponse(400, errorBody("invalid_grant", 50126));
  auto cache = std::make_shared<TokenCache>(clock);
  CachedTokenSource right(
      cache, std::make_unique<EntraPasswordGrant>(entraOptions(), kUser, inlineSecret(kPassword),
                                                  std::nullopt, http, clock));
  CachedTokenSource bad(
      cache, std::make_unique<EntraPasswordGrant>(entraOptions(), kUser, inlineSecret("guess"),
                                                  std::nullopt, http, clock));
  ASSERT_TRUE(right.token());
  auto refused = bad.token();
  ASSERT_FALSE(refused);
  EXPECT_EQ(http.requestCount(), 2u);
}

TEST(EntraPasswordGrant, DelegatedErrorsExplained) {
  FakeHttpClient http;
  ManualClock clock;
  EntraPasswordGrant grant(entraOptions(), kUser, inlineSecret(kPassword), std::nullopt, http,
                           clock);

  http.pushResponse(400, errorBody("invalid_grant", 50126));
  auto wrong = grant.fetch();
  ASSERT_FALSE(wrong);
  EXPECT_FALSE(wrong.failure().retryable);
  EXPECT_EQ(wrong.failure().error_code, 50126);
  EXPECT_TRUE(contains(wrong.failure().explanation, "wrong user name or password"));

  for (long mfa : {50076L, 50079L}) {
    http.pushResponse(400, errorBody("invalid_grant", mfa));
    auto r = grant.fetch();
    ASSERT_FALSE(r);
    EXPECT_FALSE(r.failure().retryable);
    EXPECT_TRUE(contains(r.failure().explanation, "MFA")) << r.failure().explanation;
    EXPECT_TRUE(contains(r.failure().explanation, "device code")) << r.failure().explanation;
  }

  // A public client whose registration does not allow public client flows.
  http.pushResponse(401, errorBody("invalid_client", 7000218));
  auto pub = grant.fetch();
  ASSERT_FALSE(pub);
  EXPECT_TRUE(contains(pub.failure().explanation, "Allow public client flows"))
      << pub.failure().explanation;

  http.pushResponse(503, errorBody("temporarily_unavailable", 50033));
  auto later = grant.fetch();
  ASSERT_FALSE(later);
  EXPECT_TRUE(later.failure().retryable);
}

// The password, the client secret and the tokens never reach an explanation
// or a log line, even when something echoes the request.
TEST(EntraPasswordGrant, NoSecretInExplanationsOrLogs) {
  LogCapture logs;
  FakeHttpClient http;
  ManualClock clock;
  const std::string encoded = percentEncode(kPassword);
  const std::string as_json = json(kPassword).dump();
  http.pushResponse(400, "<html>Blocked: password=" + encoded + "</html>");
  http.pushResponse(403, "password=" + kPassword + "&client_secret=" + kClientSecret);
  http.pushResponse(400, json({{"error", "invalid_grant"},
                               {"error_description", "AADSTS50126: bad password " + kPassword},
                               {"error_codes", {50126}}})
                             .dump());
  http.pushResponse(500, R"({"error":"server_error","error_description":)" + as_json + "}");
  http.push(http::TransportError{"proxy said: " + encoded, false});
  http.pushResponse(200, tokenBody(kRefresh1));

  std::vector<std::string> explanations;
  EntraPasswordGrant grant(entraOptions(), kUser, inlineSecret(kPassword),
                           inlineSecret(kClientSecret), http, clock,
                           [](const std::string&) { return Status(); });
  for (int i = 0; i < 5; ++i) {
    auto r = grant.fetch();
    ASSERT_FALSE(r);
    explanations.push_back(r.failure().explanation);
  }
  ASSERT_TRUE(grant.fetch());

  for (long code : {50126L, 50076L, 50079L, 50034L, 50053L, 50057L, 50055L, 65001L, 70008L,
                    50173L, 9002313L, 70000L, 70016L, 70019L, 70020L, 7000218L}) {
    http.pushResponse(400, errorBody("invalid_grant", code, kPassword + " " + kClientSecret));
    auto r = grant.fetch();
    ASSERT_FALSE(r);
    explanations.push_back(r.failure().explanation);
  }

  for (const auto& e : explanations) {
    EXPECT_FALSE(contains(e, kPassword)) << e;
    EXPECT_FALSE(contains(e, encoded)) << e;
    EXPECT_FALSE(contains(e, "secret_PW")) << e;
    EXPECT_FALSE(contains(e, "secret_CS")) << e;
  }
  EXPECT_TRUE(contains(explanations[0], "[redacted]")) << explanations[0];
  const std::string log = logs.text();
  EXPECT_TRUE(contains(log, "failed"));
  EXPECT_TRUE(contains(log, "new delegated token"));  // debug, captured too
  EXPECT_FALSE(contains(log, "secret_PW")) << log;
  EXPECT_FALSE(contains(log, "secret_CS")) << log;
  EXPECT_FALSE(contains(log, kAccess)) << log;
  EXPECT_FALSE(contains(log, kRefresh1)) << log;
}

// ---- EntraRefreshTokenGrant --------------------------------------------------

TEST(EntraRefreshTokenGrant, RequestFormAndRotation) {
  FakeHttpClient http;
  ManualClock clock;
  MemoryStore store;
  store.put(kRefresh1);
  http.pushResponse(200, tokenBody(kRefresh2));
  http.pushResponse(200, tokenBody(kRefresh3));
  EntraRefreshTokenGrant grant(entraOptions(), kProvider, kUser, store, std::nullopt, http, clock);
  EXPECT_EQ(grant.tokenUrl(), kTokenUrl);
  EXPECT_EQ(grant.scope(), kScope);

  auto first = grant.fetch();
  ASSERT_TRUE(first) << first.failure().explanation;
  EXPECT_EQ(first->value, kAccess);
  EXPECT_EQ(store.stored(), kRefresh2);  // rotated before fetch() returned

  auto second = grant.fetch();
  ASSERT_TRUE(second);
  EXPECT_EQ(store.stored(), kRefresh3);

  const auto requests = http.requests();
  ASSERT_EQ(requests.size(), 2u);
  expectFormPost(requests[0], kTokenUrl);
  const auto form = formFields(requests[0].body);
  EXPECT_EQ(form.size(), 4u) << requests[0].body;
  EXPECT_EQ(form.at("client_id"), kClient);
  EXPECT_EQ(form.at("scope"), kScope);
  EXPECT_EQ(form.at("grant_type"), "refresh_token");
  EXPECT_EQ(form.at("refresh_token"), kRefresh1);
  EXPECT_EQ(formFields(requests[1].body).at("refresh_token"), kRefresh2);
}

TEST(EntraRefreshTokenGrant, ConfidentialClientAndNoNewToken) {
  FakeHttpClient http;
  ManualClock clock;
  MemoryStore store;
  store.put(kRefresh1);
  http.pushResponse(200, tokenBody());  // no refresh token in the answer
  EntraRefreshTokenGrant grant(entraOptions(), kProvider, kUser, store, inlineSecret(kClientSecret),
                               http, clock);
  ASSERT_TRUE(grant.fetch());
  const auto form = formFields(http.requests().at(0).body);
  EXPECT_EQ(form.size(), 5u);
  EXPECT_EQ(form.at("client_secret"), kClientSecret);
  EXPECT_EQ(store.stored(), kRefresh1);  // kept
  EXPECT_EQ(store.saves, 0);
}

TEST(EntraRefreshTokenGrant, RotatesIntoTheFileStore) {
  mb::testing::TempDir tmp;
  FakeHttpClient http;
  ManualClock clock;
  FileRefreshTokenStore store(tmp.path() / "oauth");
  ASSERT_TRUE(store.save(kProvider, kUser, kRefresh1));
  http.pushResponse(200, tokenBody(kRefresh2));
  EntraRefreshTokenGrant grant(entraOptions(), kProvider, "relay@contoso.example", store,
                               std::nullopt, http, clock);
  ASSERT_TRUE(grant.fetch());
  EXPECT_EQ(formFields(http.requests().at(0).body).at("refresh_token"), kRefresh1);
  FileRefreshTokenStore reopened(tmp.path() / "oauth");
  auto loaded = reopened.load(kProvider, kUser);
  ASSERT_TRUE(loaded && *loaded);
  EXPECT_EQ(**loaded, kRefresh2);
}

TEST(EntraRefreshTokenGrant, InvalidGrantTellsToLogInAgain) {
  LogCapture logs;
  FakeHttpClient http;
  ManualClock clock;
  MemoryStore store;
  store.put(kRefresh1);
  EntraRefreshTokenGrant grant(entraOptions(), kProvider, kUser, store, std::nullopt, http, clock);
  struct Case {
    long code;
    const char* word;
  };
  for (const Case& c : {Case{70008, "expired"}, Case{700082, "expired"}, Case{50173, "revoked"},
                        Case{9002313, "invalid"}, Case{70000, "invalid"}, Case{50076, "MFA"},
                        Case{50079, "MFA"}, Case{65001, "consent"}}) {
    // Microsoft does not echo the token; a broken proxy might.
    http.pushResponse(400, errorBody("invalid_grant", c.code, "token " + kRefresh1));
    auto r = grant.fetch();
    ASSERT_FALSE(r) << c.code;
    const auto& f = r.failure();
    EXPECT_FALSE(f.retryable) << c.code;
    EXPECT_EQ(f.error_code, c.code);
    EXPECT_TRUE(contains(f.explanation, "mailbridge oauth login --provider m365-user"))
        << f.explanation;
    EXPECT_TRUE(contains(f.explanation, c.word)) << f.explanation;
    EXPECT_FALSE(contains(f.explanation, kRefresh1)) << f.explanation;
  }
  // interaction_required, whatever the code.
  http.pushResponse(400, errorBody("interaction_required", 50158));
  auto ia = grant.fetch();
  ASSERT_FALSE(ia);
  EXPECT_TRUE(contains(ia.failure().explanation, "mailbridge oauth login --provider m365-user"));

  EXPECT_EQ(store.stored(), kRefresh1);  // left for the administrator
  EXPECT_FALSE(contains(logs.text(), kRefresh1));
  EXPECT_TRUE(contains(logs.text(), "needs an administrator"));
}

TEST(EntraRefreshTokenGrant, TransientFailuresKeepTheToken) {
  FakeHttpClient http;
  ManualClock clock;
  MemoryStore store;
  store.put(kRefresh1);
  EntraRefreshTokenGrant grant(entraOptions(), kProvider, kUser, store, std::nullopt, http, clock);
  http.pushResponse(503, errorBody("temporarily_unavailable", 50033));
  http.push(http::TransportError{"Connection reset by peer", false});
  http.pushResponse(200, "<html>captive portal</html>");
  for (int i = 0; i < 3; ++i) {
    auto r = grant.fetch();
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.failure().retryable) << r.failure().explanation;
    EXPECT_FALSE(contains(r.failure().explanation, "oauth login")) << r.failure().explanation;
  }
  EXPECT_EQ(store.stored(), kRefresh1);
  EXPECT_EQ(store.saves, 0);
}

TEST(EntraRefreshTokenGrant, NothingStoredOrStoreBroken) {
  FakeHttpClient http;
  ManualClock clock;
  MemoryStore store;
  EntraRefreshTokenGrant grant(entraOptions(), kProvider, kUser, store, std::nullopt, http, clock);
  auto none = grant.fetch();
  ASSERT_FALSE(none);
  EXPECT_FALSE(none.failure().retryable);
  EXPECT_TRUE(contains(none.failure().explanation, "no refresh token is stored"));
  EXPECT_TRUE(contains(none.failure().explanation, "mailbridge oauth login --provider m365-user"));

  store.load_error = Error{"cannot be decrypted", 0};
  auto tampered = grant.fetch();
  ASSERT_FALSE(tampered);
  EXPECT_FALSE(tampered.failure().retryable);

  store.load_error = Error{"read: Input/output error", 5};
  auto io = grant.fetch();
  ASSERT_FALSE(io);
  EXPECT_TRUE(io.failure().retryable);
  EXPECT_EQ(http.requestCount(), 0u);
}

TEST(EntraRefreshTokenGrant, UnsavedRotationIsKeptAndStoredLater) {
  FakeHttpClient http;
  ManualClock clock;
  MemoryStore store;
  store.put(kRefresh1);
  EntraRefreshTokenGrant grant(entraOptions(), kProvider, kUser, store, std::nullopt, http, clock);

  store.fail_saves = true;
  http.pushResponse(200, tokenBody(kRefresh2));
  ASSERT_TRUE(grant.fetch());  // the access token is still good
  EXPECT_EQ(store.stored(), kRefresh1);

  // Next time the newer token is redeemed, and stored at last.
  store.fail_saves = false;
  http.pushResponse(200, tokenBody(kRefresh3));
  ASSERT_TRUE(grant.fetch());
  EXPECT_EQ(formFields(http.requests().at(1).body).at("refresh_token"), kRefresh2);
  EXPECT_EQ(store.stored(), kRefresh3);

  // But a new login in between wins over a token kept in memory.
  store.fail_saves = true;
  http.pushResponse(200, tokenBody("1.Anever-stored"));
  ASSERT_TRUE(grant.fetch());
  EXPECT_EQ(store.stored(), kRefresh3);
  store.fail_saves = false;
  store.put("1.Afrom-a-new-login");
  http.pushResponse(200, tokenBody(kRefresh1));
  ASSERT_TRUE(grant.fetch());
  EXPECT_EQ(formFields(http.requests().at(3).body).at("refresh_token"), "1.Afrom-a-new-login");
  EXPECT_EQ(store.stored(), kRefresh1);
}

TEST(EntraRefreshTokenGrant, CacheKey) {
  FakeHttpClient http;
  ManualClock clock;
  MemoryStore store;
  store.put(kRefresh1);
  EntraRefreshTokenGrant grant(entraOptions(), kProvider, kUser, store, std::nullopt, http, clock);
  EntraRefreshTokenGrant other(entraOptions(), kProvider, "someone@contoso.example", store,
                               std::nullopt, http, clock);
  EntraPasswordGrant password(entraOptions(), kUser, inlineSecret(kPassword), std::nullopt, http,
                              clock);
  const std::string key = grant.cacheKey();
  EXPECT_TRUE(contains(key, "user=relay@contoso.example")) << key;
  EXPECT_TRUE(contains(key, kClient));
  EXPECT_TRUE(contains(key, kScope));
  EXPECT_FALSE(contains(key, kRefresh1));
  EXPECT_NE(other.cacheKey(), key);
  EXPECT_NE(password.cacheKey(), key);
}

// ---- DeviceCodeFlow --------------------------------------------------------

std::string deviceCodeBody(long expires_in = 900, long interval = 5) {
  return json({{"user_code", "ABCD2345X"},
               {"device_code", kDeviceCode},
               {"verification_uri", "https://microsoft.com/devicelogin"},
               {"expires_in", expires_in},
               {"interval", interval},
               {"message",
                "To sign in, use a web browser to open the page https://microsoft.com/devicelogin "
                "and enter the code ABCD2345X to authenticate."}})
      .dump();
}

TEST(DeviceCodeFlow, StartRequestAndAnswer) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, deviceCodeBody(900, 5));
  DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);
  EXPECT_EQ(flow.deviceCodeUrl(), kDeviceUrl);
  EXPECT_EQ(flow.tokenUrl(), kTokenUrl);

  auto code = flow.start();
  ASSERT_TRUE(code) << code.failure().explanation;
  EXPECT_EQ(code->device_code, kDeviceCode);
  EXPECT_EQ(code->user_code, "ABCD2345X");
  EXPECT_EQ(code->verification_uri, "https://microsoft.com/devicelogin");
  EXPECT_TRUE(contains(code->message, "ABCD2345X"));
  EXPECT_EQ(code->interval, 5s);
  EXPECT_EQ(code->expires_in, 900s);
  EXPECT_EQ(code->issued_at, clock.steadyNow());

  const auto requests = http.requests();
  ASSERT_EQ(requests.size(), 1u);
  expectFormPost(requests[0], kDeviceUrl);
  const auto form = formFields(requests[0].body);
  EXPECT_EQ(form.size(), 2u) << requests[0].body;
  EXPECT_EQ(form.at("client_id"), kClient);
  EXPECT_EQ(form.at("scope"), kScope);
}

TEST(DeviceCodeFlow, StartVariantsAndFailures) {
  FakeHttpClient http;
  ManualClock clock;
  DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);

  // No interval: RFC 8628 §3.2 says 5 s. Numbers as strings, as v1 sent them.
  http.pushResponse(200, R"({"user_code":"U","device_code":"D","verification_url":"https://x",)"
                         R"("expires_in":"600"})");
  auto v1 = flow.start();
  ASSERT_TRUE(v1) << v1.failure().explanation;
  EXPECT_EQ(v1->interval, 5s);
  EXPECT_EQ(v1->expires_in, 600s);
  EXPECT_EQ(v1->verification_uri, "https://x");

  // Control characters do not reach the terminal raw.
  http.pushResponse(200, json({{"user_code", "U\x1b[2J"},
                               {"device_code", "D"},
                               {"verification_uri", "https://x"},
                               {"expires_in", 900},
                               {"message", "line\r\nforged"}})
                             .dump());
  auto escaped = flow.start();
  ASSERT_TRUE(escaped);
  EXPECT_FALSE(contains(escaped->user_code, "\x1b"));
  EXPECT_FALSE(contains(escaped->message, "\n"));

  for (const char* body :
       {"<html>portal</html>",
        R"({"user_code":"U","verification_uri":"https://x","expires_in":900})",
        R"({"device_code":"D","verification_uri":"https://x","expires_in":900})",
        R"({"user_code":"U","device_code":"D","expires_in":900})",
        R"({"user_code":"U","device_code":"D","verification_uri":"https://x"})",
        R"({"user_code":"U","device_code":"D","verification_uri":"https://x","expires_in":0})"}) {
    http.pushResponse(200, body);
    auto r = flow.start();
    ASSERT_FALSE(r) << body;
    EXPECT_TRUE(r.failure().retryable) << body;
    EXPECT_EQ(r.failure().http_status, 200);
  }

  http.pushResponse(400, errorBody("unauthorized_client", 700016));
  auto unknown = flow.start();
  ASSERT_FALSE(unknown);
  EXPECT_FALSE(unknown.failure().retryable);
  EXPECT_TRUE(contains(unknown.failure().explanation, "not found in the tenant"));

  http.pushResponse(400, errorBody("invalid_grant", 65001));
  auto consent = flow.start();
  ASSERT_FALSE(consent);
  EXPECT_TRUE(contains(consent.failure().explanation, "consent"));
}

TEST(DeviceCodeFlow, PollRequestForm) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(400, errorBody("authorization_pending", 70016));
  http.pushResponse(400, errorBody("authorization_pending", 70016));
  DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);
  (void)flow.poll(kDeviceCode);
  DeviceCodeFlow confidential(entraOptions(), inlineSecret(kClientSecret), http, clock);
  (void)confidential.poll(kDeviceCode);

  const auto requests = http.requests();
  ASSERT_EQ(requests.size(), 2u);
  expectFormPost(requests[0], kTokenUrl);
  const auto form = formFields(requests[0].body);
  EXPECT_EQ(form.size(), 3u) << requests[0].body;
  EXPECT_EQ(form.at("grant_type"), kDeviceGrant);
  EXPECT_EQ(form.at("client_id"), kClient);
  EXPECT_EQ(form.at("device_code"), kDeviceCode);
  const auto with_secret = formFields(requests[1].body);
  EXPECT_EQ(with_secret.size(), 4u);
  EXPECT_EQ(with_secret.at("client_secret"), kClientSecret);
}

TEST(DeviceCodeFlow, EachPollOutcome) {
  FakeHttpClient http;
  ManualClock clock;
  DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);
  struct Case {
    long status;
    std::string body;
    DevicePollStatus expected;
  };
  const std::vector<Case> cases = {
      {400, errorBody("authorization_pending", 70016), DevicePollStatus::Pending},
      // The code alone, or the error alone, is enough.
      {400, errorBody("invalid_request", 70016), DevicePollStatus::Pending},
      {400, R"({"error":"authorization_pending"})", DevicePollStatus::Pending},
      {400, R"({"error":"slow_down","error_description":"Slow down."})",
       DevicePollStatus::SlowDown},
      {400, errorBody("authorization_declined", 70019), DevicePollStatus::Declined},
      {400, R"({"error":"authorization_declined"})", DevicePollStatus::Declined},
      {400, errorBody("expired_token", 70020), DevicePollStatus::Expired},
      {400, R"({"error":"expired_token"})", DevicePollStatus::Expired},
      {400, errorBody("invalid_grant", 70000), DevicePollStatus::Error},
      {400, R"({"error":"bad_verification_code"})", DevicePollStatus::Error},
      {503, errorBody("temporarily_unavailable", 50033), DevicePollStatus::Error},
      {200, tokenBody(kRefresh1), DevicePollStatus::Success},
  };
  for (const auto& c : cases) {
    http.pushResponse(c.status, c.body);
    const DevicePoll poll = flow.poll(kDeviceCode);
    EXPECT_EQ(poll.status, c.expected) << c.body;
    EXPECT_EQ(poll.tokens.has_value(), c.expected == DevicePollStatus::Success) << c.body;
  }

  http.pushResponse(400, errorBody("authorization_declined", 70019));
  const DevicePoll declined = flow.poll(kDeviceCode);
  EXPECT_TRUE(contains(declined.failure.explanation, "declined"));
  http.pushResponse(400, errorBody("expired_token", 70020));
  const DevicePoll expired = flow.poll(kDeviceCode);
  EXPECT_TRUE(contains(expired.failure.explanation, "expired"));
  http.pushResponse(503, "");
  EXPECT_TRUE(flow.poll(kDeviceCode).failure.retryable);
  http.pushResponse(400, errorBody("invalid_grant", 70000));
  EXPECT_FALSE(flow.poll(kDeviceCode).failure.retryable);
  http.push(http::TransportError{"Connection refused", false});
  const DevicePoll unreachable = flow.poll(kDeviceCode);
  EXPECT_EQ(unreachable.status, DevicePollStatus::Error);
  EXPECT_TRUE(unreachable.failure.retryable);

  http.pushResponse(200, tokenBody(kRefresh1));
  const DevicePoll ok = flow.poll(kDeviceCode);
  ASSERT_EQ(ok.status, DevicePollStatus::Success);
  EXPECT_EQ(ok.tokens->access.value, kAccess);
  EXPECT_EQ(ok.tokens->access.expires_at, clock.wallNow() + 3599s);
  EXPECT_EQ(ok.tokens->refresh_token, kRefresh1);
}

// A sleep that moves the clock instead of waiting, and notes each wait.
struct FakeSleep {
  ManualClock& clock;
  std::vector<std::chrono::seconds> waits;
  DeviceCodeFlow::SleepFunction function() {
    return [this](std::chrono::seconds d) {
      waits.push_back(d);
      clock.advance(d);
    };
  }
};

DeviceCode startedCode(const ManualClock& clock, std::chrono::seconds expires_in = 900s,
                       std::chrono::seconds interval = 5s) {
  DeviceCode code;
  code.device_code = kDeviceCode;
  code.user_code = "ABCD2345X";
  code.verification_uri = "https://microsoft.com/devicelogin";
  code.interval = interval;
  code.expires_in = expires_in;
  code.issued_at = clock.steadyNow();
  return code;
}

TEST(DeviceCodeFlow, RunPollsAtTheIntervalUntilSuccess) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, deviceCodeBody(900, 7));
  http.pushResponse(400, errorBody("authorization_pending", 70016));
  http.pushResponse(400, errorBody("authorization_pending", 70016));
  http.pushResponse(200, tokenBody(kRefresh1));
  DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);
  auto code = flow.start();
  ASSERT_TRUE(code);
  FakeSleep sleep{clock, {}};
  const DevicePoll result = flow.run(*code, sleep.function(), clock);
  ASSERT_EQ(result.status, DevicePollStatus::Success);
  EXPECT_EQ(result.tokens->refresh_token, kRefresh1);
  EXPECT_EQ(sleep.waits, (std::vector<std::chrono::seconds>{7s, 7s, 7s}));
  EXPECT_EQ(http.requestCount(), 4u);
}

TEST(DeviceCodeFlow, SlowDownAddsFiveSeconds) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(400, errorBody("authorization_pending", 70016));
  http.pushResponse(400, R"({"error":"slow_down"})");
  http.pushResponse(400, errorBody("authorization_pending", 70016));
  http.pushResponse(400, R"({"error":"slow_down"})");
  http.pushResponse(200, tokenBody(kRefresh1));
  DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);
  FakeSleep sleep{clock, {}};
  const DevicePoll result = flow.run(startedCode(clock), sleep.function(), clock);
  ASSERT_EQ(result.status, DevicePollStatus::Success);
  EXPECT_EQ(sleep.waits, (std::vector<std::chrono::seconds>{5s, 5s, 10s, 10s, 15s}));
}

TEST(DeviceCodeFlow, ExpiryStopsPolling) {
  FakeHttpClient http;
  ManualClock clock;
  http.setFallback(http::Response{400, {}, errorBody("authorization_pending", 70016)});
  DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);
  FakeSleep sleep{clock, {}};
  const auto code = startedCode(clock, 15s, 5s);
  const DevicePoll result = flow.run(code, sleep.function(), clock);
  EXPECT_EQ(result.status, DevicePollStatus::Expired);
  EXPECT_FALSE(result.failure.retryable);
  EXPECT_TRUE(contains(result.failure.explanation, "expired")) << result.failure.explanation;
  // Polls at 5 s and 10 s; at 15 s the code is dead and nothing is sent.
  EXPECT_EQ(http.requestCount(), 2u);
  EXPECT_EQ(clock.steadyNow(), code.issued_at + 15s);

  // Time spent between start() and run() counts too.
  FakeHttpClient http2;
  http2.setFallback(http::Response{400, {}, errorBody("authorization_pending", 70016)});
  DeviceCodeFlow flow2(entraOptions(), std::nullopt, http2, clock);
  const auto late = startedCode(clock, 15s, 5s);
  clock.advance(12s);
  EXPECT_EQ(flow2.run(late, sleep.function(), clock).status, DevicePollStatus::Expired);
  EXPECT_EQ(http2.requestCount(), 0u);
}

TEST(DeviceCodeFlow, RunStopsAtTheAnswer) {
  for (const auto& [body, expected] :
       std::vector<std::pair<std::string, DevicePollStatus>>{
           {errorBody("authorization_declined", 70019), DevicePollStatus::Declined},
           {errorBody("expired_token", 70020), DevicePollStatus::Expired},
           {errorBody("invalid_grant", 70000), DevicePollStatus::Error}}) {
    FakeHttpClient http;
    ManualClock clock;
    http.pushResponse(400, errorBody("authorization_pending", 70016));
    http.pushResponse(400, body);
    http.setFallback(http::Response{200, {}, tokenBody(kRefresh1)});
    DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);
    FakeSleep sleep{clock, {}};
    EXPECT_EQ(flow.run(startedCode(clock), sleep.function(), clock).status, expected) << body;
    EXPECT_EQ(http.requestCount(), 2u);
  }
}

TEST(DeviceCodeFlow, RunRidesOutNetworkTrouble) {
  FakeHttpClient http;
  ManualClock clock;
  http.push(http::TransportError{"Connection reset", false});
  http.pushResponse(502, "<html>Bad Gateway</html>");
  http.push(http::TransportError{"timeout", true});
  http.pushResponse(200, tokenBody(kRefresh1));
  DeviceCodeFlow flow(entraOptions(), std::nullopt, http, clock);
  FakeSleep sleep{clock, {}};
  EXPECT_EQ(flow.run(startedCode(clock), sleep.function(), clock).status,
            DevicePollStatus::Success);

  FakeHttpClient down;
  down.setFallback(http::TransportError{"Connection refused", false});
  DeviceCodeFlow flow2(entraOptions(), std::nullopt, down, clock);
  const DevicePoll result = flow2.run(startedCode(clock), sleep.function(), clock);
  EXPECT_EQ(result.status, DevicePollStatus::Error);
  EXPECT_TRUE(result.failure.retryable);
  EXPECT_EQ(down.requestCount(),
            static_cast<std::size_t>(DeviceCodeFlow::kMaxTransientFailures) + 1);
}

TEST(DeviceCodeFlow, NoDeviceCodeOrTokensInLogsOrExplanations) {
  LogCapture logs;
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, deviceCodeBody());
  http.pushResponse(400, "<html>refused: device_code=" + kDeviceCode + "</html>");
  http.pushResponse(400, errorBody("invalid_request", 900144, "code " + kDeviceCode));
  http.pushResponse(200, tokenBody(kRefresh1));
  DeviceCodeFlow flow(entraOptions(), inlineSecret(kClientSecret), http, clock);
  auto code = flow.start();
  ASSERT_TRUE(code);
  const DevicePoll echoed = flow.poll(code->device_code);
  ASSERT_EQ(echoed.status, DevicePollStatus::Error);
  const DevicePoll described = flow.poll(code->device_code);
  ASSERT_EQ(described.status, DevicePollStatus::Error);
  ASSERT_EQ(flow.poll(code->device_code).status, DevicePollStatus::Success);
  for (const auto* e : {&echoed.failure.explanation, &described.failure.explanation}) {
    EXPECT_FALSE(contains(*e, kDeviceCode)) << *e;
    EXPECT_TRUE(contains(*e, "[redacted]")) << *e;
  }
  const std::string log = logs.text();
  EXPECT_FALSE(contains(log, kDeviceCode)) << log;
  EXPECT_FALSE(contains(log, kAccess)) << log;
  EXPECT_FALSE(contains(log, kRefresh1)) << log;
  EXPECT_FALSE(contains(log, "secret_CS")) << log;
}

}  // namespace
}  // namespace mb::oauth
