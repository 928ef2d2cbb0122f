#include "delivery/gmail/gmail_error.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mb::delivery::gmail {
namespace {

using namespace std::chrono_literals;
using queue::Outcome;
using json = nlohmann::json;

// 2026-03-07T18:00:00Z
const std::chrono::system_clock::time_point kNow =
    std::chrono::sys_days(std::chrono::year(2026) / 3 / 7) + 18h;

// Google's error body; `item_message` defaults to the top-level message.
std::string body(long code, const std::string& reason, const std::string& message,
                 const std::string& status, const std::string& item_message = {}) {
  const json item = {{"message", item_message.empty() ? message : item_message},
                     {"domain", reason.find("imit") != std::string::npos ? "usageLimits" : "global"},
                     {"reason", reason}};
  return json{{"error", {{"code", code}, {"message", message}, {"errors", json::array({item})}, {"status", status}}}}
      .dump(2);
}

TEST(GmailError, ParsesTheDocumentedShape) {
  const GmailError e = parseGmailError(
      400, R"({"error":{"code":400,"message":"Precondition check failed.","errors":[{"message":"Precondition check failed.","domain":"global","reason":"failedPrecondition"}],"status":"FAILED_PRECONDITION"}})");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.code, 400);
  EXPECT_EQ(e.message, "Precondition check failed.");
  EXPECT_EQ(e.reason, "failedPrecondition");
  EXPECT_EQ(e.status_text, "FAILED_PRECONDITION");
}

TEST(GmailError, MessageFromTheFirstItemWhenMissing) {
  const GmailError e = parseGmailError(
      403, R"({"error":{"code":403,"errors":[{"domain":"global"},{"message":"Insufficient Permission","reason":"insufficientPermissions"}]}})");
  EXPECT_EQ(e.message, "Insufficient Permission");
  EXPECT_EQ(e.reason, "insufficientPermissions");
  EXPECT_TRUE(e.status_text.empty());
}

TEST(GmailError, ToleratesOtherBodies) {
  for (const char* b : {"", "<!DOCTYPE html><title>Error 502 (Server Error)!!1</title>", "[]",
                        R"({"error":"invalid_token"})", R"({"error":{"code":"x","message":7}})",
                        R"({"error":{"code":1e99,"errors":"none"}})",
                        R"({"error":{"code":-4,"errors":[1,null,"x"]}})"}) {
    const GmailError e = parseGmailError(502, b);
    EXPECT_EQ(e.status, 502) << b;
    EXPECT_EQ(e.code, 0) << b;
    EXPECT_TRUE(e.message.empty()) << b;
    EXPECT_TRUE(e.reason.empty()) << b;
  }
}

struct Case {
  const char* name;
  long status;
  std::string body;
  std::optional<std::chrono::seconds> header_retry_after;
  Outcome outcome;
  int smtp;
  const char* enhanced;
  std::optional<std::chrono::seconds> retry_after;
  std::vector<std::string> detail;  // parts of the detail
};

