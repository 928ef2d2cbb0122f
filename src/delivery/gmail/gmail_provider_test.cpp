#include "delivery/gmail/gmail_provider.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/testing/temp_dir.h"
#include "delivery/testing/slurping_client.h"
#include "delivery/testing/stored_job.h"
#include "http/testing/fake_http_client.h"
#include "oauth/encoding.h"
#include "oauth/token_source.h"

namespace mb::delivery::gmail {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using queue::Outcome;

using mb::delivery::testing::SlurpingClient;
using Tokens = mb::delivery::testing::FixedTokens;

using mb::delivery::testing::kTrailer;

const std::string kHead = "From: Scanner <scanner@example.com>\r\nTo: alice@example.com\r\nSubject: scan\r\n\r\n";

class GmailProviderTest : public ::testing::Test {
 protected:
  GmailProviderTest() {
    config_.name = "gw";
    config_.type = config::ProviderType::Gmail;
    config_.api_endpoint = "https://gmail.test";
    http_.setFallback(http::Response{200, {}, R"({"id":"g1"})"});
  }

  queue::DeliveryJob job(const std::string& content, std::vector<std::string> rcpts,
                         const std::string& trailer = kTrailer) {
    return delivery::testing::storedJob(dir_.path(), ++n_, content, rcpts, "scanner@example.com", trailer);
  }

  queue::DeliveryResult run(const queue::DeliveryJob& j) {
    GmailProvider p(config_, client_, [this](const std::string&) { return tokens_; }, scratch_.path(), clock_, 1);
    return p.attempt(j);
  }

  // The message the last request carried: the raw JSON's, or the upload's.
  std::string lastSent() {
    const auto reqs = http_.requests();
    if (reqs.empty()) return "NO REQUEST";
    const http::Request& r = reqs.back();
    if (r.url.find("uploadType=media") != std::string::npos) return r.body;
    const json j = json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("raw")) return "NO RAW";
    return oauth::base64UrlDecode(j["raw"].get<std::string>()).value_or("BAD BASE64URL");
  }

  mb::testing::TempDir dir_;
  mb::testing::TempDir scratch_;
  int n_ = 0;
  config::ProviderConfig config_;
  ManualClock clock_;
  http::testing::FakeHttpClient http_;
  SlurpingClient client_{http_};
  std::shared_ptr<Tokens> tokens_ = std::make_shared<Tokens>();
};

TEST_F(GmailProviderTest, RawSendCarriesOnlyTheMessage) {
  const std::string msg = kHead + "body\r\nno line end";
  ASSERT_EQ(run(job(msg, {"alice@example.com"})).results.at(0).outcome, Outcome::Delivered);
  EXPECT_EQ(http_.requests().back().url, "https://gmail.test/gmail/v1/users/scanner%40example.com/messages/send");
  EXPECT_EQ(lastSent(), msg) << "unchanged header: the stored bytes up to the size";

  // A rewritten header (Bcc added): the same with and without a trailer.
  ASSERT_EQ(run(job(msg, {"alice@example.com", "bob@example.com"})).results.at(0).outcome, Outcome::Delivered);
  const std::string rewritten = lastSent();
  ASSERT_EQ(run(job(msg, {"alice@example.com", "bob@example.com"}, "")).results.at(0).outcome, Outcome::Delivered);
  EXPECT_EQ(rewritten, lastSent());
  EXPECT_NE(rewritten.find("Bcc: bob@example.com\r\n"), std::string::npos) << rewritten;
  EXPECT_EQ(rewritten.substr(rewritten.size() - 17), "body\r\nno line end");
  EXPECT_EQ(rewritten.find("MUST-NOT-LEAK"), std::string::npos);
}

TEST_F(GmailProviderTest, MediaUploadFromTheSpoolStopsAtTheSize) {
  const std::string msg = kHead + std::string(GmailProvider::kMaxRawBytes, 'x') + "\r\nend";
  const auto j = job(msg, {"alice@example.com"});
  ASSERT_EQ(run(j).results.at(0).outcome, Outcome::Delivered);
  const auto r = http_.requests().back();
  EXPECT_EQ(r.url, "https://gmail.test/upload/gmail/v1/users/scanner%40example.com/messages/send?uploadType=media");
  EXPECT_EQ(r.body_file, j.content) << "streamed from the spool's own file";
  EXPECT_EQ(r.body_offset, 0u);
  EXPECT_EQ(r.body_length, msg.size());
  EXPECT_TRUE(r.body == msg) << "sizes " << r.body.size() << " vs " << msg.size();
}

TEST_F(GmailProviderTest, MediaUploadOfARewrittenCopyStopsAtTheSize) {
  const std::string body = std::string(GmailProvider::kMaxRawBytes, 'x') + "\r\nend";
  const std::string msg = kHead + body;
  ASSERT_EQ(run(job(msg, {"alice@example.com", "bob@example.com"})).results.at(0).outcome, Outcome::Delivered);
  const std::string with_trailer = lastSent();
  ASSERT_EQ(run(job(msg, {"alice@example.com", "bob@example.com"}, "")).results.at(0).outcome, Outcome::Delivered);
  EXPECT_TRUE(with_trailer == lastSent()) << "the same as without a trailer";
  EXPECT_NE(with_trailer.find("Bcc: bob@example.com\r\n"), std::string::npos);
  ASSERT_GT(with_trailer.size(), body.size());
  EXPECT_TRUE(with_trailer.compare(with_trailer.size() - body.size(), body.size(), body) == 0);
  EXPECT_EQ(with_trailer.find("MUST-NOT-LEAK"), std::string::npos);
  EXPECT_EQ(http_.requests().back().body_length, with_trailer.size());
  EXPECT_TRUE(std::filesystem::is_empty(scratch_.path()));
}

TEST_F(GmailProviderTest, AContentFileShorterThanTheSizeIsATemporaryFailure) {
  auto j = job(kHead + "body\r\n", {"alice@example.com"}, "");
  j.envelope.size += 1;
  const auto result = run(j);
  EXPECT_EQ(result.results.at(0).outcome, Outcome::TemporaryFailure);
  EXPECT_EQ(http_.requestCount(), 0u);
}

}  // namespace
}  // namespace mb::delivery::gmail
