#include "oauth/encoding.h"

#include <gtest/gtest.h>

namespace mb::oauth {
namespace {

TEST(PercentEncode, UnreservedPass) {
  EXPECT_EQ(percentEncode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(percentEncode(""), "");
}

TEST(PercentEncode, EverythingElseIsEscapedUpperCase) {
  EXPECT_EQ(percentEncode(" "), "%20");
  EXPECT_EQ(percentEncode("a+b&c=d"), "a%2Bb%26c%3Dd");
  EXPECT_EQ(percentEncode("https://graph.microsoft.com/.default"),
            "https%3A%2F%2Fgraph.microsoft.com%2F.default");
  EXPECT_EQ(percentEncode("%"), "%25");
  EXPECT_EQ(percentEncode("?#[]@!$'()*,;"), "%3F%23%5B%5D%40%21%24%27%28%29%2A%2C%3B");
  EXPECT_EQ(percentEncode(std::string_view("\0\n\x7f", 3)), "%00%0A%7F");
  EXPECT_EQ(percentEncode("\xc3\xa9"), "%C3%A9");  // UTF-8 é, octet by octet
  EXPECT_EQ(percentEncode("\xff"), "%FF");
}

TEST(FormEncode, JoinsPairsInOrder) {
  EXPECT_EQ(formEncode({}), "");
  EXPECT_EQ(formEncode({{"a", "1"}}), "a=1");
  EXPECT_EQ(formEncode({{"client_secret", "x~Y.8Q+/=&z"}, {"grant_type", "client_credentials"}}),
            "client_secret=x~Y.8Q%2B%2F%3D%26z&grant_type=client_credentials");
  EXPECT_EQ(formEncode({{"a b", "c d"}}), "a%20b=c%20d");
}

TEST(Base64, EncodesTheRfc4648Vectors) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64Encode("\xfb\xff\xfe"), "+//+");
  EXPECT_EQ(base64Encode(std::string_view("\0\0", 2)), "AAA=");
}

// The encoder works in pieces of 3 MiB: a message larger than one, with a
// length that is no multiple of 3, must come out as one encoding, no
// padding or break at the seams.
TEST(Base64, EncodesInputsLargerThanOnePiece) {
  std::string in(7 * 1024 * 1024 + 1, '\0');  // 3k + 2 octets: one '=' at the end
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  const std::string out = base64Encode(in);
  ASSERT_EQ(out.size(), (in.size() + 2) / 3 * 4);
  EXPECT_EQ(out.find('='), out.size() - 1);  // one padding octet, at the very end
  EXPECT_EQ(out.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="),
            std::string::npos);
  std::string url = out.substr(0, out.size() - 1);
  for (char& c : url) c = c == '+' ? '-' : (c == '/' ? '_' : c);
  // (Compared as booleans: a mismatch would print megabytes.)
  EXPECT_TRUE(base64UrlDecode(url) == in);
  EXPECT_TRUE(base64UrlEncode(in) == url);
}

TEST(Base64Url, EncodesWithoutPadding) {
  EXPECT_EQ(base64UrlEncode(""), "");
  EXPECT_EQ(base64UrlEncode("f"), "Zg");
  EXPECT_EQ(base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(base64UrlEncode("\xfb\xff\xfe"), "-__-");  // '+' and '/' in standard base64
  EXPECT_EQ(base64UrlEncode(R"({"alg":"PS256"})"), "eyJhbGciOiJQUzI1NiJ9");
}

TEST(Base64Url, DecodesAndRefusesOtherAlphabets) {
  EXPECT_EQ(base64UrlDecode("Zm9v"), "foo");
  EXPECT_EQ(base64UrlDecode("Zg"), "f");
  EXPECT_EQ(base64UrlDecode("-__-"), "\xfb\xff\xfe");
  EXPECT_EQ(base64UrlDecode(""), "");
  EXPECT_FALSE(base64UrlDecode("Zg=="));  // padding
  EXPECT_FALSE(base64UrlDecode("+//+"));  // standard alphabet
  EXPECT_FALSE(base64UrlDecode("Z"));     // impossible length
  EXPECT_FALSE(base64UrlDecode("Zm9v\xda"));
}

}  // namespace
}  // namespace mb::oauth
