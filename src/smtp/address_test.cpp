#include "smtp/address.h"

#include <gtest/gtest.h>

#include <string>

namespace mb::smtp {
namespace {

AddressProblem rcpt(std::string_view inner, bool utf8 = false) {
  return Address::checkPath(inner, PathRole::Recipient, utf8).problem;
}
AddressProblem sender(std::string_view inner, bool utf8 = false) {
  return Address::checkPath(inner, PathRole::Sender, utf8).problem;
}

TEST(Address, PlainMailboxes) {
  for (const char* a : {"user@example.com", "a@b", "first.last@sub.example.org", "x+tag@example.com",
                        "!#$%&'*+-/=?^_`{|}~@example.com", "user@xn--bcher-kva.example", "u@a-b.c0",
                        "1@2.3", "USER@EXAMPLE.COM"}) {
    EXPECT_EQ(rcpt(a), AddressProblem::None) << a;
    EXPECT_EQ(sender(a), AddressProblem::None) << a;
  }
}

TEST(Address, QuotedLocalParts) {
  for (const char* a : {R"("john doe"@example.com)", R"("a@b"@example.com)", R"("a\"b"@example.com)",
                        R"("a\\b"@example.com)", R"(""@example.com)", R"("a.b..c"@example.com)",
                        R"("<>"@example.com)"}) {
    EXPECT_EQ(rcpt(a), AddressProblem::None) << a;
  }
  for (const char* a : {R"("unterminated@example.com)", R"("a"b@example.com)", R"("a"@)", R"("a")"}) {
    EXPECT_NE(rcpt(a), AddressProblem::None) << a;
  }
  EXPECT_EQ(rcpt(R"("a")"), AddressProblem::MissingDomain);
  EXPECT_EQ(sender(R"("a")"), AddressProblem::None);
}

TEST(Address, BadDotStrings) {
  for (const char* a : {".a@b.c", "a.@b.c", "a..b@b.c", "a b@c.d", "a(b)@c.d", "a,b@c.d", "a:b@c.d",
                        "a;b@c.d", "a<b@c.d", "a>b@c.d", "a[b@c.d", "a\\b@c.d", "a\"b@c.d", "@b.c"}) {
    EXPECT_EQ(rcpt(a), AddressProblem::Syntax) << a;
  }
}

TEST(Address, DoubleAtIsSyntax) {
  EXPECT_EQ(rcpt("a@b@c"), AddressProblem::Syntax);
  EXPECT_EQ(sender("a@b@c"), AddressProblem::Syntax);
  // Quoted, the first @ is part of the local part: valid syntax, policy's call.
  EXPECT_EQ(rcpt("\"a@b\"@c"), AddressProblem::None);
}

TEST(Address, PercentHackAndBangPathAreSyntaxOnly) {
  EXPECT_EQ(rcpt("user%other.example@relay.example"), AddressProblem::None);
  EXPECT_EQ(rcpt("host!user@relay.example"), AddressProblem::None);
}

TEST(Address, Domains) {
  for (const char* d : {"example.com", "a", "a-b.c", "0.example", "a.b.c.d.e.f"}) {
    EXPECT_TRUE(Address::isDomain(d, false)) << d;
  }
  for (const char* d : {"", ".", "example.com.", ".example.com", "a..b", "-a.b", "a-.b", "a_b.c", "a b.c",
                        "[1.2.3.4", "1.2.3.4]", "ex\xc3\xa4mple.com"}) {
    EXPECT_FALSE(Address::isDomain(d, false)) << d;
  }
  EXPECT_TRUE(Address::isDomain(std::string(63, 'a') + ".com", false));
  EXPECT_FALSE(Address::isDomain(std::string(64, 'a') + ".com", false));
  EXPECT_TRUE(Address::isDomain("ex\xc3\xa4mple.com", true));
}

TEST(Address, AddressLiterals) {
  for (const char* l : {"[192.0.2.1]", "[0.0.0.0]", "[255.255.255.255]", "[IPv6:2001:db8::1]", "[ipv6:::1]",
                        "[IPv6:::]", "[IPv6:1:2:3:4:5:6:7:8]", "[IPv6:::ffff:192.0.2.1]",
                        "[IPv6:1:2:3:4:5:6:192.0.2.1]", "[IPv6:fe80::1:2:3:4:5:6]", "[IPv6:1::]",
                        "[IPv6:1:2:3:4:5:6:7::]"}) {
    EXPECT_TRUE(Address::isAddressLiteral(l)) << l;
    EXPECT_EQ(rcpt(std::string("user@") + l), AddressProblem::None) << l;
  }
  for (const char* l : {"[]", "[256.0.0.1]", "[1.2.3]", "[1.2.3.4.5]", "[1..2.3]", "[1.2.3.4 ]", "[a.b.c.d]",
                        "[IPv6:1:2:3:4:5:6:7]", "[IPv6:1:2:3:4:5:6:7:8:9]", "[IPv6:1::2::3]",
                        "[IPv6:12345::1]", "[IPv6:g::1]", "[IPv6::1]", "[IPv6:1:]", "[IPv6:192.0.2.1]",
                        "[IPv6:1:2:3:4:5:6:7:8::]", "[x-tag:abc]", "[1234.1.1.1]",
                        "192.0.2.1]"}) {
    EXPECT_FALSE(Address::isAddressLiteral(l)) << l;
  }
  EXPECT_EQ(rcpt("user@[300.1.1.1]"), AddressProblem::Syntax);
}

TEST(Address, NullSenderOnlyForMail) {
  const PathCheck s = Address::checkPath("", PathRole::Sender, false);
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.mailbox, "");
  EXPECT_EQ(rcpt(""), AddressProblem::Syntax);
}

