#include "tracker/tracker.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <functional>
#include <string>

namespace mb::tracker {
namespace {

using namespace std::chrono_literals;

class TrackerTest : public ::testing::Test {
 protected:
  TrackerTest() {
    dir_ = std::filesystem::temp_directory_path() /
           ("mb-tracker-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~TrackerTest() override {
    tracker_.reset();
    std::filesystem::remove_all(dir_);
  }

  Tracker& open(config::TrackerConfig config = {}, std::size_t max_pending = 100'000,
               std::size_t max_pending_bytes = 64 * 1024 * 1024) {
    tracker_.reset();
    Tracker::Options options;
    options.header_parser = [](std::string_view header, Accepted& a) {
      a.subject = "parsed: " + std::string(header);
    };
    options.database = dir_ / "tracker.db";
    options.config = config;
    options.max_pending = max_pending;
    options.max_pending_bytes = max_pending_bytes;
    options.batch_delay = 5ms;
    auto t = Tracker::open(options, clock_);
    EXPECT_TRUE(t) << (t ? "" : t.error().message);
    tracker_ = std::move(*t);
    return *tracker_;
  }

  Accepted accepted(const std::string& id, std::vector<std::string> rcpts = {"alice@example.com", "bob@example.net"}) {
    Accepted a;
    a.id = id;
    a.time = clock_.wallNow();
    a.client_ip = "192.0.2.7";
    a.auth_user = "scanner";
    a.listener = "lan";
    a.sender = "scanner@contoso.example";
    a.recipients = std::move(rcpts);
    a.header_from = "scanner@contoso.example";
    a.subject = "Scanned document from floor 3";
    a.message_id = "<" + id + "@contoso.example>";
    a.size = 4096;
    return a;
  }

  Outcome outcome(const std::string& id, std::size_t index, const std::string& rcpt, Status status, int code,
                  int attempt = 1) {
    Outcome o;
    o.id = id;
    o.index = index;
    o.recipient = rcpt;
    o.status = status;
    o.time = clock_.wallNow();
    o.provider = "m365";
    o.remote_id = status == Status::Delivered ? "req-" + id : "";
    o.code = code;
    o.enhanced = code == 250 ? "2.0.0" : code < 500 ? "4.3.0" : "5.1.1";
    o.error = code == 250 ? "" : "the mailbox said no";
    o.attempt = attempt;
    return o;
  }

  std::filesystem::path dir_;
  ManualClock clock_;
  std::unique_ptr<Tracker> tracker_;
};

TEST_F(TrackerTest, FollowsAMessageFromQueuedToDelivered) {
  Tracker& t = open();
  t.accepted(accepted("Q1"));
  t.flush();
  auto page = t.search(Query{});
  ASSERT_TRUE(page);
  ASSERT_EQ(page->total, 1u);
  EXPECT_EQ(page->messages[0].status, Status::Queued);
  EXPECT_EQ(page->messages[0].recipients, (std::vector<std::string>{"alice@example.com", "bob@example.net"}));

  clock_.advance(5s);
  t.outcome(outcome("Q1", 0, "alice@example.com", Status::Delivered, 250));
  t.outcome(outcome("Q1", 1, "bob@example.net", Status::Deferred, 451));
  t.flush();
  auto h = t.history("Q1");
  ASSERT_TRUE(h);
  ASSERT_TRUE(h->has_value());
  EXPECT_EQ((*h)->message.status, Status::Deferred);
  EXPECT_FALSE((*h)->message.delivered_at);
  EXPECT_EQ((*h)->recipients[0].status, Status::Delivered);
  EXPECT_EQ((*h)->recipients[1].status, Status::Deferred);
  EXPECT_EQ((*h)->recipients[1].error, "the mailbox said no");

  clock_.advance(60s);
  t.outcome(outcome("Q1", 1, "bob@example.net", Status::Delivered, 250, 2));
  t.flush();
  h = t.history("Q1");
  ASSERT_TRUE(h && h->has_value());
  const History& hist = **h;
  EXPECT_EQ(hist.message.status, Status::Delivered);
  EXPECT_EQ(hist.message.attempts, 2);
  ASSERT_TRUE(hist.message.delivered_at);
  EXPECT_EQ(*hist.message.delivered_at, clock_.wallNow());
  EXPECT_EQ(hist.message.remote_id, "req-Q1");
  EXPECT_EQ(hist.message.provider, "m365");
  EXPECT_EQ(hist.recipients[1].attempts, 2);
  ASSERT_EQ(hist.events.size(), 3u);
  EXPECT_EQ(hist.events[1].status, Status::Deferred);
  EXPECT_EQ(hist.events[2].attempt, 2);
  EXPECT_EQ(hist.message.subject, "Scanned document from floor 3");
  EXPECT_EQ(hist.message.client_ip, "192.0.2.7");
  EXPECT_EQ(hist.message.size, 4096u);
}

TEST_F(TrackerTest, TheHeaderIsParsedByTheWriterAndAnEarlyOutcomeLosesNothing) {
  Tracker& t = open();
  t.outcome(outcome("H1", 0, "alice@example.com", Status::Delivered, 250));
  t.flush();
  auto a = accepted("H1", {"alice@example.com"});
  a.header = "Subject: x";
  t.accepted(a);
  t.flush();
  auto h = t.history("H1");
  ASSERT_TRUE(h && h->has_value());
  EXPECT_EQ((*h)->message.subject, "parsed: Subject: x");
  EXPECT_EQ((*h)->message.client_ip, "192.0.2.7");
  EXPECT_EQ((*h)->message.status, Status::Delivered);
  EXPECT_EQ((*h)->recipients[0].status, Status::Delivered);
}

TEST_F(TrackerTest, ABounceAmongDeliveriesMakesTheMessageBounced) {
  Tracker& t = open();
  t.accepted(accepted("Q2"));
  t.outcome(outcome("Q2", 0, "alice@example.com", Status::Delivered, 250));
  t.outcome(outcome("Q2", 1, "bob@example.net", Status::Bounced, 550));
  t.flush();
  auto h = t.history("Q2");
  ASSERT_TRUE(h && h->has_value());
  EXPECT_EQ((*h)->message.status, Status::Bounced);
  EXPECT_EQ((*h)->message.last_code, 550);
  EXPECT_EQ((*h)->message.last_enhanced, "5.1.1");
}

TEST_F(TrackerTest, SearchesByEachFieldAndPages) {
  Tracker& t = open();
  for (int i = 0; i < 5; ++i) {
    auto a = accepted("M" + std::to_string(i), {"user" + std::to_string(i) + "@example.com"});
    a.subject = i == 3 ? "Invoice 100% paid" : "Scan " + std::to_string(i);
    t.accepted(a);
    clock_.advance(1min);
  }
  t.outcome(outcome("M1", 0, "user1@example.com", Status::Bounced, 550));
  t.flush();
  const auto ids = [&](const std::function<void(Query&)>& set) {
    Query q;
    set(q);
    std::vector<std::string> out;
    auto page = t.search(q);
    EXPECT_TRUE(page);
    if (page) {
      for (const auto& m : page->messages) out.push_back(m.id);
    }
    return out;
  };
  EXPECT_EQ(ids([](Query&) {}), (std::vector<std::string>{"M4", "M3", "M2", "M1", "M0"}));  // newest first
  EXPECT_EQ(ids([&](Query& q) { q.recipient = "USER2@"; }), std::vector<std::string>{"M2"});
  EXPECT_EQ(ids([&](Query& q) { q.subject = "100%"; }), std::vector<std::string>{"M3"});
  EXPECT_EQ(ids([&](Query& q) { q.subject = "_"; }), std::vector<std::string>{});  // wildcards are literal
  EXPECT_EQ(ids([&](Query& q) { q.status = Status::Bounced; }), std::vector<std::string>{"M1"});
  EXPECT_EQ(ids([&](Query& q) { q.text = "mailbox said"; }), std::vector<std::string>{"M1"});
  EXPECT_EQ(ids([&](Query& q) { q.text = "user4"; }), std::vector<std::string>{"M4"});
  EXPECT_EQ(ids([&](Query& q) { q.sender = "nobody"; }), std::vector<std::string>{});
  const WallTime start = clock_.wallNow() - 5min;
  EXPECT_EQ(ids([&](Query& q) { q.since = start + 1min; q.until = start + 3min; }), (std::vector<std::string>{"M2", "M1"}));
  Query paged;
  paged.limit = 2;
  paged.offset = 2;
  auto page = t.search(paged);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->total, 5u);
  ASSERT_EQ(page->messages.size(), 2u);
  EXPECT_EQ(page->messages[0].id, "M2");
}

TEST_F(TrackerTest, PartialMaskingAndHiddenFieldsAreWhatIsStored) {
  config::TrackerConfig c;
  c.masking = config::Masking::Partial;
  Tracker& t = open(c);
  t.accepted(accepted("P1", {"mail@example.com"}));
  t.outcome(outcome("P1", 0, "mail@example.com", Status::Delivered, 250));
  t.flush();
  auto h = t.history("P1");
  ASSERT_TRUE(h && h->has_value());
  EXPECT_EQ((*h)->message.sender, "s*****r@c*****o.example");
  EXPECT_EQ((*h)->message.subject, "Scanned documen\xE2\x80\xA6");
  EXPECT_EQ((*h)->recipients[0].address, "m**l@e*****e.com");
  EXPECT_EQ((*h)->events[0].recipient, "m**l@e*****e.com");
  // Nothing of the real address is searchable.
  Query real;
  real.text = "mail@example.com";
  auto page = t.search(real);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->total, 0u);

