#include "oauth/entra_client_credentials.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "http/testing/fake_http_client.h"
#include "oauth/cached_token_source.h"
#include "oauth/encoding.h"
#include "oauth/testing/entra_app.h"
#include "oauth/testing/log_capture.h"
#include "oauth/testing/test_certificate.h"
#include "oauth/testing/token_requests.h"

namespace mb::oauth {
namespace {

using namespace std::chrono_literals;
using http::testing::FakeHttpClient;
using namespace testing;  // oauth/testing/: the Entra app, form decoding, LogCapture
using json = nlohmann::json;

// A secret with every character that needs care in a form body.
const std::string kSecret = "Qx8~Z.tAbc+/=&%secret_VALUE-42";
constexpr const char* kToken = "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFBQUEifQ.eyJhdWQiOiJncmFwaCJ9.c2ln";

std::string successBody(long expires_in = 3599) {
  return R"({"token_type":"Bearer","expires_in":)" + std::to_string(expires_in) +
         R"(,"ext_expires_in":3599,"access_token":")" + kToken + R"("})";
}

TEST(EntraClientCredentials, SecretRequestShape) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, successBody());
  EntraClientCredentials source(entraOptions(), inlineSecret(kSecret), http, clock);
  EXPECT_EQ(source.tokenUrl(), kTokenUrl);
  EXPECT_EQ(source.scope(), "https://graph.microsoft.com/.default");

  auto token = source.fetch();
  ASSERT_TRUE(token) << token.failure().explanation;

  const auto requests = http.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& r = requests[0];
  expectFormPost(r, kTokenUrl);
  EXPECT_LE(r.timeout, 30s);
  // The secret is sent encoded: its '+', '/', '=', '&', '%' stay data.
  EXPECT_NE(r.body.find("client_secret=Qx8~Z.tAbc%2B%2F%3D%26%25secret_VALUE-42"),
            std::string::npos)
      << r.body;
  const auto form = formFields(r.body);
  EXPECT_EQ(form.size(), 4u);
  EXPECT_EQ(form.at("client_id"), kClient);
  EXPECT_EQ(form.at("scope"), "https://graph.microsoft.com/.default");
  EXPECT_EQ(form.at("grant_type"), "client_credentials");
  EXPECT_EQ(form.at("client_secret"), kSecret);
}

TEST(EntraClientCredentials, ParsesSuccess) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, successBody(3599), {{"Cache-Control", "no-store, no-cache"}});
  EntraClientCredentials source(entraOptions(), inlineSecret(kSecret), http, clock);
  auto token = source.fetch();
  ASSERT_TRUE(token) << token.failure().explanation;
  EXPECT_EQ(token->value, kToken);
  EXPECT_EQ(token->expires_at, clock.wallNow() + 3599s);
}

TEST(EntraClientCredentials, OtherCloudsAndScopes) {
  FakeHttpClient http;
  ManualClock clock;
  EntraOptions o = entraOptions();
  o.login_endpoint = "https://login.microsoftonline.us/";
  o.graph_endpoint = "https://graph.microsoft.us/";
  o.tenant = "a b";  // not a valid tenant, but it must not break the URL
  EntraClientCredentials us(o, inlineSecret(kSecret), http, clock);
  EXPECT_EQ(us.tokenUrl(), "https://login.microsoftonline.us/a%20b/oauth2/v2.0/token");
  EXPECT_EQ(us.scope(), "https://graph.microsoft.us/.default");

  o.scope = "https://outlook.office365.com/.default";
  EntraClientCredentials smtp(o, inlineSecret(kSecret), http, clock);
  EXPECT_EQ(smtp.scope(), "https://outlook.office365.com/.default");
  EXPECT_NE(smtp.cacheKey(), us.cacheKey());
}

TEST(TokenResponse, Variants) {
  const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  auto as_string = parseTokenResponse(R"({"access_token":"abc","expires_in":"3600"})", t0);
  ASSERT_TRUE(as_string);
  EXPECT_EQ(as_string->expires_at, t0 + 3600s);

  auto lower =
      parseTokenResponse(R"({"access_token":"abc","token_type":"bearer","expires_in":60})", t0);
  ASSERT_TRUE(lower);

  auto huge = parseTokenResponse(R"({"access_token":"abc","expires_in":99999999})", t0);
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->expires_at, t0 + 24h);

  for (const char* body : {"", "<html>login portal</html>", "[]", R"({"expires_in":3599})",
                           R"({"access_token":"","expires_in":3599})", R"({"access_token":"abc"})",
                           R"({"access_token":"abc","expires_in":0})",
                           R"({"access_token":"abc","expires_in":"soon"})"}) {
    auto r = parseTokenResponse(body, t0);
    ASSERT_FALSE(r) << body;
    EXPECT_TRUE(r.failure().retryable) << body;
    EXPECT_EQ(r.failure().http_status, 200);
    EXPECT_EQ(r.failure().explanation.find("abc"), std::string::npos);
  }

  auto pop = parseTokenResponse(R"({"access_token":"abc","token_type":"pop","expires_in":60})", t0);
  ASSERT_FALSE(pop);
  EXPECT_FALSE(pop.failure().retryable);
}

