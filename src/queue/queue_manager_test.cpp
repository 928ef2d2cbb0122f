#include "queue/queue_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/durable_file.h"
#include "base/testing/temp_dir.h"
#include "base/text.h"
#include "queue/file_spool.h"

namespace mb::queue {
namespace {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

using mb::testing::TempDir;

RecipientResult delivered() { return {Outcome::Delivered, 250, "2.0.0", "ok", std::nullopt, "", false}; }
RecipientResult temporary(std::optional<std::chrono::seconds> retry_after = std::nullopt) {
  return {Outcome::TemporaryFailure, 451, "4.3.0", "try later", retry_after, "", false};
}
RecipientResult permanent() { return {Outcome::PermanentFailure, 550, "5.1.1", "no such user", std::nullopt, "", false}; }

DeliveryResult allWith(const DeliveryJob& job, const RecipientResult& r) {
  DeliveryResult out;
  out.results.assign(job.recipients.size(), r);
  out.provider = "fake";
  return out;
}

/// A DeliveryAgent driven by the test: answers inline from a script (or with
/// a default), or holds the callbacks for the test to complete later from
/// any thread.
class FakeAgent final : public DeliveryAgent {
 public:
  using Script = std::function<DeliveryResult(const DeliveryJob&)>;

  void deliver(const DeliveryJob& job, DoneCallback done) override {
    std::unique_lock lock(mutex_);
    jobs_.push_back(job);
    if (hold_) {
      held_.push_back(std::move(done));
      held_jobs_.push_back(job);
      cv_.notify_all();
      return;
    }
    Script script = fallback_;
    if (!script_.empty()) {
      script = std::move(script_.front());
      script_.pop_front();
    }
    cv_.notify_all();
    lock.unlock();
    done(script(job));
  }

  void push(Script s) {
    std::lock_guard lock(mutex_);
    script_.push_back(std::move(s));
  }
  void setFallback(Script s) {
    std::lock_guard lock(mutex_);
    fallback_ = std::move(s);
  }
  void setHold(bool hold) {
    std::lock_guard lock(mutex_);
    hold_ = hold;
  }
  bool waitForJobs(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return jobs_.size() >= n; });
  }
  bool waitForHeld(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return held_.size() >= n; });
  }
  /// Completes the oldest held attempt with what `make` returns for its job.
  void completeHeld(const Script& make) {
    std::unique_lock lock(mutex_);
    if (held_.empty()) return;
    DoneCallback done = std::move(held_.front());
    DeliveryJob job = std::move(held_jobs_.front());
    held_.pop_front();
    held_jobs_.pop_front();
    lock.unlock();
    done(make(job));
  }
  std::pair<DoneCallback, DeliveryJob> takeHeld() {
    std::lock_guard lock(mutex_);
    if (held_.empty()) return {};
    std::pair<DoneCallback, DeliveryJob> out{std::move(held_.front()), std::move(held_jobs_.front())};
    held_.pop_front();
    held_jobs_.pop_front();
    return out;
  }
  std::vector<DeliveryJob> jobs() {
    std::lock_guard lock(mutex_);
    return jobs_;
  }
  std::size_t heldCount() {
    std::lock_guard lock(mutex_);
    return held_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<DeliveryJob> jobs_;
  std::deque<Script> script_;
  Script fallback_ = [](const DeliveryJob& job) { return allWith(job, delivered()); };
  bool hold_ = false;
  std::deque<DoneCallback> held_;
  std::deque<DeliveryJob> held_jobs_;
};

class QueueManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(spool_.open().ok()); }

  /// Puts a message into the spool the way a session would.
  Envelope commit(std::vector<std::string> rcpts = {"a@example.org"}, std::string sender = "scanner@example.com",
                  std::string route = "") {
    auto msg = spool_.create();
    EXPECT_TRUE(msg.ok());
    if (!msg) return {};
    EXPECT_TRUE((*msg)->write("Subject: test\r\n\r\nbody\r\n").ok());
    Envelope env;
    env.sender = std::move(sender);
    env.route = std::move(route);
    for (auto& r : rcpts) env.recipients.push_back({std::move(r), RecipientState::Pending, 0, "", ""});
    env.arrival = std::chrono::duration_cast<std::chrono::seconds>(clock_.wallNow().time_since_epoch()).count();
    std::promise<Status> done;
    const std::string id = (*msg)->id();
    spool_.commit(std::move(msg).value(), env, [&done](Status st) { done.set_value(std::move(st)); });
    EXPECT_TRUE(done.get_future().get().ok());
    auto loaded = spool_.load(id);
    EXPECT_TRUE(loaded.ok());
    return loaded ? *loaded : Envelope{};
  }

  std::int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(clock_.wallNow().time_since_epoch()).count();
  }

  bool inSpool(const std::string& id) const {
    return stdfs::exists(spool_.queueDir() / (id + ".env")) || stdfs::exists(spool_.contentPath(id));
  }

  TempDir dir_;
  FileSpool spool_{dir_.path()};
  ManualClock clock_;
  FakeAgent agent_;
  config::QueueConfig config_;
};

