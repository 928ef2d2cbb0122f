#include "delivery/outbox/outbox_provider.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>

#include "base/durable_file.h"
#include "base/testing/temp_dir.h"

namespace mb::delivery {
namespace {

namespace stdfs = std::filesystem;

using mb::testing::TempDir;

std::set<std::string> listDir(const stdfs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    out.insert(it->path().filename().string());
  }
  return out;
}

// What the spool keeps after the message in the same file (the envelope);
// only the first envelope.size bytes are the message.
const std::string kTrailer = "\n{\"trailer\":\"MUST-NOT-LEAK\"}\nMBENV";

class OutboxProviderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }

  // `content` stored with kTrailer after it, as the spool does.
  queue::DeliveryJob makeJob(const std::string& content) {
    queue::DeliveryJob job;
    job.envelope.id = queue::newQueueId();
    job.envelope.sender = "scanner@example.com";
    job.envelope.recipients = {{"done@example.org", queue::RecipientState::Delivered, 250, "2.0.0", ""},
                               {"a@example.org", queue::RecipientState::Pending, 0, "", ""},
                               {"b@example.org", queue::RecipientState::Pending, 0, "", ""}};
    job.envelope.arrival = 1'800'000'000;
    job.envelope.client_address = "192.0.2.9";
    job.envelope.helo = "mfp-3f";
    job.recipients = {1, 2};
    job.content = dir_.path() / (job.envelope.id + ".msg");
    job.envelope.size = content.size();
    EXPECT_TRUE(fs::writeFileAtomic(job.content, content + kTrailer).ok());
    return job;
  }

  queue::DeliveryResult run(OutboxProvider& provider, const queue::DeliveryJob& job) {
    std::optional<queue::DeliveryResult> out;
    provider.deliver(job, [&](queue::DeliveryResult r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value()) << "done must be called before deliver() returns";
    return out ? *out : queue::DeliveryResult{};
  }

  TempDir dir_;
};

std::string binaryContent(std::size_t size) {
  std::mt19937 rng(42);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  // Line endings and NULs in odd places, as a scanned PDF attachment would have.
  s.replace(0, 18, "Received: x\r\n\r\n.\r\n");
  return s;
}

TEST_F(OutboxProviderTest, WritesExactBytesAndJson) {
  const std::string content = binaryContent(1024 * 1024 + 123);
  const auto job = makeJob(content);
  const auto outbox = dir_.path() / "out" / "box";  // created on demand
  OutboxProvider provider("outbox", outbox);
  const auto result = run(provider, job);

  const auto eml = outbox / (job.envelope.id + ".eml");
  ASSERT_EQ(result.results.size(), 2u);
  for (const auto& r : result.results) {
    EXPECT_EQ(r.outcome, queue::Outcome::Delivered);
    EXPECT_EQ(r.smtp_code, 250);
    EXPECT_EQ(r.enhanced, "2.0.0");
  }
  EXPECT_EQ(result.provider, "outbox");
  EXPECT_EQ(result.remote_id, eml.filename().string()) << "no server path for the client";

  auto written = fs::readFile(eml);
  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*written == content) << "sizes " << written->size() << " vs " << content.size();

  auto text = fs::readFile(outbox / (job.envelope.id + ".json"));
  ASSERT_TRUE(text.ok());
  const auto meta = nlohmann::json::parse(*text, nullptr, false);
  ASSERT_FALSE(meta.is_discarded());
  EXPECT_EQ(meta["id"], job.envelope.id);
  EXPECT_EQ(meta["sender"], "scanner@example.com");
  EXPECT_EQ(meta["recipients"], nlohmann::json::array({"a@example.org", "b@example.org"}));
  EXPECT_EQ(meta["arrival"], 1'800'000'000);
  EXPECT_EQ(meta["client_address"], "192.0.2.9");
  EXPECT_EQ(meta["helo"], "mfp-3f");

  EXPECT_EQ(listDir(outbox), (std::set<std::string>{job.envelope.id + ".eml", job.envelope.id + ".json"}));
}