TEST(Address, RecipientNeedsDomain) {
  EXPECT_EQ(rcpt("postmaster"), AddressProblem::MissingDomain);
  EXPECT_EQ(rcpt("user"), AddressProblem::MissingDomain);
  EXPECT_EQ(rcpt("user@"), AddressProblem::Syntax);
  EXPECT_EQ(sender("scanner"), AddressProblem::None);
  EXPECT_EQ(sender("scanner@"), AddressProblem::Syntax);
}

TEST(Address, LengthLimits) {
  const std::string local64(64, 'l');
  EXPECT_EQ(rcpt(local64 + "@example.com"), AddressProblem::None);
  EXPECT_EQ(rcpt(local64 + "l@example.com"), AddressProblem::TooLong);
  EXPECT_EQ(rcpt("\"" + std::string(61, 'q') + "\"@example.com"), AddressProblem::None);  // 63 with quotes
  EXPECT_EQ(rcpt("\"" + std::string(63, 'q') + "\"@example.com"), AddressProblem::TooLong);

  // A domain of 4 labels of 63 = 255 octets: within the domain limit but the
  // path "<a@" + 255 + ">" is 259 > 256.
  const std::string label(63, 'd');
  const std::string domain255 = label + "." + label + "." + label + "." + label;
  ASSERT_EQ(domain255.size(), 255u);
  EXPECT_TRUE(Address::isDomain(domain255, false));
  EXPECT_EQ(rcpt("a@" + domain255), AddressProblem::TooLong);

  // Path: inner 254 + 2 brackets = 256 is the limit.
  const std::string domain = label + "." + label + "." + label + "." + std::string(59, 'd');
  ASSERT_EQ(domain.size(), 251u);
  EXPECT_EQ(rcpt("a@" + domain), AddressProblem::None);  // 253 inner
  EXPECT_EQ(rcpt("ab@" + domain), AddressProblem::None);                     // 254 inner
  EXPECT_EQ(rcpt("abc@" + domain), AddressProblem::TooLong);                 // 255 inner
  EXPECT_EQ(Address::replyFor(AddressProblem::TooLong, PathRole::Recipient).wire(),
            "553 5.1.3 Address too long\r\n");
}

