#include "oauth/token_request.h"

#include <gtest/gtest.h>

#include <string>

#include "http/testing/fake_http_client.h"
#include "oauth/testing/token_requests.h"

namespace mb::oauth {
namespace {

using namespace std::chrono_literals;
using http::testing::FakeHttpClient;
using testing::expectFormPost;
using testing::formFields;

constexpr const char* kUrl = "https://login.example/token";
const std::string kSecret = "s3cret+&=value";

// One token request with kSecret in it, against a fake endpoint, with a
// classifier that records what it was given.
class TokenRequestTest : public ::testing::Test {
 protected:
  TokenRequestTest() { scrubber_.add(kSecret); }

  TokenReply post(const RefusalClassifier& classify) {
    return postTokenRequest(http_, request(), scrubber_, classify);
  }
  TokenReply post() { return post(recorder()); }

  static TokenRequest request() {
    return {kUrl, {{"grant_type", "client_credentials"}, {"client_secret", kSecret}}, 7s};
  }

  RefusalClassifier recorder() {
    return [this](const http::Response& response, const TokenErrorBody& body) {
      ++classified_;
      body_seen_ = response.body;
      error_seen_ = body;
      TokenFailure out;
      out.retryable = false;
      out.http_status = response.status;
      out.error = body.error;
      out.explanation = "refused: " + response.body;
      return out;
    };
  }

  FakeHttpClient http_;
  CredentialScrubber scrubber_;
  int classified_ = 0;
  std::string body_seen_;
  TokenErrorBody error_seen_;
};

TEST_F(TokenRequestTest, PostsTheForm) {
  http_.pushResponse(200, R"({"access_token":"tok-123456","expires_in":60})");
  TokenReply reply = post();

  ASSERT_TRUE(reply.response);
  EXPECT_EQ(reply.response->body, R"({"access_token":"tok-123456","expires_in":60})");
  EXPECT_EQ(classified_, 0);
  const auto requests = http_.requests();
  ASSERT_EQ(requests.size(), 1u);
  expectFormPost(requests[0], kUrl);
  EXPECT_EQ(requests[0].timeout, 7s);
  EXPECT_EQ(requests[0].body, "grant_type=client_credentials&client_secret=s3cret%2B%26%3Dvalue");
  EXPECT_EQ(formFields(requests[0].body).at("client_secret"), kSecret);
}

TEST_F(TokenRequestTest, ARefusalIsScrubbedBeforeItIsClassified) {
  http_.pushResponse(400,
                     R"({"error":"invalid_client","error_description":"bad )" + kSecret + R"("})");
  TokenReply reply = post();

  ASSERT_FALSE(reply.response);
  EXPECT_EQ(classified_, 1);
  EXPECT_EQ(body_seen_.find(kSecret), std::string::npos) << body_seen_;
  EXPECT_NE(body_seen_.find("bad [redacted]"), std::string::npos) << body_seen_;
  EXPECT_EQ(error_seen_.error, "invalid_client");
  EXPECT_EQ(reply.error.error, "invalid_client");
  EXPECT_EQ(reply.error.error_description, "bad [redacted]");
  EXPECT_FALSE(reply.failure.retryable);
  EXPECT_EQ(reply.failure.http_status, 400);
  EXPECT_EQ(reply.failure.explanation.find(kSecret), std::string::npos);
}

TEST_F(TokenRequestTest, TheExplanationIsScrubbedToo) {
  http_.pushResponse(401, "nothing to see");
  TokenReply reply = post([](const http::Response&, const TokenErrorBody&) {
    TokenFailure out;
    out.explanation = "echoing " + kSecret;
    return out;
  });
  ASSERT_FALSE(reply.response);
  EXPECT_EQ(reply.failure.explanation, "echoing [redacted]");
}

TEST_F(TokenRequestTest, ATransportErrorIsScrubbedAndRetryable) {
  http_.push(http::TransportError{"proxy refused client_secret=s3cret%2B%26%3Dvalue", false});
  TokenReply reply = post();

  ASSERT_FALSE(reply.response);
  EXPECT_EQ(classified_, 0);
  EXPECT_TRUE(reply.failure.retryable);
  EXPECT_EQ(reply.failure.http_status, 0);
  EXPECT_NE(reply.failure.explanation.find(kUrl), std::string::npos) << reply.failure.explanation;
  EXPECT_NE(reply.failure.explanation.find("client_secret=[redacted]"), std::string::npos)
      << reply.failure.explanation;
}

TEST_F(TokenRequestTest, RequestAccessTokenReadsTheAnswer) {
  http_.pushResponse(200, R"({"access_token":"tok-123456","token_type":"Bearer","expires_in":60})");
  http_.pushResponse(200, "<html>captive portal</html>");
  http_.pushResponse(503, R"({"error":"temporarily_unavailable"})");
  const auto at = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  const auto fetch = [&] {
    return requestAccessToken(http_, request(), scrubber_, classifyTokenError, at);
  };

  TokenResult ok = fetch();
  ASSERT_TRUE(ok) << ok.failure().explanation;
  EXPECT_EQ(ok->value, "tok-123456");
  EXPECT_EQ(ok->expires_at, at + 60s);

  TokenResult portal = fetch();
  ASSERT_FALSE(portal);
  EXPECT_TRUE(portal.failure().retryable);
  EXPECT_EQ(portal.failure().http_status, 200);

  TokenResult unavailable = fetch();
  ASSERT_FALSE(unavailable);
  EXPECT_TRUE(unavailable.failure().retryable);
  EXPECT_EQ(unavailable.failure().http_status, 503);
  EXPECT_EQ(unavailable.failure().error, "temporarily_unavailable");
}

}  // namespace
}  // namespace mb::oauth
