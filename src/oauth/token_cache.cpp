#include "oauth/token_cache.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

namespace mb::oauth {
namespace {

using std::chrono::nanoseconds;

// A fetcher is not supposed to throw (Result types on delivery paths), but if
// one did, the entry would stay "in flight" and every caller would wait
// forever; so an exception becomes a failure here.
TokenResult fetchSafely(TokenFetcher& fetcher) {
  try {
    return fetcher.fetch();
  } catch (const std::exception& e) {
    TokenFailure failure;
    failure.explanation = std::string("internal error while fetching a token: ") + e.what();
    return failure;
  } catch (...) {
    TokenFailure failure;
    failure.explanation = "internal error while fetching a token";
    return failure;
  }
}

}  // namespace

TokenCache::TokenCache(const Clock& clock, TokenCacheOptions options)
    : clock_(clock), options_(options) {}

nanoseconds TokenCache::refreshMargin(nanoseconds lifetime) const {
  if (lifetime <= nanoseconds::zero()) return nanoseconds::zero();
  const auto fraction =
      std::chrono::duration_cast<nanoseconds>(std::chrono::duration<double, std::nano>(
          static_cast<double>(lifetime.count()) * options_.refresh_fraction));
  return std::clamp<nanoseconds>(fraction, nanoseconds::zero(),
                                 std::min<nanoseconds>(options_.max_refresh_margin, lifetime));
}

nanoseconds TokenCache::backoff(const Entry& entry, const TokenFailure& failure) const {
  nanoseconds delay = options_.initial_backoff;
  for (int i = 1; i < entry.consecutive_failures && delay < options_.max_backoff; ++i) delay *= 2;
  delay = std::min<nanoseconds>(delay, options_.max_backoff);
  if (failure.retry_after) {
    delay = std::max<nanoseconds>(
        delay, std::min<nanoseconds>(*failure.retry_after, options_.max_retry_after));
  }
  return delay;
}

TokenResult TokenCache::get(const std::string& key, TokenFetcher& fetcher) {
  std::unique_lock lock(mutex_);
  Entry& entry = entries_[key];
  const auto now = clock_.steadyNow();
  const bool usable = entry.token && now < entry.usable_until;
  if (usable && now < entry.refresh_at) return *entry.token;
  if (entry.in_flight) {
    if (usable) return *entry.token;  // being refreshed; this one still serves
    const std::uint64_t seen = entry.flights;
    flight_done_.wait(lock, [&] { return entry.flights != seen; });
    return *entry.last;
  }
  if (entry.failure && now < entry.retry_at) {
    if (usable) return *entry.token;
    return *entry.failure;
  }

  entry.in_flight = true;
  lock.unlock();
  TokenResult result = fetchSafely(fetcher);
  lock.lock();
  result = finishFlight(entry, std::move(result));
  flight_done_.notify_all();
  return result;
}

std::optional<AccessToken> TokenCache::fresh(const std::string& key) const {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  const Entry& entry = it->second;
  const auto now = clock_.steadyNow();
  if (!entry.token || now >= entry.usable_until || now >= entry.refresh_at) return std::nullopt;
  return entry.token;
}

TokenResult TokenCache::finishFlight(Entry& entry, TokenResult result) {
  const auto now = clock_.steadyNow();
  entry.in_flight = false;
  ++entry.flights;
  if (result) {
    // The lifetime the endpoint granted, on the steady time line.
    const nanoseconds lifetime =
        std::max<nanoseconds>(result->expires_at - clock_.wallNow(), nanoseconds::zero());
    const nanoseconds margin = refreshMargin(lifetime);
    const nanoseconds slack = std::min<nanoseconds>(options_.max_expiry_slack, margin);
    entry.token = result.value();
    entry.refresh_at = now + lifetime - margin;
    entry.usable_until = now + lifetime - slack;
    entry.failure.reset();
    entry.consecutive_failures = 0;
  } else {
    ++entry.consecutive_failures;
    entry.failure = result.failure();
    entry.retry_at = now + backoff(entry, result.failure());
    if (entry.token && now < entry.usable_until) {
      spdlog::info(
          "oauth: token refresh failed; the current token stays in use for {} s more",
          std::chrono::duration_cast<std::chrono::seconds>(entry.usable_until - now).count());
      result = *entry.token;
    }
  }
  entry.last = result;
  return result;
}

void TokenCache::invalidate(const std::string& key, const std::string& value) {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return;
  Entry& entry = it->second;
  if (!entry.token || entry.token->value != value) return;
  entry.token.reset();
  // A refused token is news that a back-off from an earlier refresh failure
  // does not know about: the next caller should ask at once.
  entry.retry_at = {};
}

TokenCache::Summary TokenCache::summary() const {
  std::lock_guard lock(mutex_);
  const auto now = clock_.steadyNow();
  Summary s;
  for (const auto& [key, entry] : entries_) {
    ++s.keys;
    if (entry.token && now < entry.usable_until) {
      ++s.with_token;
      if (!s.soonest_expiry || entry.token->expires_at < *s.soonest_expiry) s.soonest_expiry = entry.token->expires_at;
    }
    if (entry.consecutive_failures > 0 && entry.failure) {
      ++s.failing;
      s.last_failure = entry.failure->explanation;
    }
  }
  return s;
}

void TokenCache::clear() {
  std::lock_guard lock(mutex_);
  // Entries are emptied, never erased: a thread waiting for a flight holds a
  // reference to its entry until it wakes.
  for (auto& [key, entry] : entries_) {
    entry.token.reset();
    entry.failure.reset();
    entry.retry_at = {};
    entry.consecutive_failures = 0;
  }
}

}  // namespace mb::oauth
