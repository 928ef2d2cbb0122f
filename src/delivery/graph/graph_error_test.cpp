#include "delivery/graph/graph_error.h"

#include <gtest/gtest.h>

namespace mb::delivery::graph {
namespace {

using namespace std::chrono_literals;
using queue::Outcome;

std::string body(const std::string& code, const std::string& message) {
  return R"({"error":{"code":")" + code + R"(","message":")" + message +
         R"(","innerError":{"date":"2026-01-05T03:01:23","request-id":"0f1e-rid","client-request-id":"c-42"}}})";
}

TEST(GraphError, ParsesTheDocumentedShape) {
  const GraphError e = parseGraphError(403, body("ErrorSendAsDenied", "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."));
  EXPECT_EQ(e.status, 403);
  EXPECT_EQ(e.code, "ErrorSendAsDenied");
  EXPECT_NE(e.message.find("right to send mail"), std::string::npos);
  EXPECT_EQ(e.request_id, "0f1e-rid");
  EXPECT_EQ(e.client_request_id, "c-42");
}

TEST(GraphError, ToleratesOtherBodies) {
  for (const char* b : {"", "<html>Bad gateway</html>", "[]", R"({"error":"x"})",
                        R"({"error":{"code":7}})", R"({"error":{"code":"A","innerError":[1]}})"}) {
    const GraphError e = parseGraphError(502, b);
    EXPECT_EQ(e.status, 502) << b;
    EXPECT_TRUE(e.request_id.empty()) << b;
  }
  // A 429 body without innerError, as Graph sends some.
  const GraphError t = parseGraphError(429, R"({"error":{"code":"ApplicationThrottled","message":"Application is over its MailboxConcurrency limit."}})");
  EXPECT_EQ(t.code, "ApplicationThrottled");
}

TEST(GraphError, PermanentCodesMapToTheirReplies) {
  struct Case {
    long status;
    const char* code;
    int smtp;
    const char* enhanced;
  };
  for (const Case c : {Case{404, "ErrorInvalidUser", 550, "5.1.8"},
                       Case{404, "MailboxNotEnabledForRESTAPI", 550, "5.1.8"},
                       Case{403, "ErrorSendAsDenied", 550, "5.7.60"},
                       Case{403, "ErrorAccessDenied", 550, "5.7.1"},
                       Case{400, "ErrorMessageSizeExceeded", 552, "5.3.4"},
                       Case{400, "ErrorInvalidRecipients", 550, "5.1.3"},
                       Case{400, "ErrorMimeContentInvalidBase64String", 554, "5.6.0"}}) {
    const auto r = classify(parseGraphError(c.status, body(c.code, "m")), 30s);
    EXPECT_EQ(r.outcome, Outcome::PermanentFailure) << c.code;
    EXPECT_EQ(r.smtp_code, c.smtp) << c.code;
    EXPECT_EQ(r.enhanced, c.enhanced) << c.code;
    EXPECT_FALSE(r.summary.empty()) << c.code;
    EXPECT_FALSE(r.retry_after.has_value()) << c.code;
    EXPECT_NE(r.detail.find(c.code), std::string::npos);
    EXPECT_NE(r.detail.find("request-id 0f1e-rid"), std::string::npos);
  }
}

TEST(GraphError, TheRequestLimitIsPermanent) {
  auto r = classify(parseGraphError(413, ""), std::nullopt);
  EXPECT_EQ(r.outcome, Outcome::PermanentFailure);
  EXPECT_EQ(r.smtp_code, 552);
  r = classify(parseGraphError(400, body("BadRequest", "The maximum request length supported is 4MB.")), std::nullopt);
  EXPECT_EQ(r.outcome, Outcome::PermanentFailure);
  EXPECT_EQ(r.enhanced, "5.3.4");
}

TEST(GraphError, TransientOnesKeepRetryAfter) {
  auto r = classify(parseGraphError(429, body("ApplicationThrottled", "over its MailboxConcurrency limit.")), 17s);
  EXPECT_EQ(r.outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(r.retry_after, 17s);
  EXPECT_TRUE(r.throttled);
  EXPECT_TRUE(r.summary.empty());
  r = classify(parseGraphError(503, "<html/>"), 5s);
  EXPECT_EQ(r.outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(r.retry_after, 5s);
  EXPECT_FALSE(r.throttled);  // an outage, for the breaker to count
  EXPECT_EQ(r.smtp_code, 451);
  r = classify(parseGraphError(500, body("ErrorQuotaExceeded", "full")), std::nullopt);
  EXPECT_EQ(r.outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(r.smtp_code, 452);
  // Not classified: temporary, so nothing is lost to an unknown answer.
  r = classify(parseGraphError(400, body("SomethingNew", "?")), std::nullopt);
  EXPECT_EQ(r.outcome, Outcome::TemporaryFailure);
}

TEST(GraphError, RemoteTextIsMadePrintable) {
  const auto r = classify(parseGraphError(403, body("ErrorAccessDenied", "a\\r\\nInjected: yes")), std::nullopt);
  EXPECT_EQ(r.detail.find('\r'), std::string::npos);
  EXPECT_EQ(r.detail.find('\n'), std::string::npos);
  EXPECT_EQ(r.summary, "relay not allowed to send as this mailbox");
}

}  // namespace
}  // namespace mb::delivery::graph
