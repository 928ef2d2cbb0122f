#include "delivery/graph/graph_provider.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sodium.h>

#include <atomic>
#include <deque>
#include <future>
#include <fstream>
#include <mutex>
#include <thread>

#include "base/testing/temp_dir.h"
#include "http/http_client.h"
#include "delivery/testing/stored_job.h"
#include "http/testing/fake_http_client.h"
#include "oauth/token_source.h"

namespace mb::delivery::graph {
namespace {

using namespace std::chrono_literals;
using queue::Outcome;

class FakeTokens final : public oauth::TokenSource {
 public:
  oauth::TokenResult token() override {
    if (failure) return *failure;
    return oauth::AccessToken{"tok-" + std::to_string(++issued), std::chrono::system_clock::now() + 1h};
  }
  void invalidate(const std::string& value) override {
    invalidated.push_back(value);
    if (fresh == value) fresh.reset();
  }
  // A token held in a cache: what cached() hands out without a request.
  std::optional<oauth::AccessToken> cached() override {
    if (!fresh) return std::nullopt;
    return oauth::AccessToken{*fresh, std::chrono::system_clock::now() + 1h};
  }
  std::optional<std::string> fresh;
  int issued = 0;
  std::vector<std::string> invalidated;
  std::optional<oauth::TokenFailure> failure;
};

std::string decodeBase64(const std::string& text) {
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  EXPECT_EQ(sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(),
                              nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL),
            0);
  out.resize(len);
  return out;
}

using mb::delivery::testing::kTrailer;

class GraphProviderTest : public ::testing::Test {
 protected:
  GraphProviderTest() {
    config_.name = "m365";
    config_.type = config::ProviderType::Graph;
    config_.graph_endpoint = "https://graph.test";
    http_.setFallback(http::Response{202, {{"request-id", "rid-default"}}, ""});
  }

  // Stored as the spool does it: the message, then a trailer (the
  // envelope) that must never be sent.
  queue::DeliveryJob job(const std::string& content, std::vector<std::string> rcpts,
                         const std::string& sender = "scanner@example.com", const std::string& trailer = kTrailer) {
    return delivery::testing::storedJob(dir_.path(), ++n_, content, rcpts, sender, trailer);
  }

  queue::DeliveryResult run(const queue::DeliveryJob& j) {
    GraphProvider p(config_, http_, tokens_, scratch_.path(), 1);
    p.setUploadRetryDelay(0ms);
    return p.attempt(j);
  }

  mb::testing::TempDir dir_;
  mb::testing::TempDir scratch_;
  int n_ = 0;
  config::ProviderConfig config_;
  http::testing::FakeHttpClient http_;
  std::shared_ptr<FakeTokens> tokens_ = std::make_shared<FakeTokens>();
};

const std::string kMessage =
    "From: Scanner <scanner@example.com>\r\nTo: alice@example.com\r\nSubject: scan\r\n\r\nbody\r\n";

TEST_F(GraphProviderTest, SendsTheMessageAsBase64MimeAndReportsDelivered) {
  http_.push(http::Response{202, {{"request-id", "rid-1"}}, ""});
  const auto result = run(job(kMessage, {"alice@example.com"}));
  ASSERT_EQ(result.results.size(), 1u);
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered);
  EXPECT_EQ(result.results[0].smtp_code, 250);
  EXPECT_EQ(result.remote_id, "rid-1");
  EXPECT_EQ(result.provider, "m365");
  ASSERT_EQ(http_.requestCount(), 1u);
  const auto r = http_.requests()[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, "https://graph.test/v1.0/users/scanner%40example.com/sendMail");
  EXPECT_EQ(decodeBase64(r.body), kMessage) << "bytes preserved when the header names the envelope";
  bool auth = false, type = false;
  for (const auto& [k, v] : r.headers) {
    if (k == "Authorization") auth = v == "Bearer tok-1";
    if (k == "Content-Type") type = v == "text/plain";
  }
  EXPECT_TRUE(auth);
  EXPECT_TRUE(type);
  bool guid = false;
  for (const auto& [k, v] : r.headers) {
    if (k == "client-request-id") guid = v.size() == 36 && v[8] == '-' && v[13] == '-';
  }
  EXPECT_TRUE(guid) << "Graph wants a GUID as client-request-id";
}

