#include "queue/queue_manager.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "base/log.h"
#include "base/text.h"
#include "base/worker_pool.h"

namespace mb::queue {
namespace {

// The loop re-reads the clock at least this often even when nothing is due
// sooner: due times are wall-clock seconds, and a wall clock that is stepped
// (NTP, or a ManualClock in tests) does not wake a steady-clock wait.
constexpr std::chrono::seconds kMaxWait{1};

// The pacing window: Exchange Online counts messages per minute. Starts are
// kept in whole seconds, so one may have happened up to a second after the
// second it is kept under; and the service counts a request when it
// arrives, which for the first of a burst (a token to fetch, a connection
// to open) can be a second later than for the ones after it. The window
// keeps both in hand, so that a full budget never meets a 429: 30 starts
// per 62 s is 97 % of 30 a minute.
constexpr std::int64_t kWindowSeconds = 62;

const std::string kDefaultRoute = "default";

const std::string& routeKey(const std::string& route) { return route.empty() ? kDefaultRoute : route; }

std::int64_t addSeconds(std::int64_t t, std::chrono::seconds d) {
  if (d.count() <= 0) return t;
  return d.count() > std::numeric_limits<std::int64_t>::max() - t ? std::numeric_limits<std::int64_t>::max()
                                                                 : t + d.count();
}

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
    : config_(config),
      spool_(spool),
      agent_(agent),
      clock_(clock),
      rng_(std::random_device{}()),
      guard_(std::make_shared<LifeGuard>()) {
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
  std::size_t held = 0;
  for (const auto& env : recovered) {
    if (queued_.count(env.id) != 0) continue;
    queued_.emplace(env.id, Entry{now, asciiLower(env.sendingMailbox()), routeOf(env), env.held, env.arrival});
    if (env.held) {
      ++held;
    } else {
      schedule_.emplace(now, env.id);
    }
  }
  if (held > 0) spdlog::info("queue: {} message(s) on hold; `mailbridge queue release` sends them", held);
  if (!started_ && !stopping_) {
    started_ = true;
    thread_ = std::thread([this] {
      nameThisThread("mb-queue");
      loop();
    });
  }
  cv_.notify_all();
}

void QueueManager::enqueue(const Envelope& env, FirstAttemptCallback on_first) {
  bool startable = false;
  {
    std::lock_guard lock(mutex_);
    if (queued_.count(env.id) != 0) {
      spdlog::warn("{} enqueued twice; ignored", printable(env.id));
      return;
    }
    const std::int64_t now = nowSeconds();
    const auto [it, inserted] =
        queued_.emplace(env.id, Entry{now, asciiLower(env.sendingMailbox()), routeOf(env), false, env.arrival});
    schedule_.emplace(now, env.id);
    if (fresh_.size() < kMaxFresh) fresh_.emplace(env.id, env);
    if (on_first) waiters_.insert_or_assign(env.id, std::move(on_first));
    // The loop scans every due message when it wakes. A message that pacing,
    // an open breaker or a full max_in_flight holds back has nothing to
    // start, so it does not wake the loop: under a burst into a held route
    // that would be a scan of the whole backlog per message. The loop finds
    // it when the hold ends (it wakes for that, and at least every second);
    // only a loop asleep on an empty schedule must hear of it to set its
    // timer.
    startable = idle_wait_ || (in_flight_.size() < maxInFlight() && readyAtLocked(it->second, now) <= now);
  }
  if (startable) cv_.notify_all();
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

std::int64_t QueueManager::oldestArrival() const {
  std::lock_guard lock(mutex_);
  std::int64_t oldest = 0;
  for (const auto& [id, entry] : queued_) {
    if (entry.arrival > 0 && (oldest == 0 || entry.arrival < oldest)) oldest = entry.arrival;
  }
  return oldest;
}

std::size_t QueueManager::inFlightCount() const {
  std::lock_guard lock(mutex_);
  return in_flight_.size();
}

std::string QueueManager::breakerState(const std::string& route) const {
  std::lock_guard lock(mutex_);
  const auto it = breakers_.find(routeKey(route));
  if (it == breakers_.end()) return "closed";
  switch (it->second.state) {
    case BreakerState::Closed:
      return "closed";
    case BreakerState::HalfOpen:
      return "half-open";
    case BreakerState::Open:
      return nowSeconds() >= it->second.open_until ? "half-open" : "open";
  }
  return "closed";
}

void QueueManager::setOnBounce(BounceCallback cb) {
  std::lock_guard lock(mutex_);
  on_bounce_ = std::move(cb);
}

void QueueManager::setAttemptObserver(AttemptObserver observer) {
  std::lock_guard lock(mutex_);
  on_attempt_ = std::move(observer);
}

void QueueManager::setRandom(std::function<double()> unit) {
  std::lock_guard lock(mutex_);
  random_ = std::move(unit);
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

std::chrono::seconds QueueManager::jitteredLocked(std::chrono::seconds base) {
  // Jitter spreads the retries of messages that failed together (a provider
  // outage) so they do not come back as one burst.
  double unit = random_ ? random_() : std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  if (!(unit >= 0.0)) unit = 0.0;  // NaN as well
  unit = std::min(unit, 1.0);
  const double factor = 0.8 + 0.4 * unit;
  const double scaled = static_cast<double>(base.count()) * factor;
  const double cap = static_cast<double>(std::max(config_.max_retry_delay, base).count());
  return std::chrono::seconds(static_cast<std::int64_t>(std::llround(std::min(scaled, cap))));
}

void QueueManager::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    runDueLocked(lock);
    if (stopping_) break;
    // Due messages held back by pacing or an open breaker do not count:
    // the wait is for the first one that may really start.
    const std::int64_t wake = in_flight_.size() >= maxInFlight() ? kNever : nextWakeLocked();
    if (wake == kNever) {
      // Woken by enqueue() (always, while the schedule is empty; else when
      // its message may start), a finished attempt or stop().
      idle_wait_ = schedule_.empty();
      cv_.wait(lock);
      idle_wait_ = false;
      continue;
    }
    const Clock::WallTime due{std::chrono::seconds(wake)};
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
  fresh_.erase(id);
  waiters_.erase(id);
  cv_.notify_all();
  idle_cv_.notify_all();
}

QueueManager::Breaker& QueueManager::breakerLocked(const std::string& route) { return breakers_[route]; }

std::int64_t QueueManager::readyAtLocked(const Entry& entry, std::int64_t now) {
  std::int64_t ready = std::max(entry.due, now);
  const std::string& route = routeKey(entry.route);
  if (const auto b = breakers_.find(route); b != breakers_.end()) {
    const Breaker& br = b->second;
    if (br.state == BreakerState::Open && now < br.open_until) {
      ready = std::max(ready, br.open_until);
    } else if (br.state != BreakerState::Closed && br.probe_in_flight) {
      return kNever;  // one probe at a time; its result decides
    }
  }
  const auto p = pace_.find(std::make_pair(route, entry.mailbox));
  if (p == pace_.end()) return ready;
  Pace& pace = p->second;
  while (!pace.starts.empty() && pace.starts.front() <= now - kWindowSeconds) pace.starts.pop_front();
  if (pace.in_flight >= std::max<std::size_t>(1, config_.max_in_flight_per_mailbox)) return kNever;
  const std::size_t limit = config_.max_per_minute_per_mailbox;
  if (limit > 0 && pace.starts.size() >= limit) {
    // The window has room again once enough of the oldest starts leave it.
    ready = std::max(ready, pace.starts[pace.starts.size() - limit] + kWindowSeconds);
  }
  if (pace.in_flight == 0 && pace.starts.empty()) pace_.erase(p);
  return ready;
}

std::int64_t QueueManager::nextWakeLocked() {
  const std::int64_t now = nowSeconds();
  std::int64_t wake = kNever;
  for (const auto& [due, id] : schedule_) {
    if (due > now) return std::min(wake, due);
    const auto q = queued_.find(id);
    wake = std::min(wake, q == queued_.end() ? now : readyAtLocked(q->second, now));
  }
  return wake;
}

std::size_t QueueManager::runDueLocked(std::unique_lock<std::mutex>& lock) {
  std::size_t started = 0;
  while (!stopping_ && in_flight_.size() < maxInFlight() && !schedule_.empty()) {
    const std::int64_t now = nowSeconds();
    // The first due message that pacing and the breaker let through; the
    // ones before it stay in place, so their order is kept for later.
    auto pick = schedule_.end();
    for (auto it = schedule_.begin(); it != schedule_.end() && it->first <= now; ++it) {
      const auto q = queued_.find(it->second);
      if (q == queued_.end() || readyAtLocked(q->second, now) <= now) {
        pick = it;
        break;
      }
    }
    if (pick == schedule_.end()) break;
    const std::string id = pick->second;
    schedule_.erase(pick);

    Attempt attempt;
    std::string mailbox;
    if (const auto q = queued_.find(id); q != queued_.end()) {
      attempt.route = routeKey(q->second.route);
      mailbox = q->second.mailbox;
    } else {
      attempt.route = kDefaultRoute;
    }
    attempt.pace_key = std::make_pair(attempt.route, mailbox);
    Pace& pace = pace_[attempt.pace_key];
    ++pace.in_flight;
    pace.starts.push_back(now);
    const auto b = breakers_.find(attempt.route);
    if (b != breakers_.end() && b->second.state != BreakerState::Closed) {
      // readyAtLocked let it through: the cool-down is over and no probe runs.
      b->second.state = BreakerState::HalfOpen;
      b->second.probe_in_flight = true;
      attempt.probe = true;
      spdlog::info("provider {}: circuit half-open, probing with {}", printable(attempt.route), id);
    }
    // Releases the lock while it works, so the schedule is re-read each time.
    startAttemptLocked(id, std::move(attempt), lock);
    ++started;
  }
  return started;
}

void QueueManager::releaseLocked(const std::string& id, const std::string& provider,
                                 std::optional<bool> transient) {
  const auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  const Attempt attempt = std::move(it->second);
  in_flight_.erase(it);
  const std::int64_t now = nowSeconds();

  if (const auto p = pace_.find(attempt.pace_key); p != pace_.end()) {
    Pace& pace = p->second;
    if (pace.in_flight > 0) --pace.in_flight;
    while (!pace.starts.empty() && pace.starts.front() <= now - kWindowSeconds) pace.starts.pop_front();
    if (pace.in_flight == 0 && pace.starts.empty()) pace_.erase(p);
  }

  if (attempt.probe) breakerLocked(attempt.route).probe_in_flight = false;
  if (!transient) return;
  // The probe answers for the route it was let through on; other attempts
  // for the provider that really handled them.
  const std::string& route = attempt.probe || provider.empty() ? attempt.route : provider;
  Breaker& b = breakerLocked(route);
  if (!*transient) {
    b.failures = 0;
    if (b.state != BreakerState::Closed) {
      b.state = BreakerState::Closed;
      spdlog::info("provider {}: circuit closed, the provider answers again", printable(route));
    }
    return;
  }
  ++b.failures;
  const bool reopen = attempt.probe && b.state == BreakerState::HalfOpen;
  const bool open = b.state == BreakerState::Closed && config_.breaker_failures > 0 &&
                    b.failures >= config_.breaker_failures;
  if (reopen || open) {
    b.state = BreakerState::Open;
    b.open_until = addSeconds(now, config_.breaker_cooldown);
    if (reopen) {
      spdlog::warn("provider {}: circuit open again for {}s, the probe failed temporarily too",
                   printable(route), config_.breaker_cooldown.count());
    } else {
      spdlog::warn("provider {}: circuit open for {}s after {} consecutive attempts that failed temporarily",
                   printable(route), config_.breaker_cooldown.count(), b.failures);
    }
  }
}

void QueueManager::startAttemptLocked(const std::string& id, Attempt attempt,
                                      std::unique_lock<std::mutex>& lock) {
  in_flight_.insert_or_assign(id, std::move(attempt));
  // The enqueued copy serves the first attempt only: later ones follow the file.
  auto fresh = fresh_.extract(id);
  std::optional<Envelope> cached;
  if (const auto it = unsaved_.find(id); it != unsaved_.end()) {
    cached = it->second;
  } else if (fresh) {
    cached = std::move(fresh.mapped());
  }
  lock.unlock();

  Result<Envelope> loaded = cached ? Result<Envelope>(std::move(*cached)) : spool_.load(id);
  if (!loaded) {
    // Nothing to deliver from; the files stay where they are and recover()
    // sorts them out (or moves them to corrupt/) at the next start.
    spdlog::error("{}: cannot load envelope, dropped from the schedule until restart: {}", id,
                  loaded.error().message);
    lock.lock();
    releaseLocked(id, std::string(), std::nullopt);
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

void QueueManager::reconfigure(const config::QueueConfig& config) {
  {
    std::lock_guard lock(mutex_);
    config_ = config;
  }
  // Higher limits may let waiting messages start now.
  cv_.notify_all();
}

void QueueManager::onAttemptDone(std::string id, DeliveryJob job, DeliveryResult result) {
  const std::chrono::seconds max_lifetime = [this] {
    std::lock_guard lock(mutex_);
    return config_.max_lifetime;
  }();
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
  std::size_t throttled = 0;
  bool answered = false;  // some recipient got a final answer: the provider works
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
        answered = true;
        rcpt.state = RecipientState::Delivered;
        rcpt.last_error.clear();
        spdlog::info("{} delivered to {} via {}: {} {} {}", id, printable(rcpt.address), via, r.smtp_code,
                     r.enhanced, printable(result.remote_id));
        break;
      case Outcome::PermanentFailure:
        answered = true;
        rcpt.state = RecipientState::Failed;
        rcpt.last_error = r.detail;
        // The bounce callback reads the failed recipients from the envelope
        // once the message is done.
        spdlog::warn("{} bounced {} via {}: {} {} {}", id, printable(rcpt.address), via, r.smtp_code,
                     r.enhanced, printable(r.detail, 512));
        break;
      case Outcome::TemporaryFailure:
        rcpt.state = RecipientState::Pending;
        rcpt.last_error = r.detail;
        env.last_error = r.detail;
        ++deferred;
        if (r.throttled) ++throttled;
        if (r.retry_after && *r.retry_after > retry_after) retry_after = *r.retry_after;
        spdlog::info("{} deferred {} via {}: {} {} {}", id, printable(rcpt.address), via, r.smtp_code,
                     r.enhanced, printable(r.detail, 512));
        break;
    }
  }
  // Only an attempt where nobody got a final answer says the provider is
  // unwell; the settled clean-up (no recipients) says nothing, and neither
  // does throttling: a service that asks one mailbox to slow down works, and
  // an open breaker would hold every other mailbox back too.
  std::optional<bool> transient;
  if (!job.recipients.empty() && !(length_ok && !answered && throttled == deferred && deferred > 0)) {
    transient = !answered;
  }

  const std::int64_t now = nowSeconds();
  // arrival 0 means unknown (never written by the server): no expiry rather
  // than an instant one.
  if (!env.allRecipientsDone() && env.arrival > 0 && now - env.arrival >= max_lifetime.count()) {
    std::size_t expired = 0;
    for (RecipientEntry& rcpt : env.recipients) {
      if (rcpt.state != RecipientState::Pending) continue;
      const std::string last = rcpt.last_error.empty() ? env.last_error : rcpt.last_error;
      rcpt.state = RecipientState::Failed;
      rcpt.smtp_code = 554;
      rcpt.enhanced = "5.4.7";  // RFC 3463: delivery time expired
      rcpt.last_error = "delivery time expired; last error: " + (last.empty() ? std::string("none") : last);
      ++expired;
    }
    spdlog::warn("{} expired after {}s and {} attempt(s) in the queue; {} recipient(s) failed "
                 "with 554 5.4.7, last error: {}",
                 id, now - env.arrival, env.attempts, expired, printable(env.last_error, 512));
  }

  AttemptObserver observe;
  {
    std::lock_guard lock(mutex_);
    observe = on_attempt_;
  }
  if (observe && !job.recipients.empty()) observe(env, job.recipients, result);

  // A session waiting for this attempt hears its outcome now; when it takes
  // a refusal, its 5xx tells the sender and a bounce would say it twice.
  const bool refused_to_client = reportFirstAttempt(id, env, job, result);

  bool bounce_stored = true;
  if (env.allRecipientsDone()) {
    std::vector<std::size_t> failed;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
      if (env.recipients[i].state == RecipientState::Failed) failed.push_back(i);
    }
    if (refused_to_client) {
      spdlog::info("{}: refused to the waiting client, no bounce", id);
      failed.clear();
    }
    BounceCallback bounce;
    if (!failed.empty()) {
      std::lock_guard lock(mutex_);
      bounce = on_bounce_;
    }
    // Before the original goes: the bounce quotes its headers, and once the
    // bounce is committed a crash cannot lose it (at worst it is sent twice).
    // Outside the lock: the callback enqueues the DSN.
    if (bounce) {
      // Results first: a crash while the bounce is written then repeats
      // only the bounce, not the deliveries of this attempt. (A message
      // without failures skips this write; its crash window is the one
      // every delivery in flight has.)
      if (Status st = spool_.update(env); !st) {
        spdlog::error("{}: cannot record attempt results: {}", id, st.error().message);
      }
      bounce_stored = bounce(env, failed);
    }
    if (bounce_stored) {
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
      releaseLocked(id, result.provider, transient);
      forgetLocked(id);
      return;
    }
    // The sender must still hear of the failure: keep the message (its
    // recipients are settled, so the next attempt is only the clean-up that
    // bounces again) rather than lose the only record of it.
  }

  std::chrono::seconds jittered{0};
  {
    std::lock_guard lock(mutex_);
    jittered = jitteredLocked(backoff(env.attempts));
  }
  const std::chrono::seconds delay = std::max(jittered, retry_after);
  env.next_attempt = addSeconds(now, delay);
  if (bounce_stored) {
    spdlog::info("{}: {} recipient(s) deferred, attempt {} failed, next attempt in {}s", id, deferred,
                 env.attempts, delay.count());
  } else {
    spdlog::error("{}: its bounce could not be stored; the message stays queued and the bounce is "
                  "tried again in {}s",
                  id, delay.count());
  }
  // Durable before rescheduling, so that after a restart a delivered
  // recipient is never sent again and the backoff continues where it was.
  // While the attempt counts as in flight nobody else writes this envelope;
  // a `queue hold` or `release` that came meanwhile only changed the entry,
  // so the write repeats until it carries the entry's hold state.
  std::unique_lock lock(mutex_);
  Status st;
  for (;;) {
    env.held = queued_[id].held;
    lock.unlock();
    st = spool_.update(env);
    if (!st) spdlog::error("{}: cannot record attempt results: {}", id, st.error().message);
    lock.lock();
    if (!st || queued_[id].held == env.held) break;
  }
  releaseLocked(id, result.provider, transient);
  if (st) {
    unsaved_.erase(id);
  } else {
    unsaved_[id] = env;
  }
  Entry& entry = queued_[id];
  entry.due = env.next_attempt;
  entry.mailbox = asciiLower(env.sendingMailbox());
  entry.route = routeOf(env);
  if (!entry.held) schedule_.emplace(env.next_attempt, id);
  cv_.notify_all();
  idle_cv_.notify_all();
}

bool QueueManager::reportFirstAttempt(const std::string& id, const Envelope& env, const DeliveryJob& job,
                                      const DeliveryResult& result) {
  FirstAttemptCallback waiter;
  {
    std::lock_guard lock(mutex_);
    const auto it = waiters_.find(id);
    if (it == waiters_.end()) return false;
    waiter = std::move(it->second);
    waiters_.erase(it);
  }
  FirstAttempt first;
  first.provider = result.provider;
  first.remote_id = result.remote_id;
  const bool done = env.allRecipientsDone();
  bool any_delivered = false;
  const RecipientEntry* first_failed = nullptr;
  for (const RecipientEntry& r : env.recipients) {
    if (r.state == RecipientState::Delivered) any_delivered = true;
    if (r.state == RecipientState::Failed && first_failed == nullptr) first_failed = &r;
  }
  if (done && any_delivered) {
    // Some recipients may have failed; they get a bounce, the client its 250.
    first.verdict = FirstAttempt::Verdict::Delivered;
  } else if (done && first_failed != nullptr) {
    first.verdict = FirstAttempt::Verdict::Rejected;
    first.smtp_code = first_failed->smtp_code;
    first.enhanced = first_failed->enhanced;
    // The provider's client-safe words for the first refused recipient.
    for (std::size_t i = 0; i < job.recipients.size() && i < result.results.size(); ++i) {
      if (job.recipients[i] < env.recipients.size() && &env.recipients[job.recipients[i]] == first_failed) {
        first.summary = result.results[i].summary;
        break;
      }
    }
  } else {
    first.verdict = FirstAttempt::Verdict::Deferred;
  }
  const bool taken = waiter(first);
  return taken && first.verdict == FirstAttempt::Verdict::Rejected;
}

// ---- QueueControl ----------------------------------------------------------
//
// Control commands change a message only while no attempt runs for it (the
// lock keeps one from starting); for a message in flight they change the
// in-memory entry and the attempt's own envelope write records it.

void QueueManager::unscheduleLocked(const std::string& id, const Entry& entry) {
  auto [first, last] = schedule_.equal_range(entry.due);
  for (auto it = first; it != last; ++it) {
    if (it->second == id) {
      schedule_.erase(it);
      return;
    }
  }
  // Not where its due time says (should not happen): search everything.
  for (auto it = schedule_.begin(); it != schedule_.end(); ++it) {
    if (it->second == id) {
      schedule_.erase(it);
      return;
    }
  }
}

Result<Envelope> QueueManager::currentEnvelopeLocked(const std::string& id) {
  if (const auto it = unsaved_.find(id); it != unsaved_.end()) return it->second;
  if (const auto it = fresh_.find(id); it != fresh_.end()) return it->second;
  return spool_.load(id);
}

Result<QueueManager::Entry*> QueueManager::controlEntryLocked(const std::string& id) {
  const auto it = queued_.find(id);
  if (it == queued_.end()) return Error{"no message " + printable(id, 64) + " in the queue"};
  return &it->second;
}

namespace {

QueueItem toItem(const Envelope& env, bool held, bool in_flight) {
  QueueItem item;
  item.id = env.id;
  item.sender = env.sender;
  item.recipients = env.recipients;
  item.arrival = env.arrival;
  item.size = env.size;
  item.attempts = env.attempts;
  item.next_attempt = env.next_attempt;
  item.last_error = env.last_error;
  item.route = env.route;
  item.held = held;
  item.in_flight = in_flight;
  return item;
}

}  // namespace

Result<std::vector<QueueItem>> QueueManager::list() {
  std::vector<std::pair<std::string, std::pair<bool, bool>>> ids;
  std::map<std::string, Envelope> unsaved;
  {
    std::lock_guard lock(mutex_);
    ids.reserve(queued_.size());
    for (const auto& [id, entry] : queued_) ids.push_back({id, {entry.held, in_flight_.count(id) != 0}});
    unsaved = unsaved_;
  }
  // Reading the envelopes without the lock keeps deliveries going while a
  // large queue is listed; an entry that finished meanwhile is left out.
  std::vector<QueueItem> items;
  items.reserve(ids.size());
  for (const auto& [id, state] : ids) {
    const auto u = unsaved.find(id);
    Result<Envelope> env = u != unsaved.end() ? Result<Envelope>(u->second) : spool_.load(id);
    if (!env) continue;
    items.push_back(toItem(*env, state.first, state.second));
  }
  std::sort(items.begin(), items.end(), [](const QueueItem& a, const QueueItem& b) {
    return a.arrival != b.arrival ? a.arrival < b.arrival : a.id < b.id;
  });
  return items;
}

Result<QueueItem> QueueManager::show(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto entry = controlEntryLocked(id);
  if (!entry) return entry.error();
  auto env = currentEnvelopeLocked(id);
  if (!env) return Error{"cannot read message " + id + ": " + env.error().message};
  return toItem(*env, (*entry)->held, in_flight_.count(id) != 0);
}

Status QueueManager::retry(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    auto entry = controlEntryLocked(id);
    if (!entry) return entry.error();
    Entry& e = **entry;
    if (e.held) return Error{"message " + id + " is on hold; release it to deliver it"};
    if (in_flight_.count(id) != 0) return {};  // being attempted right now
    unscheduleLocked(id, e);
    e.due = nowSeconds();
    schedule_.emplace(e.due, id);
  }
  spdlog::info("{}: retry requested by the operator", id);
  cv_.notify_all();
  return {};
}

Result<std::size_t> QueueManager::retryAll() {
  std::size_t count = 0;
  {
    std::lock_guard lock(mutex_);
    const std::int64_t now = nowSeconds();
    std::multimap<std::int64_t, std::string> rest;
    for (auto& [due, id] : schedule_) {
      auto q = queued_.find(id);
      if (q != queued_.end() && due > now) {
        q->second.due = now;
        rest.emplace(now, id);
        ++count;
      } else {
        rest.emplace(due, id);
      }
    }
    schedule_ = std::move(rest);
  }
  spdlog::info("queue: flush requested by the operator, {} deferred message(s) due now", count);
  cv_.notify_all();
  return count;
}

Status QueueManager::hold(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    auto entry = controlEntryLocked(id);
    if (!entry) return entry.error();
    Entry& e = **entry;
    if (e.held) return {};
    if (in_flight_.count(id) == 0) {
      auto env = currentEnvelopeLocked(id);
      if (!env) return Error{"cannot read message " + id + ": " + env.error().message};
      env->held = true;
      if (Status st = spool_.update(*env); !st) return Error{"cannot hold " + id + ": " + st.error().message};
      unsaved_.erase(id);
      fresh_.erase(id);
      unscheduleLocked(id, e);
    }
    e.held = true;
  }
  spdlog::info("{}: put on hold by the operator", id);
  return {};
}

