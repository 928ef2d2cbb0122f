#include "oauth/google_service_account.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing/temp_dir.h"
#include "http/testing/fake_http_client.h"
#include "oauth/encoding.h"
#include "oauth/openssl_support.h"
#include "oauth/testing/log_capture.h"
#include "oauth/testing/test_certificate.h"
#include "oauth/testing/token_requests.h"

namespace mb::oauth {
namespace {

using namespace std::chrono_literals;
using http::testing::FakeHttpClient;
using json = nlohmann::json;
using testing::expectFormPost;
using testing::formFields;
using testing::LogCapture;
using testing::TestCertificate;

constexpr const char* kEmail = "relay@mailbridge-test.iam.gserviceaccount.com";
constexpr const char* kClientId = "109876543210987654321";
constexpr const char* kKeyId = "3f2a9c0d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49";
constexpr const char* kTokenUri = "https://oauth2.googleapis.com/token";
constexpr const char* kScope = "https://www.googleapis.com/auth/gmail.send";
constexpr const char* kSubject = "Scanner@Example.com";
constexpr const char* kToken = "ya29.c.b0AXv0zTOPSECRETaccessTOKENvalue1234567890";

const std::string& rsaKeyPem() { return TestCertificate::rsa2048().key_pem; }

json keyFile(const std::string& pem = rsaKeyPem()) {
  return {{"type", "service_account"},
          {"project_id", "mailbridge-test"},
          {"private_key_id", kKeyId},
          {"private_key", pem},
          {"client_email", kEmail},
          {"client_id", kClientId},
          {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
          {"token_uri", kTokenUri},
          {"universe_domain", "googleapis.com"}};
}

std::shared_ptr<const GoogleServiceAccount> account(const json& file = keyFile()) {
  auto loaded = GoogleServiceAccount::fromJson(file.dump(2), "test-key.json");
  if (!loaded) ADD_FAILURE() << loaded.error().message;
  return loaded ? *loaded : nullptr;
}

// A line from the middle of the PEM body: a piece of the key that no
// message may contain.
std::string pemBodyLine(const std::string& pem) {
  std::istringstream in(pem);
  std::string line;
  std::getline(in, line);  // -----BEGIN
  std::getline(in, line);
  std::getline(in, line);
  return line;
}

// Checks an RS256 signature with only the public half of `private_pem`,
// independently of the code under test.
bool verifyRs256(const std::string& private_pem, const std::string& input,
                 const std::string& signature) {
  BioPtr bio = readOnlyBio(private_pem);
  PkeyPtr full(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!full) return false;
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(full.get(), &der);
  if (len <= 0) return false;
  const unsigned char* p = der;
  PkeyPtr pub(d2i_PUBKEY(nullptr, &p, len));
  OPENSSL_free(der);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!pub || !ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, pub.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
    return false;
  }
  const int rc = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
      reinterpret_cast<const unsigned char*>(input.data()), input.size());
  ERR_clear_error();
  return rc == 1;
}

struct Jwt {
  json header;
  json claims;
  std::string signing_input;
  std::string signature;
  std::string signature_text;  // base64url, as sent
};

Jwt splitJwt(const std::string& jwt) {
  Jwt out;
  const std::size_t dot1 = jwt.find('.');
  const std::size_t dot2 = jwt.find('.', dot1 + 1);
  EXPECT_NE(dot2, std::string::npos);
  EXPECT_EQ(jwt.find('.', dot2 + 1), std::string::npos);
  if (dot2 == std::string::npos) return out;
  const auto header = base64UrlDecode(jwt.substr(0, dot1));
  const auto claims = base64UrlDecode(jwt.substr(dot1 + 1, dot2 - dot1 - 1));
  const auto signature = base64UrlDecode(jwt.substr(dot2 + 1));
  EXPECT_TRUE(header && claims && signature);
  if (!header || !claims || !signature) return out;
  out.header = json::parse(*header);
  out.claims = json::parse(*claims);
  out.signing_input = jwt.substr(0, dot2);
  out.signature = *signature;
  out.signature_text = jwt.substr(dot2 + 1);
  return out;
}

std::string tokenBody() {
  return std::string(R"({"access_token":")") + kToken +
         R"(","expires_in":3599,"token_type":"Bearer"})";
}

