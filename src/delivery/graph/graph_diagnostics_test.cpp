#include "delivery/graph/graph_diagnostics.h"

#include <gtest/gtest.h>

#include "oauth/encoding.h"
#include "http/testing/fake_http_client.h"

namespace mb::delivery::graph {
namespace {

using namespace std::chrono_literals;
using Level = CheckLine::Level;
using http::testing::FakeHttpClient;

constexpr const char* kSecret = "Qm8~unit-secret";

std::string jwt(const std::string& payload) {
  return oauth::base64UrlEncode(R"({"typ":"JWT","alg":"RS256"})") + "." + oauth::base64UrlEncode(payload) + "." +
         oauth::base64UrlEncode("signature");
}

class FakeTokens final : public oauth::TokenSource {
 public:
  oauth::TokenResult token() override {
    if (failure) return *failure;
    return oauth::AccessToken{value, std::chrono::system_clock::now() + 1h};
  }
  void invalidate(const std::string&) override {}
  std::string value = jwt(R"({"aud":"https://graph.microsoft.com","roles":["Mail.Send","Mail.ReadWrite"]})");
  std::optional<oauth::TokenFailure> failure;
};

std::string graphError(const std::string& code, const std::string& message) {
  return R"({"error":{"code":")" + code + R"(","message":")" + message +
         R"(","innerError":{"request-id":"rid-1"}}})";
}

// An ISO date `days` from the clock's now.
std::string isoIn(const Clock& clock, std::chrono::hours offset) {
  const std::time_t t = std::chrono::system_clock::to_time_t(clock.wallNow() + offset);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.0000000Z", &tm);
  return buf;
}

class GraphDiagnosticsTest : public ::testing::Test {
 protected:
  GraphDiagnosticsTest() {
    config.name = "m365";
    config.type = config::ProviderType::Graph;
    config.tenant_id = "contoso.example";
    config.client_id = "app-1";
    config.client_secret = config::Secret(config::Secret::Source::Inline, "", kSecret);
    config.graph_endpoint = "https://graph.test";
  }

  std::vector<CheckLine> run(const std::string& sender = "") {
    return diagnoseGraphProvider(config, http, tokens, sender, clock);
  }

  std::string appJson(std::chrono::hours ours_in, std::chrono::hours other_in = 24h * 365) {
    return R"({"passwordCredentials":[{"displayName":"old","endDateTime":")" + isoIn(clock, other_in) +
           R"(","hint":"xyz"},{"displayName":"relay","endDateTime":")" + isoIn(clock, ours_in) +
           R"(","hint":"Qm8"}],"keyCredentials":[]})";
  }

  static std::string all(const std::vector<CheckLine>& lines) {
    std::string out;
    for (const auto& l : lines) out += formatCheckLine(l) + "\n";
    return out;
  }

  config::ProviderConfig config;
  FakeHttpClient http;
  FakeTokens tokens;
  ManualClock clock;
};

TEST_F(GraphDiagnosticsTest, TokenFailureStopsWithTheExplanation) {
  oauth::TokenFailure f;
  f.retryable = false;
  f.explanation = "the client secret is wrong (AADSTS7000215): put the secret's value, not its id";
  tokens.failure = f;
  const auto lines = run("a@contoso.example");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].level, Level::Fail);
  EXPECT_NE(lines[0].text.find("AADSTS7000215"), std::string::npos);
  EXPECT_EQ(http.requestCount(), 0u);
  EXPECT_TRUE(anyFailed(lines));
}

TEST_F(GraphDiagnosticsTest, AllGood) {
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run();
  EXPECT_FALSE(anyFailed(lines)) << all(lines);
  const std::string text = all(lines);
  EXPECT_NE(text.find("ok: access token acquired"), std::string::npos) << text;
  EXPECT_NE(text.find("ok: the token has Mail.Send"), std::string::npos) << text;
  EXPECT_NE(text.find("ok: Mail.ReadWrite granted"), std::string::npos) << text;
  EXPECT_NE(text.find("ok: the client secret 'relay' in use expires"), std::string::npos) << text;
  EXPECT_EQ(text.find(kSecret), std::string::npos);
  EXPECT_EQ(text.find("Qm8"), std::string::npos);  // not even the hint
  const auto reqs = http.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].url,
            "https://graph.test/v1.0/applications(appId='app-1')?$select=passwordCredentials,keyCredentials");
}

TEST_F(GraphDiagnosticsTest, NoRolesMeansNoAdminConsent) {
  tokens.value = jwt(R"({"aud":"https://graph.microsoft.com"})");
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run();
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[1].level, Level::Fail);
  EXPECT_NE(lines[1].text.find("admin consent is missing"), std::string::npos);
  EXPECT_NE(lines[1].text.find("— fix: "), std::string::npos);
  EXPECT_NE(lines[1].text.find("Mail.Send (application permission)"), std::string::npos);
}

