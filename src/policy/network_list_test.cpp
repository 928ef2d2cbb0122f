#include "policy/network_list.h"

#include <gtest/gtest.h>

namespace mb::policy {
namespace {

NetworkList listOf(const std::vector<std::string>& cidrs) {
  auto r = NetworkList::parse(cidrs);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : NetworkList();
}

std::string errorFor(std::string_view cidr) {
  Status st = NetworkList::validate(cidr);
  EXPECT_FALSE(st.ok()) << cidr << " was accepted";
  return st.ok() ? "" : st.error().message;
}

TEST(NetworkList, EmptyListMatchesNothing) {
  NetworkList list;
  EXPECT_TRUE(list.empty());
  EXPECT_FALSE(list.contains("127.0.0.1"));
  EXPECT_TRUE(listOf({}).empty());
}

TEST(NetworkList, Ipv4Networks) {
  const auto list = listOf({"192.0.2.0/24", "10.0.0.0/8"});
  EXPECT_FALSE(list.empty());
  EXPECT_TRUE(list.contains("192.0.2.0"));
  EXPECT_TRUE(list.contains("192.0.2.255"));
  EXPECT_TRUE(list.contains("10.255.1.2"));
  EXPECT_FALSE(list.contains("192.0.3.1"));
  EXPECT_FALSE(list.contains("11.0.0.1"));
  EXPECT_FALSE(list.contains("2001:db8::1"));
}

TEST(NetworkList, PrefixesThatAreNotByteAligned) {
  const auto list = listOf({"172.16.0.0/12", "198.51.100.64/27"});
  EXPECT_TRUE(list.contains("172.31.255.255"));
  EXPECT_FALSE(list.contains("172.32.0.0"));
  EXPECT_FALSE(list.contains("172.15.255.255"));
  EXPECT_TRUE(list.contains("198.51.100.64"));
  EXPECT_TRUE(list.contains("198.51.100.95"));
  EXPECT_FALSE(list.contains("198.51.100.96"));
  EXPECT_FALSE(list.contains("198.51.100.63"));
}

TEST(NetworkList, Ipv6Networks) {
  const auto list = listOf({"2001:db8::/32", "fd00:1:2:3::/64"});
  EXPECT_TRUE(list.contains("2001:db8::1"));
  EXPECT_TRUE(list.contains("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(list.contains("2001:db9::1"));
  EXPECT_TRUE(list.contains("fd00:1:2:3:abcd::1"));
  EXPECT_FALSE(list.contains("fd00:1:2:4::1"));
  EXPECT_FALSE(list.contains("10.0.0.1"));
}

TEST(NetworkList, BareAddressesAreHostRoutes) {
  const auto list = listOf({"192.0.2.7", "::1"});
  EXPECT_TRUE(list.contains("192.0.2.7"));
  EXPECT_FALSE(list.contains("192.0.2.8"));
  EXPECT_TRUE(list.contains("::1"));
  EXPECT_TRUE(list.contains("0:0:0:0:0:0:0:1"));  // same address, other spelling
  EXPECT_FALSE(list.contains("::2"));
}

TEST(NetworkList, ZeroPrefixMatchesTheWholeFamily) {
  const auto v4 = listOf({"0.0.0.0/0"});
  EXPECT_TRUE(v4.contains("1.2.3.4"));
  EXPECT_TRUE(v4.contains("255.255.255.255"));
  EXPECT_FALSE(v4.contains("2001:db8::1")) << "an IPv4 /0 is not every IPv6 address";
  const auto v6 = listOf({"::/0"});
  EXPECT_TRUE(v6.contains("2001:db8::1"));
  EXPECT_TRUE(v6.contains("1.2.3.4")) << "::/0 covers the IPv4-mapped range too";
}

TEST(NetworkList, FullLengthPrefixes) {
  const auto list = listOf({"203.0.113.9/32", "2001:db8::9/128"});
  EXPECT_TRUE(list.contains("203.0.113.9"));
  EXPECT_FALSE(list.contains("203.0.113.8"));
  EXPECT_TRUE(list.contains("2001:db8::9"));
  EXPECT_FALSE(list.contains("2001:db8::8"));
}

TEST(NetworkList, Ipv4MappedClientsMatchIpv4Networks) {
  const auto list = listOf({"127.0.0.0/8", "192.0.2.0/24"});
  EXPECT_TRUE(list.contains("::ffff:127.0.0.1"));
  EXPECT_TRUE(list.contains("::FFFF:192.0.2.200"));
  EXPECT_TRUE(list.contains("::ffff:c000:201"));  // 192.0.2.1 in hex
  EXPECT_FALSE(list.contains("::ffff:192.0.3.1"));
  EXPECT_FALSE(list.contains("::127.0.0.1")) << "IPv4-compatible is not IPv4-mapped";
  EXPECT_FALSE(list.contains("64:ff9b::7f00:1")) << "NAT64 is not IPv4-mapped";
}

TEST(NetworkList, HostBitsAfterThePrefixAreMasked) {
  const auto list = listOf({"192.0.2.77/24", "2001:db8::1234/32"});
  EXPECT_TRUE(list.contains("192.0.2.1"));
  EXPECT_FALSE(list.contains("192.0.3.77"));
  EXPECT_TRUE(list.contains("2001:db8:1::"));
  EXPECT_TRUE(NetworkList::validate("10.1.2.3/8").ok());
}

TEST(NetworkList, ZoneIdOnClientAddressIsIgnored) {
  const auto list = listOf({"fe80::/10"});
  EXPECT_TRUE(list.contains("fe80::1%eth0"));
  EXPECT_TRUE(list.contains("fe80::1"));
}

TEST(NetworkList, GarbageClientAddressesNeverMatch) {
  const auto list = listOf({"0.0.0.0/0", "::/0"});
  for (const char* a : {"", "localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "::g", "1.2.3.4/32",
                        "[::1]", " 1.2.3.4"}) {
    EXPECT_FALSE(list.contains(a)) << a;
  }
}

TEST(NetworkList, ValidateAcceptsGoodEntries) {
  for (const char* c :
       {"127.0.0.1", "127.0.0.0/8", "0.0.0.0/0", "10.0.0.0/32", "::1", "::/0", "::1/128",
        "2001:db8::/32", "::ffff:10.0.0.0/104", "fe80::/10", "10.0.0.0/08"}) {
    EXPECT_TRUE(NetworkList::validate(c).ok()) << c;
  }
}

TEST(NetworkList, ValidateRejectsGarbageNamingTheEntry) {
  struct Case {
    const char* entry;
    const char* expect;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"", "empty"},
           {"10.0.0.0/33", "prefix length 33 is larger than 32"},
           {"2001:db8::/129", "prefix length 129 is larger than 128"},
           {"10.0.0.0/", "prefix length"},
           {"10.0.0.0/-1", "prefix length"},
           {"10.0.0.0/+8", "prefix length"},
           {"10.0.0.0/8/8", "prefix length"},
           {"10.0.0.0/0008", "prefix length"},
           {"10.0.0.0/ 8", "prefix length"},
           {"10/8", "not an IPv4 or IPv6 address"},
           {"10.0.0", "not an IPv4 or IPv6 address"},
           {"256.0.0.0/8", "not an IPv4 or IPv6 address"},
           {"010.0.0.0/8", "not an IPv4 or IPv6 address"},
           {"example.com", "not an IPv4 or IPv6 address"},
           {"localhost", "not an IPv4 or IPv6 address"},
           {"2001:db8:::/32", "not an IPv4 or IPv6 address"},
           {"[::1]/128", "not an IPv4 or IPv6 address"},
           {"fe80::1%eth0/64", "not an IPv4 or IPv6 address"},
           {" 10.0.0.0/8", "not an IPv4 or IPv6 address"},
           {"/8", "not an IPv4 or IPv6 address"},
       }) {
    const std::string msg = errorFor(c.entry);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.entry << " -> " << msg;
    EXPECT_NE(msg.find(std::string("'") + c.entry + "'"), std::string::npos) << msg;
  }
}

TEST(NetworkList, ControlCharactersInEntriesAreEscapedInMessages) {
  const std::string msg = errorFor("10.0.0.0\n/8");
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_NE(msg.find("\\x0a"), std::string::npos);
}

TEST(NetworkList, ParseReportsTheFirstBadEntry) {
  auto r = NetworkList::parse({"127.0.0.0/8", "bogus", "also/bogus"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("'bogus'"), std::string::npos);
  EXPECT_EQ(r.error().message.find("also"), std::string::npos);
}

}  // namespace
}  // namespace mb::policy
