#pragma once

#include <atomic>
#include <chrono>

namespace mb {

/// Clock: the time source every scheduler and timestamp goes through, so that
/// tests can move time by hand. wallNow() is for timestamps shown to people and
/// stored in envelopes; steadyNow() is for deadlines. Implementations are
/// thread-safe.
class Clock {
 public:
  using WallTime = std::chrono::system_clock::time_point;
  using SteadyTime = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  virtual WallTime wallNow() const = 0;
  virtual SteadyTime steadyNow() const = 0;
};

/// The real clocks.
class SystemClock final : public Clock {
 public:
  WallTime wallNow() const override { return std::chrono::system_clock::now(); }
  SteadyTime steadyNow() const override { return std::chrono::steady_clock::now(); }

  /// A process-wide instance, for the composition root.
  static SystemClock& instance();
};

/// A clock that moves only when told to; for tests. Both time lines advance
/// together.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(WallTime start = WallTime(std::chrono::seconds(1'800'000'000)))
      : wall_(start.time_since_epoch().count()) {}

  WallTime wallNow() const override { return WallTime(WallTime::duration(wall_.load())); }
  SteadyTime steadyNow() const override { return SteadyTime(SteadyTime::duration(steady_.load())); }

  void advance(std::chrono::nanoseconds d) {
    wall_ += std::chrono::duration_cast<WallTime::duration>(d).count();
    steady_ += std::chrono::duration_cast<SteadyTime::duration>(d).count();
  }

 private:
  std::atomic<WallTime::rep> wall_;
  std::atomic<SteadyTime::rep> steady_{
      std::chrono::duration_cast<SteadyTime::duration>(std::chrono::hours(1000)).count()};
};

}  // namespace mb