TEST_F(GraphProviderTest, TheEnvelopeDecidesWhoReceivesIt) {
  const std::string msg =
      "From: scanner@example.com\r\nTo: alice@example.com, eve@example.com\r\nBcc: mallory@example.com\r\n"
      "Subject: x\r\n\r\nbody\r\n";
  const auto result = run(job(msg, {"alice@example.com", "bob@example.com"}));
  EXPECT_EQ(result.results.size(), 2u);
  const std::string sent = decodeBase64(http_.requests().at(0).body);
  EXPECT_EQ(sent.find("eve@example.com"), std::string::npos) << sent;
  EXPECT_EQ(sent.find("mallory@example.com"), std::string::npos) << sent;
  EXPECT_NE(sent.find("Bcc: bob@example.com"), std::string::npos) << sent;
  EXPECT_NE(sent.find("alice@example.com"), std::string::npos);
  EXPECT_NE(sent.find("\r\n\r\nbody\r\n"), std::string::npos);
}

TEST_F(GraphProviderTest, A401RefreshesTheTokenOnceAndRetries) {
  http_.push(http::Response{401, {}, R"({"error":{"code":"InvalidAuthenticationToken","message":"expired"}})"});
  http_.push(http::Response{202, {}, ""});
  const auto result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered);
  EXPECT_EQ(tokens_->invalidated, std::vector<std::string>{"tok-1"});
  ASSERT_EQ(http_.requestCount(), 2u);

  // Twice in a row: no third request, a temporary failure.
  const std::size_t before = http_.requestCount();
  for (int i = 0; i < 2; ++i) {
    http_.push(http::Response{401, {}, R"({"error":{"code":"InvalidAuthenticationToken","message":"no"}})"});
  }
  const auto again = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(again.results[0].outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(http_.requestCount() - before, 2u);
}

TEST_F(GraphProviderTest, PermanentErrorsReachEveryRecipient) {
  http_.push(http::Response{
      403, {{"request-id", "rid-9"}}, R"({"error":{"code":"ErrorSendAsDenied","message":"no send as","innerError":{"request-id":"rid-9"}}})"});
  const auto result = run(job(kMessage, {"alice@example.com", "bob@example.com"}));
  ASSERT_EQ(result.results.size(), 2u);
  for (const auto& r : result.results) {
    EXPECT_EQ(r.outcome, Outcome::PermanentFailure);
    EXPECT_EQ(r.smtp_code, 550);
    EXPECT_EQ(r.enhanced, "5.7.60");
    EXPECT_EQ(r.summary, "sender not allowed to send as this mailbox");
  }
}

TEST_F(GraphProviderTest, ThrottlingCarriesRetryAfter) {
  http_.push(http::Response{429, {{"Retry-After", "30"}}, R"({"error":{"code":"ApplicationThrottled","message":"over"}})"});
  const auto result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(result.results[0].retry_after, 30s);
}

TEST_F(GraphProviderTest, TransportErrorsAreTemporary) {
  http_.push(http::TransportError{"Operation timed out", true});
  auto result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(result.results[0].enhanced, "4.4.2");
  http_.push(http::TransportError{"Could not connect", false});
  result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].enhanced, "4.4.1");
}

TEST_F(GraphProviderTest, ABrokenConnectionIsTriedOnceMoreAtOnce) {
  http::TransportError lost{"Error in the HTTP2 framing layer", false, true};
  http_.push(lost);
  http_.push(http::Response{202, {{"request-id", "rid-2"}}, ""});
  auto result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered);
  EXPECT_EQ(http_.requestCount(), 2u);

  // Only once: a connection that breaks again leaves it to the queue.
  http_.push(lost);
  http_.push(lost);
  http_.push(http::Response{202, {{"request-id", "rid-3"}}, ""});
  result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(result.results[0].enhanced, "4.4.1");
  EXPECT_EQ(http_.requestCount(), 4u);
}

TEST_F(GraphProviderTest, NoTokenMeansTheMailWaits) {
  oauth::TokenFailure f;
  f.retryable = false;
  f.explanation = "AADSTS7000215: wrong client secret";
  tokens_->failure = f;
  const auto result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].outcome, Outcome::TemporaryFailure);
  EXPECT_NE(result.results[0].detail.find("7000215"), std::string::npos);
  EXPECT_TRUE(http_.requests().empty());
}