TEST_F(GraphDiagnosticsTest, RolesWithoutMailSend) {
  tokens.value = jwt(R"({"roles":["User.Read.All"]})");
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run();
  EXPECT_EQ(lines[1].level, Level::Fail);
  EXPECT_NE(lines[1].text.find("do not include Mail.Send"), std::string::npos);
  EXPECT_EQ(lines[2].level, Level::Warn);
  EXPECT_NE(lines[2].text.find("Mail.ReadWrite not granted"), std::string::npos);
}

TEST_F(GraphDiagnosticsTest, DelegatedTokensListTheirScopes) {
  config.auth_mode = config::GraphAuthMode::RefreshToken;
  config.save_to_sent = false;
  tokens.value = jwt(R"({"scp":"Mail.Send User.Read"})");
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run();
  EXPECT_EQ(lines[1].level, Level::Ok) << lines[1].text;
  EXPECT_NE(lines[1].text.find("scopes: Mail.Send, User.Read"), std::string::npos) << lines[1].text;
  EXPECT_EQ(lines[2].level, Level::Fail) << "save_to_sent: false needs Mail.ReadWrite for every message";
  EXPECT_NE(lines[2].text.find("delegated permission"), std::string::npos) << lines[2].text;
  EXPECT_EQ(tokenRoles(jwt(R"({"scp":" Mail.Send  Mail.ReadWrite "})")),
            (std::vector<std::string>{"Mail.Send", "Mail.ReadWrite"}));
}

TEST_F(GraphDiagnosticsTest, OpaqueTokenIsAWarning) {
  tokens.value = "opaque-token";
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run();
  EXPECT_FALSE(anyFailed(lines));
  EXPECT_EQ(lines[1].level, Level::Warn);
}

TEST_F(GraphDiagnosticsTest, UnknownSenderFailsWithClassifyAdvice) {
  http.pushResponse(404, graphError("ErrorInvalidUser", "The requested user 'x@contoso.example' is invalid."));
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run("x@contoso.example");
  const std::string text = all(lines);
  EXPECT_NE(text.find("FAIL: sender x@contoso.example: Graph 404 ErrorInvalidUser"), std::string::npos) << text;
  EXPECT_NE(text.find("— fix: the sender address is not a user"), std::string::npos) << text;
  const auto reqs = http.requests();
  ASSERT_EQ(reqs.size(), 2u);  // no mailboxSettings after that
  EXPECT_EQ(reqs[0].url, "https://graph.test/v1.0/users/x%40contoso.example?$select=id,userPrincipalName,mail");
}

TEST_F(GraphDiagnosticsTest, SenderWithoutMailAddressFails) {
  http.pushResponse(200, R"({"id":"1","userPrincipalName":"x@contoso.example","mail":null})");
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run("x@contoso.example");
  const std::string text = all(lines);
  EXPECT_NE(text.find("FAIL: sender x@contoso.example is a user (x@contoso.example) without a mailbox"),
            std::string::npos)
      << text;
}

TEST_F(GraphDiagnosticsTest, SenderWithMailboxSettings) {
  http.pushResponse(200, R"({"id":"1","userPrincipalName":"x@contoso.example","mail":"x@contoso.example"})");
  http.pushResponse(200, R"({"timeZone":"UTC"})");
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run("x@contoso.example");
  EXPECT_FALSE(anyFailed(lines)) << all(lines);
  EXPECT_NE(all(lines).find("ok: the mailbox of sender x@contoso.example is present"), std::string::npos);
  EXPECT_EQ(http.requests()[1].url, "https://graph.test/v1.0/users/x%40contoso.example/mailboxSettings");
}

TEST_F(GraphDiagnosticsTest, MailboxNotEnabledFails) {
  http.pushResponse(200, R"({"id":"1","userPrincipalName":"x@contoso.example","mail":"x@contoso.example"})");
  http.pushResponse(404, graphError("MailboxNotEnabledForRESTAPI", "The mailbox is either inactive."));
  http.pushResponse(200, appJson(24h * 200));
  const auto text = all(run("x@contoso.example"));
  EXPECT_NE(text.find("FAIL: sender x@contoso.example: Graph 404 MailboxNotEnabledForRESTAPI"), std::string::npos)
      << text;
  EXPECT_NE(text.find("— fix: the user exists but has no Exchange Online mailbox"), std::string::npos) << text;
}

TEST_F(GraphDiagnosticsTest, MailboxSettingsNotReadableIsQuietAfterALookup) {
  http.pushResponse(200, R"({"id":"1","userPrincipalName":"x@contoso.example","mail":"x@contoso.example"})");
  http.pushResponse(403, graphError("ErrorAccessDenied", "Access is denied."));
  http.pushResponse(200, appJson(24h * 200));
  const auto lines = run("x@contoso.example");
  EXPECT_FALSE(anyFailed(lines)) << all(lines);
}

