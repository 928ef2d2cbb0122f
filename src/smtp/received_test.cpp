#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

#include "smtp/server_session.h"

namespace mb::smtp {
namespace {

ReceivedInfo sample() {
  ReceivedInfo info;
  info.helo = "scanner.example";
  info.client_address = "192.0.2.10";
  info.by_host = "relay.example";
  info.protocol = "ESMTP";
  info.id = "Q1234";
  info.for_recipient = "user@example.com";
  info.date = "Mon, 23 Nov 2026 16:19:00 +0000";
  return info;
}

TEST(Received, Format) {
  EXPECT_EQ(formatReceived(sample()),
            "Received: from scanner.example (192.0.2.10)\r\n"
            "\tby relay.example (Mailbridge) with ESMTP id Q1234\r\n"
            "\tfor <user@example.com>; Mon, 23 Nov 2026 16:19:00 +0000\r\n");
}

TEST(Received, WithoutForRecipient) {
  ReceivedInfo info = sample();
  info.for_recipient.clear();
  info.client_address = "2001:db8::1";
  EXPECT_EQ(formatReceived(info),
            "Received: from scanner.example (2001:db8::1)\r\n"
            "\tby relay.example (Mailbridge) with ESMTP id Q1234;\r\n"
            "\tMon, 23 Nov 2026 16:19:00 +0000\r\n");
}

TEST(Received, HostileHeloCannotBreakTheHeader) {
  ReceivedInfo info = sample();
  info.helo = "evil\r\nBcc: victim@example.com\r\n (x); y\\z\x7f\xc3\xa4\t";
  const std::string h = formatReceived(info);
  EXPECT_EQ(h.rfind("Received: from evil??Bcc: victim@example.com?? ?x?? y?z???? (192.0.2.10)\r\n", 0), 0u) << h;
  // Exactly three lines, each folded line starting with a tab.
  std::size_t crlf = 0;
  for (std::size_t i = 0; i + 1 < h.size(); ++i) {
    if (h[i] == '\r') {
      ASSERT_EQ(h[i + 1], '\n');
      ++crlf;
      if (i + 2 < h.size()) { EXPECT_EQ(h[i + 2], '\t'); }
    }
    if (h[i] == '\n') { EXPECT_EQ(h[i - 1], '\r'); }
  }
  EXPECT_EQ(crlf, 3u);
  EXPECT_EQ(h.find('\0'), std::string::npos);
}

TEST(Received, HeloTruncatedAndEmptyReplaced) {
  ReceivedInfo info = sample();
  info.helo = std::string(300, 'h');
  const std::string h = formatReceived(info);
  EXPECT_NE(h.find("from " + std::string(255, 'h') + " ("), std::string::npos);
  EXPECT_EQ(h.find(std::string(256, 'h')), std::string::npos);
  info.helo.clear();
  EXPECT_EQ(formatReceived(info).rfind("Received: from unknown (", 0), 0u);
}

TEST(Received, OurFieldsAreStillSanitised) {
  ReceivedInfo info = sample();
  info.for_recipient = "a\r\nb@example.com";
  info.id = "x\ny";
  const std::string h = formatReceived(info);
  EXPECT_NE(h.find("for <a??b@example.com>"), std::string::npos);
  EXPECT_NE(h.find("id x?y"), std::string::npos);
}

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
}  // namespace mb::smtp