  c.masking = config::Masking::None;
  c.store_addresses = false;
  c.store_subject = false;
  Tracker& hidden = open(c);
  hidden.accepted(accepted("P2", {"mail@example.com", "other@example.com"}));
  hidden.outcome(outcome("P2", 1, "other@example.com", Status::Bounced, 550));
  hidden.flush();
  h = hidden.history("P2");
  ASSERT_TRUE(h && h->has_value());
  EXPECT_EQ((*h)->message.sender, "***");
  EXPECT_EQ((*h)->message.header_from, "***");
  EXPECT_EQ((*h)->message.subject, "***");
  // Recipients stay apart by their place even when they all read "***".
  ASSERT_EQ((*h)->recipients.size(), 2u);
  EXPECT_EQ((*h)->recipients[0].status, Status::Queued);
  EXPECT_EQ((*h)->recipients[1].status, Status::Bounced);
  EXPECT_EQ((*h)->recipients[1].address, "***");
}

TEST_F(TrackerTest, RejectionsAreRecordedOnlyWhenAsked) {
  Rejected r;
  r.time = clock_.wallNow();
  r.client_ip = "198.51.100.9";
  r.listener = "lan";
  r.sender = "x@spam.example";
  r.recipients = {"a@example.com", "b@example.com"};
  r.code = 554;
  r.enhanced = "5.7.1";
  r.reason = "IP not allowed";
  Tracker& t = open();
  t.rejected(r);
  t.flush();
  auto rows = t.rejections(10);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].reason, "IP not allowed");
  EXPECT_EQ((*rows)[0].recipients, (std::vector<std::string>{"a@example.com", "b@example.com"}));

  config::TrackerConfig off;
  off.log_rejected = false;
  Tracker& quiet = open(off);
  quiet.rejected(r);
  quiet.flush();
  rows = quiet.rejections(10);
  ASSERT_TRUE(rows);
  EXPECT_EQ(rows->size(), 1u);  // only the one from before
  EXPECT_EQ(quiet.health().written, 0u);
}

