#pragma once

#include <functional>
#include <string>

namespace mb::queue {

/// The outcome of a message's first delivery attempt, for a session that
/// waits for it (smtp.wait_for_delivery) before answering the final dot.
struct FirstAttempt {
  enum class Verdict {
    Delivered,  // every recipient settled and at least one delivered → 250
    Rejected,   // every recipient failed permanently → the 5xx below
    Deferred,   // anything else (some recipient still pending) → 250 queued
  };
  Verdict verdict = Verdict::Deferred;
  int smtp_code = 250;
  std::string enhanced = "2.0.0";
  std::string summary;    // client-safe words from the provider, may be empty
  std::string provider;
  std::string remote_id;  // the provider's message id, if it gave one
};

/// Called once, on the thread that finished the attempt, when a message
/// enqueued with it has had its first attempt. Returns true when the
/// waiting client will be told the verdict; false when the client has
/// already been answered (the wait timed out). Only a true for a Rejected
/// verdict lets the queue drop the message without a bounce: the client's
/// 5xx is the bounce.
using FirstAttemptCallback = std::function<bool(const FirstAttempt&)>;

}  // namespace mb::queue