TEST_F(GraphDiagnosticsTest, NoUserReadPermissionWarnsAndStillChecksTheMailbox) {
  http.pushResponse(403, graphError("Authorization_RequestDenied", "Insufficient privileges."));
  http.pushResponse(404, graphError("MailboxNotEnabledForRESTAPI", "The mailbox is either inactive."));
  http.pushResponse(200, appJson(24h * 200));
  const auto text = all(run("x@contoso.example"));
  EXPECT_NE(text.find("warn: cannot look up sender x@contoso.example; grant User.Read.All"), std::string::npos)
      << text;
  EXPECT_NE(text.find("FAIL: sender x@contoso.example: Graph 404 MailboxNotEnabledForRESTAPI"), std::string::npos)
      << text;
}

TEST_F(GraphDiagnosticsTest, AccessPolicyDenialFails) {
  http.pushResponse(403, graphError("ErrorAccessDenied", "Blocked by tenant configured AppOnly AccessPolicy."));
  http.pushResponse(200, appJson(24h * 200));
  const auto text = all(run("x@contoso.example"));
  EXPECT_NE(text.find("FAIL: sender x@contoso.example: Graph 403 ErrorAccessDenied"), std::string::npos) << text;
}

TEST_F(GraphDiagnosticsTest, GraphUnreachableForTheSenderFails) {
  http.push(http::TransportError{"connection refused", false});
  http.pushResponse(200, appJson(24h * 200));
  const auto text = all(run("x@contoso.example"));
  EXPECT_NE(text.find("FAIL: sender x@contoso.example: Graph unreachable: connection refused"), std::string::npos)
      << text;
}

TEST_F(GraphDiagnosticsTest, CredentialsNotReadable) {
  http.pushResponse(403, graphError("Authorization_RequestDenied", "Insufficient privileges."));
  const auto lines = run();
  EXPECT_FALSE(anyFailed(lines));
  EXPECT_EQ(formatCheckLine(lines.back()),
            "warn: cannot read the app's credentials; grant Application.Read.All (application) to see secret "
            "expiry here");
}

TEST_F(GraphDiagnosticsTest, SecretExpiringSoonWarns) {
  http.pushResponse(200, appJson(24h * 10 + 1h));
  const auto lines = run();
  EXPECT_FALSE(anyFailed(lines));
  const std::string text = all(lines);
  EXPECT_NE(text.find("warn: the client secret 'relay' in use expires"), std::string::npos) << text;
  EXPECT_NE(text.find("(in 10 days)"), std::string::npos) << text;
  EXPECT_NE(text.find("ok: client secret 'old' expires"), std::string::npos) << text;
}

TEST_F(GraphDiagnosticsTest, SecretExpiredFailsOtherExpiredWarns) {
  http.pushResponse(200, appJson(-24h, -48h));
  const auto lines = run();
  const std::string text = all(lines);
  EXPECT_NE(text.find("FAIL: the client secret 'relay' in use expired on"), std::string::npos) << text;
  EXPECT_NE(text.find("— fix: create a new client secret"), std::string::npos) << text;
  EXPECT_NE(text.find("warn: client secret 'old' expired on"), std::string::npos) << text;
}

TEST_F(GraphDiagnosticsTest, NoSecretsListed) {
  http.pushResponse(200, R"({"passwordCredentials":[],"keyCredentials":[]})");
  const auto lines = run();
  EXPECT_EQ(formatCheckLine(lines.back()), "warn: the app registration lists no client secrets");
}

TEST(TokenRoles, ReadsThePayload) {
  EXPECT_EQ(tokenRoles(jwt(R"({"roles":["Mail.Send","X"]})")), (std::vector<std::string>{"Mail.Send", "X"}));
  EXPECT_EQ(tokenRoles(jwt(R"({"scp":"Mail.Send"})")), std::vector<std::string>{"Mail.Send"});
  EXPECT_EQ(tokenRoles(jwt(R"({"aud":"x"})")), std::vector<std::string>{});
  EXPECT_EQ(tokenRoles("no-dots"), std::nullopt);
  EXPECT_EQ(tokenRoles("a.!!!.c"), std::nullopt);
  EXPECT_EQ(tokenRoles("a." + oauth::base64UrlEncode("not json") + ".c"), std::nullopt);
}

TEST(TestMessage, HasTheHeaders) {
  const auto msg = buildTestMessage("a@contoso.example", "b@example.com", "Mailbridge test message", "m365",
                                    "relay.example", Clock::WallTime(std::chrono::seconds(1'800'000'000)));
  EXPECT_NE(msg.find("Date: Fri, 15 Jan 2027 08:00:00 +0000\r\n"), std::string::npos) << msg;
  EXPECT_NE(msg.find("@relay.example>\r\n"), std::string::npos);
  EXPECT_NE(msg.find("From: <a@contoso.example>\r\nTo: <b@example.com>\r\n"), std::string::npos);
  EXPECT_NE(msg.find("Subject: Mailbridge test message\r\n"), std::string::npos);
  EXPECT_NE(msg.find("\r\n\r\n"), std::string::npos);
  EXPECT_NE(msg.find("'m365'"), std::string::npos);
}

}  // namespace
}  // namespace mb::delivery::graph