TEST_F(QueueManagerTest, DeliveredMessageIsRemoved) {
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope env = commit({"a@example.org", "b@example.org"});
  qm.enqueue(env);
  EXPECT_EQ(qm.queuedCount(), 1u);
  EXPECT_EQ(qm.runDue(), 1u);
  ASSERT_EQ(agent_.jobs().size(), 1u);
  const DeliveryJob job = agent_.jobs()[0];
  EXPECT_EQ(job.envelope.id, env.id);
  EXPECT_EQ(job.envelope.attempts, 1);
  EXPECT_EQ(job.recipients, (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(job.content, spool_.contentPath(env.id));
  EXPECT_FALSE(inSpool(env.id));
  EXPECT_EQ(qm.queuedCount(), 0u);
  EXPECT_EQ(qm.inFlightCount(), 0u);
  EXPECT_EQ(qm.runDue(), 0u);
}

TEST_F(QueueManagerTest, FirstAttemptStartsFromTheEnqueuedEnvelope) {
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope env = commit({"a@example.org"});
  qm.enqueue(env);
  // The file is not read back for the first attempt: spoiling it changes nothing.
  ASSERT_TRUE(fs::writeFileAtomic(spool_.queueDir() / (env.id + ".env"), "garbage").ok());
  EXPECT_EQ(qm.runDue(), 1u);
  ASSERT_EQ(agent_.jobs().size(), 1u);
  EXPECT_EQ(agent_.jobs()[0].envelope.recipients.size(), 1u);
  EXPECT_EQ(agent_.jobs()[0].envelope.sender, env.sender);
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, HoldAndReleaseDropTheEnqueuedCopy) {
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope env = commit({"a@example.org"});
  qm.enqueue(env);
  ASSERT_TRUE(qm.hold(env.id).ok());
  ASSERT_TRUE(qm.release(env.id).ok());
  // The file is the truth now: a spoiled one cannot be attempted.
  ASSERT_TRUE(fs::writeFileAtomic(spool_.queueDir() / (env.id + ".env"), "garbage").ok());
  qm.runDue();
  EXPECT_TRUE(agent_.jobs().empty());
}

TEST_F(QueueManagerTest, TemporaryFailureBacksOffExponentiallyToTheCap) {
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });  // jitter factor 1.0
  const Envelope env = commit();
  qm.enqueue(env);
  const std::vector<std::int64_t> expected = {60, 120, 240, 480, 960, 1800, 1800, 1800};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(qm.runDue(), 1u) << "attempt " << i + 1;
    auto stored = spool_.load(env.id);
    ASSERT_TRUE(stored.ok());
    EXPECT_EQ(stored->attempts, static_cast<int>(i + 1));
    EXPECT_EQ(stored->next_attempt - now(), expected[i]) << "attempt " << i + 1;
    EXPECT_EQ(stored->recipients[0].state, RecipientState::Pending);
    EXPECT_EQ(stored->recipients[0].smtp_code, 451);
    EXPECT_EQ(stored->recipients[0].last_error, "try later");
    EXPECT_EQ(stored->last_error, "try later");
    EXPECT_EQ(stored->route, "fake");
    // Not a second early.
    clock_.advance(std::chrono::seconds(expected[i] - 1));
    EXPECT_EQ(qm.runDue(), 0u);
    clock_.advance(1s);
  }
  EXPECT_EQ(qm.queuedCount(), 1u);
}

TEST_F(QueueManagerTest, LongerRetryAfterWins) {
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });  // jitter factor 1.0
  const Envelope env = commit({"a@example.org", "b@example.org"});
  agent_.push([](const DeliveryJob&) {
    DeliveryResult r;
    r.results = {temporary(300s), temporary(10s)};
    return r;
  });
  agent_.push([](const DeliveryJob& job) { return allWith(job, temporary(10s)); });
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(spool_.load(env.id)->next_attempt - now(), 300);
  clock_.advance(300s);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(spool_.load(env.id)->next_attempt - now(), 120);  // backoff beats a shorter Retry-After
}

TEST_F(QueueManagerTest, MixedResultsAreRecordedAndDeliveredRecipientsNotRetried) {
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });  // jitter factor 1.0
  const Envelope env = commit({"ok@example.org", "later@example.org", "bad@example.org"});
  agent_.push([](const DeliveryJob&) {
    DeliveryResult r;
    r.results = {delivered(), temporary(), permanent()};
    return r;
  });
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);

  auto stored = spool_.load(env.id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->recipients[0].state, RecipientState::Delivered);
  EXPECT_EQ(stored->recipients[0].smtp_code, 250);
  EXPECT_EQ(stored->recipients[1].state, RecipientState::Pending);
  EXPECT_EQ(stored->recipients[2].state, RecipientState::Failed);
  EXPECT_EQ(stored->recipients[2].smtp_code, 550);
  EXPECT_EQ(stored->recipients[2].enhanced, "5.1.1");
  EXPECT_EQ(stored->recipients[2].last_error, "no such user");

  clock_.advance(60s);
  ASSERT_EQ(qm.runDue(), 1u);
  const auto jobs = agent_.jobs();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[1].recipients, std::vector<std::size_t>{1});
  EXPECT_EQ(jobs[1].envelope.attempts, 2);
  EXPECT_FALSE(inSpool(env.id));
  EXPECT_EQ(qm.queuedCount(), 0u);
}

TEST_F(QueueManagerTest, DeliveredRecipientSurvivesRestart) {
  const Envelope env = commit({"ok@example.org", "later@example.org"});
  {
    QueueManager qm(config_, spool_, agent_, clock_);
    agent_.push([](const DeliveryJob&) {
      DeliveryResult r;
      r.results = {delivered(), temporary()};
      return r;
    });
    qm.enqueue(env);
    ASSERT_EQ(qm.runDue(), 1u);
    qm.stop(0ms);
  }
  auto recovered = spool_.recover();
  ASSERT_TRUE(recovered.ok());
  ASSERT_EQ(recovered->size(), 1u);
  clock_.advance(60s);
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.start(*recovered);
  ASSERT_TRUE(agent_.waitForHeld(1));
  EXPECT_EQ(agent_.jobs().back().recipients, std::vector<std::size_t>{1});
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  qm.stop(5s);
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, PermanentFailureRemovesMessage) {
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, permanent()); });
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope env = commit({"x@example.org", "y@example.org"});
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_FALSE(inSpool(env.id));
  EXPECT_EQ(qm.queuedCount(), 0u);
}

TEST_F(QueueManagerTest, WrongResultCountIsTemporaryForEveryone) {
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });  // jitter factor 1.0
  const Envelope env = commit({"x@example.org", "y@example.org"});
  agent_.push([](const DeliveryJob&) {
    DeliveryResult r;
    r.results = {delivered()};
    return r;
  });
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  auto stored = spool_.load(env.id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->recipients[0].state, RecipientState::Pending);
  EXPECT_EQ(stored->recipients[1].state, RecipientState::Pending);
  EXPECT_EQ(stored->next_attempt - now(), 60);
}

TEST_F(QueueManagerTest, MaxInFlightIsRespected) {
  config_.max_in_flight = 2;
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);
  std::vector<Envelope> envs;
  for (int i = 0; i < 5; ++i) envs.push_back(commit());
  for (const auto& env : envs) qm.enqueue(env);
  EXPECT_EQ(qm.runDue(), 2u);
  EXPECT_EQ(qm.inFlightCount(), 2u);
  EXPECT_EQ(qm.runDue(), 0u);

  // Completed from another thread, as a provider would.
  std::thread([&] { agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); }); })
      .join();
  EXPECT_EQ(qm.inFlightCount(), 1u);
  EXPECT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(qm.inFlightCount(), 2u);
  while (agent_.heldCount() > 0) {
    agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
    qm.runDue();
    EXPECT_LE(qm.inFlightCount(), 2u);
  }
  EXPECT_EQ(qm.queuedCount(), 0u);
  EXPECT_EQ(agent_.jobs().size(), 5u);
}