TEST_F(GraphProviderTest, ASinglePartTooBigForSendMailGoesAsAnAttachmentOfADraft) {
  const std::string big = kMessage + std::string(GraphProvider::kMaxSendMailBytes, 'x');
  http_.push(http::Response{201, {}, R"({"id":"d1"})"});
  http_.push(http::Response{201, {}, R"({"uploadUrl":"https://upload.test/u?authtoken=t"})"});
  http_.setFallback(http::Response{201, {}, ""});
  const auto result = run(job(big, {"alice@example.com"}));
  const auto reqs = http_.requests();
  ASSERT_GE(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].url, "https://graph.test/v1.0/users/scanner%40example.com/messages");
  EXPECT_NE(reqs[1].body.find(R"("name":"message.txt")"), std::string::npos) << reqs[1].body;
  EXPECT_EQ(reqs[reqs.size() - 2].url, "https://graph.test/v1.0/users/scanner%40example.com/messages/d1/send");
  // The fallback answers the send with 201, not Graph's 202: not delivered,
  // and the draft is deleted.
  EXPECT_NE(result.results[0].outcome, Outcome::Delivered);
  EXPECT_EQ(reqs.back().method, "DELETE");
}

TEST_F(GraphProviderTest, OnlyTheMessageSizeIsSentNotWhatFollowsIt) {
  // Unchanged header: the stored bytes as they are, up to the size.
  run(job(kMessage, {"alice@example.com"}));
  run(job(kMessage, {"alice@example.com"}, "scanner@example.com", ""));
  // Header rewritten (Bcc added), and a message without a final line end.
  const std::string open = "From: scanner@example.com\r\nTo: alice@example.com\r\n\r\nno line end";
  run(job(open, {"alice@example.com", "bob@example.com"}));
  run(job(open, {"alice@example.com", "bob@example.com"}, "scanner@example.com", ""));
  const auto reqs = http_.requests();
  ASSERT_EQ(reqs.size(), 4u);
  const std::string sent = decodeBase64(reqs[0].body);
  EXPECT_EQ(sent, kMessage);
  EXPECT_EQ(sent, decodeBase64(reqs[1].body)) << "the same as without a trailer";
  const std::string rewritten = decodeBase64(reqs[2].body);
  EXPECT_EQ(rewritten, decodeBase64(reqs[3].body));
  EXPECT_NE(rewritten.find("Bcc: bob@example.com\r\n"), std::string::npos) << rewritten;
  EXPECT_EQ(rewritten.substr(rewritten.size() - 15), "\r\n\r\nno line end");
  for (const auto& r : reqs) EXPECT_EQ(decodeBase64(r.body).find("MUST-NOT-LEAK"), std::string::npos);
}

TEST_F(GraphProviderTest, SaveToSentFalseSendsOnlyTheMessageSizeThroughTheDraft) {
  config_.save_to_sent = false;
  http_.push(http::Response{201, {}, R"({"id":"d1"})"});
  http_.push(http::Response{200, {}, "{}"});
  http_.push(http::Response{202, {}, ""});
  const auto result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results.at(0).outcome, Outcome::Delivered) << result.results.at(0).detail;
  ASSERT_GE(http_.requestCount(), 1u);
  EXPECT_EQ(decodeBase64(http_.requests()[0].body), kMessage);
}

TEST_F(GraphProviderTest, AContentFileShorterThanTheSizeIsATemporaryFailure) {
  auto j = job(kMessage, {"alice@example.com"}, "scanner@example.com", "");
  j.envelope.size = kMessage.size() + 1;
  const auto result = run(j);
  EXPECT_EQ(result.results.at(0).outcome, Outcome::TemporaryFailure);
  EXPECT_NE(result.results[0].detail.find("cannot read the stored message"), std::string::npos)
      << result.results[0].detail;
  EXPECT_EQ(http_.requestCount(), 0u);
  // The same on the draft path.
  config_.save_to_sent = false;
  EXPECT_EQ(run(j).results.at(0).outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(http_.requestCount(), 0u);
}

TEST_F(GraphProviderTest, SenderIsEncodedAndTheNullSenderUsesFrom) {
  run(job(kMessage, {"alice@example.com"}, "a+b/c@example.com"));
  EXPECT_EQ(http_.requests().back().url, "https://graph.test/v1.0/users/a%2Bb%2Fc%40example.com/sendMail");
  run(job(kMessage, {"alice@example.com"}, ""));
  EXPECT_EQ(http_.requests().back().url, "https://graph.test/v1.0/users/scanner%40example.com/sendMail");
  const auto none = run(job("Subject: no from\r\nTo: alice@example.com\r\n\r\nx\r\n", {"alice@example.com"}, ""));
  EXPECT_EQ(none.results[0].outcome, Outcome::PermanentFailure);
}

TEST_F(GraphProviderTest, AccessDeniedDropsTheCachedToken) {
  http_.push(http::Response{403, {}, R"({"error":{"code":"ErrorAccessDenied","message":"Access is denied."}})"});
  const auto result = run(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].outcome, Outcome::PermanentFailure);
  EXPECT_EQ(tokens_->invalidated, std::vector<std::string>{"tok-1"});
}

