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

}  // namespace
}  // namespace mb::smtp