TEST_F(QueueManagerTest, ThreadedModeRespectsMaxInFlight) {
  config_.max_in_flight = 3;
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.start({});
  for (int i = 0; i < 10; ++i) qm.enqueue(commit());
  ASSERT_TRUE(agent_.waitForHeld(3));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(agent_.heldCount(), 3u);
  for (int done = 0; done < 10; ++done) {
    ASSERT_TRUE(agent_.waitForHeld(1));
    EXPECT_LE(qm.inFlightCount(), 3u);
    agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  }
  qm.stop(5s);
  EXPECT_EQ(qm.queuedCount(), 0u);
}

TEST_F(QueueManagerTest, RecoveredMessagesAreAttemptedAtStart) {
  // Even one whose stored next attempt lies in the future: a restart moves
  // the whole queue at once.
  const Envelope due = commit({"due@example.org"});
  Envelope later = commit({"later@example.org"});
  later.next_attempt = now() + 600;
  ASSERT_TRUE(spool_.update(later).ok());
  auto recovered = spool_.recover();
  ASSERT_TRUE(recovered.ok());
  ASSERT_EQ(recovered->size(), 2u);

  QueueManager qm(config_, spool_, agent_, clock_);
  qm.start(*recovered);
  ASSERT_TRUE(agent_.waitForJobs(2, 3s));
  std::vector<std::string> ids{agent_.jobs()[0].envelope.id, agent_.jobs()[1].envelope.id};
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> expected{due.id, later.id};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ids, expected);
  qm.stop(1s);
  EXPECT_FALSE(inSpool(due.id));
  EXPECT_FALSE(inSpool(later.id));
}

TEST_F(QueueManagerTest, StopWaitsForAttemptInFlight) {
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.start({});
  const Envelope env = commit();
  qm.enqueue(env);
  ASSERT_TRUE(agent_.waitForHeld(1));
  auto stopped = std::async(std::launch::async, [&] { qm.stop(10s); });
  EXPECT_EQ(stopped.wait_for(200ms), std::future_status::timeout);
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  EXPECT_EQ(stopped.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(inSpool(env.id));
  // Stopped: nothing new starts.
  qm.enqueue(commit());
  EXPECT_EQ(qm.runDue(), 0u);
}

TEST_F(QueueManagerTest, StopGiveUpAfterGraceAndLateResultIsSafe) {
  agent_.setHold(true);
  const Envelope env = commit();
  {
    QueueManager qm(config_, spool_, agent_, clock_);
    qm.enqueue(env);
    ASSERT_EQ(qm.runDue(), 1u);
    const auto t0 = std::chrono::steady_clock::now();
    qm.stop(50ms);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_EQ(qm.inFlightCount(), 1u);
  }
  // The manager is gone; the late callback must notice, not crash.
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  EXPECT_TRUE(inSpool(env.id));  // retried at the next start
}

TEST_F(QueueManagerTest, LateResultBeforeDestructionIsRecorded) {
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope env = commit();
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  qm.stop(10ms);
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, ThreadedModeDeliversPromptly) {
  QueueManager qm(config_, spool_, agent_, SystemClock::instance());
  qm.start({});
  std::this_thread::sleep_for(20ms);  // let the loop go to sleep first
  const Envelope env = commit();
  const auto t0 = std::chrono::steady_clock::now();
  qm.enqueue(env);
  ASSERT_TRUE(agent_.waitForJobs(1, 500ms));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  qm.stop(1s);
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, UnloadableMessageIsDropped) {
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });  // jitter factor 1.0
  const Envelope env = commit();
  agent_.push([](const DeliveryJob& job) { return allWith(job, temporary()); });
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);  // the first attempt starts from the enqueued envelope
  // A retry reads the file.
  ASSERT_TRUE(fs::writeFileAtomic(spool_.queueDir() / (env.id + ".env"), "garbage").ok());
  clock_.advance(std::chrono::seconds(60));
  EXPECT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(agent_.jobs().size(), 1u);
  EXPECT_EQ(qm.queuedCount(), 0u);
  EXPECT_EQ(qm.inFlightCount(), 0u);
}

TEST_F(QueueManagerTest, FailedUpdateStillReschedulesFromMemory) {
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });  // jitter factor 1.0
  const Envelope env = commit({"ok@example.org", "later@example.org"});
  // With its content gone, FileSpool refuses update(): a stand-in for a
  // failing disk.
  const std::string content = *fs::readFile(spool_.contentPath(env.id));
  ASSERT_TRUE(fs::removeFile(spool_.contentPath(env.id)).ok());
  agent_.push([](const DeliveryJob&) {
    DeliveryResult r;
    r.results = {delivered(), temporary()};
    return r;
  });
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(qm.queuedCount(), 1u);

  ASSERT_TRUE(fs::writeFileAtomic(spool_.contentPath(env.id), content).ok());
  ASSERT_TRUE(spool_.load(env.id).ok());
  EXPECT_EQ(spool_.load(env.id)->recipients[0].state, RecipientState::Pending);  // stale on disk
  clock_.advance(60s);
  ASSERT_EQ(qm.runDue(), 1u);
  const auto jobs = agent_.jobs();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[1].recipients, std::vector<std::size_t>{1});  // from memory, not the stale file
  EXPECT_EQ(jobs[1].envelope.attempts, 2);
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, SettledEnvelopeIsCleanedUpWithoutDelivery) {
  QueueManager qm(config_, spool_, agent_, clock_);
  Envelope env = commit();
  env.recipients[0].state = RecipientState::Delivered;
  ASSERT_TRUE(spool_.update(env).ok());
  qm.enqueue(env);
  EXPECT_EQ(qm.runDue(), 1u);
  EXPECT_TRUE(agent_.jobs().empty());
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, DuplicateCallbackIsIgnored) {
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope env = commit();
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  auto [done, job] = agent_.takeHeld();
  ASSERT_TRUE(done);
  done(allWith(job, temporary()));
  EXPECT_EQ(qm.queuedCount(), 1u);
  EXPECT_EQ(qm.inFlightCount(), 0u);
  done(allWith(job, delivered()));  // a buggy agent reporting twice
  EXPECT_EQ(qm.queuedCount(), 1u);
  EXPECT_TRUE(inSpool(env.id));
  EXPECT_EQ(spool_.load(env.id)->recipients[0].state, RecipientState::Pending);
}

// --- backoff jitter -------------------------------------------------------

