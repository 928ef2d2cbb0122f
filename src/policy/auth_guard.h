#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/clock.h"
#include "config/config.h"

namespace mb::policy {

/// AuthGuard: brute-force protection for SMTP AUTH. It counts failed
/// authentications per client address and per user name within a sliding
/// window; when either count reaches its limit, the client address that
/// just failed is locked out for `lockout` (the server then answers
/// 421 4.7.0 / refuses AUTH; cf. Postfix smtpd_client_auth_rate_limit).
/// A user name is never locked itself, so an attacker cannot lock a real
/// user out: only the addresses that fail against it are. A success clears
/// the user's count (not the address's, so one valid account does not
/// reset a spray against the others).
///
/// Addresses are grouped as a client would be: IPv4 per address (an
/// IPv4-mapped IPv6 address counts as its IPv4 address), IPv6 per /64,
/// since one host commonly holds a whole /64. Loopback is not exempt.
/// Memory is bounded: entries older than the window (and lockout) are
/// pruned, and each table holds at most `max_entries`, dropping the least
/// recently failed entry beyond that. User names are counted by their first
/// 256 bytes.
///
/// Time comes from the injected Clock (steadyNow). Thread-safe: one mutex
/// guards everything; each call is short.
class AuthGuard {
 public:
  enum class Verdict { Continue, LockOut };

  /// The limits; see `auth:` in docs/configuration.md.
  struct Params {
    std::size_t max_failures_per_ip = 5;
    std::size_t max_failures_per_user = 10;
    std::chrono::seconds window{900};   // failures older than this are forgotten
    std::chrono::seconds lockout{900};  // how long a client stays locked out
    std::size_t max_entries = 100000;   // per table (clients, user names)
  };

  AuthGuard(Params params, const Clock& clock);
  AuthGuard(const config::AuthConfig& auth, const Clock& clock)
      : AuthGuard(Params{auth.max_failures_per_ip, auth.max_failures_per_user, auth.failure_window,
                         auth.lockout},
                  clock) {}

  /// New limits (configuration reload). Failures already counted and
  /// lockouts already running stay; the new limits judge what comes next.
  void setParams(Params params);

  /// True while `ip` is locked out.
  bool locked(std::string_view ip);

  /// Counts one failed authentication of `user` from `ip`. LockOut when
  /// this failure brought the address's or the user's count to its limit;
  /// the address is locked from now on.
  Verdict recordFailure(std::string_view ip, std::string_view user);

  /// A successful authentication: forgets the failures counted for `user`.
  void recordSuccess(std::string_view ip, std::string_view user);

  /// Entries held, for tests and metrics.
  std::size_t trackedClients() const;
  std::size_t trackedUsers() const;

  /// The key an address is counted under: "192.0.2.7", "2001:db8:1:2::/64";
  /// text that is not an address is used as it is (cut at 256 bytes).
  static std::string clientKey(std::string_view ip);

 private:
  using Time = Clock::SteadyTime;

  struct Entry {
    std::deque<Time> failures;  // oldest first, at most the limit
    Time locked_until{};        // clients only
  };

  /// Entries in the order of their last failure (oldest first), with an
  /// index by key; the oldest go first when pruning or when full.
  class Table {
   public:
    Entry* find(std::string_view key);
    /// The entry for `key`, created if needed, made the newest.
    Entry& touch(std::string_view key, Time now, std::size_t max_entries);
    void erase(std::string_view key);
    /// Drops the entries last touched at or before `cutoff`.
    void pruneUntil(Time cutoff);
    std::size_t size() const { return index_.size(); }

   private:
    struct Node {
      std::string key;
      Time touched;
      Entry entry;
    };
    std::list<Node> order_;  // stable nodes: the index's keys view into them
    std::unordered_map<std::string_view, std::list<Node>::iterator> index_;
  };

  void prune(Time now);
  static void countFailure(Entry& e, Time now, std::chrono::seconds window, std::size_t limit);

  const Clock& clock_;
  Params limits_;  // mutex_
  mutable std::mutex mutex_;
  Table clients_;
  Table users_;
};

}  // namespace mb::policy