TEST(GmailError, ClassifiesEachKind) {
  constexpr auto kPerm = Outcome::PermanentFailure;
  constexpr auto kTemp = Outcome::TemporaryFailure;
  constexpr auto kNone = std::nullopt;
  const std::string sending_limit =
      "User-rate limit exceeded. Retry after 2026-03-07T18:18:23.688Z (Mail sending)";
  const std::vector<Case> cases = {
      // Permanent
      {"no such user", 400, body(400, "failedPrecondition", "Precondition check failed.", "FAILED_PRECONDITION"),
       30s, kPerm, 550, "5.7.1", kNone, {"failedPrecondition", "Precondition check failed.", "impersonate"}},
      {"gmail off", 400, body(400, "failedPrecondition", "Mail service not enabled", "FAILED_PRECONDITION"),
       kNone, kPerm, 550, "5.7.1", kNone, {"Mail service not enabled", "Service status"}},
      {"bad To", 400, body(400, "invalidArgument", "Invalid To header", "INVALID_ARGUMENT"),
       kNone, kPerm, 550, "5.1.3", kNone, {"invalidArgument", "Invalid To header", "To, Cc and Bcc"}},
      {"bad Bcc", 400, body(400, "invalidArgument", "Invalid Bcc header", "INVALID_ARGUMENT"),
       kNone, kPerm, 550, "5.1.3", kNone, {"Invalid Bcc header"}},
      {"no recipient", 400, body(400, "invalidArgument", "Recipient address required", "INVALID_ARGUMENT"),
       kNone, kPerm, 550, "5.1.3", kNone, {"Recipient address required"}},
      {"too many recipients", 400,
       body(400, "invalidArgument", "Too many recipients: 101 (at most 100 per message).", "INVALID_ARGUMENT"),
       kNone, kPerm, 550, "5.5.3", kNone, {"100 recipients"}},
      {"bad From", 400, body(400, "invalidArgument", "Invalid From header", "INVALID_ARGUMENT"),
       kNone, kPerm, 550, "5.1.7", kNone, {"From"}},
      {"no raw", 400,
       body(400, "invalidArgument",
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
            "INVALID_ARGUMENT"),
       kNone, kPerm, 554, "5.6.0", kNone, {"message itself"}},
      {"scope", 403,
       body(403, "insufficientPermissions", "Request had insufficient authentication scopes.",
            "PERMISSION_DENIED", "Insufficient Permission"),
       5s, kPerm, 550, "5.7.1", kNone,
       {"insufficientPermissions", "https://www.googleapis.com/auth/gmail.send", "domain-wide delegation"}},
      {"domain policy", 403,
       body(403, "domainPolicy", "The domain administrators have disabled Gmail apps.", "PERMISSION_DENIED"),
       kNone, kPerm, 550, "5.7.1", kNone, {"domainPolicy", "App access control"}},
      {"upload too large", 413,
       body(413, "uploadTooLarge", "Media is too large. Limit: 36700160 bytes", "INVALID_ARGUMENT"),
       kNone, kPerm, 552, "5.3.4", kNone, {"uploadTooLarge", "35 MB"}},
      {"bare 413", 413, "", kNone, kPerm, 552, "5.3.4", kNone, {"Gmail 413"}},
      {"JSON body too large", 400,
       body(400, "badRequest", "Request payload size exceeds the limit: 52428800 bytes.", "INVALID_ARGUMENT"),
       kNone, kPerm, 552, "5.3.4", kNone, {"payload size"}},
      // Temporary: throttling
      {"sending limit, time in the text", 429, body(429, "rateLimitExceeded", sending_limit, "RESOURCE_EXHAUSTED"),
       kNone, kTemp, 451, "4.7.0", 1104s, {"rateLimitExceeded", "RESOURCE_EXHAUSTED", "Retry after 2026-03-07T18:18:23.688Z", "2,000 messages"}},
      {"sending limit, header first", 429, body(429, "rateLimitExceeded", sending_limit, "RESOURCE_EXHAUSTED"),
       30s, kTemp, 451, "4.7.0", 30s, {"retry in 30 s"}},
      {"per-minute quota", 429,
       body(429, "rateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of "
            "service 'gmail.googleapis.com' for consumer 'project_number:123456789012'.",
            "RESOURCE_EXHAUSTED"),
       kNone, kTemp, 451, "4.7.0", kNone, {"Queries per minute per user"}},
      {"concurrency", 429, body(429, "rateLimitExceeded", "Too many concurrent requests for user.", "RESOURCE_EXHAUSTED"),
       2s, kTemp, 451, "4.7.0", 2s, {"concurrent"}},
      {"403 rate", 403, body(403, "rateLimitExceeded", "Rate Limit Exceeded", "PERMISSION_DENIED"),
       kNone, kTemp, 451, "4.7.0", kNone, {"rateLimitExceeded"}},
      {"403 user rate", 403, body(403, "userRateLimitExceeded", "User Rate Limit Exceeded", "PERMISSION_DENIED"),
       kNone, kTemp, 451, "4.7.0", kNone, {"userRateLimitExceeded"}},
      {"403 daily", 403, body(403, "dailyLimitExceeded", "Daily Limit Exceeded", "PERMISSION_DENIED"),
       kNone, kTemp, 451, "4.7.0", kNone, {"dailyLimitExceeded", "Quotas"}},
      // Temporary: server errors and everything else
      {"backend", 500, body(500, "backendError", "Backend Error", "INTERNAL"),
       kNone, kTemp, 451, "4.3.0", kNone, {"backendError", "server error"}},
      {"bad gateway", 502, "<html>Bad Gateway</html>", kNone, kTemp, 451, "4.3.0", kNone, {"Gmail 502"}},
      {"unavailable", 503, body(503, "backendError", "The service is currently unavailable.", "UNAVAILABLE"),
       5s, kTemp, 451, "4.3.0", 5s, {"UNAVAILABLE"}},
      {"deadline", 504, body(504, "backendError", "Deadline exceeded.", "DEADLINE_EXCEEDED"),
       kNone, kTemp, 451, "4.3.0", kNone, {"Deadline exceeded."}},
      {"token refused", 401, body(401, "authError", "Request had invalid authentication credentials.", "UNAUTHENTICATED"),
       kNone, kTemp, 451, "4.7.0", kNone, {"authError", "access token"}},
      {"not found", 404, body(404, "notFound", "Not Found", "NOT_FOUND"),
       kNone, kTemp, 451, "4.3.0", kNone, {"notFound", "unexpected"}},
      {"delegation denied", 403, body(403, "forbidden", "Delegation denied for relay@example.com", "PERMISSION_DENIED"),
       kNone, kTemp, 451, "4.3.0", kNone, {"Delegation denied"}},
      {"bad JSON", 400, body(400, "badRequest", "Invalid JSON payload received. Unexpected token.", "INVALID_ARGUMENT"),
       kNone, kTemp, 451, "4.3.0", kNone, {"badRequest"}},
  };
  for (const Case& c : cases) {
    const GmailError e = parseGmailError(c.status, c.body);
    const auto r = classify(e, c.header_retry_after, kNow);
    EXPECT_EQ(r.outcome, c.outcome) << c.name;
    EXPECT_EQ(r.smtp_code, c.smtp) << c.name;
    EXPECT_EQ(r.enhanced, c.enhanced) << c.name;
    EXPECT_EQ(r.retry_after, c.retry_after) << c.name;
    // Throttling, and only throttling, is marked so that the breaker ignores it.
    EXPECT_EQ(r.throttled, std::string_view(c.enhanced) == "4.7.0" && c.status != 401) << c.name;
    EXPECT_FALSE(r.summary.empty()) << c.name;
    EXPECT_TRUE(e.message.empty() || r.summary.find(e.message) == std::string::npos) << c.name;
    for (const auto& part : c.detail) {
      EXPECT_NE(r.detail.find(part), std::string::npos) << c.name << ": no \"" << part << "\" in " << r.detail;
    }
    EXPECT_EQ(r.detail.find('\n'), std::string::npos) << c.name;
  }
}