TEST_F(QueueManagerTest, JitterStaysWithinBoundsAndUnderTheCap) {
  config_.retry_delay = 100s;
  config_.max_retry_delay = 1000s;
  config_.breaker_failures = 0;
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  QueueManager qm(config_, spool_, agent_, clock_);  // the real generator
  const Envelope env = commit();
  qm.enqueue(env);
  std::int64_t low_at_cap = 1000;
  for (int attempt = 1; attempt <= 200; ++attempt) {
    ASSERT_EQ(qm.runDue(), 1u) << "attempt " << attempt;
    const std::int64_t base = std::min<std::int64_t>(100LL << std::min(attempt - 1, 10), 1000);
    const std::int64_t delay = spool_.load(env.id)->next_attempt - now();
    EXPECT_GE(delay, base * 8 / 10) << "attempt " << attempt;
    EXPECT_LE(delay, std::min<std::int64_t>(base * 12 / 10, 1000)) << "attempt " << attempt;
    if (base == 1000) low_at_cap = std::min(low_at_cap, delay);
    clock_.advance(std::chrono::seconds(delay));
  }
  EXPECT_LT(low_at_cap, 900);  // 196 draws at the cap really spread
}

TEST_F(QueueManagerTest, JitterExactBounds) {
  config_.retry_delay = 100s;
  config_.max_retry_delay = 1000s;
  config_.breaker_failures = 0;
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  QueueManager qm(config_, spool_, agent_, clock_);
  double unit = 0.0;
  qm.setRandom([&unit] { return unit; });
  const Envelope env = commit();
  qm.enqueue(env);
  // (unit, expected delay) per attempt; bases 100, 200, 400, 800, 1000 (cap), 1000.
  const std::vector<std::pair<double, std::int64_t>> steps = {
      {0.0, 80}, {1.0, 240}, {0.5, 400}, {1.0, 960}, {1.0, 1000}, {0.0, 800}, {7.0, 1000}, {-3.0, 800}};
  for (std::size_t i = 0; i < steps.size(); ++i) {
    unit = steps[i].first;
    ASSERT_EQ(qm.runDue(), 1u);
    const std::int64_t delay = spool_.load(env.id)->next_attempt - now();
    EXPECT_EQ(delay, steps[i].second) << "attempt " << i + 1;
    clock_.advance(std::chrono::seconds(delay));
  }
}

TEST_F(QueueManagerTest, RetryAfterWinsWhenLongerAndIsNeverShortenedByJitter) {
  QueueManager qm(config_, spool_, agent_, clock_);
  double unit = 1.0;
  qm.setRandom([&unit] { return unit; });
  const Envelope env = commit();
  agent_.push([](const DeliveryJob& job) { return allWith(job, temporary(70s)); });
  agent_.push([](const DeliveryJob& job) { return allWith(job, temporary(300s)); });
  agent_.push([](const DeliveryJob& job) { return allWith(job, temporary(100s)); });
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(spool_.load(env.id)->next_attempt - now(), 72);  // 60 × 1.2 beats 70
  clock_.advance(72s);
  unit = 0.0;
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(spool_.load(env.id)->next_attempt - now(), 300);  // 120 × 0.8 = 96 < 300
  clock_.advance(300s);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(spool_.load(env.id)->next_attempt - now(), 192);  // 240 × 0.8 = 192 > 100
}

// --- lifetime and bounces -------------------------------------------------

// Three recipients: the first delivered, the second refused, the third deferred.
DeliveryResult deliveredFailedAndDeferred() {
  DeliveryResult r;
  r.results = {delivered(), permanent(), temporary()};
  r.provider = "fake";
  return r;
}

TEST_F(QueueManagerTest, ExpiredMessageFails547AndBouncesOnce) {
  config_.max_lifetime = 3600s;
  config_.breaker_failures = 0;
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });
  std::vector<std::pair<Envelope, std::vector<std::size_t>>> bounces;
  qm.setOnBounce(
      [&](const Envelope& e, std::vector<std::size_t> failed) {
        bounces.emplace_back(e, failed);
        return true;
      });
  const Envelope env = commit({"ok@example.org", "bad@example.org", "later@example.org"});
  agent_.push([](const DeliveryJob&) { return deliveredFailedAndDeferred(); });
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  qm.enqueue(env);
  // 60 + 120 + 240 + 480 + 960 = 1860 s; then 1800 s steps: the attempt at
  // 3660 s is the first to end past the lifetime.
  int attempts = 0;
  while (qm.queuedCount() > 0 && attempts < 20) {
    ASSERT_EQ(qm.runDue(), 1u);
    ++attempts;
    if (qm.queuedCount() == 0) break;
    EXPECT_TRUE(bounces.empty());
    auto stored = spool_.load(env.id);
    ASSERT_TRUE(stored.ok());
    EXPECT_LT(now() - env.arrival, 3600);
    clock_.advance(std::chrono::seconds(stored->next_attempt - now()));
  }
  EXPECT_EQ(attempts, 7);
  EXPECT_GE(now() - env.arrival, 3600);
  EXPECT_FALSE(inSpool(env.id));
  ASSERT_EQ(bounces.size(), 1u);
  const auto& [bounced, failed] = bounces[0];
  EXPECT_EQ(bounced.id, env.id);
  EXPECT_EQ(failed, (std::vector<std::size_t>{1, 2}));
  EXPECT_EQ(bounced.recipients[0].state, RecipientState::Delivered);
  EXPECT_EQ(bounced.recipients[1].smtp_code, 550);
  EXPECT_EQ(bounced.recipients[1].enhanced, "5.1.1");
  EXPECT_EQ(bounced.recipients[2].state, RecipientState::Failed);
  EXPECT_EQ(bounced.recipients[2].smtp_code, 554);
  EXPECT_EQ(bounced.recipients[2].enhanced, "5.4.7");
  EXPECT_NE(bounced.recipients[2].last_error.find("expired"), std::string::npos);
  EXPECT_NE(bounced.recipients[2].last_error.find("try later"), std::string::npos);
  EXPECT_EQ(qm.runDue(), 0u);
  EXPECT_EQ(bounces.size(), 1u);
}

