#include "tracker/accept_times.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace mb::tracker {
namespace {

using namespace std::chrono_literals;

Clock::WallTime at(int ms) { return Clock::WallTime(std::chrono::milliseconds(ms)); }

TEST(AcceptTimes, TakeHandsTheTimeBackOnce) {
  AcceptTimes times;
  times.add("a", at(1500));
  times.add("b", at(2500));
  EXPECT_EQ(times.take("b"), at(2500));
  EXPECT_FALSE(times.take("b"));
  EXPECT_EQ(times.take("a"), at(1500));
  EXPECT_FALSE(times.take("unknown"));
  EXPECT_EQ(times.size(), 0u);
}

TEST(AcceptTimes, ABacklogForgetsTheOldestHalfAndStaysBounded) {
  AcceptTimes times(10);  // generations of 5
  for (int i = 0; i < 10; ++i) times.add("m" + std::to_string(i), at(i));
  EXPECT_EQ(times.size(), 10u);
  // Full: the next one drops the oldest generation (m0-m4), never a new one.
  times.add("m10", at(10));
  EXPECT_EQ(times.size(), 6u);
  EXPECT_FALSE(times.take("m0"));
  EXPECT_FALSE(times.take("m4"));
  EXPECT_EQ(times.take("m5"), at(5));
  EXPECT_EQ(times.take("m10"), at(10));
  // However many come and none are taken, at most the capacity is kept.
  for (int i = 11; i < 100000; ++i) times.add("m" + std::to_string(i), at(i));
  EXPECT_LE(times.size(), 10u);
  EXPECT_EQ(times.take("m99999"), at(99999));
}

TEST(AcceptTimes, AddingIsNotSlowedByABacklog) {
  // A relay holding mail through an outage still accepts at full speed:
  // with a scan of the backlog per message this took minutes.
  AcceptTimes times(20000);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 400000; ++i) times.add("id" + std::to_string(i), at(i));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  EXPECT_LE(times.size(), 20000u);
}

}  // namespace
}  // namespace mb::tracker
