#include "policy/auth_guard.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace mb::policy {
namespace {

using namespace std::chrono_literals;
using Verdict = AuthGuard::Verdict;

AuthGuard::Params limits(std::size_t per_ip, std::size_t per_user) {
  AuthGuard::Params l;
  l.max_failures_per_ip = per_ip;
  l.max_failures_per_user = per_user;
  l.window = 600s;
  l.lockout = 300s;
  return l;
}

TEST(AuthGuard, LocksAnAddressAtItsLimit) {
  ManualClock clock;
  AuthGuard guard(limits(3, 100), clock);
  EXPECT_FALSE(guard.locked("192.0.2.1"));
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "b"), Verdict::Continue);
  EXPECT_FALSE(guard.locked("192.0.2.1"));
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "c"), Verdict::LockOut);
  EXPECT_TRUE(guard.locked("192.0.2.1"));
  EXPECT_FALSE(guard.locked("192.0.2.2"));
  clock.advance(299s);
  EXPECT_TRUE(guard.locked("192.0.2.1"));
  clock.advance(1s);
  EXPECT_FALSE(guard.locked("192.0.2.1"));
}

TEST(AuthGuard, NewParamsKeepWhatWasCounted) {
  ManualClock clock;
  AuthGuard guard(limits(3, 100), clock);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.9", "b"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.9", "b"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.9", "b"), Verdict::LockOut);
  guard.setParams(limits(5, 100));
  EXPECT_TRUE(guard.locked("192.0.2.9"));  // the running lockout stays
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);   // 3 of 5
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);   // 4 of 5
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::LockOut);    // 5 of 5
}

TEST(AuthGuard, FromTheConfiguration) {
  ManualClock clock;
  config::AuthConfig auth;
  auth.max_failures_per_ip = 2;
  auth.lockout = std::chrono::seconds(60);
  AuthGuard guard(auth, clock);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::LockOut);
  clock.advance(59s);
  EXPECT_TRUE(guard.locked("192.0.2.1"));
  clock.advance(1s);
  EXPECT_FALSE(guard.locked("192.0.2.1"));
}

TEST(AuthGuard, LoopbackIsNotExempt) {
  ManualClock clock;
  AuthGuard guard(limits(2, 100), clock);
  EXPECT_EQ(guard.recordFailure("127.0.0.1", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("127.0.0.1", "a"), Verdict::LockOut);
  EXPECT_TRUE(guard.locked("127.0.0.1"));
  EXPECT_EQ(guard.recordFailure("::1", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("::1", "a"), Verdict::LockOut);
  EXPECT_TRUE(guard.locked("::1"));
}

TEST(AuthGuard, FailuresOutsideTheWindowAreForgotten) {
  ManualClock clock;
  AuthGuard guard(limits(3, 100), clock);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);
  clock.advance(400s);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);
  clock.advance(201s);  // the first failure is now 601 s old
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::LockOut);
}

TEST(AuthGuard, FailuresAfterALockoutStillCount) {
  ManualClock clock;
  AuthGuard guard(limits(2, 100), clock);
  guard.recordFailure("192.0.2.1", "a");
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::LockOut);
  clock.advance(301s);
  EXPECT_FALSE(guard.locked("192.0.2.1"));
  // Both earlier failures are still in the 600 s window.
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::LockOut);
  EXPECT_TRUE(guard.locked("192.0.2.1"));
}

TEST(AuthGuard, UserLimitLocksTheAddressesThatKeepFailing) {
  ManualClock clock;
  AuthGuard guard(limits(100, 3), clock);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "bob"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.2", "bob"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.3", "bob"), Verdict::LockOut);
  EXPECT_FALSE(guard.locked("192.0.2.1"));
  EXPECT_FALSE(guard.locked("192.0.2.2"));
  EXPECT_TRUE(guard.locked("192.0.2.3"));
  // Every further failure against bob locks its address at once.
  EXPECT_EQ(guard.recordFailure("192.0.2.4", "bob"), Verdict::LockOut);
  // Other users, and bob's own address, are unaffected.
  EXPECT_EQ(guard.recordFailure("192.0.2.5", "alice"), Verdict::Continue);
  EXPECT_FALSE(guard.locked("198.51.100.1"));
}

TEST(AuthGuard, UserNamesAreCaseSensitive) {
  ManualClock clock;
  AuthGuard guard(limits(100, 2), clock);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "bob"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.2", "Bob"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.3", "bob"), Verdict::LockOut);
}

