#include "tracker/statistics.h"

#include <gtest/gtest.h>

#include <string>

namespace mb::tracker {
namespace {

using namespace std::chrono_literals;

// 2027-01-16T00:00:00Z.
constexpr auto kMidnight = Clock::WallTime(std::chrono::seconds(1'800'057'600));

Totals totals(std::uint64_t accepted, std::uint64_t delivered, std::uint64_t deferred,
              std::uint64_t bounced, std::uint64_t rejected) {
  Totals t;
  t.accepted = accepted;
  t.delivered = delivered;
  t.deferred = deferred;
  t.bounced = bounced;
  t.rejected = rejected;
  return t;
}

class StatisticsTest : public ::testing::Test {
 protected:
  // The default ManualClock starts at 2027-01-15T08:00:00Z, on a minute boundary.
  ManualClock clock_;
  Statistics stats_{clock_};
};

TEST_F(StatisticsTest, CountsTotalsForEveryPeriod) {
  stats_.accepted();
  stats_.accepted();
  stats_.outcome("m365", Status::Delivered, 2s);
  stats_.outcome("m365", Status::Delivered, 3s);
  stats_.outcome("m365", Status::Delivered, 4s);
  stats_.outcome("m365", Status::Deferred, {}, 451, "4.3.0", "try later");
  stats_.outcome("gmail", Status::Bounced, {}, 550, "5.1.1", "no such user");
  stats_.rejected("auth failed");
  clock_.advance(90s);

  const Statistics::Snapshot s = stats_.snapshot();
  const Totals expected = totals(2, 3, 1, 1, 1);
  EXPECT_EQ(s.overall, expected);
  EXPECT_EQ(s.today, expected);
  EXPECT_EQ(s.last_24h, expected);
  EXPECT_EQ(s.started, Clock::WallTime(std::chrono::seconds(1'800'000'000)));
  EXPECT_EQ(s.now, clock_.wallNow());
  EXPECT_EQ(s.uptime, 90s);
}

TEST_F(StatisticsTest, StartsEmpty) {
  const Statistics::Snapshot s = stats_.snapshot();
  EXPECT_EQ(s.overall, Totals{});
  EXPECT_EQ(s.today, Totals{});
  EXPECT_EQ(s.last_24h, Totals{});
  EXPECT_TRUE(s.per_provider.empty());
  EXPECT_TRUE(s.rejected_by_reason.empty());
  EXPECT_EQ(s.error_rate, 0.0);
  EXPECT_FALSE(s.last_error);
  EXPECT_FALSE(s.avg_delivery_seconds);
  EXPECT_FALSE(s.p95_delivery_seconds);
  EXPECT_EQ(s.delivery.count, 0u);
  EXPECT_EQ(s.uptime, 0s);
}

TEST_F(StatisticsTest, TodayResetsAtUtcMidnight) {
  ManualClock clock(kMidnight - 90s);  // 23:58:30
  Statistics stats(clock);
  stats.accepted();
  stats.accepted();
  clock.advance(60s);  // 23:59:30
  stats.outcome("m365", Status::Delivered, 1s);
  EXPECT_EQ(stats.snapshot().today, totals(2, 1, 0, 0, 0));

  clock.advance(60s);  // 00:00:30, nothing recorded yet today
  Statistics::Snapshot s = stats.snapshot();
  EXPECT_EQ(s.today, Totals{});
  EXPECT_EQ(s.overall, totals(2, 1, 0, 0, 0));
  EXPECT_EQ(s.last_24h, totals(2, 1, 0, 0, 0));

  stats.accepted();
  stats.rejected("too big");
  s = stats.snapshot();
  EXPECT_EQ(s.today, totals(1, 0, 0, 0, 1));
  EXPECT_EQ(s.overall, totals(3, 1, 0, 0, 1));

  clock.advance(23h + 59min);  // 23:59:30 the same day
  stats.accepted();
  EXPECT_EQ(stats.snapshot().today, totals(2, 0, 0, 0, 1));

  clock.advance(1min);  // 00:00:30 the next day
  stats.accepted();
  s = stats.snapshot();
  EXPECT_EQ(s.today, totals(1, 0, 0, 0, 0));
  EXPECT_EQ(s.overall, totals(5, 1, 0, 0, 1));
}

TEST_F(StatisticsTest, LastDayForgetsOldMinutes) {
  stats_.accepted();  // minute m0
  clock_.advance(1min);
  stats_.accepted();  // m0 + 1
  stats_.accepted();

  clock_.advance(1438min);  // m0 + 1439: m0 is the oldest minute still inside
  EXPECT_EQ(stats_.snapshot().last_24h.accepted, 3u);

  clock_.advance(1min);  // m0 + 1440: m0 has left the window
  EXPECT_EQ(stats_.snapshot().last_24h.accepted, 2u);

  // m0's bucket is reused for this minute and must start from zero.
  stats_.accepted();
  EXPECT_EQ(stats_.snapshot().last_24h.accepted, 3u);

  clock_.advance(1min);  // m0 + 1441
  Statistics::Snapshot s = stats_.snapshot();
  EXPECT_EQ(s.last_24h.accepted, 1u);
  EXPECT_EQ(s.overall.accepted, 4u);
}

TEST_F(StatisticsTest, LastDayIsEmptyAfterAGapOfMoreThanADay) {
  stats_.accepted();
  stats_.outcome("m365", Status::Delivered, 1s);
  clock_.advance(5min);
  stats_.outcome("m365", Status::Bounced, {}, 550);
  stats_.rejected("auth failed");

  // Not a multiple of a day: the old buckets sit in slots nothing reuses.
  clock_.advance(3 * 24h + 17min);
  Statistics::Snapshot s = stats_.snapshot();
  EXPECT_EQ(s.last_24h, Totals{});
  EXPECT_EQ(s.error_rate, 0.0);
  EXPECT_EQ(s.overall, totals(1, 1, 0, 1, 1));

  stats_.accepted();
  EXPECT_EQ(stats_.snapshot().last_24h, totals(1, 0, 0, 0, 0));

  // Exactly two days later the same slot comes round again.
  clock_.advance(48h);
  EXPECT_EQ(stats_.snapshot().last_24h, Totals{});
  stats_.accepted();
  EXPECT_EQ(stats_.snapshot().last_24h, totals(1, 0, 0, 0, 0));
}

TEST_F(StatisticsTest, CountsOutcomesPerProvider) {
  stats_.accepted();
  stats_.rejected("auth failed");
  stats_.outcome("m365", Status::Delivered, 1s);
  stats_.outcome("m365", Status::Delivered, 1s);
  stats_.outcome("m365", Status::Deferred, {}, 451);
  stats_.outcome("gmail", Status::Bounced, {}, 550);
  stats_.outcome("smtp", Status::Delivered, 1s);
  stats_.outcome("smtp", Status::Deferred, {}, 421);
  stats_.outcome("smtp", Status::Deferred, {}, 421);

  const Statistics::Snapshot s = stats_.snapshot();
  ASSERT_EQ(s.per_provider.size(), 3u);
  EXPECT_EQ(s.per_provider.at("m365"), totals(0, 2, 1, 0, 0));
  EXPECT_EQ(s.per_provider.at("gmail"), totals(0, 0, 0, 1, 0));
  EXPECT_EQ(s.per_provider.at("smtp"), totals(0, 1, 2, 0, 0));
  EXPECT_EQ(s.overall, totals(1, 3, 3, 1, 1));
}

TEST_F(StatisticsTest, IgnoresOtherStatuses) {
  stats_.outcome("m365", Status::Queued, 1s);
  stats_.outcome("m365", Status::Rejected, 1s, 550, "5.7.1", "no");

  const Statistics::Snapshot s = stats_.snapshot();
  EXPECT_EQ(s.overall, Totals{});
  EXPECT_EQ(s.today, Totals{});
  EXPECT_EQ(s.last_24h, Totals{});
  EXPECT_TRUE(s.per_provider.empty());
  EXPECT_FALSE(s.last_error);
  EXPECT_EQ(s.delivery.count, 0u);
  EXPECT_FALSE(s.avg_delivery_seconds);
}

TEST_F(StatisticsTest, CountsRejectionsPerReason) {
  stats_.rejected("auth failed");
  stats_.rejected("too big");
  stats_.rejected("auth failed");
  stats_.rejected("auth failed");

  const Statistics::Snapshot s = stats_.snapshot();
  ASSERT_EQ(s.rejected_by_reason.size(), 2u);
  EXPECT_EQ(s.rejected_by_reason.at("auth failed"), 3u);
  EXPECT_EQ(s.rejected_by_reason.at("too big"), 1u);
  EXPECT_EQ(s.overall, totals(0, 0, 0, 0, 4));
  EXPECT_EQ(s.last_24h.rejected, 4u);
  EXPECT_TRUE(s.per_provider.empty());
}

TEST_F(StatisticsTest, HistogramCountsAreCumulative) {
  stats_.outcome("m365", Status::Delivered, 50ms);
  stats_.outcome("m365", Status::Delivered, 100ms);  // on the bound: counts in it
  stats_.outcome("m365", Status::Delivered, 400ms);
  stats_.outcome("m365", Status::Delivered, 3s);
  stats_.outcome("m365", Status::Delivered, 45s);
  stats_.outcome("m365", Status::Delivered, 10'000s);  // above the last bound: +Inf only
  stats_.outcome("m365", Status::Delivered, -5s);      // counts as 0
  stats_.outcome("m365", Status::Deferred, 20s, 451);  // not a delivery

  const DeliveryHistogram h = stats_.snapshot().delivery;
  //                              0.1 .25 .5  1 2.5  5 10 30 60 300 1800 7200
  const std::array<std::uint64_t, 12> expected = {3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 6};
  EXPECT_EQ(h.counts, expected);
  EXPECT_EQ(h.count, 7u);
  EXPECT_DOUBLE_EQ(h.sum, 0.05 + 0.1 + 0.4 + 3 + 45 + 10'000);
}

TEST_F(StatisticsTest, AverageAndP95OfSamples) {
  // 1..20 s, out of order: p95 is the 19th smallest.
  for (int i : {7, 20, 1, 13, 2, 19, 8, 14, 3, 18, 9, 15, 4, 17, 10, 16, 5, 11, 6, 12}) {
    stats_.outcome("m365", Status::Delivered, std::chrono::seconds(i));
  }
  Statistics::Snapshot s = stats_.snapshot();
  ASSERT_TRUE(s.avg_delivery_seconds);
  ASSERT_TRUE(s.p95_delivery_seconds);
  EXPECT_DOUBLE_EQ(*s.avg_delivery_seconds, 10.5);
  EXPECT_DOUBLE_EQ(*s.p95_delivery_seconds, 19.0);

  // 21 samples: ceil(19.95) = 20th smallest.
  stats_.outcome("m365", Status::Delivered, 21s);
  s = stats_.snapshot();
  EXPECT_DOUBLE_EQ(*s.avg_delivery_seconds, 11.0);
  EXPECT_DOUBLE_EQ(*s.p95_delivery_seconds, 20.0);
}

TEST_F(StatisticsTest, P95OfASingleSample) {
  stats_.outcome("m365", Status::Delivered, 1500ms);
  const Statistics::Snapshot s = stats_.snapshot();
  ASSERT_TRUE(s.avg_delivery_seconds);
  ASSERT_TRUE(s.p95_delivery_seconds);
  EXPECT_DOUBLE_EQ(*s.avg_delivery_seconds, 1.5);
  EXPECT_DOUBLE_EQ(*s.p95_delivery_seconds, 1.5);
}

TEST_F(StatisticsTest, RecentSamplesRingReplacesTheOldest) {
  ASSERT_EQ(Statistics::kRecentSamples, 1000u);
  for (std::size_t i = 0; i < Statistics::kRecentSamples; ++i) {
    stats_.outcome("m365", Status::Delivered, 100s);
  }
  stats_.outcome("m365", Status::Delivered, 0s);  // replaces one 100 s sample
  Statistics::Snapshot s = stats_.snapshot();
  EXPECT_DOUBLE_EQ(*s.avg_delivery_seconds, 99.9);
  EXPECT_DOUBLE_EQ(*s.p95_delivery_seconds, 100.0);

  // 1..1000 s: every earlier sample is gone.
  for (int i = 1; i <= 1000; ++i) {
    stats_.outcome("m365", Status::Delivered, std::chrono::seconds(i));
  }
  s = stats_.snapshot();
  EXPECT_DOUBLE_EQ(*s.avg_delivery_seconds, 500.5);
  EXPECT_DOUBLE_EQ(*s.p95_delivery_seconds, 950.0);
  // The histogram still covers every delivery since start.
  EXPECT_EQ(s.delivery.count, 2001u);
}

TEST_F(StatisticsTest, ErrorRateOverTheLastDay) {
  for (int i = 0; i < 6; ++i) stats_.outcome("m365", Status::Delivered, 1s);
  stats_.outcome("m365", Status::Deferred, {}, 451);
  stats_.outcome("m365", Status::Deferred, {}, 451);
  stats_.outcome("gmail", Status::Deferred, {}, 421);
  stats_.outcome("gmail", Status::Bounced, {}, 550);
  stats_.accepted();           // not an attempt
  stats_.rejected("too big");  // nor this
  EXPECT_DOUBLE_EQ(stats_.snapshot().error_rate, 0.4);

  clock_.advance(12h);
  stats_.outcome("m365", Status::Delivered, 1s);
  stats_.outcome("m365", Status::Delivered, 1s);
  stats_.outcome("m365", Status::Bounced, {}, 550);
  stats_.outcome("m365", Status::Delivered, 1s);
  EXPECT_DOUBLE_EQ(stats_.snapshot().error_rate, 5.0 / 14.0);

  // The first batch leaves the window; only the second counts.
  clock_.advance(12h);
  EXPECT_DOUBLE_EQ(stats_.snapshot().error_rate, 0.25);

  clock_.advance(12h);
  const Statistics::Snapshot s = stats_.snapshot();
  EXPECT_EQ(s.error_rate, 0.0);
  EXPECT_EQ(s.overall, totals(1, 9, 3, 2, 1));
}

TEST_F(StatisticsTest, RemembersTheLastError) {
  stats_.outcome("m365", Status::Deferred, {}, 451, "4.3.0", "throttled");
  Statistics::Snapshot s = stats_.snapshot();
  ASSERT_TRUE(s.last_error);
  EXPECT_EQ(s.last_error->time, clock_.wallNow());
  EXPECT_EQ(s.last_error->provider, "m365");
  EXPECT_EQ(s.last_error->code, 451);
  EXPECT_EQ(s.last_error->enhanced, "4.3.0");
  EXPECT_EQ(s.last_error->error, "throttled");

  // A delivery is not an error and leaves it alone.
  clock_.advance(10s);
  stats_.outcome("gmail", Status::Delivered, 1s, 250, "2.0.0", "");
  s = stats_.snapshot();
  ASSERT_TRUE(s.last_error);
  EXPECT_EQ(s.last_error->provider, "m365");
  EXPECT_EQ(s.last_error->time, clock_.wallNow() - 10s);

  clock_.advance(10s);
  stats_.outcome("gmail", Status::Bounced, {}, 550, "5.1.1", "no such user");
  s = stats_.snapshot();
  ASSERT_TRUE(s.last_error);
  EXPECT_EQ(s.last_error->time, clock_.wallNow());
  EXPECT_EQ(s.last_error->provider, "gmail");
  EXPECT_EQ(s.last_error->code, 550);
  EXPECT_EQ(s.last_error->enhanced, "5.1.1");
  EXPECT_EQ(s.last_error->error, "no such user");
}

}  // namespace
}  // namespace mb::tracker