TEST(Address, EightBitNeedsSmtpUtf8) {
  const std::string u = "j\xc3\xb6rg@example.com";  // jörg
  EXPECT_EQ(rcpt(u), AddressProblem::NeedsSmtpUtf8);
  EXPECT_EQ(sender(u), AddressProblem::NeedsSmtpUtf8);
  EXPECT_EQ(rcpt(u, true), AddressProblem::None);
  EXPECT_EQ(rcpt("user@b\xc3\xbc" "cher.example", true), AddressProblem::None);
  EXPECT_EQ(rcpt("user@b\xc3\xbc" "cher.example", false), AddressProblem::NeedsSmtpUtf8);
  EXPECT_EQ(rcpt("\"\xc3\xb6 x\"@example.com", true), AddressProblem::None);
  EXPECT_EQ(Address::replyFor(AddressProblem::NeedsSmtpUtf8, PathRole::Sender).code, 553);
  EXPECT_EQ(Address::replyFor(AddressProblem::NeedsSmtpUtf8, PathRole::Sender).enhanced, "5.6.7");
}

TEST(Address, MalformedUtf8RefusedEvenWithSmtpUtf8) {
  for (const char* a : {"\xc3@example.com", "\xc0\xaf@example.com", "\xe0\x80\xaf@example.com",
                        "\xed\xa0\x80@example.com", "\xf5\x80\x80\x80@example.com", "\xff@example.com",
                        "\xc2\x85@example.com", "\x80@example.com", "a@\xc3.example"}) {
    EXPECT_EQ(rcpt(a, true), AddressProblem::Syntax) << a;
  }
}

TEST(Address, ControlCharactersNeverAccepted) {
  for (char c : {'\0', '\r', '\n', '\t', '\x01', '\x1b', '\x7f'}) {
    std::string a = "us";
    a += c;
    a += "er@example.com";
    EXPECT_EQ(rcpt(a, true), AddressProblem::Syntax) << static_cast<int>(c);
    std::string q = "\"us";
    q += c;
    q += "er\"@example.com";
    EXPECT_EQ(rcpt(q, true), AddressProblem::Syntax) << static_cast<int>(c);
    std::string quoted_pair = "\"us\\";
    quoted_pair += c;
    quoted_pair += "er\"@example.com";
    EXPECT_EQ(rcpt(quoted_pair, true), AddressProblem::Syntax) << static_cast<int>(c);
    std::string d = "user@exa";
    d += c;
    d += "mple.com";
    EXPECT_EQ(rcpt(d, true), AddressProblem::Syntax) << static_cast<int>(c);
  }
}

TEST(Address, SourceRoutesAreDropped) {
  PathCheck p = Address::checkPath("@a.example,@b.example:user@c.example", PathRole::Recipient, false);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.mailbox, "user@c.example");
  p = Address::checkPath("@a.example:user@c.example", PathRole::Recipient, false);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.mailbox, "user@c.example");
  p = Address::checkPath("@[192.0.2.1]:user@c.example", PathRole::Recipient, false);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.mailbox, "user@c.example");
  p = Address::checkPath("@[IPv6:::1],@b:user@c.example", PathRole::Sender, false);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.mailbox, "user@c.example");

  for (const char* bad : {"@a.example", "@a.example:", "@:user@c", "@a,user@c", "@a,:user@c", "@a;@b:user@c",
                          "@a_b:user@c", "@[1.2.3.4:user@c", "@a:@b:user@c", "@a,b:user@c"}) {
    EXPECT_NE(rcpt(bad), AddressProblem::None) << bad;
  }
  EXPECT_EQ(rcpt("@b\xc3\xbc.example:user@c"), AddressProblem::NeedsSmtpUtf8);
}

TEST(Address, RepliesAreGeneric) {
  EXPECT_EQ(Address::replyFor(AddressProblem::Syntax, PathRole::Sender).wire(),
            "501 5.1.7 Bad sender address syntax\r\n");
  EXPECT_EQ(Address::replyFor(AddressProblem::Syntax, PathRole::Recipient).wire(),
            "501 5.1.3 Bad recipient address syntax\r\n");
  EXPECT_EQ(Address::replyFor(AddressProblem::MissingDomain, PathRole::Recipient).code, 553);
  EXPECT_EQ(Address::replyFor(AddressProblem::MissingDomain, PathRole::Recipient).enhanced, "5.1.3");
}

}  // namespace
}  // namespace mb::smtp