TEST(EntraClientCredentials, CertificateRequestShape) {
  const auto& tc = TestCertificate::rsa2048();
  auto cert = ClientCertificate::fromPem(tc.cert_pem, tc.key_pem, "test");
  ASSERT_TRUE(cert) << cert.error().message;
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, successBody());
  EntraClientCredentials source(entraOptions(), *cert, http, clock);
  auto token = source.fetch();
  ASSERT_TRUE(token) << token.failure().explanation;

  const auto requests = http.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& r = requests[0];
  expectFormPost(r, kTokenUrl);
  const auto form = formFields(r.body);
  EXPECT_EQ(form.size(), 5u);
  EXPECT_EQ(form.count("client_secret"), 0u);
  EXPECT_EQ(form.at("client_id"), kClient);
  EXPECT_EQ(form.at("scope"), "https://graph.microsoft.com/.default");
  EXPECT_EQ(form.at("grant_type"), "client_credentials");
  EXPECT_EQ(form.at("client_assertion_type"),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");

  const std::string& jwt = form.at("client_assertion");
  const std::size_t dot1 = jwt.find('.');
  const std::size_t dot2 = jwt.find('.', dot1 + 1);
  ASSERT_NE(dot2, std::string::npos);
  EXPECT_EQ(jwt.find('.', dot2 + 1), std::string::npos);
  const auto header_json = json::parse(*base64UrlDecode(jwt.substr(0, dot1)));
  const auto claims = json::parse(*base64UrlDecode(jwt.substr(dot1 + 1, dot2 - dot1 - 1)));
  const auto signature = base64UrlDecode(jwt.substr(dot2 + 1));
  ASSERT_TRUE(signature);

  EXPECT_EQ(header_json["alg"], "PS256");
  EXPECT_EQ(header_json["typ"], "JWT");
  EXPECT_EQ(header_json["x5t#S256"], base64UrlEncode(TestCertificate::sha256OfDer(tc.cert_pem)));

  const long long now =
      std::chrono::duration_cast<std::chrono::seconds>(clock.wallNow().time_since_epoch()).count();
  EXPECT_EQ(claims["aud"], kTokenUrl);
  EXPECT_EQ(claims["iss"], kClient);
  EXPECT_EQ(claims["sub"], kClient);
  EXPECT_EQ(claims["nbf"], now);
  EXPECT_EQ(claims["iat"], now);
  EXPECT_EQ(claims["exp"], now + 600);
  EXPECT_TRUE(claims["jti"].is_string());

  EXPECT_TRUE(TestCertificate::verifyPs256(tc.cert_pem, jwt.substr(0, dot2), *signature));
}

TEST(EntraClientCredentials, RefusedRequest) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(
      401,
      R"({"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app '11111111-2222-3333-4444-555555555555' are expired.\r\nTrace ID: t-1\r\nCorrelation ID: c-1\r\nTimestamp: 2026-01-09 02:02:12Z","error_codes":[7000222],"trace_id":"t-1","correlation_id":"c-1","timestamp":"2026-01-09 02:02:12Z"})");
  EntraClientCredentials source(entraOptions(), inlineSecret(kSecret), http, clock);
  auto token = source.fetch();
  ASSERT_FALSE(token);
  EXPECT_FALSE(token.failure().retryable);
  EXPECT_EQ(token.failure().http_status, 401);
  EXPECT_EQ(token.failure().error_code, 7000222);
  EXPECT_NE(token.failure().explanation.find("expired"), std::string::npos);
  EXPECT_NE(token.failure().explanation.find("t-1"), std::string::npos);
}

TEST(EntraClientCredentials, TransportErrorIsRetryable) {
  FakeHttpClient http;
  ManualClock clock;
  http.push(http::TransportError{"Connection refused", false});
  EntraClientCredentials source(entraOptions(), inlineSecret(kSecret), http, clock);
  auto token = source.fetch();
  ASSERT_FALSE(token);
  EXPECT_TRUE(token.failure().retryable);
  EXPECT_EQ(token.failure().http_status, 0);
  EXPECT_NE(token.failure().explanation.find("Connection refused"), std::string::npos);
  EXPECT_NE(token.failure().explanation.find("login.microsoftonline.com"), std::string::npos);
}

