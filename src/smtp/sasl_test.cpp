#include "smtp/sasl.h"

#include <gtest/gtest.h>

#include <string>

namespace mb::smtp {
namespace {

TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(encodeBase64(plain), encoded);
    std::string out = "stale";
    ASSERT_TRUE(decodeBase64(encoded, out)) << encoded;
    EXPECT_EQ(out, plain);
  }
}

TEST(Base64, RoundTripsEveryByte) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  for (std::size_t len = 0; len <= all.size(); len += 1) {
    const std::string in = all.substr(all.size() - len);
    std::string out;
    ASSERT_TRUE(decodeBase64(encodeBase64(in), out)) << len;
    ASSERT_EQ(out, in);
  }
}

TEST(Base64, StrictDecoding) {
  for (const char* bad :
       {"Zg", "Zg=", "Zm9", "Zm9vY", "Z===", "====", "Zg==Zg==", "Zm9v=", "=Zm9",
        "Zh==",  // unused bits set
        "Zm9=",  // unused bits set
        "Zm9v\r\n", "Zm 9v", " Zm9v", "Zm9v ", "Zm-_", "Zm9v\xc3\xa4", "Zg=a", "Z=g="}) {
    std::string out = "stale";
    EXPECT_FALSE(decodeBase64(bad, out)) << bad;
    EXPECT_EQ(out, "");
  }
  std::string out;
  EXPECT_FALSE(decodeBase64(std::string_view("Zg\0=", 4), out));
}

TEST(Base64, OctetsAbove0x7fAreNotDigits) {
  // Found by smtp_command_fuzz: libsodium alone decoded this to three bytes.
  std::string out;
  EXPECT_FALSE(decodeBase64(std::string("\xda" "H" "\xf4" "F", 4), out));
  EXPECT_TRUE(out.empty());
  for (int c = 0x80; c <= 0xff; ++c) {
    std::string in = "QUJD";
    in[1] = static_cast<char>(c);
    EXPECT_FALSE(decodeBase64(in, out)) << c;
  }
}

TEST(Sasl, SplitPlainMessage) {
  AuthRequest r;
  ASSERT_TRUE(splitPlainMessage(std::string_view("\0user\0pass", 10), r));
  EXPECT_EQ(r.authzid, "");
  EXPECT_EQ(r.user, "user");
  EXPECT_EQ(r.password, "pass");
  ASSERT_TRUE(splitPlainMessage(std::string_view("admin\0user\0p w\xc3\xa4", 16), r));
  EXPECT_EQ(r.authzid, "admin");
  EXPECT_EQ(r.user, "user");
  EXPECT_EQ(r.password, "p w\xc3\xa4");
  ASSERT_TRUE(
      splitPlainMessage(std::string_view("\0\0", 2), r));  // empty fields are the caller's to judge
  EXPECT_EQ(r.user, "");
  for (std::string_view bad :
       {std::string_view(""), std::string_view("user"), std::string_view("\0user", 5),
        std::string_view("\0user\0pass\0", 11), std::string_view("\0\0\0", 3)}) {
    EXPECT_FALSE(splitPlainMessage(bad, r));
  }
}

TEST(Sasl, WipeOverwritesTheBytes) {
  std::string secret(64, 'S');  // past the small-string buffer: its own allocation
  const char* bytes = secret.data();
  wipe(secret);
  EXPECT_TRUE(secret.empty());
  // clear() keeps the allocation, so the old bytes can be looked at.
  EXPECT_EQ(secret.data(), bytes);
  for (std::size_t i = 0; i < 64; ++i) ASSERT_EQ(bytes[i], '\0') << i;
}

}  // namespace
}  // namespace mb::smtp
