#include "mime/header_summary.h"

#include <gtest/gtest.h>

namespace mb::mime {
namespace {

TEST(HeaderSummary, ReadsFromSubjectAndMessageId) {
  const auto s = summarizeHeader(
      "Received: from x\r\nFrom: \"Scanner, Floor 3\" <scanner@contoso.example>\r\n"
      "Subject: =?UTF-8?Q?=C3=9Cberweisung?= for\r\n invoice 42\r\nmessage-id:  <abc@contoso.example> \r\n"
      "Subject: second\r\n\r\nbody Subject: no\r\n");
  EXPECT_EQ(s.from, "scanner@contoso.example");
  EXPECT_EQ(s.subject, "\xC3\x9C" "berweisung for invoice 42");
  EXPECT_EQ(s.message_id, "<abc@contoso.example>");
}

TEST(HeaderSummary, MissingFieldsAreEmptyAndTextIsCleanAndBounded) {
  auto s = summarizeHeader("To: a@example.com\r\n\r\n");
  EXPECT_EQ(s.from, "");
  EXPECT_EQ(s.subject, "");
  EXPECT_EQ(s.message_id, "");
  s = summarizeHeader("Subject: =?UTF-8?B?YQFi?=\r\n\r\n");  // "a\x01b" decoded
  EXPECT_EQ(s.subject, "ab");
  s = summarizeHeader("Subject: " + std::string(3000, 'x') + "\r\n\r\n");
  EXPECT_EQ(s.subject.size(), 998u);
}

}  // namespace
}  // namespace mb::mime
