#include "queue/queue_manager.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "base/log.h"
#include "base/text.h"

namespace mb::queue {
namespace {

// The loop re-reads the clock at least this often even when nothing is due
// sooner: due times are wall-clock seconds, and a wall clock that is stepped
// (NTP, or a ManualClock in tests) does not wake a steady-clock wait.
constexpr std::chrono::seconds kMaxWait{1};

RecipientResult temporary(std::string detail) {
  RecipientResult r;
  r.outcome = Outcome::TemporaryFailure;
  r.smtp_code = 451;
  r.enhanced = "4.3.0";
  r.detail = std::move(detail);
  return r;
}

}  // namespace

struct QueueManager::LifeGuard {
  // Callbacks hold it shared while they run; the destructor takes it
  // exclusively to clear owner, so it also waits for callbacks in progress.
  std::shared_mutex mutex;
  QueueManager* owner = nullptr;
};

QueueManager::QueueManager(const config::QueueConfig& config, Spool& spool, DeliveryAgent& agent, Clock& clock)
    : config_(config), spool_(spool), agent_(agent), clock_(clock), guard_(std::make_shared<LifeGuard>()) {
  guard_->owner = this;
}

QueueManager::~QueueManager() {
  bool stopped = false;
  {
    std::lock_guard lock(mutex_);
    stopped = stopping_;
  }
  if (!stopped) {
    stop();
  } else if (thread_.joinable()) {
    thread_.join();
  }
  std::unique_lock lock(guard_->mutex);
  guard_->owner = nullptr;
}

void QueueManager::start(const std::vector<Envelope>& recovered) {
  std::lock_guard lock(mutex_);
  // Everything recovered is due at once: an administrator who fixed the
  // cause of a deferral and restarted expects the queue to move now, as
  // after `postqueue -f`. The stored next_attempt still drives the backoff
  // of later retries through the attempt count.
  const std::int64_t now = nowSeconds();
  for (const auto& env : recovered) {
    if (queued_.count(env.id) != 0) continue;
    queued_.emplace(env.id, now);
    schedule_.emplace(now, env.id);
  }
  if (!started_ && !stopping_) {
    started_ = true;
    thread_ = std::thread([this] { loop(); });
  }
  cv_.notify_all();
}

void QueueManager::enqueue(const Envelope& env) {
  {
    std::lock_guard lock(mutex_);
    if (queued_.count(env.id) != 0) {
      spdlog::warn("{} enqueued twice; ignored", printable(env.id));
      return;
    }
    const std::int64_t now = nowSeconds();
    queued_.emplace(env.id, now);
    schedule_.emplace(now, env.id);
  }
  cv_.notify_all();
}

void QueueManager::stop(std::chrono::milliseconds grace) {
  std::unique_lock lock(mutex_);
  stopping_ = true;
  cv_.notify_all();
  // Real time, not clock_: a ManualClock in a test would never reach it.
  const auto deadline = std::chrono::steady_clock::now() + grace;
  if (!idle_cv_.wait_until(lock, deadline, [this] { return in_flight_.empty(); })) {
    spdlog::warn("queue: {} delivery attempt(s) still running after the grace period; "
                 "their messages stay queued and are retried at the next start",
                 in_flight_.size());
  }
  lock.unlock();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

std::size_t QueueManager::runDue() {
  std::unique_lock lock(mutex_);
  return runDueLocked(lock);
}

std::size_t QueueManager::queuedCount() const {
  std::lock_guard lock(mutex_);
  return queued_.size();
}

std::size_t QueueManager::inFlightCount() const {
  std::lock_guard lock(mutex_);
  return in_flight_.size();
}

std::int64_t QueueManager::nowSeconds() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.wallNow().time_since_epoch()).count();
}

std::size_t QueueManager::maxInFlight() const { return std::max<std::size_t>(1, config_.max_in_flight); }

std::chrono::seconds QueueManager::backoff(int attempts) const {
  const std::chrono::seconds cap = config_.max_retry_delay;
  std::chrono::seconds delay = config_.retry_delay;
  if (delay <= std::chrono::seconds::zero()) return std::min(std::chrono::seconds::zero(), cap);
  // Doubling stops at the cap, so a large attempt count cannot overflow.
  for (int i = 1; i < attempts && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

void QueueManager::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    runDueLocked(lock);
    if (stopping_) break;
    if (schedule_.empty() || in_flight_.size() >= maxInFlight()) {
      // Woken by enqueue(), a finished attempt or stop().
      cv_.wait(lock);
      continue;
    }
    const Clock::WallTime due{std::chrono::seconds(schedule_.begin()->first)};
    const auto remaining = due - clock_.wallNow();
    if (remaining <= Clock::WallTime::duration::zero()) continue;
    const auto wait = std::min<std::chrono::nanoseconds>(remaining, kMaxWait);
    cv_.wait_until(lock, std::chrono::steady_clock::now() + wait);
  }
}

void QueueManager::forgetLocked(const std::string& id) {
  in_flight_.erase(id);
  queued_.erase(id);
  unsaved_.erase(id);
  cv_.notify_all();
  idle_cv_.notify_all();
}

std::size_t QueueManager::runDueLocked(std::unique_lock<std::mutex>& lock) {
  std::size_t started = 0;
  while (!stopping_ && in_flight_.size() < maxInFlight() && !schedule_.empty()) {
    const auto first = schedule_.begin();
    if (first->first > nowSeconds()) break;
    const std::string id = first->second;
    schedule_.erase(first);
    // Releases the lock while it works, so the schedule is re-read each time.
    startAttemptLocked(id, lock);
    ++started;
  }
  return started;
}