TEST_F(QueueManagerTest, TheAttemptObserverSeesEachAttemptsRecipientsAndTheirNewState) {
  config_.breaker_failures = 0;
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });
  struct Seen {
    std::vector<std::size_t> recipients;
    std::vector<RecipientState> states;
    std::string provider;
    int attempts = 0;
  };
  std::vector<Seen> seen;
  qm.setAttemptObserver([&](const Envelope& e, const std::vector<std::size_t>& rcpts, const DeliveryResult& r) {
    Seen s{rcpts, {}, r.provider, e.attempts};
    for (const auto& rcpt : e.recipients) s.states.push_back(rcpt.state);
    seen.push_back(s);
  });
  const Envelope env = commit({"ok@example.org", "bad@example.org", "later@example.org"});
  agent_.push([](const DeliveryJob&) { return deliveredFailedAndDeferred(); });
  agent_.push([](const DeliveryJob& job) {
    DeliveryResult r = allWith(job, delivered());
    r.provider = "fake";
    return r;
  });
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  clock_.advance(std::chrono::seconds(spool_.load(env.id)->next_attempt - now()));
  ASSERT_EQ(qm.runDue(), 1u);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].recipients, (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_EQ(seen[0].states,
            (std::vector<RecipientState>{RecipientState::Delivered, RecipientState::Failed, RecipientState::Pending}));
  EXPECT_EQ(seen[0].provider, "fake");
  EXPECT_EQ(seen[0].attempts, 1);
  EXPECT_EQ(seen[1].recipients, std::vector<std::size_t>{2});
  EXPECT_EQ(seen[1].states[2], RecipientState::Delivered);
  EXPECT_EQ(seen[1].attempts, 2);
}

TEST_F(QueueManagerTest, ABounceThatCannotBeStoredKeepsTheMessageUntilItCan) {
  config_.breaker_failures = 0;
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.5; });
  int calls = 0;
  bool disk_full = true;
  qm.setOnBounce([&](const Envelope&, std::vector<std::size_t> failed) {
    ++calls;
    EXPECT_EQ(failed, (std::vector<std::size_t>{0}));
    return !disk_full;
  });
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, permanent()); });
  const Envelope env = commit({"x@example.org"});
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(inSpool(env.id)) << "the only record of the failure";
  EXPECT_EQ(qm.queuedCount(), 1u);
  auto stored = spool_.load(env.id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->recipients[0].state, RecipientState::Failed) << "durable: not delivered again";
  EXPECT_GT(stored->next_attempt, now());

  // The next attempt only bounces; the provider is not asked again.
  const std::size_t jobs = agent_.jobs().size();
  clock_.advance(std::chrono::seconds(stored->next_attempt - now()));
  disk_full = false;
  EXPECT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(agent_.jobs().size(), jobs);
  EXPECT_FALSE(inSpool(env.id));
  EXPECT_EQ(qm.queuedCount(), 0u);
}

TEST_F(QueueManagerTest, PermanentFailureBouncesAndDeliveryDoesNot) {
  QueueManager qm(config_, spool_, agent_, clock_);
  std::vector<std::pair<std::string, std::vector<std::size_t>>> bounces;
  qm.setOnBounce([&](const Envelope& e, std::vector<std::size_t> failed) {
    bounces.emplace_back(e.id, failed);
    return true;
  });
  const Envelope ok = commit({"x@example.org"});
  qm.enqueue(ok);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_TRUE(bounces.empty());

  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, permanent()); });
  const Envelope bad = commit({"x@example.org", "y@example.org"});
  qm.enqueue(bad);
  ASSERT_EQ(qm.runDue(), 1u);
  ASSERT_EQ(bounces.size(), 1u);
  EXPECT_EQ(bounces[0].first, bad.id);
  EXPECT_EQ(bounces[0].second, (std::vector<std::size_t>{0, 1}));
}

// --- pacing per (route, mailbox) ------------------------------------------

TEST_F(QueueManagerTest, TheRouteFunctionPacesEachProviderOnItsOwnFromTheFirstAttempt) {
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);  // 4 in flight per (route, mailbox)
  qm.setRouteFunction([](const Envelope& env) {
    return env.recipients.at(0).address.ends_with("@b.example") ? std::string("tenant-b") : std::string("tenant-a");
  });
  for (int i = 0; i < 6; ++i) qm.enqueue(commit({"r@a.example"}));
  for (int i = 0; i < 6; ++i) qm.enqueue(commit({"r@b.example"}));
  qm.runDue();
  // The same sender mailbox, two providers: 4 in flight at each.
  EXPECT_EQ(qm.inFlightCount(), 8u);
  const auto finish = [this] {
    while (agent_.heldCount() > 0) agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  };
  finish();

  QueueManager without(config_, spool_, agent_, clock_);
  for (int i = 0; i < 6; ++i) without.enqueue(commit({"r@a.example"}));
  for (int i = 0; i < 6; ++i) without.enqueue(commit({"r@b.example"}));
  without.runDue();
  EXPECT_EQ(without.inFlightCount(), 4u) << "without routes every first attempt shares one route";
  finish();
}

TEST_F(QueueManagerTest, BurstFromOneSenderIsPacedTo4InFlightAnd30PerMinute) {
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);  // defaults: 4 at once, 30 a minute
  for (int i = 0; i < 300; ++i) qm.enqueue(commit({"r@example.org"}));
  const std::int64_t t0 = now();
  std::vector<std::int64_t> starts;      // second of each start, relative to t0
  std::deque<std::int64_t> running;      // start seconds of held attempts, oldest first
  std::size_t max_in_flight = 0;
  std::int64_t finished = -1;
  for (std::int64_t t = 0; t <= 900; ++t) {
    // Every attempt takes 2 s.
    while (!running.empty() && running.front() + 2 <= t) {
      agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
      running.pop_front();
    }
    const std::size_t before = agent_.jobs().size();
    qm.runDue();
    for (std::size_t i = before; i < agent_.jobs().size(); ++i) {
      starts.push_back(t);
      running.push_back(t);
    }
    max_in_flight = std::max(max_in_flight, qm.inFlightCount());
    if (qm.queuedCount() == 0) {
      finished = t;
      break;
    }
    clock_.advance(1s);
  }
  EXPECT_EQ(now() - t0, finished);
  ASSERT_EQ(starts.size(), 300u);
  EXPECT_EQ(max_in_flight, 4u);
  // Every 60 s window, aligned or not.
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const auto in_window = std::count_if(starts.begin(), starts.end(), [&](std::int64_t s) {
      return s >= starts[i] && s < starts[i] + 60;
    });
    EXPECT_LE(in_window, 30) << "window from " << starts[i] << " s";
  }
  // The window is 62 s (whole seconds kept, and a second of arrival jitter
  // in hand): a full 30 in each of ten 62 s steps, 97 % of the allowed rate.
  for (std::int64_t step = 0; step < 10; ++step) {
    const auto n = std::count_if(starts.begin(), starts.end(),
                                 [&](std::int64_t s) { return s >= step * 62 && s < step * 62 + 62; });
    EXPECT_EQ(n, 30) << "step " << step;
  }
  EXPECT_GE(finished, 558);
  EXPECT_LE(finished, 600);
  // Held back is not an attempt: every message went out at its first try.
  for (const auto& job : agent_.jobs()) EXPECT_EQ(job.envelope.attempts, 1);
}