TEST_F(TrackerTest, RetentionPurgesOldRowsInBatches) {
  config::TrackerConfig c;
  c.retention_days = 7;
  Tracker& t = open(c);
  const std::size_t old_count = Tracker::kPurgeBatch * 2 + 17;
  for (std::size_t i = 0; i < old_count; ++i) {
    t.accepted(accepted("OLD" + std::to_string(i), {"a@example.com"}));
    t.outcome(outcome("OLD" + std::to_string(i), 0, "a@example.com", Status::Delivered, 250));
  }
  Rejected r;
  r.time = clock_.wallNow();
  r.reason = "too big";
  t.rejected(r);
  t.flush();
  clock_.advance(std::chrono::hours(24 * 7) + 1s);
  t.accepted(accepted("NEW"));
  t.flush();
  auto purged = t.purge();
  ASSERT_TRUE(purged) << purged.error().message;
  EXPECT_EQ(*purged, old_count + 1);
  auto page = t.search(Query{});
  ASSERT_TRUE(page);
  EXPECT_EQ(page->total, 1u);
  EXPECT_EQ(page->messages[0].id, "NEW");
  auto h = t.history("OLD1");
  ASSERT_TRUE(h);
  EXPECT_FALSE(h->has_value());
  EXPECT_EQ(t.rejections(10)->size(), 0u);

  // No orphan recipients or events are left behind.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "tracker.db").c_str(), &db), SQLITE_OK);
  for (const char* sql : {"SELECT COUNT(*) FROM recipients WHERE message LIKE 'OLD%'",
                          "SELECT COUNT(*) FROM events WHERE message LIKE 'OLD%'"}) {
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(st, 0), 0) << sql;
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
}

