#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "queue/envelope.h"

namespace mb::queue {

enum class Outcome { Delivered, TemporaryFailure, PermanentFailure };

/// What happened to one recipient in one delivery attempt.
struct RecipientResult {
  Outcome outcome = Outcome::TemporaryFailure;
  int smtp_code = 451;                 // 250, 4xx or 5xx to report
  std::string enhanced = "4.3.0";
  std::string detail;                  // for the log; may be long, never secret
  std::optional<std::chrono::seconds> retry_after;  // a provider's Retry-After
  std::string summary;                 // for the SMTP client: a few fixed words chosen by
                                       // the provider ("sender not allowed to send as this
                                       // mailbox"), never remote text; may be empty
  // The provider asked to slow down (HTTP 429): the service works, so this
  // does not count towards the circuit breaker.
  bool throttled = false;
};

/// One attempt: the envelope, the indexes of the recipients still pending
/// (into envelope.recipients), and where the content is.
struct DeliveryJob {
  Envelope envelope;
  std::vector<std::size_t> recipients;
  std::filesystem::path content;
};

/// results[i] belongs to job.recipients[i]; a result of another length is
/// treated as a temporary failure for everyone.
struct DeliveryResult {
  std::vector<RecipientResult> results;
  std::string provider;                // which provider handled it
  std::string remote_id;               // provider's message / request id, if any
};

/// What the queue manager hands attempts to (implemented by delivery::Router).
/// deliver() must call done exactly once, from any thread, possibly before
/// returning.
class DeliveryAgent {
 public:
  virtual ~DeliveryAgent() = default;
  using DoneCallback = std::function<void(DeliveryResult)>;
  virtual void deliver(const DeliveryJob& job, DoneCallback done) = 0;
};

}  // namespace mb::queue