TEST_F(GraphProviderTest, DeliverRunsOnThePoolAndCallsDoneOnce) {
  GraphProvider p(config_, http_, tokens_, scratch_.path(), 2);
  std::promise<queue::DeliveryResult> got;
  p.deliver(job(kMessage, {"alice@example.com"}), [&got](queue::DeliveryResult r) { got.set_value(std::move(r)); });
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get().results.at(0).outcome, Outcome::Delivered);
}

// deliver() with a token at hand: the request goes out without a worker.
class GraphStartTest : public GraphProviderTest {
 protected:
  GraphStartTest() { tokens_->fresh = "cached-tok"; }

  struct Delivered {
    queue::DeliveryResult result;
    std::string thread;  // the name of the thread that reported it
  };
  Delivered deliver(const queue::DeliveryJob& j) {
    GraphProvider p(config_, http_, tokens_, scratch_.path(), 1);
    std::promise<Delivered> got;
    p.deliver(j, [&got](queue::DeliveryResult r) {
      char name[16] = {};
      pthread_getname_np(pthread_self(), name, sizeof name);
      got.set_value({std::move(r), name});
    });
    auto f = got.get_future();
    EXPECT_EQ(f.wait_for(10s), std::future_status::ready);
    return f.get();
  }
  static std::string header(const http::Request& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return {};
  }
};

TEST_F(GraphStartTest, ACachedTokenSendsWithoutAWorkerAndReportsOnTheCompletionThread) {
  http_.push(http::Response{202, {{"request-id", "rid-s"}}, ""});
  const auto got = deliver(job(kMessage, {"alice@example.com", "bob@example.com"}));
  EXPECT_EQ(http_.startedCount(), 1u);
  EXPECT_EQ(tokens_->issued, 0) << "no blocking token() call";
  ASSERT_EQ(got.result.results.size(), 2u);
  EXPECT_EQ(got.result.results[1].outcome, Outcome::Delivered);
  EXPECT_EQ(got.result.remote_id, "rid-s");
  EXPECT_EQ(got.result.provider, "m365");
  EXPECT_EQ(got.thread, "mb-graph-done");
  const auto r = http_.requests().at(0);
  EXPECT_EQ(r.url, "https://graph.test/v1.0/users/scanner%40example.com/sendMail");
  EXPECT_EQ(header(r, "Authorization"), "Bearer cached-tok");
  EXPECT_EQ(header(r, "client-request-id").size(), 36u);
  EXPECT_EQ(r.timeout, std::chrono::duration_cast<std::chrono::milliseconds>(config_.timeout));
  EXPECT_NE(decodeBase64(r.body).find("Bcc: bob@example.com"), std::string::npos);
}

