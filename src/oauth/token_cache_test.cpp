#include "oauth/token_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "oauth/cached_token_source.h"
#include "oauth/entra_client_credentials.h"
#include "http/testing/fake_http_client.h"

namespace mb::oauth {
namespace {

using namespace std::chrono_literals;

// A TokenFetcher that hands out tokens "t1", "t2", ... valid for `lifetime`,
// or queued failures; optionally blocks until released.
class FakeFetcher final : public TokenFetcher {
 public:
  FakeFetcher(const Clock& clock, std::chrono::seconds lifetime)
      : clock_(clock), lifetime_(lifetime) {}

  TokenResult fetch() override {
    std::unique_lock lock(mutex_);
    ++calls_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return !held_; });
    if (throw_) throw std::runtime_error("boom");
    if (!failures_.empty()) {
      TokenFailure f = failures_.front();
      failures_.pop_front();
      return f;
    }
    return AccessToken{"t" + std::to_string(++issued_), clock_.wallNow() + lifetime_};
  }
  std::string cacheKey() const override { return "fake"; }

  void fail(TokenFailure f) {
    std::lock_guard lock(mutex_);
    failures_.push_back(std::move(f));
  }
  void failWith(bool retryable, std::optional<std::chrono::seconds> retry_after = {}) {
    TokenFailure f;
    f.retryable = retryable;
    f.explanation = "fake failure";
    f.retry_after = retry_after;
    fail(f);
  }
  void setThrow(bool t) {
    std::lock_guard lock(mutex_);
    throw_ = t;
  }
  void hold() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  void release() {
    std::lock_guard lock(mutex_);
    held_ = false;
    changed_.notify_all();
  }
  bool waitForCalls(int n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] { return calls_ >= n; });
  }
  int calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  const Clock& clock_;
  const std::chrono::seconds lifetime_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<TokenFailure> failures_;
  int calls_ = 0;
  int issued_ = 0;
  bool held_ = false;
  bool throw_ = false;
};

std::string valueOf(const TokenResult& r) {
  return r ? r->value : "failure: " + r.failure().explanation;
}

TEST(TokenCache, RefreshMarginRule) {
  ManualClock clock;
  TokenCache cache(clock);
  EXPECT_EQ(cache.refreshMargin(3599s), 300s);  // 5 minutes is smaller than 10 %
  EXPECT_EQ(cache.refreshMargin(3000s), 300s);
  EXPECT_EQ(cache.refreshMargin(600s), 60s);  // 10 % is smaller
  EXPECT_EQ(cache.refreshMargin(60s), 6s);
  EXPECT_EQ(cache.refreshMargin(0s), 0s);
  EXPECT_EQ(cache.refreshMargin(-5s), 0s);
}

TEST(TokenCache, SummaryCountsTokensAndFailures) {
  ManualClock clock;
  TokenCache cache(clock);
  EXPECT_EQ(cache.summary().keys, 0u);
  FakeFetcher good(clock, 3600s);
  FakeFetcher bad(clock, 600s);
  ASSERT_TRUE(cache.get("good", good));
  bad.failWith(false);
  ASSERT_FALSE(cache.get("bad", bad));
  auto s = cache.summary();
  EXPECT_EQ(s.keys, 2u);
  EXPECT_EQ(s.with_token, 1u);
  EXPECT_EQ(s.failing, 1u);
  EXPECT_EQ(s.last_failure, "fake failure");
  ASSERT_TRUE(s.soonest_expiry);
  EXPECT_EQ(*s.soonest_expiry, clock.wallNow() + 3600s);

  // A later success clears the failure; an expired token is not counted.
  clock.advance(120s);
  ASSERT_TRUE(cache.get("bad", bad));
  s = cache.summary();
  EXPECT_EQ(s.failing, 0u);
  EXPECT_EQ(s.with_token, 2u);
  EXPECT_EQ(*s.soonest_expiry, clock.wallNow() + 600s);
  clock.advance(3600s);
  EXPECT_EQ(cache.summary().with_token, 0u);
  EXPECT_FALSE(cache.summary().soonest_expiry);
}

TEST(TokenCache, SecondCallMakesNoRequest) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  EXPECT_EQ(fetcher.calls(), 1);
}

TEST(TokenCache, RefreshesAheadOfExpiry) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  auto first = cache.get("k", fetcher);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->expires_at, clock.wallNow() + 3600s);

  clock.advance(3600s - 300s - 1s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  EXPECT_EQ(fetcher.calls(), 1);
  clock.advance(1s);  // 5 minutes left: due
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");
  EXPECT_EQ(fetcher.calls(), 2);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");
  EXPECT_EQ(fetcher.calls(), 2);
}