TEST(AuthGuard, SuccessClearsTheUserNotTheAddress) {
  ManualClock clock;
  AuthGuard guard(limits(3, 2), clock);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "bob"), Verdict::Continue);
  guard.recordSuccess("192.0.2.1", "bob");
  EXPECT_EQ(guard.trackedUsers(), 0u);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "bob"), Verdict::Continue);  // user count 1 again
  // The address has two failures now; a third reaches its limit.
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "carol"), Verdict::LockOut);
}

TEST(AuthGuard, ClientKeys) {
  EXPECT_EQ(AuthGuard::clientKey("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(AuthGuard::clientKey("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(AuthGuard::clientKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(AuthGuard::clientKey("2001:DB8:1:2::99"), "2001:db8:1:2::/64");
  EXPECT_EQ(AuthGuard::clientKey("::1"), "::/64");
  EXPECT_EQ(AuthGuard::clientKey("not an address"), "not an address");
  EXPECT_EQ(AuthGuard::clientKey(std::string(1000, 'x')).size(), 256u);
}

TEST(AuthGuard, AnIpv6HostIsCountedPer64) {
  ManualClock clock;
  AuthGuard guard(limits(2, 100), clock);
  EXPECT_EQ(guard.recordFailure("2001:db8:1:2::1", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("2001:db8:1:2::2", "b"), Verdict::LockOut);
  EXPECT_TRUE(guard.locked("2001:db8:1:2:ffff::3"));
  EXPECT_FALSE(guard.locked("2001:db8:1:3::1"));
  // A mapped IPv4 address is the IPv4 client.
  EXPECT_EQ(guard.recordFailure("::ffff:192.0.2.9", "a"), Verdict::Continue);
  EXPECT_EQ(guard.recordFailure("192.0.2.9", "a"), Verdict::LockOut);
}

TEST(AuthGuard, OldEntriesArePruned) {
  ManualClock clock;
  AuthGuard guard(limits(5, 5), clock);
  for (int i = 0; i < 50; ++i) {
    guard.recordFailure("10.0.0." + std::to_string(i), "user" + std::to_string(i));
  }
  EXPECT_EQ(guard.trackedClients(), 50u);
  EXPECT_EQ(guard.trackedUsers(), 50u);
  clock.advance(601s);
  EXPECT_FALSE(guard.locked("10.0.0.1"));  // any call prunes
  EXPECT_EQ(guard.trackedClients(), 0u);
  EXPECT_EQ(guard.trackedUsers(), 0u);
}

TEST(AuthGuard, LockedClientsOutliveTheWindowUntilTheLockoutEnds) {
  ManualClock clock;
  AuthGuard::Params l = limits(1, 100);
  l.window = 60s;
  l.lockout = 600s;
  AuthGuard guard(l, clock);
  EXPECT_EQ(guard.recordFailure("192.0.2.1", "a"), Verdict::LockOut);
  clock.advance(300s);
  EXPECT_TRUE(guard.locked("192.0.2.1"));
  EXPECT_EQ(guard.trackedUsers(), 0u);
  clock.advance(300s);
  EXPECT_FALSE(guard.locked("192.0.2.1"));
  EXPECT_EQ(guard.trackedClients(), 0u);
}

TEST(AuthGuard, TablesAreCappedAgainstASpray) {
  ManualClock clock;
  AuthGuard::Params l = limits(5, 5);
  l.max_entries = 100;
  AuthGuard guard(l, clock);
  for (int i = 0; i < 1000; ++i) {
    guard.recordFailure("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256),
                        "user" + std::to_string(i));
    clock.advance(1ms);
  }
  EXPECT_EQ(guard.trackedClients(), 100u);
  EXPECT_EQ(guard.trackedUsers(), 100u);
  // The newest entries are the ones kept.
  for (int i = 0; i < 4; ++i) guard.recordFailure("10.0.3.231", "x");
  EXPECT_TRUE(guard.locked("10.0.3.231"));  // entry 999 held one failure already
}

TEST(AuthGuard, ConcurrentUse) {
  ManualClock clock;
  AuthGuard guard(limits(1000000, 1000000), clock);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&guard, t] {
      for (int i = 0; i < 500; ++i) {
        const std::string ip = "10.0." + std::to_string(t) + "." + std::to_string(i % 10);
        guard.recordFailure(ip, "u" + std::to_string(i % 7));
        (void)guard.locked(ip);
        if (i % 50 == 0) guard.recordSuccess(ip, "u0");
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(guard.trackedClients(), 40u);
}

}  // namespace
}  // namespace mb::policy
