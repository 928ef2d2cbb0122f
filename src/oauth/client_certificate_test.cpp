#include "oauth/client_certificate.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "base/testing/temp_dir.h"
#include "oauth/client_assertion.h"
#include "oauth/encoding.h"
#include "oauth/testing/test_certificate.h"

namespace mb::oauth {
namespace {

using testing::TestCertificate;
using json = nlohmann::json;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t pos; (pos = s.find(sep, start)) != std::string::npos; start = pos + 1) {
    out.push_back(s.substr(start, pos - start));
  }
  out.push_back(s.substr(start));
  return out;
}

// std::regex is avoided: g++ 12 reports a false maybe-uninitialized in it.
bool isUpperHex(const std::string& s, std::size_t len) {
  return s.size() == len && s.find_first_not_of("0123456789ABCDEF") == std::string::npos;
}

bool isGuidV4(const std::string& s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && std::string("0123456789abcdef").find(s[i]) == std::string::npos) return false;
  }
  return s[14] == '4' && std::string("89ab").find(s[19]) != std::string::npos;
}

std::shared_ptr<const ClientCertificate> loadRsa() {
  const auto& tc = TestCertificate::rsa2048();
  auto cert = ClientCertificate::fromPem(tc.cert_pem, tc.key_pem, "test");
  if (!cert) ADD_FAILURE() << cert.error().message;
  return cert ? *cert : nullptr;
}

TEST(ClientCertificate, FromSeparatePemFiles) {
  mb::testing::TempDir dir;
  const auto& tc = TestCertificate::rsa2048();
  TestCertificate::writeFile(dir.path() / "cert.pem", tc.cert_pem);
  TestCertificate::writeFile(dir.path() / "key.pem", tc.key_pem);
  auto cert = ClientCertificate::fromPemFiles(dir.path() / "cert.pem", dir.path() / "key.pem");
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_EQ((*cert)->x5tS256(), base64UrlEncode(TestCertificate::sha256OfDer(tc.cert_pem)));
  EXPECT_EQ((*cert)->x5tS256().size(), 43u);  // 32 octets, unpadded
  EXPECT_TRUE(isUpperHex((*cert)->thumbprint(), 40)) << (*cert)->thumbprint();
  EXPECT_NE((*cert)->describe().find("CN=mailbridge-test"), std::string::npos);
  EXPECT_NE((*cert)->describe().find((*cert)->thumbprint()), std::string::npos);
  EXPECT_GT((*cert)->notAfter(), std::chrono::system_clock::now());
}

TEST(ClientCertificate, FromOneFileHoldingBoth) {
  mb::testing::TempDir dir;
  const auto& tc = TestCertificate::rsa2048();
  TestCertificate::writeFile(dir.path() / "both.pem", tc.key_pem + tc.cert_pem);
  auto cert = ClientCertificate::fromPemFiles(dir.path() / "both.pem");
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_EQ((*cert)->x5tS256(), base64UrlEncode(TestCertificate::sha256OfDer(tc.cert_pem)));
}

TEST(ClientCertificate, FromPkcs12) {
  mb::testing::TempDir dir;
  const auto& tc = TestCertificate::rsa2048();
  TestCertificate::writeFile(dir.path() / "app.pfx", tc.pkcs12_der);
  const config::Secret password(config::Secret::Source::Inline, "",
                                TestCertificate::kPkcs12Password);
  auto cert = ClientCertificate::fromPkcs12File(dir.path() / "app.pfx", password);
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_EQ((*cert)->x5tS256(), base64UrlEncode(TestCertificate::sha256OfDer(tc.cert_pem)));

  const config::Secret wrong(config::Secret::Source::Inline, "", "not-the-password");
  auto refused = ClientCertificate::fromPkcs12File(dir.path() / "app.pfx", wrong);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("wrong password"), std::string::npos);
  EXPECT_EQ(refused.error().message.find("not-the-password"), std::string::npos);
}