TEST_F(QueueManagerTest, ReconfigureAppliesNewPacingToWaitingMessages) {
  agent_.setHold(true);
  config_.max_per_minute_per_mailbox = 1;
  QueueManager qm(config_, spool_, agent_, clock_);
  for (int i = 0; i < 3; ++i) qm.enqueue(commit({"r@example.org"}));
  EXPECT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(qm.runDue(), 0u);
  config::QueueConfig raised = config_;
  raised.max_per_minute_per_mailbox = 0;  // unlimited
  qm.reconfigure(raised);
  EXPECT_EQ(qm.runDue(), 2u);
  EXPECT_EQ(qm.inFlightCount(), 3u);

  // And down again: nothing in flight is touched, new starts obey.
  raised.max_in_flight_per_mailbox = 1;
  qm.reconfigure(raised);
  qm.enqueue(commit({"r@example.org"}));
  EXPECT_EQ(qm.runDue(), 0u);
  EXPECT_EQ(qm.inFlightCount(), 3u);
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  EXPECT_EQ(qm.runDue(), 1u);
}

TEST_F(QueueManagerTest, SendersArePacedIndependentlyAndCaseInsensitively) {
  config_.max_in_flight_per_mailbox = 1;
  config_.max_per_minute_per_mailbox = 2;
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);
  std::vector<Envelope> a;
  std::vector<Envelope> b;
  for (int i = 0; i < 3; ++i) {
    a.push_back(commit({"r@example.org"}, i == 1 ? "Printer@Example.COM" : "printer@example.com"));
    b.push_back(commit({"r@example.org"}, "erp@example.com"));
  }
  for (int i = 0; i < 3; ++i) {
    qm.enqueue(a[static_cast<std::size_t>(i)]);
    qm.enqueue(b[static_cast<std::size_t>(i)]);
  }
  const auto senderOf = [&](std::size_t job) { return asciiLower(agent_.jobs()[job].envelope.sender); };
  const auto completeAll = [&] {
    while (agent_.heldCount() > 0) {
      agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
    }
  };
  EXPECT_EQ(qm.runDue(), 2u);  // one per mailbox in flight
  EXPECT_NE(senderOf(0), senderOf(1));
  EXPECT_EQ(qm.runDue(), 0u);
  completeAll();
  EXPECT_EQ(qm.runDue(), 2u);
  completeAll();
  EXPECT_EQ(qm.runDue(), 0u);  // both at 2 a minute
  EXPECT_EQ(qm.queuedCount(), 2u);
  // Held back: no attempt counted, nothing written.
  for (const auto& env : {a[2], b[2]}) {
    auto stored = spool_.load(env.id);
    ASSERT_TRUE(stored.ok());
    EXPECT_EQ(stored->attempts, 0);
    EXPECT_EQ(stored->next_attempt, 0);
  }
  clock_.advance(61s);  // the window is 62 s (see the burst test)
  EXPECT_EQ(qm.runDue(), 0u);
  clock_.advance(1s);
  EXPECT_EQ(qm.runDue(), 2u);
  completeAll();
  EXPECT_EQ(qm.queuedCount(), 0u);
  EXPECT_EQ(agent_.jobs().size(), 6u);
}

TEST_F(QueueManagerTest, ZeroPerMinuteMeansUnlimited) {
  config_.max_per_minute_per_mailbox = 0;
  QueueManager qm(config_, spool_, agent_, clock_);
  for (int i = 0; i < 40; ++i) qm.enqueue(commit());
  EXPECT_EQ(qm.runDue(), 40u);
  EXPECT_EQ(qm.queuedCount(), 0u);
}

TEST_F(QueueManagerTest, ThreadedModeWakesWhenThePacingWindowOpens) {
  config_.max_per_minute_per_mailbox = 2;
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.start({});
  for (int i = 0; i < 3; ++i) qm.enqueue(commit());
  ASSERT_TRUE(agent_.waitForJobs(2));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(agent_.jobs().size(), 2u);
  clock_.advance(62s);  // the pacing window
  ASSERT_TRUE(agent_.waitForJobs(3, 3s));  // the loop re-reads the clock within a second
  qm.stop(1s);
  EXPECT_EQ(qm.queuedCount(), 0u);
}

// --- circuit breaker --------------------------------------------------------

TEST_F(QueueManagerTest, BreakerOpensProbesAndCloses) {
  config_.max_per_minute_per_mailbox = 0;
  config_.max_in_flight_per_mailbox = 100;
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  QueueManager qm(config_, spool_, agent_, clock_);
  qm.setRandom([] { return 0.0; });  // retries after 48 s, inside the 60 s cool-down
  EXPECT_EQ(qm.breakerState("fake"), "closed");
  std::vector<Envelope> envs;
  for (int i = 0; i < 6; ++i) envs.push_back(commit({"r@example.org"}, "scanner@example.com", "fake"));
  for (const auto& env : envs) qm.enqueue(env);

  EXPECT_EQ(qm.runDue(), 5u);  // the fifth all-temporary attempt opens it
  EXPECT_EQ(qm.breakerState("fake"), "open");
  EXPECT_EQ(qm.queuedCount(), 6u);
  EXPECT_EQ(spool_.load(envs[5].id)->attempts, 0);  // held back, not attempted
  clock_.advance(59s);                              // the five retries are due; still cooling down
  EXPECT_EQ(qm.runDue(), 0u);
  EXPECT_EQ(agent_.jobs().size(), 5u);

  clock_.advance(1s);
  EXPECT_EQ(qm.breakerState("fake"), "half-open");
  agent_.setHold(true);
  EXPECT_EQ(qm.runDue(), 1u);  // one probe, though six are due
  EXPECT_EQ(qm.breakerState("fake"), "half-open");
  EXPECT_EQ(qm.runDue(), 0u);
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, temporary()); });
  EXPECT_EQ(qm.breakerState("fake"), "open");  // re-opened for another cool-down
  clock_.advance(59s);
  EXPECT_EQ(qm.runDue(), 0u);
  clock_.advance(1s);
  EXPECT_EQ(qm.runDue(), 1u);
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  EXPECT_EQ(qm.breakerState("fake"), "closed");
  EXPECT_EQ(qm.runDue(), 5u);  // the rest that are due go at once
  EXPECT_EQ(agent_.jobs().size(), 12u);
  while (agent_.heldCount() > 0) {
    agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  }
  EXPECT_EQ(qm.queuedCount(), 0u);
  // Other routes never had a breaker.
  EXPECT_EQ(qm.breakerState("other"), "closed");
  EXPECT_EQ(qm.breakerState(""), "closed");
}

