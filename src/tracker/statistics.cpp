#include "tracker/statistics.h"

#include <algorithm>

namespace mb::tracker {
namespace {

constexpr std::int64_t kMinutesPerDay = 24 * 60;
constexpr std::size_t kMinuteBuckets = static_cast<std::size_t>(kMinutesPerDay);

// Floor, not truncation: a wall clock before 1970 must still land in the
// right minute and day.
std::int64_t minuteOf(Clock::WallTime t) {
  return std::chrono::floor<std::chrono::minutes>(t.time_since_epoch()).count();
}

std::int64_t floorDiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

std::size_t slotOf(std::int64_t minute) {
  std::int64_t r = minute % kMinutesPerDay;
  if (r < 0) r += kMinutesPerDay;
  return static_cast<std::size_t>(r);
}

void add(Totals& into, const Totals& from) {
  into.accepted += from.accepted;
  into.delivered += from.delivered;
  into.deferred += from.deferred;
  into.bounced += from.bounced;
  into.rejected += from.rejected;
}

}  // namespace

Statistics::Statistics(const Clock& clock)
    : clock_(clock), started_(clock.wallNow()), minutes_(kMinuteBuckets) {
  // Reserved up front so that recording a delivery never allocates.
  recent_.reserve(kRecentSamples);
}

Totals& Statistics::minuteLocked(std::int64_t minute) {
  Minute& m = minutes_[slotOf(minute)];
  if (m.index != minute) {
    m.index = minute;
    m.totals = Totals{};
  }
  return m.totals;
}

Totals& Statistics::todayLocked(std::int64_t minute) {
  const std::int64_t day = floorDiv(minute, kMinutesPerDay);
  if (day != today_day_) {
    today_day_ = day;
    today_ = Totals{};
  }
  return today_;
}

void Statistics::accepted() {
  std::lock_guard lock(mutex_);
  const std::int64_t minute = minuteOf(clock_.wallNow());
  ++overall_.accepted;
  ++todayLocked(minute).accepted;
  ++minuteLocked(minute).accepted;
}

void Statistics::outcome(std::string_view provider, Status status,
                         std::chrono::milliseconds delivery_time, int code,
                         std::string_view enhanced, std::string_view error) {
  std::uint64_t Totals::*field = nullptr;
  switch (status) {
    case Status::Delivered:
      field = &Totals::delivered;
      break;
    case Status::Deferred:
      field = &Totals::deferred;
      break;
    case Status::Bounced:
      field = &Totals::bounced;
      break;
    case Status::Queued:
    case Status::Rejected:
      return;
  }
  if (field == nullptr) return;  // a value outside the enumerators

  std::lock_guard lock(mutex_);
  const Clock::WallTime now = clock_.wallNow();
  const std::int64_t minute = minuteOf(now);
  ++(overall_.*field);
  ++(todayLocked(minute).*field);
  ++(minuteLocked(minute).*field);

  auto it = per_provider_.find(provider);
  if (it == per_provider_.end()) it = per_provider_.emplace(std::string(provider), Totals{}).first;
  ++(it->second.*field);

  if (status == Status::Delivered) {
    const double seconds =
        static_cast<double>(std::max(delivery_time, std::chrono::milliseconds::zero()).count()) /
        1000.0;
    for (std::size_t i = 0; i < DeliveryHistogram::kBounds.size(); ++i) {
      if (seconds <= DeliveryHistogram::kBounds[i]) ++histogram_.counts[i];
    }
    ++histogram_.count;
    histogram_.sum += seconds;

    if (recent_.size() < kRecentSamples) {
      recent_.push_back(seconds);
    } else {
      recent_[recent_next_] = seconds;
    }
    recent_next_ = (recent_next_ + 1) % kRecentSamples;
  } else {
    LastError e;
    e.time = now;
    e.provider = std::string(provider);
    e.code = code;
    e.enhanced = std::string(enhanced);
    e.error = std::string(error);
    last_error_ = std::move(e);
  }
}

void Statistics::rejected(std::string_view reason) {
  std::lock_guard lock(mutex_);
  const std::int64_t minute = minuteOf(clock_.wallNow());
  ++overall_.rejected;
  ++todayLocked(minute).rejected;
  ++minuteLocked(minute).rejected;

  auto it = rejected_by_reason_.find(reason);
  if (it == rejected_by_reason_.end())
    it = rejected_by_reason_.emplace(std::string(reason), 0).first;
  ++it->second;
}

Statistics::Snapshot Statistics::snapshot() const {
  Snapshot s;
  std::vector<double> samples;
  {
    std::lock_guard lock(mutex_);
    s.now = clock_.wallNow();
    s.started = started_;
    const std::int64_t minute = minuteOf(s.now);

    s.overall = overall_;
    // Nothing may have been recorded since midnight, so the stored day can be
    // stale; a snapshot must not show yesterday's counts as today's.
    if (today_day_ == floorDiv(minute, kMinutesPerDay)) s.today = today_;
    // An unused bucket (index -1) holds only zeros, so it may pass the test.
    for (const Minute& m : minutes_) {
      if (m.index <= minute && minute - m.index < kMinutesPerDay) add(s.last_24h, m.totals);
    }
    s.per_provider = per_provider_;
    s.rejected_by_reason = rejected_by_reason_;
    s.last_error = last_error_;
    s.delivery = histogram_;
    samples = recent_;
  }

  s.uptime = std::max(std::chrono::duration_cast<std::chrono::seconds>(s.now - s.started),
                      std::chrono::seconds::zero());

  const std::uint64_t attempted = s.last_24h.delivered + s.last_24h.deferred + s.last_24h.bounced;
  if (attempted > 0) {
    s.error_rate = static_cast<double>(s.last_24h.deferred + s.last_24h.bounced) /
                   static_cast<double>(attempted);
  }

  if (!samples.empty()) {
    double sum = 0;
    for (double v : samples) sum += v;
    const std::size_t n = samples.size();
    s.avg_delivery_seconds = sum / static_cast<double>(n);
    // ceil(0.95 * n) in integers: 0.95 has no exact binary form and could
    // push the rank one off.
    const std::size_t rank = (95 * n + 99) / 100;
    auto nth = samples.begin() + static_cast<std::ptrdiff_t>(rank - 1);
    std::nth_element(samples.begin(), nth, samples.end());
    s.p95_delivery_seconds = *nth;
  }
  return s;
}

}  // namespace mb::tracker