TEST_F(GraphStartTest, FailuresAreReportedFromAWorker) {
  // A failure may write the spool and store a bounce: not on the HTTP thread.
  http_.push(http::Response{500, {}, R"({"error":{"code":"generalException","message":"x"}})"});
  auto got = deliver(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(http_.startedCount(), 1u);
  EXPECT_EQ(got.result.results.at(0).outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(got.thread, "mb-graph");

  http_.push(http::TransportError{"Operation timed out", true});
  got = deliver(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(got.result.results.at(0).enhanced, "4.4.2");
  EXPECT_EQ(got.thread, "mb-graph");

  // Nothing to send (no sender mailbox): the verdict also comes from a worker.
  got = deliver(job("Subject: no from\r\nTo: alice@example.com\r\n\r\nx\r\n", {"alice@example.com"}, ""));
  EXPECT_EQ(got.result.results.at(0).outcome, Outcome::PermanentFailure);
  EXPECT_EQ(got.thread, "mb-graph");
  EXPECT_EQ(http_.requestCount(), 2u);
}

TEST_F(GraphStartTest, ALaterAttemptDeliveredReportsFromAWorker) {
  // An earlier attempt settled one recipient: this one's end may bounce it.
  auto j = job(kMessage, {"alice@example.com", "bob@example.com"});
  j.recipients = {1};
  const auto got = deliver(j);
  EXPECT_EQ(http_.startedCount(), 1u);
  ASSERT_EQ(got.result.results.size(), 1u);
  EXPECT_EQ(got.result.results[0].outcome, Outcome::Delivered);
  EXPECT_EQ(got.thread, "mb-graph");
}

TEST_F(GraphStartTest, A401DropsTheCachedTokenAndAWorkerSendsOnceMore) {
  http_.push(http::Response{401, {}, R"({"error":{"code":"InvalidAuthenticationToken","message":"expired"}})"});
  http_.push(http::Response{202, {{"request-id", "rid-2"}}, ""});
  auto got = deliver(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(got.result.results.at(0).outcome, Outcome::Delivered);
  EXPECT_EQ(tokens_->invalidated, std::vector<std::string>{"cached-tok"});
  ASSERT_EQ(http_.requestCount(), 2u);
  EXPECT_EQ(header(http_.requests()[1], "Authorization"), "Bearer tok-1") << "a fresh token, fetched on the worker";

  // Refused again: the worker does not ask a third time.
  tokens_->fresh = "cached-tok";
  http_.push(http::Response{401, {}, ""});
  http_.push(http::Response{401, {}, ""});
  http_.push(http::Response{202, {}, ""});
  got = deliver(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(got.result.results.at(0).outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(http_.requestCount(), 4u);
}

TEST_F(GraphStartTest, ABrokenConnectionIsSentOnceMoreFromAWorker) {
  http::TransportError lost{"Error in the HTTP2 framing layer", false, true};
  http_.push(lost);
  http_.push(http::Response{202, {}, ""});
  auto got = deliver(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(got.result.results.at(0).outcome, Outcome::Delivered);
  EXPECT_EQ(http_.requestCount(), 2u);
  EXPECT_EQ(http_.startedCount(), 1u);
  EXPECT_TRUE(tokens_->invalidated.empty());

  http_.push(lost);
  http_.push(lost);
  http_.push(http::Response{202, {}, ""});
  got = deliver(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(got.result.results.at(0).outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(got.result.results.at(0).enhanced, "4.4.1");
  EXPECT_EQ(http_.requestCount(), 4u) << "one resend in all, as on a worker";
}

TEST_F(GraphStartTest, WithoutACachedTokenOrForALargeMessageAWorkerSends) {
  tokens_->fresh.reset();
  auto got = deliver(job(kMessage, {"alice@example.com"}));
  EXPECT_EQ(got.result.results.at(0).outcome, Outcome::Delivered);
  EXPECT_EQ(http_.startedCount(), 0u);
  EXPECT_EQ(tokens_->issued, 1);

  tokens_->fresh = "cached-tok";
  const std::string big = "From: scanner@example.com\r\nTo: alice@example.com\r\n\r\n" +
                          std::string(GraphProvider::kMaxStartedBytes, 'x') + "\r\n";
  got = deliver(job(big, {"alice@example.com"}));
  EXPECT_EQ(got.result.results.at(0).outcome, Outcome::Delivered);
  EXPECT_EQ(http_.startedCount(), 0u);
  EXPECT_EQ(tokens_->issued, 2);
  EXPECT_EQ(got.thread, "mb-graph");
}

TEST_F(GraphStartTest, TheProviderOutlivesItsStartedRequests) {
  http::testing::FakeHttpClient held;
  held.setFallback(http::Response{202, {}, ""});
  held.hold();
  auto p = std::make_unique<GraphProvider>(config_, held, tokens_, scratch_.path(), 1);
  std::promise<queue::DeliveryResult> got;
  std::thread sender([&] {
    p->deliver(job(kMessage, {"alice@example.com"}), [&got](queue::DeliveryResult r) { got.set_value(std::move(r)); });
  });
  ASSERT_TRUE(held.waitForRequests(1));
  std::atomic<bool> destroyed{false};
  std::thread destroyer([&] {
    p.reset();
    destroyed = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(destroyed) << "the destructor waits for the request in flight";
  held.release();
  destroyer.join();
  sender.join();
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(got.get_future().get().results.at(0).outcome, Outcome::Delivered);
}

}  // namespace
}  // namespace mb::delivery::graph
