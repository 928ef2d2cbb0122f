#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "tracker/tracker.h"

namespace mb::tracker {

/// Message counts of one period. accepted counts messages; delivered,
/// deferred and bounced count recipient outcomes (a message to three
/// recipients that all get through adds 3 to delivered); rejected counts
/// refused attempts.
struct Totals {
  std::uint64_t accepted = 0;
  std::uint64_t delivered = 0;
  std::uint64_t deferred = 0;
  std::uint64_t bounced = 0;
  std::uint64_t rejected = 0;

  bool operator==(const Totals&) const = default;
};

/// The last delivery problem seen (a deferral or a bounce).
struct LastError {
  Clock::WallTime time;
  std::string provider;
  int code = 0;
  std::string enhanced;
  std::string error;
};

/// Delivery times (arrival to a recipient's delivery) in fixed buckets, as a
/// Prometheus histogram wants them: counts[i] is the number of deliveries
/// that took at most kBounds[i] seconds (cumulative), count and sum cover
/// every delivery (the +Inf bucket is `count`).
struct DeliveryHistogram {
  static constexpr std::array<double, 12> kBounds = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200};
  std::array<std::uint64_t, kBounds.size()> counts{};
  std::uint64_t count = 0;
  double sum = 0;  // seconds
};

/// Statistics: the relay's counters since start, kept in memory (the mail
/// log may be off, and counters must only ever grow, as Prometheus expects).
///
/// - overall: since the process started;
/// - today: since the last midnight UTC;
/// - last_24h: in the 24 hours before now, to the minute (1,440 one-minute
///   buckets in a ring, so memory is fixed);
/// - per provider: overall, for delivered / deferred / bounced (accepted and
///   rejected have no provider yet and stay 0 there);
/// - rejected per reason ("auth failed", "too big" ...), overall;
/// - delivery times: the histogram since start, and the average and p95 of
///   the last kRecentSamples deliveries (exact, from a ring of samples);
/// - the last error.
///
/// error_rate is (deferred + bounced) / (delivered + deferred + bounced) over
/// the last 24 h; 0 when nothing was attempted.
///
/// Time comes from the injected Clock (wallNow): tests move it by hand.
/// Thread-safe: one mutex, every call is short and never touches disk.
class Statistics {
 public:
  static constexpr std::size_t kRecentSamples = 1000;

  explicit Statistics(const Clock& clock);

  Statistics(const Statistics&) = delete;
  Statistics& operator=(const Statistics&) = delete;

  void accepted();
  /// One recipient's outcome of an attempt: `status` is Delivered, Deferred
  /// or Bounced (others are ignored). `delivery_time` (arrival to delivery)
  /// only for Delivered; a negative one counts as 0.
  void outcome(std::string_view provider, Status status, std::chrono::milliseconds delivery_time = {},
               int code = 0, std::string_view enhanced = {}, std::string_view error = {});
  void rejected(std::string_view reason);

  struct Snapshot {
    Clock::WallTime started;
    Clock::WallTime now;
    std::chrono::seconds uptime{0};
    Totals overall, today, last_24h;
    std::map<std::string, Totals, std::less<>> per_provider;
    std::map<std::string, std::uint64_t, std::less<>> rejected_by_reason;
    double error_rate = 0;
    std::optional<LastError> last_error;
    std::optional<double> avg_delivery_seconds;  // of the recent samples; none yet: nullopt
    std::optional<double> p95_delivery_seconds;  // nearest rank
    DeliveryHistogram delivery;
  };
  Snapshot snapshot() const;

 private:
  struct Minute {
    std::int64_t index = -1;  // minutes since the epoch this bucket holds
    Totals totals;
  };

  // The bucket of the current minute (cleared when reused); mutex held.
  Totals& minuteLocked(std::int64_t minute);
  // Today's totals, reset when the UTC day changed; mutex held.
  Totals& todayLocked(std::int64_t minute);

  const Clock& clock_;
  const Clock::WallTime started_;
  mutable std::mutex mutex_;
  Totals overall_;
  Totals today_;
  std::int64_t today_day_ = -1;  // days since the epoch `today_` counts
  std::vector<Minute> minutes_;  // 1,440, indexed by minute % 1,440
  std::map<std::string, Totals, std::less<>> per_provider_;
  std::map<std::string, std::uint64_t, std::less<>> rejected_by_reason_;
  std::optional<LastError> last_error_;
  DeliveryHistogram histogram_;
  std::vector<double> recent_;   // ring of the last kRecentSamples delivery times (s)
  std::size_t recent_next_ = 0;
};

}  // namespace mb::tracker
