#include "admin/api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "queue/queue_control.h"

namespace mb::admin {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
using namespace std::chrono_literals;

// Answers every queue call with one message or "no message".
class OneMessageQueue final : public queue::QueueControl {
 public:
  Result<std::vector<queue::QueueItem>> list() override {
    return std::vector<queue::QueueItem>{item()};
  }
  Result<queue::QueueItem> show(const std::string& id) override {
    if (id != item().id) return Error{"no message " + id + " in the queue"};
    return item();
  }
  Status retry(const std::string&) override { return {}; }
  Result<std::size_t> retryAll() override { return std::size_t{1}; }
  Status hold(const std::string&) override { return {}; }
  Status release(const std::string&) override { return {}; }
  Status remove(const std::string&) override { return {}; }

  static queue::QueueItem item() {
    queue::QueueItem i;
    i.id = "0123456789ABCDEFGHIJ";
    i.sender = "scanner@example.com";
    i.arrival = 1800000000;
    return i;
  }
};

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() : stats_(clock_) {
    dir_ =
        std::filesystem::temp_directory_path() /
        ("mb-api-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    tracker::Tracker::Options options;
    options.database = dir_ / "tracker.db";
    options.batch_delay = 1ms;
    auto t = tracker::Tracker::open(options, clock_);
    EXPECT_TRUE(t) << (t ? "" : t.error().message);
    log_ = std::move(*t);
    live_.version = "1.2.3";
    live_.queue_depth = 3;
    live_.in_flight = 1;
    live_.oldest_arrival = unix() - 120;
    live_.tracker_enabled = true;
    live_.providers = {ProviderState{"m365", "graph", "closed", "ok", "", 0, 0},
                       ProviderState{"box", "outbox", "open", "none", "", 0, 0}};
  }
  ~ApiTest() override {
    log_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::int64_t unix() const {
    return std::chrono::duration_cast<std::chrono::seconds>(clock_.wallNow().time_since_epoch())
        .count();
  }

  Api api(bool with_log = true) {
    return Api(queue_, with_log ? log_.get() : nullptr, stats_, [this] { return live_; });
  }

  Json ask(const Api& a, const Json& request) {
    const std::string reply = a.handle(request.dump());
    Json j = Json::parse(reply, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << reply;
    return j;
  }

  void logMessage(const std::string& id, const std::string& subject, tracker::Status status,
                  int code) {
    tracker::Accepted a;
    a.id = id;
    a.time = clock_.wallNow();
    a.client_ip = "192.0.2.7";
    a.sender = "scanner@contoso.example";
    a.recipients = {"alice@example.com"};
    a.subject = subject;
    a.size = 1000;
    log_->accepted(a);
    tracker::Outcome o;
    o.id = id;
    o.recipient = "alice@example.com";
    o.attempt = 1;
    o.status = status;
    o.time = clock_.wallNow();
    o.provider = "m365";
    o.code = code;
    o.error = code >= 400 ? "mailbox full" : "";
    log_->outcome(o);
    log_->flush();
  }

  std::filesystem::path dir_;
  ManualClock clock_;
  tracker::Statistics stats_;
  OneMessageQueue queue_;
  std::unique_ptr<tracker::Tracker> log_;
  LiveStatus live_;
};

TEST_F(ApiTest, QueueCommandsGoToTheQueue) {
  const Api a = api();
  const Json list = ask(a, {{"command", "list"}});
  ASSERT_TRUE(list["ok"]);
  EXPECT_EQ(list["messages"][0]["id"], "0123456789ABCDEFGHIJ");
  const Json missing = ask(a, {{"command", "show"}, {"id", "ZZZZZZZZZZZZZZZZZZZZ"}});
  EXPECT_FALSE(missing["ok"]);
  EXPECT_THAT(missing["error"].get<std::string>(), HasSubstr("no message"));
}

TEST_F(ApiTest, SearchFindsMessagesByStatusAndText) {
  logMessage("AAAAAAAAAAAAAAAAAAAA", "Invoice 42", tracker::Status::Delivered, 250);
  clock_.advance(10s);
  logMessage("BBBBBBBBBBBBBBBBBBBB", "Scan from floor 3", tracker::Status::Bounced, 550);
  const Api a = api();

  const Json all = ask(a, {{"command", "log.search"}});
  ASSERT_TRUE(all["ok"]) << all;
  EXPECT_EQ(all["total"], 2);
  EXPECT_EQ(all["messages"][0]["id"], "BBBBBBBBBBBBBBBBBBBB");  // newest first

  const Json bounced = ask(a, {{"command", "log.search"}, {"status", "BOUNCED"}});
  ASSERT_EQ(bounced["total"], 1);
  EXPECT_EQ(bounced["messages"][0]["subject"], "Scan from floor 3");
  EXPECT_EQ(bounced["messages"][0]["status"], "bounced");
  EXPECT_EQ(bounced["messages"][0]["code"], 550);
  EXPECT_EQ(bounced["messages"][0]["error"], "mailbox full");

  const Json text = ask(a, {{"command", "log.search"}, {"text", "invoice"}});
  ASSERT_EQ(text["total"], 1);
  EXPECT_EQ(text["messages"][0]["id"], "AAAAAAAAAAAAAAAAAAAA");

  const Json since = ask(a, {{"command", "log.search"}, {"since", unix() - 5}});
  ASSERT_EQ(since["total"], 1);
  EXPECT_EQ(since["messages"][0]["id"], "BBBBBBBBBBBBBBBBBBBB");

  const Json paged = ask(a, {{"command", "log.search"}, {"limit", 1}, {"offset", 1}});
  EXPECT_EQ(paged["total"], 2);
  ASSERT_EQ(paged["messages"].size(), 1u);
  EXPECT_EQ(paged["messages"][0]["id"], "AAAAAAAAAAAAAAAAAAAA");
}

TEST_F(ApiTest, ShowGivesTheHistory) {
  logMessage("AAAAAAAAAAAAAAAAAAAA", "Invoice 42", tracker::Status::Deferred, 451);
  const Api a = api();
  const Json h = ask(a, {{"command", "log.show"}, {"id", "AAAAAAAAAAAAAAAAAAAA"}});
  ASSERT_TRUE(h["ok"]) << h;
  EXPECT_EQ(h["history"]["message"]["status"], "deferred");
  ASSERT_EQ(h["history"]["recipients"].size(), 1u);
  EXPECT_EQ(h["history"]["recipients"][0]["address"], "alice@example.com");
  ASSERT_EQ(h["history"]["events"].size(), 1u);
  EXPECT_EQ(h["history"]["events"][0]["code"], 451);

  const Json none = ask(a, {{"command", "log.show"}, {"id", "CCCCCCCCCCCCCCCCCCCC"}});
  EXPECT_FALSE(none["ok"]);
  EXPECT_THAT(none["error"].get<std::string>(), HasSubstr("no message"));
}

TEST_F(ApiTest, RejectedAttempts) {
  tracker::Rejected r;
  r.time = clock_.wallNow();
  r.client_ip = "203.0.113.9";
  r.code = 554;
  r.reason = "IP not allowed";
  log_->rejected(r);
  log_->flush();
  const Json j = ask(api(), {{"command", "log.rejected"}, {"limit", 10}});
  ASSERT_TRUE(j["ok"]) << j;
  ASSERT_EQ(j["rejections"].size(), 1u);
  EXPECT_EQ(j["rejections"][0]["reason"], "IP not allowed");
  EXPECT_EQ(j["rejections"][0]["client_ip"], "203.0.113.9");
}

TEST_F(ApiTest, BadRequestsAreRefusedInWords) {
  const Api a = api();
  EXPECT_THAT(ask(a, {{"command", "log.search"}, {"status", "lost"}})["error"].get<std::string>(),
              HasSubstr("unknown status 'lost'"));
  EXPECT_THAT(ask(a, {{"command", "log.search"}, {"limit", 0}})["error"].get<std::string>(),
              HasSubstr("'limit' must be from 1 to 1000"));
  EXPECT_THAT(ask(a, {{"command", "log.search"}, {"limit", "ten"}})["error"].get<std::string>(),
              HasSubstr("'limit' must be a whole number"));
  EXPECT_THAT(ask(a, {{"command", "log.search"}, {"senders", "x"}})["error"].get<std::string>(),
              HasSubstr("unknown field 'senders'"));
  EXPECT_THAT(ask(a, {{"command", "log.show"}})["error"].get<std::string>(),
              HasSubstr("needs the field 'id'"));
  EXPECT_THAT(ask(a, {{"command", "log.tail"}})["error"].get<std::string>(),
              HasSubstr("unknown command"));
  EXPECT_THAT(ask(a, {{"command", "status"}, {"verbose", true}})["error"].get<std::string>(),
              HasSubstr("unknown field 'verbose'"));
}

TEST_F(ApiTest, LogCommandsSayWhenTheLogIsOff) {
  const Api a = api(false);
  const Json j = ask(a, {{"command", "log.search"}});
  EXPECT_FALSE(j["ok"]);
  EXPECT_THAT(j["error"].get<std::string>(), HasSubstr("the mail log is off"));
  EXPECT_TRUE(ask(a, {{"command", "status"}})["ok"]);
}

TEST_F(ApiTest, StatusReportsStatisticsAndLiveState) {
  stats_.accepted();
  stats_.outcome("m365", tracker::Status::Delivered, 1500ms);
  stats_.outcome("m365", tracker::Status::Deferred, {}, 451, "4.3.0", "throttled");
  stats_.rejected("auth failed");
  clock_.advance(30s);
  const Json j = ask(api(), {{"command", "status"}});
  ASSERT_TRUE(j["ok"]) << j;
  const Json& s = j["status"];
  EXPECT_EQ(s["version"], "1.2.3");
  EXPECT_EQ(s["uptime_seconds"], 30);
  EXPECT_EQ(s["totals"]["overall"]["accepted"], 1);
  EXPECT_EQ(s["totals"]["today"]["delivered"], 1);
  EXPECT_EQ(s["totals"]["last_24h"]["deferred"], 1);
  EXPECT_EQ(s["totals"]["overall"]["rejected"], 1);
  EXPECT_DOUBLE_EQ(s["error_rate"].get<double>(), 0.5);
  EXPECT_EQ(s["last_error"]["error"], "throttled");
  EXPECT_DOUBLE_EQ(s["delivery_seconds"]["p95"].get<double>(), 1.5);
  EXPECT_EQ(s["rejected_by_reason"]["auth failed"], 1);
  EXPECT_EQ(s["queue"]["depth"], 3);
  EXPECT_EQ(s["queue"]["oldest_age_seconds"], 150);
  ASSERT_EQ(s["providers"].size(), 2u);
  EXPECT_EQ(s["providers"][0]["name"], "m365");
  EXPECT_EQ(s["providers"][0]["delivered"], 1);
  EXPECT_EQ(s["providers"][1]["breaker"], "open");
  EXPECT_TRUE(s["ready"]);
}

TEST(Readiness, FailsWhenTheQueueIsUnwritableOrEveryCircuitIsOpen) {
  LiveStatus live;
  live.providers = {ProviderState{"a", "graph", "open", "none", "", 0, 0},
                    ProviderState{"b", "smtp", "closed", "none", "", 0, 0}};
  EXPECT_TRUE(judgeReadiness(live).ready);
  live.providers[1].breaker = "open";
  auto r = judgeReadiness(live);
  EXPECT_FALSE(r.ready);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_THAT(r.problems[0], HasSubstr("every provider's circuit breaker is open"));
  live.providers[1].breaker = "half-open";
  live.queue_writable = false;
  live.queue_problem = "no space left";
  r = judgeReadiness(live);
  EXPECT_FALSE(r.ready);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_THAT(r.problems[0], HasSubstr("no space left"));
}

TEST(Metrics, RendersCountersGaugesAndTheHistogram) {
  ManualClock clock;
  tracker::Statistics stats(clock);
  stats.accepted();
  stats.accepted();
  stats.outcome("m365", tracker::Status::Delivered, 200ms);
  stats.outcome("m365", tracker::Status::Bounced, {}, 550, "5.1.1", "no such user");
  stats.rejected("too big");
  LiveStatus live;
  live.queue_depth = 4;
  live.providers = {
      ProviderState{"m365", "graph", "half-open", "failing", "bad secret", 0, 1900000000}};
  const std::string text = renderMetrics(stats.snapshot(), live);
  EXPECT_THAT(text, HasSubstr("# TYPE mailbridge_messages_accepted_total "
                              "counter\nmailbridge_messages_accepted_total 2\n"));
  EXPECT_THAT(text,
              HasSubstr("mailbridge_recipients_total{provider=\"m365\",status=\"delivered\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("mailbridge_recipients_total{provider=\"m365\",status=\"bounced\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mailbridge_rejected_total{reason=\"too big\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mailbridge_delivery_duration_seconds_bucket{le=\"0.1\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("mailbridge_delivery_duration_seconds_bucket{le=\"0.25\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mailbridge_delivery_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mailbridge_delivery_duration_seconds_sum 0.2\n"));
  EXPECT_THAT(text, HasSubstr("mailbridge_queue_messages 4\n"));
  EXPECT_THAT(text, HasSubstr("mailbridge_provider_circuit_open{provider=\"m365\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mailbridge_provider_token_ok{provider=\"m365\"} 0\n"));
  EXPECT_THAT(
      text,
      HasSubstr("mailbridge_provider_secret_expiry_time_seconds{provider=\"m365\"} 1900000000\n"));
  // No address or error text in any label.
  EXPECT_EQ(text.find("no such user"), std::string::npos);
  EXPECT_EQ(text.find("bad secret"), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
}  // namespace mb::admin
