#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "queue/envelope.h"
#include "queue/spool.h"

namespace mb::queue {

/// Bouncer: turns a message's permanent failures into delivery status
/// notifications (buildDsn) and queues each one like any other message: in
/// the spool with the null sender, so that it cannot bounce in turn, handed
/// to `enqueue` once durable. Who receives it follows `queue.bounce_to`:
/// the envelope sender, the admin address, both, or nobody. A message with
/// the null sender never gets one (RFC 5321 §4.5.5).
///
/// Threading: onBounce() may be called from any thread (the queue manager's
/// delivery callbacks); it blocks until the spool has committed the DSN.
class Bouncer {
 public:
  using Enqueue = std::function<void(const Envelope&)>;

  Bouncer(const config::QueueConfig& config, std::string hostname, Spool& spool, Clock& clock,
          Enqueue enqueue);

  /// A reloaded configuration: bounce_to, admin_address and the reporting
  /// host name for bounces from now on.
  void reconfigure(const config::QueueConfig& config, std::string hostname);

  /// For QueueManager::setOnBounce(): `failed` indexes env.recipients.
  /// False when a bounce could not be stored (the spool failed); a bounce
  /// that cannot even be built is logged and counts as done, since trying
  /// again would not help.
  bool onBounce(const Envelope& env, const std::vector<std::size_t>& failed);

 private:
  bool send(const Envelope& env, const std::vector<std::size_t>& failed, const std::string& to,
            const std::string& hostname, const std::string& from);

  std::mutex mutex_;  // guards the four below
  config::BounceTo bounce_to_;
  std::string admin_address_;
  std::string bounce_from_;
  std::string hostname_;
  Spool& spool_;
  Clock& clock_;
  Enqueue enqueue_;
};

}  // namespace mb::queue
