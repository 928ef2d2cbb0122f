#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "tracker/statistics.h"
#include "tracker/tracker.h"

namespace mb::queue {
class QueueControl;
}

namespace mb::admin {

/// What app/ knows of one provider right now.
struct ProviderState {
  std::string name;
  std::string type;                // graph, gmail, smtp, outbox
  std::string breaker = "closed";  // closed, open, half-open
  // The access token: "ok" (one is held), "failing" (the last fetch
  // failed), "not yet" (none fetched so far) or "none" (the provider needs no
  // OAuth token).
  std::string token = "none";
  std::string token_error;          // why the last fetch failed
  std::int64_t token_expires = 0;   // unix s; 0: none held
  std::int64_t secret_expires = 0;  // client secret or certificate, unix s; 0: unknown
};

/// The relay's live state besides the statistics, gathered by app/ on each
/// request (cheap: counters and flags, no disk scan).
struct LiveStatus {
  std::string version;
  std::size_t queue_depth = 0;  // messages queued, held ones included
  std::size_t in_flight = 0;
  std::int64_t oldest_arrival = 0;  // unix s; 0: the queue is empty
  bool queue_writable = true;       // the spool accepts files and has room
  std::string queue_problem;        // why not
  std::vector<ProviderState> providers;
  bool tracker_enabled = false;
  tracker::Health tracker;
};

/// Api: the one implementation of every administrative request, behind both
/// the control socket (`mailbridge queue|log|status`) and the admin HTTP
/// server. A request is a JSON object with a "command" (the control
/// protocol, control_protocol.h); the queue commands are answered by
/// handleRequest(), and these here:
///
///   {"command":"status"}
///     → {"ok":true,"status":STATUS}
///   {"command":"log.search","since":UNIX,"until":UNIX,"sender":S,
///    "recipient":S,"subject":S,"status":"delivered","text":S,
///    "limit":N,"offset":N}                       (every field optional)
///     → {"ok":true,"total":N,"messages":[ROW...]}
///   {"command":"log.show","id":"ID"}
///     → {"ok":true,"history":{"message":ROW,"recipients":[...],"events":[...]}}
///   {"command":"log.rejected","limit":N}
///     → {"ok":true,"rejections":[...]}
///
/// Log commands answer {"ok":false,"error":"the mail log is off ..."} when
/// tracker.retention_days is -1 or its database could not be opened.
/// Times in replies are unix seconds. See docs/operations.md for every field.
///
/// Threading: handle(), metrics() and readiness() may be called from any
/// thread at once; they take what they need under the neighbours' own locks.
class Api {
 public:
  using LiveFunction = std::function<LiveStatus()>;

  /// `log` may be null (the mail log is off). Every reference must outlive
  /// the Api.
  Api(queue::QueueControl& queue, const tracker::Tracker* log, const tracker::Statistics& stats,
      LiveFunction live);

  /// One request line → one reply line (no newline). Never throws.
  std::string handle(std::string_view request) const;

  /// The statistics and live state in the Prometheus text format (0.0.4).
  /// Labels carry provider names, statuses and reasons only: never an
  /// address or a subject.
  std::string metrics() const;

  struct Readiness {
    bool ready = true;
    std::vector<std::string> problems;  // why not, for people
  };
  /// Ready unless the queue cannot be written or every provider's circuit
  /// is open.
  Readiness readiness() const;

 private:
  queue::QueueControl& queue_;
  const tracker::Tracker* log_;
  const tracker::Statistics& stats_;
  LiveFunction live_;
};

/// Prometheus text for `snapshot` and `live`; Api::metrics() without the
/// gathering, for tests.
std::string renderMetrics(const tracker::Statistics::Snapshot& snapshot, const LiveStatus& live);

/// The readiness verdict for `live`; Api::readiness() without the gathering.
Api::Readiness judgeReadiness(const LiveStatus& live);

}  // namespace mb::admin
