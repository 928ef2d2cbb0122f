#include "policy/connection_counter.h"

#include <gtest/gtest.h>

#include <utility>

namespace mb::policy {
namespace {

TEST(ConnectionCounter, LimitPerAddress) {
  ConnectionCounter c(2);
  EXPECT_EQ(c.maxPerIp(), 2u);
  EXPECT_TRUE(c.tryAcquire("192.0.2.1"));
  EXPECT_TRUE(c.tryAcquire("192.0.2.1"));
  EXPECT_FALSE(c.tryAcquire("192.0.2.1"));
  EXPECT_TRUE(c.tryAcquire("192.0.2.2"));
  EXPECT_EQ(c.count("192.0.2.1"), 2u);
  EXPECT_EQ(c.count("192.0.2.2"), 1u);
  EXPECT_EQ(c.addresses(), 2u);
  c.release("192.0.2.1");
  EXPECT_TRUE(c.tryAcquire("192.0.2.1"));
}

TEST(ConnectionCounter, AddressesAreForgottenAtZero) {
  ConnectionCounter c(5);
  ASSERT_TRUE(c.tryAcquire("192.0.2.1"));
  c.release("192.0.2.1");
  EXPECT_EQ(c.count("192.0.2.1"), 0u);
  EXPECT_EQ(c.addresses(), 0u);
  c.release("192.0.2.1");  // ignored, no underflow
  c.release("198.51.100.1");
  EXPECT_EQ(c.addresses(), 0u);
  EXPECT_TRUE(c.tryAcquire("192.0.2.1"));
  EXPECT_EQ(c.count("192.0.2.1"), 1u);
}

TEST(ConnectionCounter, ANewLimitKeepsOpenConnections) {
  ConnectionCounter c(3);
  ASSERT_TRUE(c.tryAcquire("192.0.2.1"));
  ASSERT_TRUE(c.tryAcquire("192.0.2.1"));
  ASSERT_TRUE(c.tryAcquire("192.0.2.1"));
  c.setMaxPerIp(1);
  EXPECT_EQ(c.maxPerIp(), 1u);
  EXPECT_EQ(c.count("192.0.2.1"), 3u);
  EXPECT_FALSE(c.tryAcquire("192.0.2.1"));
  c.release("192.0.2.1");
  c.release("192.0.2.1");
  EXPECT_FALSE(c.tryAcquire("192.0.2.1"));
  c.release("192.0.2.1");
  EXPECT_TRUE(c.tryAcquire("192.0.2.1"));
  c.setMaxPerIp(2);
  EXPECT_TRUE(c.tryAcquire("192.0.2.1"));
}

TEST(ConnectionCounter, ZeroAdmitsNobody) {
  ConnectionCounter c(0);
  EXPECT_FALSE(c.tryAcquire("192.0.2.1"));
  EXPECT_EQ(c.addresses(), 0u);
}

TEST(ConnectionCounter, SlotReleasesWhenDestroyed) {
  ConnectionCounter c(1);
  {
    auto slot = c.acquire("192.0.2.1");
    EXPECT_TRUE(slot.held());
    EXPECT_TRUE(slot);
    auto refused = c.acquire("192.0.2.1");
    EXPECT_FALSE(refused.held());
    EXPECT_EQ(c.count("192.0.2.1"), 1u);
  }
  EXPECT_EQ(c.count("192.0.2.1"), 0u);
}

TEST(ConnectionCounter, SlotMovesAndResets) {
  ConnectionCounter c(1);
  auto a = c.acquire("192.0.2.1");
  ConnectionCounter::Slot b(std::move(a));
  EXPECT_FALSE(a.held());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(b.held());
  ConnectionCounter::Slot d;
  d = std::move(b);
  EXPECT_EQ(c.count("192.0.2.1"), 1u);
  d.reset();
  d.reset();
  EXPECT_EQ(c.count("192.0.2.1"), 0u);
  // Assigning over a held slot releases the old one.
  auto e = c.acquire("192.0.2.1");
  auto f = c.acquire("192.0.2.2");
  e = std::move(f);
  EXPECT_EQ(c.count("192.0.2.1"), 0u);
  EXPECT_EQ(c.count("192.0.2.2"), 1u);
}

}  // namespace
}  // namespace mb::policy
