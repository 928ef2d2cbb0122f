#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace mb::policy {

/// ConnectionCounter: open client connections per client address, against
/// `smtp.max_connections_per_ip` (the server answers 421 4.7.0 beyond it;
/// cf. Postfix smtpd_client_connection_count_limit). Addresses are counted
/// by their exact text, as the server reports them. An address whose count
/// drops to zero is forgotten, so memory follows the open connections.
///
/// Meant for the I/O thread, but thread-safe (one mutex) all the same.
/// Slot is the RAII form: it releases in its destructor.
class ConnectionCounter {
 public:
  class Slot;

  explicit ConnectionCounter(std::size_t max_per_ip);

  /// Counts one more connection from `ip`; false (and nothing counted) when
  /// it already has max_per_ip.
  bool tryAcquire(const std::string& ip);
  /// Ends one connection counted by tryAcquire(). Releasing an address that
  /// holds none is ignored.
  void release(const std::string& ip);

  /// tryAcquire() wrapped in a Slot; check Slot::held().
  Slot acquire(const std::string& ip);

  std::size_t count(const std::string& ip) const;
  /// Distinct addresses with at least one connection.
  std::size_t addresses() const;
  std::size_t maxPerIp() const;
  /// A new limit (configuration reload): addresses already above it keep
  /// their connections but get no new one until they are below it.
  void setMaxPerIp(std::size_t max_per_ip);

 private:
  std::size_t max_per_ip_;  // mutex_
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::size_t> counts_;
};

/// One counted connection; releases it when destroyed. Movable, not
/// copyable. Must not outlive its ConnectionCounter.
class ConnectionCounter::Slot {
 public:
  Slot() = default;
  ~Slot() { reset(); }
  Slot(Slot&& other) noexcept;
  Slot& operator=(Slot&& other) noexcept;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  bool held() const { return counter_ != nullptr; }
  explicit operator bool() const { return held(); }
  /// Releases now (idempotent).
  void reset();

 private:
  friend class ConnectionCounter;
  Slot(ConnectionCounter* counter, std::string ip) : counter_(counter), ip_(std::move(ip)) {}

  ConnectionCounter* counter_ = nullptr;
  std::string ip_;
};

}  // namespace mb::policy
