#include "queue/bouncer.h"

#include <gtest/gtest.h>

#include <future>
#include <optional>
#include <string>
#include <vector>

#include "base/durable_file.h"
#include "base/testing/temp_dir.h"
#include "queue/file_spool.h"

namespace mb::queue {
namespace {

using mb::testing::TempDir;

class BouncerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(spool_.open().ok()); }

  // A committed original with one delivered and one failed recipient. Its
  // envelope's size is the message's: only `size` bytes of `content` when
  // given (the rest stands for what the spool may keep after the message).
  Envelope original(const std::string& sender,
                    const std::string& content = "Subject: the original\r\nFrom: a@example.com\r\n\r\nbody\r\n",
                    std::optional<std::uint64_t> size = std::nullopt) {
    auto msg = spool_.create();
    EXPECT_TRUE(msg.ok());
    EXPECT_TRUE((*msg)->write(content).ok());
    Envelope env;
    env.id = (*msg)->id();
    env.size = size.value_or(content.size());
    env.sender = sender;
    RecipientEntry ok;
    ok.address = "fine@example.com";
    ok.state = RecipientState::Delivered;
    RecipientEntry bad;
    bad.address = "gone@example.com";
    bad.state = RecipientState::Failed;
    bad.smtp_code = 550;
    bad.enhanced = "5.1.1";
    bad.last_error = "mailbox unavailable";
    env.recipients = {ok, bad};
    std::promise<Status> done;
    auto f = done.get_future();
    spool_.commit(std::move(*msg), env, [&done](Status st) { done.set_value(st); });
    EXPECT_TRUE(f.get().ok());
    return env;
  }

  Bouncer bouncer(config::BounceTo to, std::string admin = "") {
    config::QueueConfig cfg;
    cfg.bounce_to = to;
    cfg.admin_address = std::move(admin);
    return Bouncer(cfg, "relay.example.com", spool_, clock_,
                   [this](const Envelope& e) { queued_.push_back(e); });
  }

  TempDir dir_;
  FileSpool spool_{dir_.path()};
  ManualClock clock_;
  std::vector<Envelope> queued_;
};

TEST_F(BouncerTest, QueuesADsnToTheSenderWithTheNullSender) {
  const Envelope env = original("device@example.com");
  bouncer(config::BounceTo::Sender).onBounce(env, {1});
  ASSERT_EQ(queued_.size(), 1u);
  const Envelope& dsn = queued_[0];
  EXPECT_EQ(dsn.sender, "");
  ASSERT_EQ(dsn.recipients.size(), 1u);
  EXPECT_EQ(dsn.recipients[0].address, "device@example.com");
  // Durable: the envelope is on disk and loads back.
  auto loaded = spool_.load(dsn.id);
  ASSERT_TRUE(loaded.ok());
  auto text = fs::readFile(spool_.contentPath(dsn.id));
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("Final-Recipient: rfc822; gone@example.com"), std::string::npos);
  EXPECT_NE(text->find("Status: 5.1.1"), std::string::npos);
  EXPECT_NE(text->find("Subject: the original"), std::string::npos) << "original headers quoted";
  EXPECT_EQ(text->find("body\r\n"), std::string::npos) << "original body must not be returned";
  EXPECT_EQ(text->find("fine@example.com\r\nAction"), std::string::npos);
}

TEST_F(BouncerTest, QuotesOnlyTheOriginalsSizeOfItsFile) {
  // All header, no blank line: read past the size, the next bytes would be
  // taken for header fields.
  const std::string message = "Subject: the original\r\nFrom: a@example.com\r\n";
  const Envelope env =
      original("device@example.com", message + "X-Envelope: {\"trailer\":\"MUST-NOT-LEAK\"}\r\n", message.size());
  bouncer(config::BounceTo::Sender).onBounce(env, {1});
  ASSERT_EQ(queued_.size(), 1u);
  auto text = fs::readFile(spool_.contentPath(queued_[0].id));
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("Subject: the original"), std::string::npos) << *text;
  EXPECT_EQ(text->find("MUST-NOT-LEAK"), std::string::npos) << *text;
  EXPECT_EQ(text->find("X-Envelope"), std::string::npos) << *text;
}

TEST_F(BouncerTest, ABounceNeverBounces) {
  const Envelope env = original("");
  bouncer(config::BounceTo::Both, "postmaster@example.com").onBounce(env, {1});
  EXPECT_TRUE(queued_.empty());
}

TEST_F(BouncerTest, BounceToChoosesTheRecipients) {
  const Envelope env = original("device@example.com");
  bouncer(config::BounceTo::None).onBounce(env, {1});
  EXPECT_TRUE(queued_.empty());
  bouncer(config::BounceTo::Admin, "postmaster@example.com").onBounce(env, {1});
  ASSERT_EQ(queued_.size(), 1u);
  EXPECT_EQ(queued_[0].recipients[0].address, "postmaster@example.com");
  queued_.clear();
  bouncer(config::BounceTo::Both, "postmaster@example.com").onBounce(env, {1});
  ASSERT_EQ(queued_.size(), 2u);
  EXPECT_EQ(queued_[0].recipients[0].address, "device@example.com");
  EXPECT_EQ(queued_[1].recipients[0].address, "postmaster@example.com");
}

TEST_F(BouncerTest, ReconfigureChangesWhoGetsTheNextBounce) {
  const Envelope env = original("device@example.com");
  Bouncer b = bouncer(config::BounceTo::None);
  b.onBounce(env, {1});
  EXPECT_TRUE(queued_.empty());
  config::QueueConfig cfg;
  cfg.bounce_to = config::BounceTo::Admin;
  cfg.admin_address = "postmaster@example.com";
  cfg.bounce_from = "postmaster@example.com";
  b.reconfigure(cfg, "relay2.example.com");
  b.onBounce(env, {1});
  ASSERT_EQ(queued_.size(), 1u);
  EXPECT_EQ(queued_[0].recipients[0].address, "postmaster@example.com");
  auto text = fs::readFile(spool_.contentPath(queued_[0].id));
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("From: Mail Delivery System <postmaster@example.com>"), std::string::npos) << *text;
  EXPECT_NE(text->find("relay2.example.com"), std::string::npos) << "the reporting host";
}

}  // namespace
}  // namespace mb::queue