void QueueManager::startAttemptLocked(const std::string& id, std::unique_lock<std::mutex>& lock) {
  in_flight_.insert(id);
  std::optional<Envelope> cached;
  if (const auto it = unsaved_.find(id); it != unsaved_.end()) cached = it->second;
  lock.unlock();

  Result<Envelope> loaded = cached ? Result<Envelope>(std::move(*cached)) : spool_.load(id);
  if (!loaded) {
    // Nothing to deliver from; the files stay where they are and recover()
    // sorts them out (or moves them to corrupt/) at the next start.
    spdlog::error("{}: cannot load envelope, dropped from the schedule until restart: {}", id,
                  loaded.error().message);
    lock.lock();
    forgetLocked(id);
    return;
  }

  auto job = std::make_shared<DeliveryJob>();
  job->envelope = std::move(loaded).value();
  job->envelope.attempts += 1;
  job->recipients = job->envelope.pendingRecipients();
  job->content = spool_.contentPath(id);

  if (job->recipients.empty()) {
    // Every recipient was settled before a crash or a failed remove(): only
    // the clean-up is left, no need to bother the agent.
    onAttemptDone(id, *job, DeliveryResult{});
    lock.lock();
    return;
  }

  auto reported = std::make_shared<std::atomic<bool>>(false);
  agent_.deliver(*job, [guard = guard_, id, job, reported](DeliveryResult result) {
    if (reported->exchange(true)) {
      spdlog::error("{}: delivery agent reported one attempt twice; the second report is ignored", id);
      return;
    }
    std::shared_lock alive(guard->mutex);
    if (guard->owner == nullptr) {
      spdlog::warn("{}: delivery result arrived after the queue stopped; not recorded, the message "
                   "is retried at the next start",
                   id);
      return;
    }
    guard->owner->onAttemptDone(id, *job, std::move(result));
  });
  lock.lock();
}

void QueueManager::onAttemptDone(std::string id, DeliveryJob job, DeliveryResult result) {
  Envelope& env = job.envelope;
  const std::string via = result.provider.empty() ? std::string("(unknown provider)") : result.provider;
  if (!result.provider.empty()) env.route = result.provider;

  const bool length_ok = result.results.size() == job.recipients.size();
  if (!length_ok) {
    spdlog::error("{}: provider {} returned {} result(s) for {} recipient(s); treated as a temporary failure",
                  id, via, result.results.size(), job.recipients.size());
  }

  std::chrono::seconds retry_after{0};
  std::size_t deferred = 0;
  for (std::size_t i = 0; i < job.recipients.size(); ++i) {
    const std::size_t index = job.recipients[i];
    if (index >= env.recipients.size()) continue;
    RecipientEntry& rcpt = env.recipients[index];
    const RecipientResult r =
        length_ok ? result.results[i] : temporary("provider returned a result list of the wrong length");
    rcpt.smtp_code = r.smtp_code;
    rcpt.enhanced = r.enhanced;
    switch (r.outcome) {
      case Outcome::Delivered:
        rcpt.state = RecipientState::Delivered;
        rcpt.last_error.clear();
        spdlog::info("{} delivered to {} via {}: {} {} {}", id, printable(rcpt.address), via, r.smtp_code,
                     r.enhanced, printable(result.remote_id));
        break;
      case Outcome::PermanentFailure:
        rcpt.state = RecipientState::Failed;
        rcpt.last_error = r.detail;
        // No DSN is sent yet: the DSN builder comes later and will read the
        // failed recipients from here. Until then the log is the only trace.
        spdlog::warn("{} bounced {} via {}: {} {} {}", id, printable(rcpt.address), via, r.smtp_code,
                     r.enhanced, printable(r.detail, 512));
        break;
      case Outcome::TemporaryFailure:
        rcpt.state = RecipientState::Pending;
        rcpt.last_error = r.detail;
        env.last_error = r.detail;
        ++deferred;
        if (r.retry_after && *r.retry_after > retry_after) retry_after = *r.retry_after;
        spdlog::info("{} deferred {} via {}: {} {} {}", id, printable(rcpt.address), via, r.smtp_code,
                     r.enhanced, printable(r.detail, 512));
        break;
    }
  }

  if (env.allRecipientsDone()) {
    Status st = spool_.remove(id);
    if (!st) {
      // Record the outcome at least, so a restart cleans up instead of
      // delivering again.
      spdlog::error("{}: cannot remove finished message: {}", id, st.error().message);
      if (Status ust = spool_.update(env); !ust) {
        spdlog::error("{}: cannot record finished message either: {}", id, ust.error().message);
      }
    } else {
      spdlog::info("{} done after {} attempt(s), removed from the queue", id, env.attempts);
    }
    std::lock_guard lock(mutex_);
    forgetLocked(id);
    return;
  }

  const std::chrono::seconds delay = std::max(backoff(env.attempts), retry_after);
  const std::int64_t now = nowSeconds();
  env.next_attempt = delay.count() > std::numeric_limits<std::int64_t>::max() - now
                         ? std::numeric_limits<std::int64_t>::max()
                         : now + delay.count();
  spdlog::info("{}: {} recipient(s) deferred, attempt {} failed, next attempt in {}s", id, deferred,
               env.attempts, delay.count());
  // Durable before rescheduling, so that after a restart a delivered
  // recipient is never sent again and the backoff continues where it was.
  const Status st = spool_.update(env);
  if (!st) spdlog::error("{}: cannot record attempt results: {}", id, st.error().message);

  std::lock_guard lock(mutex_);
  in_flight_.erase(id);
  if (st) {
    unsaved_.erase(id);
  } else {
    unsaved_[id] = env;
  }
  queued_[id] = env.next_attempt;
  schedule_.emplace(env.next_attempt, id);
  cv_.notify_all();
  idle_cv_.notify_all();
}

}  // namespace mb::queue
