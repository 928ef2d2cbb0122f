#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "queue/delivery_agent.h"
#include "queue/first_attempt.h"
#include "queue/queue_control.h"
#include "queue/spool.h"

namespace mb::queue {

/// QueueManager: the delivery loop. Keeps the ids of queued messages with
/// their next attempt time, sender and route, hands due ones to the
/// DeliveryAgent (at most max_in_flight at once), records per-recipient
/// results durably in the envelope, removes a message when every recipient is
/// done, and reschedules the rest with exponential backoff (retry_delay,
/// doubling, capped at max_retry_delay, times a random factor in [0.8, 1.2]
/// kept under the cap; a provider's Retry-After wins when longer).
///
/// Also: expiry (recipients still pending after max_lifetime fail with
/// 554 5.4.7, RFC 3463 §3.5), pacing per (route, sender mailbox) — at most
/// max_in_flight_per_mailbox attempts at once and max_per_minute_per_mailbox
/// started in any 62 s window (a minute and a margin), as Graph's per-mailbox limits ask — and a
/// circuit breaker per route (closed → open after breaker_failures
/// all-temporary attempts in a row → half-open probe after breaker_cooldown).
/// A message held back by pacing or an open breaker simply stays queued: no
/// attempt is counted and nothing is written.
///
/// Threading: enqueue()/stop() from any thread; the loop runs on its own
/// thread started by start(); DeliveryAgent callbacks may come on any thread.
/// The scheduling core (runDue) can be driven by hand from tests with a
/// ManualClock and no thread.
class QueueManager : public QueueControl {
 public:
  QueueManager(const config::QueueConfig& config, Spool& spool, DeliveryAgent& agent, Clock& clock);
  ~QueueManager() override;  // stop()

  /// The route (provider name) a message will take, for pacing and the
  /// breaker from its first attempt on: the same rules the delivery agent
  /// applies (app/ passes policy::RouteRules). Without one, a message's
  /// route is the provider that answered its last attempt. Before start().
  using RouteFunction = std::function<std::string(const Envelope&)>;
  void setRouteFunction(RouteFunction route) { route_of_ = std::move(route); }

  /// Adds recovered messages, all due at once, and starts the delivery thread.
  void start(const std::vector<Envelope>& recovered);

  /// A newly committed message: attempt it now. With `on_first`, reports
  /// the first attempt's outcome (see FirstAttemptCallback). A message held
  /// back by pacing or an open breaker simply has its first attempt later;
  /// the caller's own timeout covers that.
  void enqueue(const Envelope& env, FirstAttemptCallback on_first = {});

  /// Stops handing out new attempts, waits for those in flight (up to
  /// `grace`), and joins the thread. Messages stay in the spool.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(30));

  /// A reloaded configuration (SIGHUP): retry delays, lifetime, pacing,
  /// breaker and max_in_flight judge every decision from now on; attempts
  /// in flight and next-attempt times already set stay as they are.
  void reconfigure(const config::QueueConfig& config);

  /// Test hook: without the thread, starts every attempt due at clock.now();
  /// returns how many were started.
  std::size_t runDue();

  /// Test and status hooks.
  std::size_t queuedCount() const;
  std::size_t inFlightCount() const;
  /// The arrival (unix s) of the oldest queued message; 0 when none.
  std::int64_t oldestArrival() const;

  /// "closed", "open" or "half-open" (cool-down over, probe allowed or
  /// running). Routes never seen are "closed". An empty route is "default".
  std::string breakerState(const std::string& route) const;

  /// Called once per message after its final outcome when at least one
  /// recipient failed permanently (in any attempt, expiry included), with
  /// the indexes of those recipients into env.recipients. Runs on the thread
  /// that reported the result, without the manager's lock. Set before
  /// start(); DSN creation plugs in here. Returns false when a bounce could
  /// not be stored (a full disk): the message then stays queued, and its
  /// next attempt, after the usual backoff, only tries the bounce again.
  using BounceCallback = std::function<bool(const Envelope& env, std::vector<std::size_t> failed)>;
  void setOnBounce(BounceCallback cb);

  /// Called after every attempt once its results are applied (expiry
  /// included): `env` holds each recipient's new state, `recipients` the
  /// indexes the attempt was about, `result` what the provider said. Runs on
  /// the thread that reported the result, without the manager's lock; must
  /// not block (the tracker only queues an event). Set before start().
  using AttemptObserver =
      std::function<void(const Envelope& env, const std::vector<std::size_t>& recipients, const DeliveryResult& result)>;
  void setAttemptObserver(AttemptObserver observer);

  // QueueControl
  Result<std::vector<QueueItem>> list() override;
  Result<QueueItem> show(const std::string& id) override;
  Status retry(const std::string& id) override;
  Result<std::size_t> retryAll() override;
  Status hold(const std::string& id) override;
  Status release(const std::string& id) override;
  Status remove(const std::string& id) override;

  /// The randomness of the backoff jitter: returns a value in [0, 1] (values
  /// outside are clamped); the factor is 0.8 + 0.4·value. Defaults to a
  /// std::mt19937_64 seeded from std::random_device. For tests.
  void setRandom(std::function<double()> unit);