std::string errorBody(const std::string& error, const std::string& description) {
  return json{{"error", error}, {"error_description", description}}.dump();
}

// ---------------------------------------------------------------------------
// The key file

TEST(GoogleServiceAccount, ReadsTheKeyFile) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "service-account.json";
  TestCertificate::writeFile(path, keyFile().dump(2) + "\n");
  auto loaded = GoogleServiceAccount::fromJsonFile(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  const auto& sa = **loaded;
  EXPECT_EQ(sa.clientEmail(), kEmail);
  EXPECT_EQ(sa.clientId(), kClientId);
  EXPECT_EQ(sa.keyId(), kKeyId);
  EXPECT_EQ(sa.tokenUri(), kTokenUri);
  EXPECT_EQ(sa.origin(), path.string());
}

TEST(GoogleServiceAccount, ClientIdMayBeMissing) {
  json file = keyFile();
  file.erase("client_id");
  auto sa = account(file);
  ASSERT_TRUE(sa);
  EXPECT_TRUE(sa->clientId().empty());
}

TEST(GoogleServiceAccount, SignsRs256) {
  auto sa = account();
  ASSERT_TRUE(sa);
  const std::string input = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0";
  auto signature = sa->signRs256(input);
  ASSERT_TRUE(signature) << signature.error().message;
  EXPECT_EQ(signature->size(), 256u);  // 2048-bit modulus
  EXPECT_TRUE(verifyRs256(rsaKeyPem(), input, *signature));
  EXPECT_FALSE(verifyRs256(rsaKeyPem(), input + "x", *signature));
  // PKCS#1 v1.5 is deterministic, unlike PSS.
  auto again = sa->signRs256(input);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *signature);
}

TEST(GoogleServiceAccount, KeyFileChecksNameTheFileAndTheField) {
  struct Case {
    const char* name;
    std::string text;
    std::vector<std::string> expected;  // parts of the message
  };
  auto without = [](const char* field) {
    json f = keyFile();
    f.erase(field);
    return f.dump();
  };
  auto with = [](const char* field, json value) {
    json f = keyFile();
    f[field] = std::move(value);
    return f.dump();
  };
  const std::vector<Case> cases = {
      {"not JSON", "this is not json {", {"test-key.json", "is not JSON"}},
      {"a bare PEM key", rsaKeyPem(), {"test-key.json", "is not JSON"}},
      {"P12", std::string("\x30\x82\x0a\x01\x02\x01\x03", 7), {"test-key.json", "P12"}},
      {"not an object", R"(["service_account"])", {"test-key.json", "not an object"}},
      {"type missing", without("type"), {"test-key.json", "field \"type\" is missing"}},
      {"user credentials", with("type", "authorized_user"),
       {"field \"type\" is \"authorized_user\", not \"service_account\"", "user's credentials"}},
      {"type a number", with("type", 1), {"field \"type\" is not a string"}},
      {"client_email missing", without("client_email"), {"field \"client_email\" is missing"}},
      {"client_email empty", with("client_email", ""), {"field \"client_email\" is empty"}},
      {"client_email no address", with("client_email", "relay"),
       {"field \"client_email\" is not an email address"}},
      {"private_key missing", without("private_key"), {"field \"private_key\" is missing"}},
      {"private_key a number", with("private_key", 42), {"field \"private_key\" is not a string"}},
      {"private_key empty", with("private_key", ""), {"field \"private_key\" is empty"}},
      {"private_key garbage", with("private_key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
       {"field \"private_key\" holds no usable private key"}},
      {"private_key a certificate", with("private_key", TestCertificate::rsa2048().cert_pem),
       {"field \"private_key\" holds no usable private key"}},
      {"not RSA", with("private_key", TestCertificate::ecP256().key_pem),
       {"field \"private_key\" holds an EC key, not an RSA key"}},
      {"short RSA", with("private_key", TestCertificate::rsa1024().key_pem),
       {"field \"private_key\" holds an RSA key of 1024 bits; at least 2048"}},
      {"private_key_id missing", without("private_key_id"), {"field \"private_key_id\" is missing"}},
      {"private_key_id a number", with("private_key_id", 7), {"field \"private_key_id\" is not a string"}},
      {"token_uri missing", without("token_uri"), {"field \"token_uri\" is missing"}},
      {"token_uri http", with("token_uri", "http://oauth2.googleapis.com/token"),
       {"field \"token_uri\" is not an https:// URL"}},
      {"client_id a number", with("client_id", 123), {"field \"client_id\" is not a string"}},
  };
  const std::string key_piece = pemBodyLine(rsaKeyPem());
  ASSERT_GE(key_piece.size(), 40u);
  for (const auto& c : cases) {
    auto loaded = GoogleServiceAccount::fromJson(c.text, "test-key.json");
    ASSERT_FALSE(loaded) << c.name;
    const std::string& message = loaded.error().message;
    EXPECT_EQ(message.rfind("Google service account key test-key.json", 0), 0u)
        << c.name << ": " << message;
    for (const auto& part : c.expected) {
      EXPECT_NE(message.find(part), std::string::npos) << c.name << ": " << message;
    }
    EXPECT_EQ(message.find("-----END"), std::string::npos) << c.name << ": " << message;
    EXPECT_EQ(message.find(key_piece), std::string::npos) << c.name;
    EXPECT_EQ(message.find(pemBodyLine(TestCertificate::rsa1024().key_pem)), std::string::npos)
        << c.name;
  }
}

TEST(GoogleServiceAccount, MissingFileIsNamed) {
  mb::testing::TempDir dir;
  auto loaded = GoogleServiceAccount::fromJsonFile(dir.path() / "absent.json");
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("absent.json"), std::string::npos)
      << loaded.error().message;
}