TEST_F(QueueManagerTest, BreakerCountsOnlyConsecutiveAllTemporaryAttempts) {
  config_.max_per_minute_per_mailbox = 0;
  config_.max_in_flight_per_mailbox = 100;
  QueueManager qm(config_, spool_, agent_, clock_);
  const auto run = [&](const RecipientResult& r, int n) {
    for (int i = 0; i < n; ++i) {
      agent_.push([r](const DeliveryJob& job) { return allWith(job, r); });
      qm.enqueue(commit({"r@example.org"}, "scanner@example.com", "fake"));
      ASSERT_EQ(qm.runDue(), 1u);
    }
  };
  run(temporary(), 4);
  run(permanent(), 1);  // the provider answered: the count starts over
  run(temporary(), 4);
  EXPECT_EQ(qm.breakerState("fake"), "closed");
  // A result where one recipient got an answer is not transient either.
  agent_.push([](const DeliveryJob&) {
    DeliveryResult r;
    r.results = {temporary(), delivered()};
    r.provider = "fake";
    return r;
  });
  qm.enqueue(commit({"r@example.org", "s@example.org"}, "scanner@example.com", "fake"));
  ASSERT_EQ(qm.runDue(), 1u);
  run(temporary(), 4);
  EXPECT_EQ(qm.breakerState("fake"), "closed");
  run(temporary(), 1);
  EXPECT_EQ(qm.breakerState("fake"), "open");
}

TEST_F(QueueManagerTest, ThrottlingDoesNotOpenTheBreaker) {
  config_.max_per_minute_per_mailbox = 0;
  config_.max_in_flight_per_mailbox = 100;
  RecipientResult throttled = temporary(5s);
  throttled.throttled = true;
  agent_.setFallback([throttled](const DeliveryJob& job) { return allWith(job, throttled); });
  QueueManager qm(config_, spool_, agent_, clock_);
  std::vector<Envelope> envs;
  for (int i = 0; i < 8; ++i) envs.push_back(commit({"r@example.org"}, "scanner@example.com", "fake"));
  for (const auto& env : envs) qm.enqueue(env);
  EXPECT_EQ(qm.runDue(), 8u);  // eight 429s in a row: the service works, it asks for patience
  EXPECT_EQ(qm.breakerState("fake"), "closed");
  // A real outage still counts, from zero.
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  clock_.advance(2min);
  EXPECT_EQ(qm.runDue(), 5u);
  EXPECT_EQ(qm.breakerState("fake"), "open");
}

TEST_F(QueueManagerTest, BreakerZeroFailuresNeverOpens) {
  config_.breaker_failures = 0;
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  QueueManager qm(config_, spool_, agent_, clock_);
  for (int i = 0; i < 10; ++i) qm.enqueue(commit({"r@example.org"}, "scanner@example.com", "fake"));
  EXPECT_EQ(qm.runDue(), 10u);
  EXPECT_EQ(qm.breakerState("fake"), "closed");
}

// --- first attempt reported to a waiting session ---------------------------

TEST_F(QueueManagerTest, FirstAttemptDeliveredIsReported) {
  QueueManager qm(config_, spool_, agent_, clock_);
  agent_.setFallback([](const DeliveryJob& job) {
    DeliveryResult r = allWith(job, delivered());
    r.remote_id = "remote-1";
    return r;
  });
  std::vector<FirstAttempt> seen;
  const Envelope env = commit({"a@example.org"});
  qm.enqueue(env, [&](const FirstAttempt& f) {
    seen.push_back(f);
    return true;
  });
  ASSERT_EQ(qm.runDue(), 1u);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].verdict, FirstAttempt::Verdict::Delivered);
  EXPECT_EQ(seen[0].provider, "fake");
  EXPECT_EQ(seen[0].remote_id, "remote-1");
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, FirstAttemptRefusalTakenByTheClientIsRemovedWithoutBounce) {
  QueueManager qm(config_, spool_, agent_, clock_);
  std::size_t bounces = 0;
  qm.setOnBounce([&](const Envelope&, std::vector<std::size_t>) { return ++bounces > 0; });
  agent_.setFallback([](const DeliveryJob& job) {
    RecipientResult r{Outcome::PermanentFailure, 550, "5.7.60", "SendAsDenied: long remote text", std::nullopt,
                      "sender not allowed to send as this mailbox", false};
    return allWith(job, r);
  });
  std::vector<FirstAttempt> seen;
  const Envelope env = commit({"a@example.org", "b@example.org"});
  qm.enqueue(env, [&](const FirstAttempt& f) {
    seen.push_back(f);
    return true;
  });
  ASSERT_EQ(qm.runDue(), 1u);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].verdict, FirstAttempt::Verdict::Rejected);
  EXPECT_EQ(seen[0].smtp_code, 550);
  EXPECT_EQ(seen[0].enhanced, "5.7.60");
  EXPECT_EQ(seen[0].summary, "sender not allowed to send as this mailbox");
  EXPECT_EQ(bounces, 0u);
  EXPECT_FALSE(inSpool(env.id));
  EXPECT_EQ(qm.queuedCount(), 0u);
}

TEST_F(QueueManagerTest, FirstAttemptRefusalAfterTheClientWasAnsweredBounces) {
  QueueManager qm(config_, spool_, agent_, clock_);
  std::size_t bounces = 0;
  qm.setOnBounce([&](const Envelope&, std::vector<std::size_t>) { return ++bounces > 0; });
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, permanent()); });
  const Envelope env = commit({"a@example.org"});
  qm.enqueue(env, [](const FirstAttempt&) { return false; });  // the wait timed out: 250 already sent
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(bounces, 1u);
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, FirstAttemptMixedOutcomes) {
  QueueManager qm(config_, spool_, agent_, clock_);
  std::size_t bounces = 0;
  qm.setOnBounce([&](const Envelope&, std::vector<std::size_t>) { return ++bounces > 0; });
  std::vector<FirstAttempt> seen;
  const auto watch = [&](const FirstAttempt& f) {
    seen.push_back(f);
    return true;
  };
  // Delivered to one, refused for the other: the client hears 250, the
  // refused recipient is bounced.
  agent_.push([](const DeliveryJob&) {
    DeliveryResult r;
    r.results = {delivered(), permanent()};
    return r;
  });
  qm.enqueue(commit({"ok@example.org", "bad@example.org"}), watch);
  ASSERT_EQ(qm.runDue(), 1u);
  // Deferred for one: 250 queued, the queue carries on; later attempts are
  // not reported again.
  agent_.push([](const DeliveryJob&) {
    DeliveryResult r;
    r.results = {delivered(), temporary()};
    return r;
  });
  const Envelope later = commit({"ok@example.org", "later@example.org"});
  qm.enqueue(later, watch);
  ASSERT_EQ(qm.runDue(), 1u);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].verdict, FirstAttempt::Verdict::Delivered);
  EXPECT_EQ(bounces, 1u);
  EXPECT_EQ(seen[1].verdict, FirstAttempt::Verdict::Deferred);
  EXPECT_TRUE(inSpool(later.id));
  clock_.advance(3600s);
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_FALSE(inSpool(later.id));
}