TEST(ClientCertificate, Refusals) {
  mb::testing::TempDir dir;
  const auto& rsa = TestCertificate::rsa2048();
  EXPECT_FALSE(ClientCertificate::fromPemFiles(dir.path() / "missing.pem"));

  auto ec = ClientCertificate::fromPem(TestCertificate::ecP256().cert_pem,
                                       TestCertificate::ecP256().key_pem, "ec.pem");
  ASSERT_FALSE(ec);
  EXPECT_NE(ec.error().message.find("not an RSA key"), std::string::npos);

  auto small = ClientCertificate::fromPem(TestCertificate::rsa1024().cert_pem,
                                          TestCertificate::rsa1024().key_pem, "small.pem");
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find("2048"), std::string::npos);

  auto mismatch = ClientCertificate::fromPem(rsa.cert_pem, TestCertificate::rsa1024().key_pem, "m");
  EXPECT_FALSE(mismatch);

  auto no_key = ClientCertificate::fromPem(rsa.cert_pem, rsa.cert_pem, "only-cert.pem");
  ASSERT_FALSE(no_key);
  EXPECT_NE(no_key.error().message.find("no usable private key in only-cert.pem"),
            std::string::npos);

  EXPECT_FALSE(ClientCertificate::fromPem("garbage", rsa.key_pem, "g"));
}

TEST(ClientCertificate, SignsPs256) {
  auto cert = loadRsa();
  ASSERT_TRUE(cert);
  auto sig = cert->signPs256("hello");
  ASSERT_TRUE(sig) << sig.error().message;
  EXPECT_EQ(sig->size(), 256u);
  const auto& pem = TestCertificate::rsa2048().cert_pem;
  EXPECT_TRUE(TestCertificate::verifyPs256(pem, "hello", *sig));
  EXPECT_FALSE(TestCertificate::verifyPs256(pem, "hellp", *sig));
  // PSS is randomised: two signatures of the same text differ, both valid.
  auto again = cert->signPs256("hello");
  ASSERT_TRUE(again);
  EXPECT_NE(*again, *sig);
  EXPECT_TRUE(TestCertificate::verifyPs256(pem, "hello", *again));
}

TEST(ClientAssertion, RandomGuid) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    auto guid = randomGuid();
    ASSERT_TRUE(guid);
    EXPECT_TRUE(isGuidV4(*guid)) << *guid;
    seen.insert(*guid);
  }
  EXPECT_EQ(seen.size(), 50u);
}

TEST(ClientAssertion, HeaderClaimsAndSignature) {
  auto cert = loadRsa();
  ASSERT_TRUE(cert);
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  const std::string aud =
      "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";
  auto jwt = makeClientAssertion(*cert, "11111111-2222-3333-4444-555555555555", aud, now);
  ASSERT_TRUE(jwt) << jwt.error().message;

  const auto parts = split(*jwt, '.');
  ASSERT_EQ(parts.size(), 3u);
  const auto header_text = base64UrlDecode(parts[0]);
  const auto claims_text = base64UrlDecode(parts[1]);
  const auto signature = base64UrlDecode(parts[2]);
  ASSERT_TRUE(header_text && claims_text && signature);

  const json header = json::parse(*header_text);
  EXPECT_EQ(header.size(), 3u);
  EXPECT_EQ(header["alg"], "PS256");
  EXPECT_EQ(header["typ"], "JWT");
  EXPECT_EQ(header["x5t#S256"],
            base64UrlEncode(TestCertificate::sha256OfDer(TestCertificate::rsa2048().cert_pem)));

  const json claims = json::parse(*claims_text);
  EXPECT_EQ(claims["aud"], aud);
  EXPECT_EQ(claims["iss"], "11111111-2222-3333-4444-555555555555");
  EXPECT_EQ(claims["sub"], "11111111-2222-3333-4444-555555555555");
  EXPECT_EQ(claims["nbf"], 1'800'000'000);
  EXPECT_EQ(claims["iat"], 1'800'000'000);
  EXPECT_EQ(claims["exp"], 1'800'000'000 + 600);
  ASSERT_TRUE(claims["jti"].is_string());
  EXPECT_EQ(claims["jti"].get<std::string>().size(), 36u);

  EXPECT_TRUE(TestCertificate::verifyPs256(TestCertificate::rsa2048().cert_pem,
                                           parts[0] + "." + parts[1], *signature));
  EXPECT_FALSE(TestCertificate::verifyPs256(TestCertificate::rsa2048().cert_pem,
                                            parts[0] + "." + parts[1] + "x", *signature));

  auto second = makeClientAssertion(*cert, "c", aud, now);
  ASSERT_TRUE(second);
  EXPECT_NE(json::parse(*base64UrlDecode(split(*second, '.')[1]))["jti"], claims["jti"]);
}

}  // namespace
}  // namespace mb::oauth