TEST_F(OutboxProviderTest, EmptyContent) {
  const auto job = makeJob("");
  OutboxProvider provider("outbox", dir_.path() / "out");
  const auto result = run(provider, job);
  ASSERT_EQ(result.results.size(), 2u);
  EXPECT_EQ(result.results[0].outcome, queue::Outcome::Delivered);
  EXPECT_EQ(*fs::readFile(dir_.path() / "out" / (job.envelope.id + ".eml")), "");
}

TEST_F(OutboxProviderTest, RedeliveryOverwrites) {
  auto job = makeJob("first version\r\n");
  const auto outbox = dir_.path() / "out";
  OutboxProvider provider("outbox", outbox);
  ASSERT_EQ(run(provider, job).results[0].outcome, queue::Outcome::Delivered);
  // A leftover temporary from a crash must not stand in the way.
  ASSERT_TRUE(fs::writeFileAtomic(outbox / (job.envelope.id + ".eml.tmp"), "stale").ok());
  ASSERT_TRUE(fs::writeFileAtomic(outbox / (job.envelope.id + ".json.tmp"), "stale").ok());
  ASSERT_TRUE(fs::removeFile(job.content).ok());
  ASSERT_TRUE(fs::writeFileAtomic(job.content, "second version\r\n" + kTrailer).ok());
  job.envelope.size = 16;
  job.recipients = {2};
  const auto result = run(provider, job);
  ASSERT_EQ(result.results.size(), 1u);
  EXPECT_EQ(result.results[0].outcome, queue::Outcome::Delivered);
  EXPECT_EQ(*fs::readFile(outbox / (job.envelope.id + ".eml")), "second version\r\n");
  const auto meta = nlohmann::json::parse(*fs::readFile(outbox / (job.envelope.id + ".json")), nullptr, false);
  EXPECT_EQ(meta["recipients"], nlohmann::json::array({"b@example.org"}));
  EXPECT_EQ(listDir(outbox).size(), 2u);
}

TEST_F(OutboxProviderTest, RefusedRecipientsFailPermanentlyAndTheRestAreWritten) {
  auto job = makeJob("content\r\n");
  job.envelope.recipients[2].address = "B@Refused.Example";
  const auto outbox = dir_.path() / "out";
  OutboxProvider provider("outbox", outbox, {"@refused.example", "nobody@example.org"});
  auto result = run(provider, job);
  ASSERT_EQ(result.results.size(), 2u);
  EXPECT_EQ(result.results[0].outcome, queue::Outcome::Delivered);
  EXPECT_EQ(result.results[1].outcome, queue::Outcome::PermanentFailure);
  EXPECT_EQ(result.results[1].smtp_code, 550);
  EXPECT_EQ(result.results[1].enhanced, "5.1.1");
  EXPECT_FALSE(result.results[1].summary.empty());
  const auto meta = nlohmann::json::parse(*fs::readFile(outbox / (job.envelope.id + ".json")), nullptr, false);
  EXPECT_EQ(meta["recipients"], nlohmann::json::array({"a@example.org"}));

  // Everyone refused: nothing is written. "@example.org" does not match
  // "a@sub.example.org"-style suffixes without the '@'.
  auto all = makeJob("content\r\n");
  all.envelope.recipients[1].address = "nobody@example.org";
  all.envelope.recipients[2].address = "x@refused.example";
  result = run(provider, all);
  ASSERT_EQ(result.results.size(), 2u);
  EXPECT_EQ(result.results[0].outcome, queue::Outcome::PermanentFailure);
  EXPECT_EQ(result.results[1].outcome, queue::Outcome::PermanentFailure);
  EXPECT_FALSE(stdfs::exists(outbox / (all.envelope.id + ".eml")));
  auto near = makeJob("content\r\n");
  near.envelope.recipients[1].address = "x@notrefused.example";
  near.envelope.recipients[2].address = "nobody@example.org.evil";
  result = run(provider, near);
  EXPECT_EQ(result.results[0].outcome, queue::Outcome::Delivered);
  EXPECT_EQ(result.results[1].outcome, queue::Outcome::Delivered);
}

