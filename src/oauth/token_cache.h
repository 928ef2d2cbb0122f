#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "base/clock.h"
#include "oauth/token_source.h"

namespace mb::oauth {

/// Tuning of a TokenCache; the defaults are the documented behaviour.
struct TokenCacheOptions {
  /// A token is refreshed once less than min(max_refresh_margin,
  /// refresh_fraction × lifetime) of it remains: 5 minutes before the end of
  /// an Entra token (3599 s), 6 s before the end of a 60 s token.
  std::chrono::seconds max_refresh_margin{300};
  double refresh_fraction = 0.10;
  /// It is handed out no later than min(max_expiry_slack, margin) before it
  /// expires, so a request that takes it still has time to use it.
  std::chrono::seconds max_expiry_slack{30};
  /// After a failed fetch, callers get that failure (or the old token while it
  /// lasts) until the back-off ends: initial_backoff, doubled per further
  /// consecutive failure up to max_backoff. A Retry-After from the endpoint
  /// lengthens it, up to max_retry_after.
  std::chrono::seconds initial_backoff{5};
  std::chrono::seconds max_backoff{60};
  std::chrono::seconds max_retry_after{300};
};

/// TokenCache: access tokens kept per key (authority, tenant, client, scope,
/// and later user; see TokenFetcher::cacheKey()), shared by every
/// CachedTokenSource built on it.
///
/// get() returns the cached token while it is fresh. When it is due for
/// refresh (see TokenCacheOptions) or missing, one caller fetches while the
/// others either keep using the old token, if it is still usable, or wait for
/// that one fetch and get its result — success or failure (single flight:
/// however many threads ask at once, one request goes out). A failure is not
/// kept beyond its back-off; a refresh that fails while the old token is
/// still usable hands out the old token. invalidate() drops a token that a
/// resource server refused so that the next get() fetches anew, back-off or
/// not.
///
/// Decisions use the Clock's steady time, so a step of the wall clock does
/// not expire or prolong tokens; AccessToken::expires_at is only reported.
///
/// Threading: every member may be called from any number of threads at once.
/// get() blocks while a fetch for its key is in flight (bounded by the
/// fetcher's HTTP timeout); fetches for different keys run in parallel.
/// The fetcher must outlive the get() call; it is called without the lock.
class TokenCache {
 public:
  explicit TokenCache(const Clock& clock, TokenCacheOptions options = {});
  TokenCache(const TokenCache&) = delete;
  TokenCache& operator=(const TokenCache&) = delete;

  TokenResult get(const std::string& key, TokenFetcher& fetcher);

  /// The token get() would return at once without fetching: held, usable
  /// and not yet due for refresh. Never blocks on a fetch.
  std::optional<AccessToken> fresh(const std::string& key) const;

  /// Drops the cached token for `key` if it is still `value` (a refreshed one
  /// stays) and lifts any back-off, so that the next get() fetches.
  void invalidate(const std::string& key, const std::string& value);

  /// Forgets every token and failure (configuration reload); a fetch in
  /// flight still delivers its result to its callers and the cache.
  void clear();

  /// What the cache holds, for the status page: every key taken together.
  struct Summary {
    std::size_t keys = 0;             // keys asked for so far
    std::size_t with_token = 0;       // of which hold a token now
    std::size_t failing = 0;          // of which failed their last fetch
    std::string last_failure;         // the explanation of one failing key's last failure
    std::optional<std::chrono::system_clock::time_point> soonest_expiry;  // of the tokens held
  };
  Summary summary() const;

  /// How long before expiry a token of `lifetime` is refreshed.
  std::chrono::nanoseconds refreshMargin(std::chrono::nanoseconds lifetime) const;

 private:
  struct Entry {
    std::optional<AccessToken> token;
    Clock::SteadyTime refresh_at{};
    Clock::SteadyTime usable_until{};
    bool in_flight = false;
    std::uint64_t flights = 0;        // finished fetches
    std::optional<TokenResult> last;  // what the last fetch's caller got
    std::optional<TokenFailure> failure;
    Clock::SteadyTime retry_at{};
    int consecutive_failures = 0;
  };

  TokenResult finishFlight(Entry& entry, TokenResult result);
  std::chrono::nanoseconds backoff(const Entry& entry, const TokenFailure& failure) const;

  const Clock& clock_;
  const TokenCacheOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable flight_done_;
  std::map<std::string, Entry> entries_;  // node-based: references stay valid
};

}  // namespace mb::oauth