Status QueueManager::release(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    auto entry = controlEntryLocked(id);
    if (!entry) return entry.error();
    Entry& e = **entry;
    if (!e.held) return {};
    if (in_flight_.count(id) == 0) {
      auto env = currentEnvelopeLocked(id);
      if (!env) return Error{"cannot read message " + id + ": " + env.error().message};
      env->held = false;
      if (Status st = spool_.update(*env); !st) {
        return Error{"cannot release " + id + ": " + st.error().message};
      }
      unsaved_.erase(id);
      fresh_.erase(id);
      e.due = nowSeconds();
      schedule_.emplace(e.due, id);
    }
    e.held = false;
  }
  spdlog::info("{}: released by the operator", id);
  cv_.notify_all();
  return {};
}

Status QueueManager::remove(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    auto entry = controlEntryLocked(id);
    if (!entry) return entry.error();
    if (in_flight_.count(id) != 0) {
      return Error{"message " + id + " is being delivered right now; try again in a moment"};
    }
    if (Status st = spool_.remove(id); !st) return Error{"cannot delete " + id + ": " + st.error().message};
    unscheduleLocked(id, **entry);
    forgetLocked(id);
  }
  spdlog::warn("{}: deleted from the queue by the operator, not delivered and not bounced", id);
  return {};
}

}  // namespace mb::queue