TEST_F(OutboxProviderTest, UnwritableDirectoryIsTemporaryFailure) {
  // Tests run as root, so permissions cannot make a directory unwritable; a
  // regular file where the directory should be does.
  const auto blocker = dir_.path() / "not-a-dir";
  ASSERT_TRUE(fs::writeFileAtomic(blocker, "x").ok());
  const auto job = makeJob("content");
  for (const auto& outbox : {blocker, blocker / "sub"}) {
    OutboxProvider provider("outbox", outbox);
    const auto result = run(provider, job);
    ASSERT_EQ(result.results.size(), 2u);
    for (const auto& r : result.results) {
      EXPECT_EQ(r.outcome, queue::Outcome::TemporaryFailure);
      EXPECT_EQ(r.smtp_code, 451);
      EXPECT_EQ(r.enhanced, "4.3.0");
      EXPECT_NE(r.detail.find(blocker.string()), std::string::npos) << r.detail;
      EXPECT_NE(r.detail.find("Not a directory"), std::string::npos) << r.detail;
    }
    EXPECT_TRUE(result.remote_id.empty());
  }
}

TEST_F(OutboxProviderTest, CopiesOnlyTheMessageNotWhatFollowsIt) {
  // Bigger than one copy block, not a multiple of it.
  const std::string content = binaryContent(3 * 64 * 1024 + 17);
  const auto job = makeJob(content);
  ASSERT_EQ(stdfs::file_size(job.content), content.size() + kTrailer.size());
  const auto outbox = dir_.path() / "out";
  OutboxProvider provider("outbox", outbox);
  ASSERT_EQ(run(provider, job).results.at(0).outcome, queue::Outcome::Delivered);
  auto written = fs::readFile(outbox / (job.envelope.id + ".eml"));
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(written->size(), content.size());
  EXPECT_TRUE(*written == content);
  EXPECT_EQ(written->find("MUST-NOT-LEAK"), std::string::npos);
}

TEST_F(OutboxProviderTest, ContentShorterThanItsSizeIsTemporaryFailure) {
  auto job = makeJob("content\r\n");
  job.envelope.size = 9 + kTrailer.size() + 1;  // one byte more than the file holds
  const auto outbox = dir_.path() / "out";
  OutboxProvider provider("outbox", outbox);
  const auto result = run(provider, job);
  ASSERT_EQ(result.results.size(), 2u);
  EXPECT_EQ(result.results[0].outcome, queue::Outcome::TemporaryFailure);
  EXPECT_NE(result.results[0].detail.find(job.content.string()), std::string::npos) << result.results[0].detail;
  EXPECT_EQ(listDir(outbox).count(job.envelope.id + ".eml"), 0u);
  EXPECT_EQ(listDir(outbox).count(job.envelope.id + ".eml.tmp"), 0u);
}

TEST_F(OutboxProviderTest, MissingContentIsTemporaryFailure) {
  auto job = makeJob("content");
  ASSERT_TRUE(fs::removeFile(job.content).ok());
  const auto outbox = dir_.path() / "out";
  OutboxProvider provider("outbox", outbox);
  const auto result = run(provider, job);
  ASSERT_EQ(result.results.size(), 2u);
  EXPECT_EQ(result.results[0].outcome, queue::Outcome::TemporaryFailure);
  EXPECT_NE(result.results[0].detail.find(job.content.string()), std::string::npos);
  EXPECT_NE(result.results[0].detail.find("No such file or directory"), std::string::npos);
  // No .eml and no temporary; the .json may stay and is overwritten next time.
  EXPECT_EQ(listDir(outbox).count(job.envelope.id + ".eml"), 0u);
  EXPECT_EQ(listDir(outbox).count(job.envelope.id + ".eml.tmp"), 0u);
}

}  // namespace
}  // namespace mb::delivery
