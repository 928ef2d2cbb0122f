#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "queue/delivery_agent.h"
#include "queue/spool.h"

namespace mb::queue {

/// QueueManager: the simple delivery loop of the walking skeleton. Keeps the
/// ids of queued messages with their next attempt time, hands due ones to the
/// DeliveryAgent (at most max_in_flight at once), records per-recipient
/// results durably in the envelope, removes a message when every recipient is
/// done, and reschedules the rest with exponential backoff (retry_delay,
/// doubling, capped at max_retry_delay; a provider's Retry-After wins when
/// longer).
///
/// Threading: enqueue()/stop() from any thread; the loop runs on its own
/// thread started by start(); DeliveryAgent callbacks may come on any thread.
/// The scheduling core (runDue) can be driven by hand from tests with a
/// ManualClock and no thread.
class QueueManager {
 public:
  QueueManager(const config::QueueConfig& config, Spool& spool, DeliveryAgent& agent, Clock& clock);
  ~QueueManager();  // stop()

  /// Adds recovered messages, all due at once, and starts the delivery thread.
  void start(const std::vector<Envelope>& recovered);

  /// A newly committed message: attempt it now.
  void enqueue(const Envelope& env);

  /// Stops handing out new attempts, waits for those in flight (up to
  /// `grace`), and joins the thread. Messages stay in the spool.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(30));

  /// Test hook: without the thread, starts every attempt due at clock.now();
  /// returns how many were started.
  std::size_t runDue();

  /// Test and status hooks.
  std::size_t queuedCount() const;
  std::size_t inFlightCount() const;

 private:
  void loop();
  void startAttemptLocked(const std::string& id, std::unique_lock<std::mutex>& lock);
  void onAttemptDone(std::string id, DeliveryJob job, DeliveryResult result);
  std::size_t runDueLocked(std::unique_lock<std::mutex>& lock);
  // Drops a message from every in-memory table (delivered, bounced or
  // unloadable) and wakes whoever waits on the tables. mutex_ held.
  void forgetLocked(const std::string& id);
  std::int64_t nowSeconds() const;
  std::chrono::seconds backoff(int attempts) const;
  std::size_t maxInFlight() const;

  // Lets a DeliveryAgent callback that arrives after the manager is gone (an
  // attempt still running when stop()'s grace ran out) find that out instead
  // of touching freed memory.
  struct LifeGuard;

  config::QueueConfig config_;
  Spool& spool_;
  DeliveryAgent& agent_;
  Clock& clock_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::multimap<std::int64_t, std::string> schedule_;  // next attempt (unix s) -> id
  std::map<std::string, std::int64_t> queued_;         // id -> next attempt
  std::set<std::string> in_flight_;
  bool stopping_ = false;
  bool started_ = false;
  std::thread thread_;
  // Envelopes whose spool.update() failed: the next attempt starts from these
  // rather than from the stale file, so a delivered recipient is not sent again.
  std::map<std::string, Envelope> unsaved_;
  std::shared_ptr<LifeGuard> guard_;
};

}  // namespace mb::queue