TEST_F(TrackerTest, RetentionZeroKeepsEverything) {
  config::TrackerConfig c;
  c.retention_days = 0;
  Tracker& t = open(c);
  t.accepted(accepted("KEEP"));
  t.flush();
  clock_.advance(std::chrono::hours(24 * 3650));
  auto purged = t.purge();
  ASSERT_TRUE(purged);
  EXPECT_EQ(*purged, 0u);
  EXPECT_EQ(t.search(Query{})->total, 1u);
}

TEST_F(TrackerTest, EventsOfABurstAreWrittenTogetherAndAFullQueueDropsNotBlocks) {
  Tracker& t = open();
  for (int i = 0; i < 2000; ++i) t.accepted(accepted("B" + std::to_string(i), {"a@example.com"}));
  t.flush();
  EXPECT_EQ(t.health().written, 2000u);
  EXPECT_TRUE(t.health().writable);
  EXPECT_EQ(t.search(Query{})->total, 2000u);

  Tracker& small = open({}, 3);
  for (int i = 0; i < 1000; ++i) small.accepted(accepted("S" + std::to_string(i), {"a@example.com"}));
  small.flush();
  const Health h = small.health();
  EXPECT_EQ(h.written + h.dropped, 1000u);
  EXPECT_GT(h.dropped, 0u);

  // Big headers fill the byte budget long before the count.
  Tracker& bytes = open({}, 100'000, 256 * 1024);
  for (int i = 0; i < 1000; ++i) {
    Accepted a = accepted("H" + std::to_string(i), {"a@example.com"});
    a.header = std::string(60 * 1024, 'x');
    bytes.accepted(std::move(a));
  }
  bytes.flush();
  const Health hb = bytes.health();
  EXPECT_EQ(hb.written + hb.dropped, 1000u);
  EXPECT_GT(hb.dropped, 0u);
}

TEST_F(TrackerTest, ABatchThatCannotBeWrittenIsReportedAndTheNextOneIsWritten) {
  Tracker& t = open();
  t.accepted(accepted("BEFORE"));
  t.flush();
  ASSERT_TRUE(t.health().writable);

  // Another process holds the database for longer than the writer waits.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "tracker.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  t.accepted(accepted("LOST"));
  t.flush();
  Health h = t.health();
  EXPECT_FALSE(h.writable);
  EXPECT_EQ(h.dropped, 1u);
  EXPECT_NE(h.last_error.find("locked"), std::string::npos) << h.last_error;
  ASSERT_EQ(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  // The statements kept from earlier batches work again.
  t.accepted(accepted("AFTER"));
  t.outcome(outcome("AFTER", 0, "alice@example.com", Status::Delivered, 250));
  t.flush();
  h = t.health();
  EXPECT_TRUE(h.writable);
  EXPECT_TRUE(h.last_error.empty());
  EXPECT_EQ(t.search(Query{})->total, 2u);
  auto after = t.history("AFTER");
  ASSERT_TRUE(after && after->has_value());
  EXPECT_EQ((*after)->recipients.at(0).status, Status::Delivered);
}

TEST_F(TrackerTest, ReopensItsOwnDatabaseAndRefusesAnotherSchema) {
  open().accepted(accepted("R1"));
  tracker_->flush();
  EXPECT_EQ(open().search(Query{})->total, 1u);
  tracker_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "tracker.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Tracker::Options options;
  options.database = dir_ / "tracker.db";
  auto t = Tracker::open(options, clock_);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("schema version 99"), std::string::npos);
}

}  // namespace
}  // namespace mb::tracker