TEST(TokenCache, FreshIsTheHeldTokenUntilARefreshIsDue) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  EXPECT_FALSE(cache.fresh("k"));  // nothing held yet; fresh() never fetches
  EXPECT_EQ(fetcher.calls(), 0);
  ASSERT_TRUE(cache.get("k", fetcher));
  ASSERT_TRUE(cache.fresh("k"));
  EXPECT_EQ(cache.fresh("k")->value, "t1");
  EXPECT_FALSE(cache.fresh("other"));

  clock.advance(3600s - 300s - 1s);
  EXPECT_TRUE(cache.fresh("k"));
  clock.advance(1s);  // due for refresh: only get() may hand it out now
  EXPECT_FALSE(cache.fresh("k"));
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");
  EXPECT_EQ(cache.fresh("k")->value, "t2");

  cache.invalidate("k", "t2");
  EXPECT_FALSE(cache.fresh("k"));
  EXPECT_EQ(fetcher.calls(), 2);

  // Through the source a provider holds.
  auto source_fetcher = std::make_unique<FakeFetcher>(clock, 3600s);
  CachedTokenSource source(std::make_shared<TokenCache>(clock), std::move(source_fetcher));
  EXPECT_FALSE(source.cached());
  ASSERT_TRUE(source.token());
  ASSERT_TRUE(source.cached());
  EXPECT_EQ(source.cached()->value, "t1");
}

TEST(TokenCache, ShortLivedTokensUseTenPercent) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 60s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  clock.advance(53s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  clock.advance(1s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");
}

TEST(TokenCache, KeysAreIndependent) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher a(clock, 3600s);
  FakeFetcher b(clock, 3600s);
  EXPECT_EQ(valueOf(cache.get("a", a)), "t1");
  EXPECT_EQ(valueOf(cache.get("b", b)), "t1");
  EXPECT_EQ(a.calls(), 1);
  EXPECT_EQ(b.calls(), 1);
}

TEST(TokenCache, InvalidateForcesANewFetch) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  cache.invalidate("k", "t1");
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");
  EXPECT_EQ(fetcher.calls(), 2);

  // A stale invalidation (another thread already refreshed) changes nothing.
  cache.invalidate("k", "t1");
  cache.invalidate("other", "t2");
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");
  EXPECT_EQ(fetcher.calls(), 2);
}

TEST(TokenCache, FailureIsSharedThenRetriedAfterBackoff) {
  ManualClock clock;
  TokenCache cache(clock);  // 5 s, doubling, at most 60 s
  FakeFetcher fetcher(clock, 3600s);
  fetcher.failWith(true);
  fetcher.failWith(false);

  auto r1 = cache.get("k", fetcher);
  ASSERT_FALSE(r1);
  EXPECT_TRUE(r1.failure().retryable);
  EXPECT_EQ(fetcher.calls(), 1);

  clock.advance(4s);  // within the back-off: same failure, no request
  auto r2 = cache.get("k", fetcher);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.failure().explanation, "fake failure");
  EXPECT_EQ(fetcher.calls(), 1);

  clock.advance(1s);  // 5 s: tried again, fails again (permanent this time)
  auto r3 = cache.get("k", fetcher);
  ASSERT_FALSE(r3);
  EXPECT_FALSE(r3.failure().retryable);
  EXPECT_EQ(fetcher.calls(), 2);

  clock.advance(9s);  // second failure: 10 s back-off
  EXPECT_FALSE(cache.get("k", fetcher));
  EXPECT_EQ(fetcher.calls(), 2);
  clock.advance(1s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  EXPECT_EQ(fetcher.calls(), 3);
}

TEST(TokenCache, BackoffIsCapped) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  for (int i = 0; i < 10; ++i) {
    fetcher.failWith(true);
    EXPECT_FALSE(cache.get("k", fetcher));
    clock.advance(60s);
  }
  EXPECT_EQ(fetcher.calls(), 10);
}

TEST(TokenCache, RetryAfterLengthensTheBackoff) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  fetcher.failWith(true, 30s);
  EXPECT_FALSE(cache.get("k", fetcher));
  clock.advance(29s);
  EXPECT_FALSE(cache.get("k", fetcher));
  EXPECT_EQ(fetcher.calls(), 1);
  clock.advance(1s);
  EXPECT_TRUE(cache.get("k", fetcher));
  EXPECT_EQ(fetcher.calls(), 2);
}

TEST(TokenCache, FailedRefreshKeepsTheUsableToken) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  clock.advance(3600s - 200s);  // due for refresh
  fetcher.failWith(true);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");  // the refresh failed; t1 still serves
  EXPECT_EQ(fetcher.calls(), 2);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");  // back-off: no request
  EXPECT_EQ(fetcher.calls(), 2);

  // It serves until 30 s before its end; after that the failure shows.
  fetcher.failWith(true);
  fetcher.failWith(true);
  clock.advance(165s);  // 35 s left; back-off over: asked again, fails again
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  EXPECT_EQ(fetcher.calls(), 3);
  clock.advance(4s);  // 31 s left, within the 10 s back-off
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  clock.advance(2s);  // 29 s left: not handed out any more; still backing off
  auto r = cache.get("k", fetcher);
  ASSERT_FALSE(r);
  EXPECT_EQ(fetcher.calls(), 3);
  clock.advance(4s);  // back-off over: asked again
  EXPECT_FALSE(cache.get("k", fetcher));
  EXPECT_EQ(fetcher.calls(), 4);
}

