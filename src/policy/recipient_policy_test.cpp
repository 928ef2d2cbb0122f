#include "policy/recipient_policy.h"

#include <gtest/gtest.h>

namespace mb::policy {
namespace {

config::UserConfig userWith(std::vector<std::string> domains) {
  config::UserConfig u;
  u.name = "u";
  u.allowed_recipient_domains = std::move(domains);
  return u;
}

TEST(RecipientPolicy, NoListsAllowEverything) {
  RecipientPolicy p(config::RecipientConfig{});
  const auto u = userWith({});
  EXPECT_TRUE(p.allowed("a@example.com", nullptr));
  EXPECT_TRUE(p.allowed("a@anything.test", &u));
  EXPECT_TRUE(p.allowed("postmaster", nullptr));
}

TEST(RecipientPolicy, GlobalList) {
  RecipientPolicy p(config::RecipientConfig{{"example.com", "Example.ORG"}});
  EXPECT_TRUE(p.allowed("a@example.com", nullptr));
  EXPECT_TRUE(p.allowed("a@EXAMPLE.com", nullptr));
  EXPECT_TRUE(p.allowed("b@example.org", nullptr));
  EXPECT_FALSE(p.allowed("a@sub.example.com", nullptr));  // no subdomains
  EXPECT_FALSE(p.allowed("a@example.com.evil.test", nullptr));
  EXPECT_FALSE(p.allowed("a@notexample.com", nullptr));
  EXPECT_FALSE(p.allowed("postmaster", nullptr));
  EXPECT_FALSE(p.allowed("", nullptr));
  // The domain is what follows the last '@'.
  EXPECT_TRUE(p.allowed("\"x@evil.test\"@example.com", nullptr));
  EXPECT_FALSE(p.allowed("a@example.com@evil.test", nullptr));
  const auto no_list = userWith({});
  EXPECT_FALSE(p.allowed("a@other.test", &no_list));  // a user without a list: the global one
}

TEST(RecipientPolicy, UserListReplacesTheGlobalOne) {
  RecipientPolicy p(config::RecipientConfig{{"example.com"}});
  const auto u = userWith({"partner.test"});
  EXPECT_TRUE(p.allowed("a@partner.test", &u));
  EXPECT_FALSE(p.allowed("a@example.com", &u));
  RecipientPolicy open(config::RecipientConfig{});
  EXPECT_FALSE(open.allowed("a@example.com", &u));
}

TEST(RecipientPolicy, DomainOf) {
  EXPECT_EQ(RecipientPolicy::domainOf("a@b.c"), "b.c");
  EXPECT_EQ(RecipientPolicy::domainOf("a@"), "");
  EXPECT_EQ(RecipientPolicy::domainOf("a"), "");
  EXPECT_EQ(RecipientPolicy::domainOf("@x"), "x");
}

TEST(RecipientPolicy, ValidateDomain) {
  EXPECT_TRUE(RecipientPolicy::validateDomain("example.com").ok());
  EXPECT_TRUE(RecipientPolicy::validateDomain("Mail-1.Example.COM").ok());
  EXPECT_TRUE(RecipientPolicy::validateDomain("corp").ok());
  EXPECT_TRUE(RecipientPolicy::validateDomain("xn--bcher-kva.example").ok());
  EXPECT_TRUE(RecipientPolicy::validateDomain("bücher.example").ok());
  EXPECT_TRUE(RecipientPolicy::validateDomain(std::string(63, 'a') + ".com").ok());
  auto error = [](std::string_view d) {
    Status st = RecipientPolicy::validateDomain(d);
    EXPECT_FALSE(st.ok()) << d;
    return st.ok() ? std::string() : st.error().message;
  };
  EXPECT_EQ(error(""), "invalid domain '': empty");
  EXPECT_EQ(error("@example.com"), "invalid domain '@example.com': write the domain without '@'");
  EXPECT_EQ(error("a@example.com"),
            "invalid domain 'a@example.com': expected a domain such as example.com, not an "
            "address");
  EXPECT_NE(error("example..com").find("empty label"), std::string::npos);
  EXPECT_NE(error(".example.com").find("empty label"), std::string::npos);
  EXPECT_NE(error("example.com.").find("empty label"), std::string::npos);
  EXPECT_NE(error("-example.com").find("start or end with '-'"), std::string::npos);
  EXPECT_NE(error("example-.com").find("start or end with '-'"), std::string::npos);
  EXPECT_NE(error("exa mple.com").find("only letters, digits"), std::string::npos);
  EXPECT_NE(error("example_x.com").find("only letters, digits"), std::string::npos);
  EXPECT_NE(error("[192.0.2.1]").find("only letters, digits"), std::string::npos);
  EXPECT_NE(error(std::string(64, 'a') + ".com").find("longer than 63"), std::string::npos);
  std::string long_domain;
  for (int i = 0; i < 51; ++i) long_domain += "abcd.";
  long_domain += "com";
  EXPECT_NE(error(long_domain).find("longer than 253"), std::string::npos);
  EXPECT_NE(error("a\r\nb").find("'a\\x0d\\x0ab'"), std::string::npos);
}

}  // namespace
}  // namespace mb::policy
