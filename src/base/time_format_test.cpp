#include "base/time_format.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <ctime>

namespace mb {
namespace {

TEST(Rfc5322Date, KnownDates) {
  EXPECT_EQ(rfc5322Date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc5322Date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
  EXPECT_EQ(rfc5322Date(1795450740), "Mon, 23 Nov 2026 16:19:00 +0000");
  EXPECT_EQ(rfc5322Date(951782400), "Tue, 29 Feb 2000 00:00:00 +0000");
  EXPECT_EQ(rfc5322Date(4107542400), "Mon, 01 Mar 2100 00:00:00 +0000");
  EXPECT_EQ(rfc5322Date(1709164800), "Thu, 29 Feb 2024 00:00:00 +0000");
  EXPECT_EQ(rfc5322Date(253402300799), "Fri, 31 Dec 9999 23:59:59 +0000");
  EXPECT_EQ(rfc5322Date(INT64_MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
  EXPECT_EQ(rfc5322Date(-62135596800), "Mon, 01 Jan 0001 00:00:00 +0000");
  EXPECT_EQ(rfc5322Date(INT64_MIN), "Mon, 01 Jan 0001 00:00:00 +0000");
}

TEST(Rfc5322Date, AgreesWithGmtime) {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  // Every 7 hours and 13 seconds from 1900 to 2200: all weekdays, months,
  // leap rules (1900, 2000, 2100) and many times of day.
  for (std::int64_t t = -2208988800; t < 7258118400; t += 7 * 3600 + 13) {
    const auto tt = static_cast<std::time_t>(t);
    std::tm tm{};
    ASSERT_NE(gmtime_r(&tt, &tm), nullptr);
    char expected[64];
    std::snprintf(expected, sizeof expected, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday], tm.tm_mday,
                  kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    ASSERT_EQ(rfc5322Date(t), expected) << t;
  }
}

}  // namespace
}  // namespace mb