TEST(GmailError, RetryTimeInTheMessage) {
  struct Retry {
    std::string message;
    std::optional<std::chrono::seconds> expected;
  };
  const std::vector<Retry> cases = {
      {"User-rate limit exceeded. Retry after 2026-03-07T18:18:23.688Z (Mail sending)", 1104s},
      {"user-rate limit exceeded. retry after 2026-03-07T18:00:01Z", 1s},
      {"Retry after 2026-03-07T18:18:23.5Z.", 1104s},
      {"Retry after 2026-03-07T18:00:00.001Z", 1s},
      {"Retry after 2026-03-07T20:00:00-01:00", 10800s},
      {"Retry after 2026-03-07T19:30:00+01:00", 1800s},
      {"Retry after 2026-03-08T06:00:00Z (Mail sending)", 43200s},
      // Passed, or now: the queue's own back-off.
      {"Retry after 2026-03-07T18:00:00Z", std::nullopt},
      {"Retry after 2026-03-06T18:00:00Z", std::nullopt},
      {"Retry after 2026-03-07T19:00:00+01:00", std::nullopt},
      // Further than a day is cut to a day.
      {"Retry after 2026-03-09T18:00:00Z", 86400s},
      // Not a time.
      {"Retry after 2026-02-30T18:00:00Z", std::nullopt},
      {"Retry after 2026-03-07T24:00:00Z", std::nullopt},
      {"Retry after 2026-03-07T18:18:23", std::nullopt},
      {"Retry after 2026-3-7T18:18:23Z", std::nullopt},
      {"Retry after 2026-03-07T18:-1:23Z", std::nullopt},
      {"Retry after 2026-03-07T18:18:23.Z", std::nullopt},
      {"Retry after 2026-03-07T18:18:23+0100", std::nullopt},
      {"Retry after 2026-03-07 18:10:00Z", std::nullopt},
      {"Retry after soon", std::nullopt},
      {"Retry after ", std::nullopt},
      {"Rate Limit Exceeded", std::nullopt},
  };
  for (const auto& c : cases) {
    GmailError e;
    e.status = 429;
    e.reason = "rateLimitExceeded";
    e.message = c.message;
    const auto r = classify(e, std::nullopt, kNow);
    EXPECT_EQ(r.outcome, Outcome::TemporaryFailure) << c.message;
    EXPECT_EQ(r.retry_after, c.expected) << c.message;
  }
  // A Retry-After header wins even when it is shorter, and is capped too.
  GmailError e;
  e.status = 429;
  e.message = "Retry after 2026-03-07T19:00:00Z";
  EXPECT_EQ(classify(e, 10s, kNow).retry_after, 10s);
  EXPECT_EQ(classify(e, 200000s, kNow).retry_after, 86400s);
  // Permanent failures carry none.
  e.status = 403;
  e.reason = "insufficientPermissions";
  EXPECT_EQ(classify(e, 10s, kNow).retry_after, std::nullopt);
}

}  // namespace
}  // namespace mb::delivery::gmail
