#pragma once

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "base/clock.h"

namespace mb::tracker {

/// AcceptTimes: when messages were accepted, to the millisecond (the
/// envelope keeps whole seconds), for the delivery time of their first
/// attempt: most mail is delivered then, in well under a second. take()
/// hands an entry back and forgets it.
///
/// At most `capacity` entries are kept, in two generations: when the newer
/// one holds half the capacity, the older one is dropped whole and the newer
/// takes its place. So add() and take() cost the same whatever the backlog —
/// a queue of a hundred thousand messages waiting through an outage does not
/// make each new one pay for the old — and what is forgotten is always the
/// oldest half, whose delivery time the caller then takes from the
/// envelope's arrival in whole seconds.
///
/// Threading: every member from any thread.
class AcceptTimes {
 public:
  static constexpr std::size_t kDefaultCapacity = 20000;

  explicit AcceptTimes(std::size_t capacity = kDefaultCapacity);

  void add(const std::string& id, Clock::WallTime accepted);
  /// The time `id` was accepted, forgotten on the way; nullopt when unknown.
  std::optional<Clock::WallTime> take(const std::string& id);
  std::size_t size() const;

 private:
  const std::size_t generation_;  // entries of the newer generation before it turns old
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Clock::WallTime> newer_;  // mutex_
  std::unordered_map<std::string, Clock::WallTime> older_;  // mutex_
};

}  // namespace mb::tracker
