#include "base/text.h"

#include <gtest/gtest.h>

#include <string>

namespace mb {
namespace {

using namespace std::string_literals;

TEST(Text, PrintableLeavesOrdinaryTextAlone) {
  EXPECT_EQ(printable("MAIL FROM:<a@example.com>"), "MAIL FROM:<a@example.com>");
  EXPECT_EQ(printable(""), "");
  EXPECT_EQ(printable(" ~"), " ~");
}

TEST(Text, PrintableEscapesControlCharacters) {
  EXPECT_EQ(printable("a\r\nb"), "a\\x0d\\x0ab");
  EXPECT_EQ(printable("\x1b[31m"), "\\x1b[31m");
  EXPECT_EQ(printable("\x7f"), "\\x7f");
  EXPECT_EQ(printable("\t"), "\\x09");
  EXPECT_EQ(printable("\x1f"), "\\x1f");
  EXPECT_EQ(printable("nul\0here"s), "nul\\x00here");
}

TEST(Text, PrintableDoublesBackslashSoEscapesCannotBeForged) {
  EXPECT_EQ(printable("\\"), "\\\\");
  // A client sending the four characters \x0a must not look like an escaped LF.
  EXPECT_EQ(printable("\\x0a"), "\\\\x0a");
  EXPECT_NE(printable("\\x0a"), printable("\n"));
}

TEST(Text, PrintableKeepsUtf8) {
  EXPECT_EQ(printable("Grüße 日本"), "Grüße 日本");
  EXPECT_EQ(printable("\x80\xff"), "\x80\xff");
}

TEST(Text, PrintableCutsAtMaxLenOfInput) {
  EXPECT_EQ(printable("abcdef", 3), "abc...");
  EXPECT_EQ(printable("abc", 3), "abc");
  EXPECT_EQ(printable("abcd", 0), "...");
  // The limit counts input bytes, before escaping.
  EXPECT_EQ(printable("\n\n\n\n", 2), "\\x0a\\x0a...");
  const std::string long_line(1000, 'x');
  EXPECT_EQ(printable(long_line), std::string(256, 'x') + "...");
}

TEST(Text, AsciiLower) {
  EXPECT_EQ(asciiLower("EHLO Example.COM"), "ehlo example.com");
  EXPECT_EQ(asciiLower("@[]^_`{"), "@[]^_`{");  // neighbours of A-Z and a-z
  EXPECT_EQ(asciiLower("ÄÖÜ"), "ÄÖÜ");          // no locale, no UTF-8 folding
  EXPECT_EQ(asciiLower(""), "");
}

TEST(Text, Iequals) {
  EXPECT_TRUE(iequals("HELO", "helo"));
  EXPECT_TRUE(iequals("MaIl", "mAiL"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("HELO", "HELOX"));
  EXPECT_FALSE(iequals("HELO", "EHLO"));
  EXPECT_FALSE(iequals("@", "`"));  // 0x40 and 0x60 differ by the case bit but are not letters
  EXPECT_FALSE(iequals("[", "{"));
  EXPECT_FALSE(iequals("Ä", "ä"));
}

TEST(Text, IstartsWith) {
  EXPECT_TRUE(istartsWith("MAIL FROM:<x>", "mail from:"));
  EXPECT_TRUE(istartsWith("abc", ""));
  EXPECT_TRUE(istartsWith("abc", "ABC"));
  EXPECT_FALSE(istartsWith("ab", "abc"));
  EXPECT_FALSE(istartsWith("RCPT TO:", "mail"));
}

}  // namespace
}  // namespace mb
