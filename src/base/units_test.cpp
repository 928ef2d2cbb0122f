#include "base/units.h"

#include <gtest/gtest.h>

#include <limits>

namespace mb {
namespace {

using std::chrono::milliseconds;

std::uint64_t sizeOf(std::string_view text) {
  auto r = parseSize(text);
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : 0;
}

std::string sizeError(std::string_view text) {
  auto r = parseSize(text);
  EXPECT_FALSE(r.ok()) << text << " parsed as " << (r.ok() ? *r : 0);
  return r.ok() ? "" : r.error().message;
}

milliseconds durationOf(std::string_view text) {
  auto r = parseDuration(text);
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : milliseconds(-1);
}

std::string durationError(std::string_view text) {
  auto r = parseDuration(text);
  EXPECT_FALSE(r.ok()) << text << " parsed as " << (r.ok() ? r->count() : 0) << "ms";
  return r.ok() ? "" : r.error().message;
}

TEST(Units, SizeBareNumberIsBytes) {
  EXPECT_EQ(sizeOf("0"), 0u);
  EXPECT_EQ(sizeOf("1234"), 1234u);
  EXPECT_EQ(sizeOf("512B"), 512u);
  EXPECT_EQ(sizeOf("512 b"), 512u);
  EXPECT_EQ(sizeOf("  77  "), 77u);
}

TEST(Units, SizeUnitsAreBinaryAndCaseInsensitive) {
  for (const char* t : {"64KB", "64K", "64KiB", "64kb", "64k", "64kib", "64 KB", "64\tKiB"}) {
    EXPECT_EQ(sizeOf(t), 64u * 1024) << t;
  }
  for (const char* t : {"25MB", "25M", "25MiB", "25mb", "25 mib"}) {
    EXPECT_EQ(sizeOf(t), 25u * 1024 * 1024) << t;
  }
  for (const char* t : {"1GB", "1G", "1GiB", "1gb", "1 g"}) {
    EXPECT_EQ(sizeOf(t), 1024u * 1024 * 1024) << t;
  }
}

TEST(Units, SizeFractions) {
  EXPECT_EQ(sizeOf("1.5MB"), 1572864u);
  EXPECT_EQ(sizeOf("0.5KB"), 512u);
  EXPECT_EQ(sizeOf("2.25 GB"), 2415919104u);
  EXPECT_EQ(sizeOf("0.1KB"), 102u);  // 102.4 rounds down
  EXPECT_EQ(sizeOf("1.000000001GB"), 1073741825u);
  EXPECT_NE(sizeError("1.5").find("whole"), std::string::npos);
  EXPECT_NE(sizeError("1.5B").find("whole"), std::string::npos);
  EXPECT_NE(sizeError("1.MB").find("decimal point"), std::string::npos);
  EXPECT_NE(sizeError("1.0000000001GB").find("decimal places"), std::string::npos);
  EXPECT_NE(sizeError(".5MB").find("number"), std::string::npos);
}

TEST(Units, SizeRejectsGarbage) {
  EXPECT_NE(sizeError("").find("empty"), std::string::npos);
  EXPECT_NE(sizeError("   ").find("empty"), std::string::npos);
  EXPECT_NE(sizeError("-1").find("negative"), std::string::npos);
  EXPECT_NE(sizeError("-1MB").find("negative"), std::string::npos);
  EXPECT_NE(sizeError("MB").find("number"), std::string::npos);
  EXPECT_NE(sizeError("+5MB").find("number"), std::string::npos);
  EXPECT_NE(sizeError("25XB").find("unknown unit 'XB'"), std::string::npos);
  EXPECT_NE(sizeError("25TB").find("unknown unit"), std::string::npos);
  EXPECT_NE(sizeError("25MBx").find("unknown unit"), std::string::npos);
  EXPECT_NE(sizeError("1e6").find("unknown unit"), std::string::npos);
  EXPECT_NE(sizeError("1,000").find("unknown unit"), std::string::npos);
  EXPECT_NE(sizeError("25 M B").find("unknown unit"), std::string::npos);
  // A control character in the input is escaped in the message.
  EXPECT_NE(sizeError("5\nMB").find("\\x0a"), std::string::npos);
}

TEST(Units, SizeOverflow) {
  EXPECT_EQ(sizeOf("18446744073709551615"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_NE(sizeError("18446744073709551616").find("too large"), std::string::npos);
  EXPECT_NE(sizeError("99999999999999999999999").find("too large"), std::string::npos);
  EXPECT_EQ(sizeOf("17179869183GB"), 17179869183ull * 1024 * 1024 * 1024);
  EXPECT_NE(sizeError("17179869184GB").find("too large"), std::string::npos);
  EXPECT_EQ(sizeOf("17179869183.999999999GB"), std::numeric_limits<std::uint64_t>::max() - 1);
}

TEST(Units, DurationUnits) {
  EXPECT_EQ(durationOf("250ms"), milliseconds(250));
  EXPECT_EQ(durationOf("90s"), milliseconds(90'000));
  EXPECT_EQ(durationOf("5m"), milliseconds(300'000));
  EXPECT_EQ(durationOf("2h"), milliseconds(7'200'000));
  EXPECT_EQ(durationOf("5d"), milliseconds(432'000'000));
  EXPECT_EQ(durationOf("1w"), milliseconds(604'800'000));
  EXPECT_EQ(durationOf("0s"), milliseconds(0));
  EXPECT_EQ(durationOf(" 90 s "), milliseconds(90'000));
}

TEST(Units, DurationBareIntegerIsSeconds) {
  EXPECT_EQ(durationOf("90"), milliseconds(90'000));
  EXPECT_EQ(durationOf("0"), milliseconds(0));
}

TEST(Units, DurationCompound) {
  EXPECT_EQ(durationOf("1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(durationOf("1h 30m"), milliseconds(5'400'000));
  EXPECT_EQ(durationOf("1m30s500ms"), milliseconds(90'500));
  EXPECT_EQ(durationOf("1w2d"), milliseconds(9 * 86'400'000LL));
}

TEST(Units, DurationRejectsGarbage) {
  EXPECT_NE(durationError("").find("empty"), std::string::npos);
  EXPECT_NE(durationError("-5s").find("negative"), std::string::npos);
  EXPECT_NE(durationError("s").find("number"), std::string::npos);
  EXPECT_NE(durationError("5x").find("unknown unit 'x'"), std::string::npos);
  EXPECT_NE(durationError("5sec").find("unknown unit"), std::string::npos);
  EXPECT_NE(durationError("5S").find("lower case"), std::string::npos);
  EXPECT_NE(durationError("5MS").find("lower case"), std::string::npos);
  EXPECT_NE(durationError("1.5h").find("fractions"), std::string::npos);
  EXPECT_NE(durationError("1h30").find("missing unit"), std::string::npos);
  EXPECT_NE(durationError("1h-30m").find("number before each unit"), std::string::npos);
  EXPECT_NE(durationError("1h30!").find("unexpected character '!'"), std::string::npos);
  EXPECT_NE(durationError("1hm").find("unknown unit 'hm'"), std::string::npos);
}

TEST(Units, DurationOverflow) {
  // 9223372036854775807 ms is the largest milliseconds value.
  EXPECT_EQ(durationOf("9223372036854775807ms"), milliseconds::max());
  EXPECT_NE(durationError("9223372036854775808ms").find("too large"), std::string::npos);
  EXPECT_NE(durationError("9223372036854775807").find("too large"), std::string::npos);
  EXPECT_NE(durationError("20000000000000w").find("too large"), std::string::npos);
  EXPECT_NE(durationError("9223372036854775s9223372036854775s").find("too large"),
            std::string::npos);
}

TEST(Units, FormatSize) {
  EXPECT_EQ(formatSize(0), "0B");
  EXPECT_EQ(formatSize(1023), "1023B");
  EXPECT_EQ(formatSize(1024), "1KB");
  EXPECT_EQ(formatSize(25ull * 1024 * 1024), "25MB");
  EXPECT_EQ(formatSize(1024ull * 1024 * 1024), "1GB");
  EXPECT_EQ(formatSize(1572864), "1.5MB");
  EXPECT_EQ(formatSize(1025), "1.0KB");  // not a whole number of KB: never shown as exact
  EXPECT_EQ(formatSize(std::numeric_limits<std::uint64_t>::max()), "17179869183.99GB");
}

TEST(Units, FormatDuration) {
  EXPECT_EQ(formatDuration(milliseconds(0)), "0s");
  EXPECT_EQ(formatDuration(milliseconds(250)), "250ms");
  EXPECT_EQ(formatDuration(milliseconds(5'400'000)), "1h30m");
  EXPECT_EQ(formatDuration(milliseconds(90'500)), "1m30s500ms");
  EXPECT_EQ(formatDuration(milliseconds(9 * 86'400'000LL)), "1w2d");
  EXPECT_EQ(formatDuration(milliseconds(-1500)), "-1s500ms");
  EXPECT_FALSE(formatDuration(milliseconds::min()).empty());
}

TEST(Units, FormatRoundTrips) {
  for (std::uint64_t v : {1ull, 1024ull, 3ull * 1024 * 1024, 7ull << 30}) {
    EXPECT_EQ(sizeOf(formatSize(v)), v);
  }
  for (std::int64_t v : {1LL, 999LL, 61'001LL, 694'861'001LL}) {
    EXPECT_EQ(durationOf(formatDuration(milliseconds(v))), milliseconds(v));
  }
}

}  // namespace
}  // namespace mb