TEST(TokenCache, InvalidateLiftsTheBackoff) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  clock.advance(3500s);
  fetcher.failWith(true);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");  // refresh failed, back-off running
  cache.invalidate("k", "t1");                        // Graph refused t1
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");  // asked at once
  EXPECT_EQ(fetcher.calls(), 3);
}

TEST(TokenCache, ClearForgets) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  fetcher.failWith(true);
  EXPECT_FALSE(cache.get("k", fetcher));
  cache.clear();
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  cache.clear();
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");
}

TEST(TokenCache, AThrowingFetcherIsAFailure) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  fetcher.setThrow(true);
  auto r = cache.get("k", fetcher);
  ASSERT_FALSE(r);
  EXPECT_NE(r.failure().explanation.find("boom"), std::string::npos);
  fetcher.setThrow(false);
  clock.advance(5s);
  EXPECT_TRUE(cache.get("k", fetcher));
}

// Runs `n` threads that each call get() once; returns their results.
std::vector<std::string> concurrently(int n, const std::function<TokenResult()>& call,
                                      const std::function<void()>& while_running) {
  std::vector<std::string> results(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] { results[static_cast<std::size_t>(i)] = valueOf(call()); });
  }
  while_running();
  for (auto& t : threads) t.join();
  return results;
}

TEST(TokenCache, SingleFlightSharesSuccess) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  fetcher.hold();
  const auto results = concurrently(
      8, [&] { return cache.get("k", fetcher); },
      [&] {
        ASSERT_TRUE(fetcher.waitForCalls(1));
        std::this_thread::sleep_for(100ms);  // let the others reach the wait
        fetcher.release();
      });
  EXPECT_EQ(fetcher.calls(), 1);
  for (const auto& r : results) EXPECT_EQ(r, "t1");
}

TEST(TokenCache, SingleFlightSharesFailure) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  fetcher.failWith(true);
  fetcher.hold();
  const auto results = concurrently(
      8, [&] { return cache.get("k", fetcher); },
      [&] {
        ASSERT_TRUE(fetcher.waitForCalls(1));
        std::this_thread::sleep_for(100ms);
        fetcher.release();
      });
  EXPECT_EQ(fetcher.calls(), 1);
  for (const auto& r : results) EXPECT_EQ(r, "failure: fake failure");
}

TEST(TokenCache, RefreshInFlightDoesNotBlockHoldersOfAUsableToken) {
  ManualClock clock;
  TokenCache cache(clock);
  FakeFetcher fetcher(clock, 3600s);
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");
  clock.advance(3400s);
  fetcher.hold();
  std::string refreshed;
  std::thread refresher([&] { refreshed = valueOf(cache.get("k", fetcher)); });
  ASSERT_TRUE(fetcher.waitForCalls(2));
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t1");  // answered at once
  fetcher.release();
  refresher.join();
  EXPECT_EQ(refreshed, "t2");
  EXPECT_EQ(valueOf(cache.get("k", fetcher)), "t2");
  EXPECT_EQ(fetcher.calls(), 2);
}

// The whole stack: eight worker threads, one token request on the wire.
TEST(CachedTokenSource, SingleFlightOverHttp) {
  http::testing::FakeHttpClient http;
  ManualClock clock;
  http.pushResponse(200, R"({"token_type":"Bearer","expires_in":3599,"access_token":"tok-1"})");
  EntraOptions options;
  options.tenant = "contoso.onmicrosoft.com";
  options.client_id = "client";
  auto cache = std::make_shared<TokenCache>(clock);
  CachedTokenSource source(
      cache, std::make_unique<EntraClientCredentials>(
                 options, config::Secret(config::Secret::Source::Inline, "", "s3cret-value"), http,
                 clock));
  http.hold();
  const auto results = concurrently(
      8, [&] { return source.token(); },
      [&] {
        ASSERT_TRUE(http.waitForRequests(1));
        std::this_thread::sleep_for(100ms);
        http.release();
      });
  EXPECT_EQ(http.requestCount(), 1u);
  for (const auto& r : results) EXPECT_EQ(r, "tok-1");

  // A 401 from Graph: invalidate, and the next token() goes to the wire.
  http.pushResponse(200, R"({"token_type":"Bearer","expires_in":3599,"access_token":"tok-2"})");
  source.invalidate("tok-1");
  EXPECT_EQ(valueOf(source.token()), "tok-2");
  EXPECT_EQ(http.requestCount(), 2u);
}

}  // namespace
}  // namespace mb::oauth
