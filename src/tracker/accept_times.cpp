#include "tracker/accept_times.h"

#include <algorithm>
#include <utility>

namespace mb::tracker {

AcceptTimes::AcceptTimes(std::size_t capacity) : generation_(std::max<std::size_t>(1, capacity / 2)) {}

void AcceptTimes::add(const std::string& id, Clock::WallTime accepted) {
  std::lock_guard lock(mutex_);
  if (newer_.size() >= generation_) {
    older_ = std::move(newer_);
    newer_ = {};
    newer_.reserve(generation_);
  }
  newer_.insert_or_assign(id, accepted);
}

std::optional<Clock::WallTime> AcceptTimes::take(const std::string& id) {
  std::lock_guard lock(mutex_);
  for (auto* map : {&newer_, &older_}) {
    if (const auto it = map->find(id); it != map->end()) {
      const Clock::WallTime t = it->second;
      map->erase(it);
      return t;
    }
  }
  return std::nullopt;
}

std::size_t AcceptTimes::size() const {
  std::lock_guard lock(mutex_);
  return newer_.size() + older_.size();
}

}  // namespace mb::tracker
