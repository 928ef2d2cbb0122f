#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "queue/envelope.h"

namespace mb::queue {

/// One line of `mailbridge queue list`.
struct QueueItem {
  std::string id;
  std::string sender;            // "" = null sender (a bounce)
  std::vector<RecipientEntry> recipients;
  std::int64_t arrival = 0;      // unix seconds
  std::uint64_t size = 0;
  int attempts = 0;
  std::int64_t next_attempt = 0; // unix seconds; 0 = now
  std::string last_error;
  std::string route;
  bool held = false;
  bool in_flight = false;        // a delivery attempt is running right now
};

/// QueueControl: what an administrator may do to the running queue, through
/// the queue's owner and never behind its back (DESIGN: "the CLI and the web
/// UI reach the queue through its API, never the files"). Implemented by
/// QueueManager; served by admin::ControlServer on a local socket (and later
/// by the admin HTTP API).
///
/// Errors name the problem in words fit for an operator: "no message
/// 0123... in the queue", "... is being delivered right now; try again".
/// Every call is thread-safe and may block on disk for a moment.
class QueueControl {
 public:
  virtual ~QueueControl() = default;

  /// Every queued message, oldest arrival first. Reads the envelopes from
  /// the spool, so it costs one file read per message.
  virtual Result<std::vector<QueueItem>> list() = 0;

  /// One message's envelope, as stored.
  virtual Result<QueueItem> show(const std::string& id) = 0;

  /// Makes a deferred message due now (backoff forgotten for this attempt;
  /// pacing and the circuit breaker still apply). A held message stays held.
  virtual Status retry(const std::string& id) = 0;

  /// retry() for every queued message that is not held (`flush`). Returns
  /// how many became due.
  virtual Result<std::size_t> retryAll() = 0;

  /// Keeps a message from being attempted until release(); durable (the
  /// envelope records it), so it survives a restart. An attempt already
  /// running finishes.
  virtual Status hold(const std::string& id) = 0;

  /// Undoes hold(); the message becomes due now.
  virtual Status release(const std::string& id) = 0;

  /// Deletes a message without delivering it and without a bounce. Refused
  /// while an attempt is running.
  virtual Status remove(const std::string& id) = 0;
};

}  // namespace mb::queue