 private:
  std::string routeOf(const Envelope& env) const { return route_of_ ? route_of_(env) : env.route; }

  RouteFunction route_of_;
  // What the schedule needs to know about a queued message without loading
  // its envelope.
  struct Entry {
    std::int64_t due = 0;  // next attempt, unix s
    std::string mailbox;   // sender, lower-cased; "" for the null sender
    std::string route;     // envelope.route; "" until routed
    bool held = false;     // not in schedule_ until released
    std::int64_t arrival = 0;  // unix s, for the status page
  };
  // An attempt in flight: which pacing slot and breaker it holds.
  struct Attempt {
    std::pair<std::string, std::string> pace_key;  // (route, mailbox)
    std::string route;
    bool probe = false;  // the half-open probe of `route`
  };
  struct Pace {
    std::size_t in_flight = 0;
    std::deque<std::int64_t> starts;  // start times within the last 60 s, oldest first
  };
  enum class BreakerState { Closed, Open, HalfOpen };
  struct Breaker {
    BreakerState state = BreakerState::Closed;
    std::size_t failures = 0;  // consecutive transient attempts
    std::int64_t open_until = 0;
    bool probe_in_flight = false;
  };
  static constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();


  void loop();
  void startAttemptLocked(const std::string& id, Attempt attempt, std::unique_lock<std::mutex>& lock);
  void onAttemptDone(std::string id, DeliveryJob job, DeliveryResult result);
  std::size_t runDueLocked(std::unique_lock<std::mutex>& lock);
  // When the entry may start: `now` if it may start now, a later time when
  // a window or a cool-down opens then, kNever when it waits for a slot to
  // free. mutex_ held.
  std::int64_t readyAtLocked(const Entry& entry, std::int64_t now);
  // The earliest time anything queued may start (kNever: only a finished
  // attempt can change that). mutex_ held.
  std::int64_t nextWakeLocked();
  // Gives back the pacing slot of an attempt and feeds its outcome to the
  // breaker: true = transient (all recipients temporary), false = the
  // provider answered, nullopt = no verdict. mutex_ held.
  void releaseLocked(const std::string& id, const std::string& provider, std::optional<bool> transient);
  Breaker& breakerLocked(const std::string& route);
  // Drops a message from every in-memory table (delivered, bounced or
  // unloadable) and wakes whoever waits on the tables. mutex_ held.
  void forgetLocked(const std::string& id);
  // Removes the schedule_ entry of a queued message, if it has one. mutex_ held.
  void unscheduleLocked(const std::string& id, const Entry& entry);
  // The envelope as the queue knows it: the unsaved copy if an update
  // failed, else the spool's. mutex_ held.
  Result<Envelope> currentEnvelopeLocked(const std::string& id);
  // Looks a message up for a control command; the error names the id. mutex_ held.
  Result<Entry*> controlEntryLocked(const std::string& id);
  // Records the outcome of a first attempt for a waiting session; true when
  // the session took a Rejected verdict (no bounce then).
  bool reportFirstAttempt(const std::string& id, const Envelope& env, const DeliveryJob& job,
                          const DeliveryResult& result);
  std::int64_t nowSeconds() const;
  std::chrono::seconds backoff(int attempts) const;  // without jitter
  std::chrono::seconds jitteredLocked(std::chrono::seconds base);
  std::size_t maxInFlight() const;

  // Lets a DeliveryAgent callback that arrives after the manager is gone (an
  // attempt still running when stop()'s grace ran out) find that out instead
  // of touching freed memory.
  struct LifeGuard;

  config::QueueConfig config_;  // mutex_ (reconfigure)
  Spool& spool_;
  DeliveryAgent& agent_;
  Clock& clock_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::multimap<std::int64_t, std::string> schedule_;  // next attempt (unix s) -> id
  std::map<std::string, Entry> queued_;                // id -> schedule data
  std::map<std::string, Attempt> in_flight_;
  std::map<std::pair<std::string, std::string>, Pace> pace_;
  std::map<std::string, Breaker, std::less<>> breakers_;
  BounceCallback on_bounce_;
  AttemptObserver on_attempt_;
  std::function<double()> random_;
  std::mt19937_64 rng_;
  bool idle_wait_ = false;  // the loop sleeps without a deadline on an empty schedule
  bool stopping_ = false;
  bool started_ = false;
  std::thread thread_;
  // Envelopes whose spool.update() failed: the next attempt starts from these
  // rather than from the stale file, so a delivered recipient is not sent again.
  std::map<std::string, Envelope> unsaved_;
  // Envelopes just enqueued, the same as their files: the first attempt
  // starts from these instead of reading the file back. Bounded; a message
  // without one is read from the spool.
  std::map<std::string, Envelope> fresh_;
  static constexpr std::size_t kMaxFresh = 1024;
  // Sessions waiting for a message's first attempt (smtp.wait_for_delivery).
  std::map<std::string, FirstAttemptCallback> waiters_;
  std::shared_ptr<LifeGuard> guard_;
};

}  // namespace mb::queue
