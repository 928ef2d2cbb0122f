#include "policy/connection_counter.h"

#include <utility>

namespace mb::policy {

ConnectionCounter::ConnectionCounter(std::size_t max_per_ip) : max_per_ip_(max_per_ip) {}

bool ConnectionCounter::tryAcquire(const std::string& ip) {
  std::lock_guard lock(mutex_);
  auto it = counts_.find(ip);
  if (it == counts_.end()) {
    if (max_per_ip_ == 0) return false;
    counts_.emplace(ip, 1);
    return true;
  }
  if (it->second >= max_per_ip_) return false;
  ++it->second;
  return true;
}

std::size_t ConnectionCounter::maxPerIp() const {
  std::lock_guard lock(mutex_);
  return max_per_ip_;
}

void ConnectionCounter::setMaxPerIp(std::size_t max_per_ip) {
  std::lock_guard lock(mutex_);
  max_per_ip_ = max_per_ip;
}

void ConnectionCounter::release(const std::string& ip) {
  std::lock_guard lock(mutex_);
  const auto it = counts_.find(ip);
  if (it == counts_.end()) return;
  if (--it->second == 0) counts_.erase(it);
}

ConnectionCounter::Slot ConnectionCounter::acquire(const std::string& ip) {
  if (!tryAcquire(ip)) return Slot();
  return Slot(this, ip);
}

std::size_t ConnectionCounter::count(const std::string& ip) const {
  std::lock_guard lock(mutex_);
  const auto it = counts_.find(ip);
  return it == counts_.end() ? 0 : it->second;
}

std::size_t ConnectionCounter::addresses() const {
  std::lock_guard lock(mutex_);
  return counts_.size();
}

ConnectionCounter::Slot::Slot(Slot&& other) noexcept
    : counter_(std::exchange(other.counter_, nullptr)), ip_(std::move(other.ip_)) {}

ConnectionCounter::Slot& ConnectionCounter::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    reset();
    counter_ = std::exchange(other.counter_, nullptr);
    ip_ = std::move(other.ip_);
  }
  return *this;
}

void ConnectionCounter::Slot::reset() {
  if (counter_ != nullptr) {
    counter_->release(ip_);
    counter_ = nullptr;
  }
}

}  // namespace mb::policy