// ---------------------------------------------------------------------------
// The JWT bearer grant

TEST(GoogleJwtBearer, RequestFormAndClaims) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, tokenBody());
  GoogleJwtBearer bearer(account(), kSubject, kScope, http, clock);
  auto token = bearer.fetch();
  ASSERT_TRUE(token) << token.failure().explanation;

  const auto requests = http.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& r = requests[0];
  expectFormPost(r, kTokenUri);
  EXPECT_EQ(r.timeout, 30s);
  const auto form = formFields(r.body);
  ASSERT_EQ(form.size(), 2u) << r.body;
  EXPECT_EQ(form.at("grant_type"), "urn:ietf:params:oauth:grant-type:jwt-bearer");

  const Jwt jwt = splitJwt(form.at("assertion"));
  EXPECT_EQ(jwt.header, (json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", kKeyId}}));
  const long long now =
      std::chrono::duration_cast<std::chrono::seconds>(clock.wallNow().time_since_epoch()).count();
  EXPECT_EQ(jwt.claims, (json{{"iss", kEmail},
                              {"sub", kSubject},
                              {"scope", kScope},
                              {"aud", kTokenUri},
                              {"iat", now},
                              {"exp", now + 3600}}));
  EXPECT_TRUE(verifyRs256(rsaKeyPem(), jwt.signing_input, jwt.signature));
}

TEST(GoogleJwtBearer, TokenUriOverrideAndNoSubject) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, tokenBody());
  GoogleJwtBearer bearer(account(), "", kScope, http, clock, "https://127.0.0.1:4443/token", 5s);
  ASSERT_TRUE(bearer.fetch());
  const auto r = http.requests().at(0);
  EXPECT_EQ(r.url, "https://127.0.0.1:4443/token");
  EXPECT_EQ(r.timeout, 5s);
  const Jwt jwt = splitJwt(formFields(r.body).at("assertion"));
  EXPECT_EQ(jwt.claims["aud"], "https://127.0.0.1:4443/token");
  EXPECT_FALSE(jwt.claims.contains("sub"));
}

TEST(GoogleJwtBearer, ReadsTheToken) {
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, tokenBody());
  GoogleJwtBearer bearer(account(), kSubject, kScope, http, clock);
  LogCapture log;
  auto token = bearer.fetch();
  ASSERT_TRUE(token) << token.failure().explanation;
  EXPECT_EQ(token->value, kToken);
  EXPECT_EQ(token->expires_at, clock.wallNow() + 3599s);
  EXPECT_EQ(log.text().find(kToken), std::string::npos) << log.text();
  EXPECT_NE(log.text().find(kEmail), std::string::npos) << log.text();

  http.pushResponse(200, "<html>captive portal</html>");
  auto bad = bearer.fetch();
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.failure().retryable);
}

