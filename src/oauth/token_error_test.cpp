#include "oauth/token_error.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mb::oauth {
namespace {

constexpr const char* kTrace = "0000aaaa-11bb-cccc-dd22-eeeeee333333";
constexpr const char* kCorrelation = "aaaa0000-bb11-2222-33cc-444444dddddd";

std::string errorBody(const std::string& error, long code, const std::string& text) {
  return R"({"error":")" + error + R"(","error_description":"AADSTS)" + std::to_string(code) +
         ": " + text + R"(\r\nTrace ID: )" + kTrace + R"(\r\nCorrelation ID: )" + kCorrelation +
         R"(\r\nTimestamp: 2026-01-09 02:02:12Z","error_codes":[)" + std::to_string(code) +
         R"(],"timestamp":"2026-01-09 02:02:12Z","trace_id":")" + kTrace +
         R"(","correlation_id":")" + kCorrelation +
         R"(","error_uri":"https://login.microsoftonline.com/error?code=)" + std::to_string(code) +
         R"("})";
}

http::Response response(long status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

TEST(TokenErrorBody, ParsesEveryField) {
  const auto body =
      parseTokenErrorBody(errorBody("invalid_client", 7000215, "Invalid client secret provided."));
  EXPECT_TRUE(body.json);
  EXPECT_EQ(body.error, "invalid_client");
  EXPECT_EQ(body.error_codes, std::vector<long>{7000215});
  EXPECT_EQ(body.trace_id, kTrace);
  EXPECT_EQ(body.correlation_id, kCorrelation);
  EXPECT_EQ(body.timestamp, "2026-01-09 02:02:12Z");
  EXPECT_NE(body.error_description.find("Invalid client secret"), std::string::npos);
  EXPECT_TRUE(body.hasCode(7000215));
  EXPECT_FALSE(body.hasCode(7000222));
}

TEST(TokenErrorBody, ToleratesWrongTypesAndMissingFields) {
  const auto body = parseTokenErrorBody(R"({"error":42,"error_codes":"x","trace_id":null})");
  EXPECT_TRUE(body.json);
  EXPECT_TRUE(body.error.empty());
  EXPECT_TRUE(body.error_codes.empty());
  EXPECT_TRUE(body.trace_id.empty());

  const auto mixed = parseTokenErrorBody(R"({"error_codes":[50033,"x",1.5,90024]})");
  EXPECT_EQ(mixed.error_codes, (std::vector<long>{50033, 90024}));
}

TEST(TokenErrorBody, CodesFromTheDescriptionWhenTheListIsMissing) {
  const auto body = parseTokenErrorBody(
      R"({"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys are expired."})");
  EXPECT_EQ(body.error_codes, std::vector<long>{7000222});
}

TEST(TokenErrorBody, NonJsonBodies) {
  const auto html = parseTokenErrorBody(
      "<html><head><title>403 Forbidden</title></head>\r\n<body>Blocked by proxy</body></html>");
  EXPECT_FALSE(html.json);
  EXPECT_TRUE(html.error.empty());
  EXPECT_NE(html.snippet.find("403 Forbidden"), std::string::npos);
  EXPECT_EQ(html.snippet.find('\n'), std::string::npos);  // made printable

  const auto empty = parseTokenErrorBody("");
  EXPECT_FALSE(empty.json);
  EXPECT_TRUE(empty.snippet.empty());

  EXPECT_FALSE(parseTokenErrorBody("[1,2]").json);
  EXPECT_FALSE(parseTokenErrorBody("{\"error\":").json);
  EXPECT_FALSE(parseTokenErrorBody(std::string(100000, '[')).json);

  const auto long_body = parseTokenErrorBody(std::string(5000, 'x'));
  EXPECT_LT(long_body.snippet.size(), 200u);
}

struct Case {
  long status;
  std::string error;
  long code;
  bool retryable;
  std::vector<std::string> words;  // each must appear in the explanation
};

class TokenErrorCases : public ::testing::TestWithParam<Case> {};

TEST_P(TokenErrorCases, ClassifiedAndExplained) {
  const Case& c = GetParam();
  const TokenFailure f =
      classifyTokenResponse(response(c.status, errorBody(c.error, c.code, "Some text.")));
  EXPECT_EQ(f.retryable, c.retryable) << c.code;
  EXPECT_EQ(f.http_status, c.status);
  EXPECT_EQ(f.error, c.error);
  EXPECT_EQ(f.error_code, c.code);
  for (const auto& w : c.words) {
    EXPECT_NE(f.explanation.find(w), std::string::npos)
        << "'" << w << "' missing in: " << f.explanation;
  }
  EXPECT_NE(f.explanation.find("AADSTS" + std::to_string(c.code)), std::string::npos)
      << f.explanation;
  EXPECT_NE(f.explanation.find(kTrace), std::string::npos) << f.explanation;
  EXPECT_NE(f.explanation.find(kCorrelation), std::string::npos) << f.explanation;
  EXPECT_EQ(f.explanation.find('\n'), std::string::npos);
  // Microsoft's trailing "\r\nTrace ID: ..." lines are not repeated, escaped.
  EXPECT_EQ(f.explanation.find("\\x"), std::string::npos) << f.explanation;
  EXPECT_EQ(f.explanation.find("Trace ID:"), std::string::npos) << f.explanation;
}

INSTANTIATE_TEST_SUITE_P(
    Codes, TokenErrorCases,
    ::testing::Values(
        Case{401, "invalid_client", 7000215, false, {"client secret is wrong", "ID", "value"}},
        Case{401, "invalid_client", 7000222, false, {"expired", "create a new client secret"}},
        Case{400, "unauthorized_client", 700016, false, {"not found in the tenant", "client_id"}},
        Case{400, "invalid_request", 90002, false, {"tenant was not found", "tenant id", "cloud"}},
        Case{401, "invalid_client", 7000229, false, {"service principal", "admin consent"}},
        Case{401, "invalid_client", 7000218, false, {"no client secret or client assertion"}},
        Case{401,
             "invalid_client",
             700027,
             false,
             {"signature is invalid", "upload this certificate", "private key"}},
        Case{400, "invalid_client", 500133, false, {"time is out of range", "clock"}},
        Case{400, "invalid_client", 700024, false, {"time is out of range", "clock"}},
        Case{400, "invalid_grant", 50126, false, {"wrong user name or password"}},
        Case{400, "invalid_grant", 50076, false, {"MFA", "password grant cannot work"}},
        Case{400, "invalid_grant", 50079, false, {"MFA", "password grant cannot work"}},
        Case{400, "invalid_grant", 70008, false, {"refresh token has expired", "sign in again"}},
        Case{400, "invalid_grant", 700082, false, {"refresh token has expired", "sign in again"}},
        Case{400, "invalid_grant", 50173, false, {"revoked", "sign in again"}},
        Case{400, "invalid_request", 50033, true, {"temporary"}},
        Case{400, "invalid_request", 90024, true, {"temporary"}},
        Case{400, "temporarily_unavailable", 12345, true, {"temporarily unavailable"}},
        Case{503, "server_error", 12345, true, {"HTTP 503", "Some text."}},
        Case{400, "invalid_scope", 70011, false, {"refused", "invalid_scope", "Some text."}}));

// The delegated grants' errors (password, refresh token, device code).
INSTANTIATE_TEST_SUITE_P(
    DelegatedCodes, TokenErrorCases,
    ::testing::Values(
        Case{400, "invalid_grant", 50034, false, {"does not exist", "user name", "tenant"}},
        Case{400, "invalid_grant", 50053, false, {"locked", "unlock"}},
        Case{400, "invalid_grant", 50057, false, {"disabled", "enable"}},
        Case{400, "invalid_grant", 50055, false, {"password has expired", "new password"}},
        Case{400, "invalid_grant", 65001, false, {"consent", "Mail.Send", "admin consent"}},
        Case{400, "invalid_grant", 9002313, false, {"invalid", "sign in again"}},
        Case{400, "invalid_grant", 70000, false, {"grant is invalid", "sign in again"}},
        Case{400, "authorization_pending", 70016, false, {"not completed", "pending"}},
        Case{400, "authorization_declined", 70019, false, {"declined", "login again"}},
        Case{400, "expired_token", 70020, false, {"device code expired", "login again"}}));

TEST(TokenError, ServerErrorsWithoutBodiesAreRetryable) {
  for (long status : {500L, 502L, 503L, 504L, 429L, 408L}) {
    const TokenFailure f = classifyTokenResponse(response(status, ""));
    EXPECT_TRUE(f.retryable) << status;
    EXPECT_NE(f.explanation.find("HTTP " + std::to_string(status)), std::string::npos);
  }
}

TEST(TokenError, HtmlFromAProxyIsExplainedAndPermanent) {
  const TokenFailure f =
      classifyTokenResponse(response(403, "<html><title>Access denied by policy</title></html>"));
  EXPECT_FALSE(f.retryable);
  EXPECT_EQ(f.http_status, 403);
  EXPECT_NE(f.explanation.find("proxy"), std::string::npos) << f.explanation;
  EXPECT_NE(f.explanation.find("Access denied by policy"), std::string::npos) << f.explanation;

  const TokenFailure bad_gateway = classifyTokenResponse(response(502, "<html>Bad Gateway</html>"));
  EXPECT_TRUE(bad_gateway.retryable);
}

TEST(TokenError, EmptyBody) {
  const TokenFailure f = classifyTokenResponse(response(400, ""));
  EXPECT_FALSE(f.retryable);
  EXPECT_NE(f.explanation.find("HTTP 400"), std::string::npos);
  EXPECT_EQ(f.error_code, 0);
}

TEST(TokenError, RetryAfterSeconds) {
  http::Response r = response(429, "");
  r.headers = {{"retry-after", " 17 "}};
  EXPECT_EQ(classifyTokenResponse(r).retry_after, std::chrono::seconds(17));
  r.headers = {{"Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"}};
  EXPECT_FALSE(classifyTokenResponse(r).retry_after);
}

TEST(TokenError, TransportErrorsAreRetryable) {
  const TokenFailure refused =
      classifyTransportError({"Could not resolve host: login.microsoftonline.com", false},
                             "https://login.microsoftonline.com/t/oauth2/v2.0/token");
  EXPECT_TRUE(refused.retryable);
  EXPECT_EQ(refused.http_status, 0);
  EXPECT_NE(refused.explanation.find("could not reach"), std::string::npos);
  EXPECT_NE(refused.explanation.find("Could not resolve host"), std::string::npos);

  const TokenFailure timeout = classifyTransportError({"Operation timed out", true}, "https://x");
  EXPECT_TRUE(timeout.retryable);
  EXPECT_NE(timeout.explanation.find("timed out"), std::string::npos);
}

}  // namespace
}  // namespace mb::oauth