// Nothing an administrator reads (explanations, log lines) may hold the
// secret, the assertion or the token, even when a proxy echoes the request.
TEST(EntraClientCredentials, NoCredentialInExplanationsOrLogs) {
  LogCapture logs;
  FakeHttpClient http;
  ManualClock clock;
  const std::string encoded = percentEncode(kSecret);
  // Echoes of the request, raw and encoded, in every shape of failure.
  http.pushResponse(400, "<html><body>Blocked: client_secret=" + encoded + "</body></html>");
  http.pushResponse(403, "client_secret=" + kSecret);
  http.pushResponse(401,
                    R"({"error":"invalid_client","error_description":"AADSTS7000215: bad secret )" +
                        kSecret + R"(","error_codes":[7000215]})");
  http.pushResponse(500, R"({"error":"server_error","error_description":")" + encoded + R"("})");
  http.push(http::TransportError{"proxy said: " + kSecret, false});
  http.pushResponse(200, successBody());

  std::vector<std::string> explanations;
  EntraClientCredentials source(entraOptions(), inlineSecret(kSecret), http, clock);
  for (int i = 0; i < 5; ++i) {
    auto r = source.fetch();
    ASSERT_FALSE(r);
    explanations.push_back(r.failure().explanation);
  }
  auto ok = source.fetch();
  ASSERT_TRUE(ok);

  // Also every explanation the classifier knows, fed the secret as text.
  for (long code : {7000215L, 7000222L, 700016L, 90002L, 7000229L, 7000218L, 700027L, 500133L,
                    50126L, 50076L, 50079L, 70008L, 700082L, 50173L, 50033L, 90024L}) {
    http.pushResponse(400, R"({"error":"invalid_client","error_description":"AADSTS)" +
                               std::to_string(code) + ": " + kSecret + R"(","error_codes":[)" +
                               std::to_string(code) + "]}");
    auto r = source.fetch();
    ASSERT_FALSE(r);
    explanations.push_back(r.failure().explanation);
  }

  for (const auto& e : explanations) {
    EXPECT_EQ(e.find(kSecret), std::string::npos) << e;
    EXPECT_EQ(e.find(encoded), std::string::npos) << e;
    EXPECT_EQ(e.find("secret_VALUE"), std::string::npos) << e;
  }
  EXPECT_NE(explanations[0].find("[redacted]"), std::string::npos) << explanations[0];
  const std::string log = logs.text();
  EXPECT_NE(log.find("failed"), std::string::npos);
  EXPECT_NE(log.find("new token"), std::string::npos);  // debug line, captured too
  EXPECT_EQ(log.find("secret_VALUE"), std::string::npos) << log;
  EXPECT_EQ(log.find(kToken), std::string::npos) << log;
}

TEST(EntraClientCredentials, NoAssertionInExplanations) {
  LogCapture logs;
  const auto& tc = TestCertificate::rsa2048();
  auto cert = ClientCertificate::fromPem(tc.cert_pem, tc.key_pem, "test");
  ASSERT_TRUE(cert);
  // A fake that echoes the request body back in an error page.
  class Echo final : public http::HttpClient {
   public:
    http::Outcome perform(const http::Request& r) override {
      body = r.body;
      return http::Response{502, {}, "<html>upstream said: " + r.body + "</html>"};
    }
    std::string body;
  } echo;
  ManualClock clock;
  EntraClientCredentials source(entraOptions(), *cert, echo, clock);
  auto r = source.fetch();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.failure().retryable);
  const std::string assertion = formFields(echo.body).at("client_assertion");
  ASSERT_GT(assertion.size(), 100u);
  EXPECT_EQ(r.failure().explanation.find(assertion.substr(0, 60)), std::string::npos);
  EXPECT_EQ(logs.text().find(assertion.substr(0, 60)), std::string::npos);
}

TEST(EntraClientCredentials, WorksBehindTheCache) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, successBody());
  auto cache = std::make_shared<TokenCache>(clock);
  CachedTokenSource source(cache, std::make_unique<EntraClientCredentials>(
                                      entraOptions(), inlineSecret(kSecret), http, clock));
  EXPECT_NE(source.cacheKey().find(kClient), std::string::npos);
  auto first = source.token();
  auto second = source.token();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(second->value, kToken);
  EXPECT_EQ(http.requestCount(), 1u);
}

}  // namespace
}  // namespace mb::oauth