TEST(GoogleJwtBearer, CacheKey) {
  FakeHttpClient http;
  ManualClock clock;
  auto sa = account();
  GoogleJwtBearer a(sa, kSubject, kScope, http, clock);
  const std::string key = a.cacheKey();
  EXPECT_NE(key.find(kEmail), std::string::npos) << key;
  EXPECT_NE(key.find("scanner@example.com"), std::string::npos) << key;
  EXPECT_EQ(key.find(kSubject), std::string::npos) << key;  // lower-cased
  EXPECT_NE(key.find(kScope), std::string::npos) << key;

  EXPECT_EQ(GoogleJwtBearer(sa, "scanner@EXAMPLE.com", kScope, http, clock).cacheKey(), key);
  EXPECT_NE(GoogleJwtBearer(sa, "printer@example.com", kScope, http, clock).cacheKey(), key);
  EXPECT_NE(GoogleJwtBearer(sa, kSubject, "https://mail.google.com/", http, clock).cacheKey(), key);
  json other = keyFile();
  other["client_email"] = "other@mailbridge-test.iam.gserviceaccount.com";
  EXPECT_NE(GoogleJwtBearer(account(other), kSubject, kScope, http, clock).cacheKey(), key);
}

TEST(GoogleJwtBearer, ExplainsTokenErrors) {
  struct Case {
    const char* name;
    long status;
    std::string body;
    bool retryable;
    std::vector<std::string> expected;  // parts of the explanation
    std::vector<std::pair<std::string, std::string>> headers = {};
  };
  const std::vector<Case> cases = {
      {"delegation", 401,
       errorBody("unauthorized_client",
                 "Client is unauthorized to retrieve access tokens using this method, or client "
                 "not authorized for any of the scopes requested."),
       false,
       {"domain-wide delegation", "Admin console", kClientId, kScope, "24 hours",
        "unauthorized_client", "HTTP 401"}},
      {"deleted key", 400, errorBody("invalid_grant", "Invalid JWT Signature."), false,
       {"signature", kKeyId, kEmail, "deleted", "new JSON key", "Invalid JWT Signature."}},
      {"clock", 400,
       errorBody("invalid_grant",
                 "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                 "reasonable timeframe. Check your iat and exp values in the JWT claim."),
       false,
       {"clock", "NTP", "2027"}},
      {"unknown user", 400, errorBody("invalid_grant", "Invalid email or User ID"), false,
       {kSubject, "does not exist", "Workspace"}},
      {"scope", 400, errorBody("invalid_scope", "Invalid OAuth scope or ID token audience provided."),
       false,
       {"scope", kScope, "gmail.send"}},
      {"account not found", 400, errorBody("invalid_grant", "Invalid grant: account not found"),
       false,
       {kEmail, "not found or is disabled"}},
      {"audience", 400, errorBody("invalid_grant", "Invalid JWT: Failed audience check."), false,
       {"audience", kTokenUri}},
      {"internal", 500, errorBody("internal_failure", "Backend Error"), true,
       {"retried", "HTTP 500"}},
      {"unavailable", 503, errorBody("temporarily_unavailable", ""), true, {"retried"},
       {{"Retry-After", "7"}}},
      {"throttled", 429, errorBody("rate_limit_exceeded", "Rate Limit Exceeded"), true,
       {"throttling"}},
      {"proxy", 502, "<html><title>502 Bad Gateway</title></html>", true,
       {"not Google's JSON", "502 Bad Gateway"}},
  };
  for (const auto& c : cases) {
    FakeHttpClient http;
    ManualClock clock;
    http.pushResponse(c.status, c.body, c.headers);
    GoogleJwtBearer bearer(account(), kSubject, kScope, http, clock);
    LogCapture log;
    auto token = bearer.fetch();
    ASSERT_FALSE(token) << c.name;
    const TokenFailure& f = token.failure();
    EXPECT_EQ(f.retryable, c.retryable) << c.name;
    EXPECT_EQ(f.http_status, c.status) << c.name;
    for (const auto& part : c.expected) {
      EXPECT_NE(f.explanation.find(part), std::string::npos)
          << c.name << ": no \"" << part << "\" in " << f.explanation;
    }
    EXPECT_EQ(f.explanation.find('\n'), std::string::npos) << c.name;
    const std::string assertion = formFields(http.requests().at(0).body).at("assertion");
    const Jwt jwt = splitJwt(assertion);
    EXPECT_EQ(f.explanation.find(jwt.signature_text), std::string::npos) << c.name;
    EXPECT_EQ(log.text().find(jwt.signature_text), std::string::npos) << c.name;
    EXPECT_NE(log.text().find(f.explanation), std::string::npos) << c.name;
  }

  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(503, errorBody("temporarily_unavailable", ""), {{"Retry-After", "7"}});
  http.pushResponse(401, errorBody("unauthorized_client", "x"));
  GoogleJwtBearer bearer(account(), kSubject, kScope, http, clock);
  auto unavailable = bearer.fetch();
  ASSERT_FALSE(unavailable);
  EXPECT_EQ(unavailable.failure().retry_after, 7s);
  EXPECT_EQ(unavailable.failure().error, "temporarily_unavailable");
  auto unauthorized = bearer.fetch();
  ASSERT_FALSE(unauthorized);
  EXPECT_EQ(unauthorized.failure().error, "unauthorized_client");
}

TEST(GoogleJwtBearer, DelegationWithoutClientIdSaysWhereToFindIt) {
  json file = keyFile();
  file.erase("client_id");
  FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(401, errorBody("unauthorized_client", "Client is unauthorized"));
  GoogleJwtBearer bearer(account(file), kSubject, kScope, http, clock);
  auto token = bearer.fetch();
  ASSERT_FALSE(token);
  EXPECT_NE(token.failure().explanation.find("Unique ID"), std::string::npos)
      << token.failure().explanation;
}

TEST(GoogleJwtBearer, NetworkErrorsAreRetryable) {
  FakeHttpClient http;
  ManualClock clock;
  http.push(http::TransportError{"Could not resolve host: oauth2.googleapis.com", false});
  http.push(http::TransportError{"Operation timed out after 30000 milliseconds", true});
  GoogleJwtBearer bearer(account(), kSubject, kScope, http, clock);
  for (int i = 0; i < 2; ++i) {
    auto token = bearer.fetch();
    ASSERT_FALSE(token);
    EXPECT_TRUE(token.failure().retryable);
    EXPECT_EQ(token.failure().http_status, 0);
    EXPECT_NE(token.failure().explanation.find(kTokenUri), std::string::npos)
        << token.failure().explanation;
  }
}

TEST(GoogleJwtBearer, AnEchoedAssertionIsScrubbed) {
  // A proxy that quotes the refused request: the whole form, or only the
  // assertion's signature.
  class Echo final : public http::HttpClient {
   public:
    explicit Echo(bool signature_only) : signature_only_(signature_only) {}
    http::Outcome perform(const http::Request& request) override {
      sent_ = request.body;
      const std::string quoted =
          signature_only_ ? request.body.substr(request.body.rfind('.') + 1) : request.body;
      return http::Response{400, {}, "refused request: " + quoted};
    }
    const std::string& sent() const { return sent_; }

   private:
    bool signature_only_;
    std::string sent_;
  };
  for (const bool signature_only : {false, true}) {
    Echo http(signature_only);
    ManualClock clock;
    GoogleJwtBearer bearer(account(), kSubject, kScope, http, clock);
    LogCapture log;
    auto token = bearer.fetch();
    ASSERT_FALSE(token);
    const Jwt jwt = splitJwt(formFields(http.sent()).at("assertion"));
    const std::string& text = token.failure().explanation;
    EXPECT_EQ(text.find(jwt.signature_text.substr(0, 40)), std::string::npos) << text;
    EXPECT_EQ(log.text().find(jwt.signature_text.substr(0, 40)), std::string::npos);
    EXPECT_NE(text.find(signature_only ? "refused request: [redacted]" : "assertion=[redacted]"),
              std::string::npos)
        << text;
  }
}

}  // namespace
}  // namespace mb::oauth