// --- queue control -----------------------------------------------------------

TEST_F(QueueManagerTest, ControlListAndShow) {
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope first = commit({"a@example.org"});
  clock_.advance(1s);
  const Envelope second = commit({"b@example.org", "c@example.org"}, "");
  qm.enqueue(second);
  qm.enqueue(first);
  ASSERT_EQ(qm.runDue(), 2u);
  auto items = qm.list();
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 2u);
  EXPECT_EQ((*items)[0].id, first.id);  // oldest arrival first
  EXPECT_EQ((*items)[1].id, second.id);
  EXPECT_EQ((*items)[1].sender, "");
  EXPECT_EQ((*items)[1].recipients.size(), 2u);
  EXPECT_EQ((*items)[0].attempts, 1);
  EXPECT_EQ((*items)[0].last_error, "try later");
  EXPECT_FALSE((*items)[0].held);
  EXPECT_FALSE((*items)[0].in_flight);
  auto shown = qm.show(second.id);
  ASSERT_TRUE(shown.ok());
  EXPECT_EQ(shown->recipients[1].address, "c@example.org");
  EXPECT_GT(shown->next_attempt, now());
  auto missing = qm.show("0000000000000000000A");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message, "no message 0000000000000000000A in the queue");
}

TEST_F(QueueManagerTest, ControlRetryAndFlushMakeDeferredMessagesDueNow) {
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  config_.retry_delay = 3600s;
  config_.max_retry_delay = 3600s;
  config_.breaker_failures = 0;  // five deferrals in a row would open it
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope a = commit();
  const Envelope b = commit();
  const Envelope c = commit();
  qm.enqueue(a);
  qm.enqueue(b);
  qm.enqueue(c);
  ASSERT_EQ(qm.runDue(), 3u);
  EXPECT_EQ(qm.runDue(), 0u);
  ASSERT_TRUE(qm.retry(b.id).ok());
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(agent_.jobs().back().envelope.id, b.id);
  ASSERT_TRUE(qm.hold(c.id).ok());
  auto count = qm.retryAll();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 2u);  // a and b; c is on hold
  EXPECT_EQ(qm.runDue(), 2u);
  const Status held_retry = qm.retry(c.id);
  ASSERT_FALSE(held_retry.ok());
  EXPECT_NE(held_retry.error().message.find("on hold"), std::string::npos);
  EXPECT_FALSE(qm.retry("0000000000000000000A").ok());
}

TEST_F(QueueManagerTest, ControlHoldIsDurableAndReleaseSends) {
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  const Envelope env = commit();
  {
    QueueManager qm(config_, spool_, agent_, clock_);
    qm.enqueue(env);
    ASSERT_TRUE(qm.hold(env.id).ok());
    ASSERT_TRUE(qm.hold(env.id).ok());  // idempotent
    EXPECT_EQ(qm.runDue(), 0u);
    EXPECT_TRUE(spool_.load(env.id)->held);
    EXPECT_TRUE(qm.show(env.id)->held);
    qm.stop(0ms);
  }
  auto recovered = spool_.recover();
  ASSERT_TRUE(recovered.ok());
  QueueManager qm(config_, spool_, agent_, clock_);
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, delivered()); });
  for (const auto& e : *recovered) qm.enqueue(e);  // (start() without the thread below)
  qm.stop(0ms);
  QueueManager again(config_, spool_, agent_, clock_);
  agent_.setHold(true);
  again.start(*recovered);
  EXPECT_FALSE(agent_.waitForHeld(1, 300ms));  // held across the restart
  ASSERT_EQ(again.queuedCount(), 1u);
  ASSERT_TRUE(again.release(env.id).ok());
  EXPECT_FALSE(spool_.load(env.id)->held);
  ASSERT_TRUE(agent_.waitForHeld(1));
  agent_.completeHeld([](const DeliveryJob& job) { return allWith(job, delivered()); });
  again.stop(5s);
  EXPECT_FALSE(inSpool(env.id));
}

TEST_F(QueueManagerTest, ControlHoldDuringAnAttemptIsRecordedByTheAttempt) {
  agent_.setHold(true);
  QueueManager qm(config_, spool_, agent_, clock_);
  const Envelope env = commit({"a@example.org", "b@example.org"});
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  ASSERT_TRUE(qm.hold(env.id).ok());
  EXPECT_TRUE(qm.show(env.id)->in_flight);
  const Status del = qm.remove(env.id);
  ASSERT_FALSE(del.ok());
  EXPECT_NE(del.error().message.find("being delivered right now"), std::string::npos);
  agent_.completeHeld([](const DeliveryJob&) {
    DeliveryResult r;
    r.results = {delivered(), temporary()};
    return r;
  });
  auto stored = spool_.load(env.id);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->held);
  EXPECT_EQ(stored->recipients[0].state, RecipientState::Delivered);
  clock_.advance(7200s);
  EXPECT_EQ(qm.runDue(), 0u);
  ASSERT_TRUE(qm.release(env.id).ok());
  ASSERT_EQ(qm.runDue(), 1u);
  EXPECT_EQ(agent_.jobs().back().recipients, std::vector<std::size_t>{1});
}

TEST_F(QueueManagerTest, ControlDeleteRemovesWithoutDeliveryOrBounce) {
  agent_.setFallback([](const DeliveryJob& job) { return allWith(job, temporary()); });
  QueueManager qm(config_, spool_, agent_, clock_);
  std::size_t bounces = 0;
  qm.setOnBounce([&](const Envelope&, std::vector<std::size_t>) { return ++bounces > 0; });
  const Envelope env = commit();
  qm.enqueue(env);
  ASSERT_EQ(qm.runDue(), 1u);
  ASSERT_TRUE(qm.remove(env.id).ok());
  EXPECT_FALSE(inSpool(env.id));
  EXPECT_EQ(qm.queuedCount(), 0u);
  clock_.advance(7200s);
  EXPECT_EQ(qm.runDue(), 0u);
  EXPECT_EQ(bounces, 0u);
  EXPECT_FALSE(qm.remove(env.id).ok());
}

}  // namespace
}  // namespace mb::queue
