#include "policy/sender_policy.h"

#include <gtest/gtest.h>

namespace mb::policy {
namespace {

config::SenderConfig senders(std::vector<std::string> allowed, std::string override_address = "",
                             std::string default_address = "") {
  config::SenderConfig s;
  s.allowed = std::move(allowed);
  s.override_address = std::move(override_address);
  s.default_address = std::move(default_address);
  return s;
}

config::UserConfig user(std::vector<std::string> allowed, std::string sender_override = "") {
  config::UserConfig u;
  u.name = "scanner";
  u.allowed_senders = std::move(allowed);
  u.sender_override = std::move(sender_override);
  return u;
}

TEST(SenderPolicy, NoRulesAllowAnything) {
  SenderPolicy p(senders({}));
  for (const char* s : {"a@example.com", "", "scanner"}) {
    const auto d = p.decide(s, nullptr);
    EXPECT_TRUE(d.allowed) << s;
    EXPECT_EQ(d.effective_sender, s);
    EXPECT_EQ(d.reason, "no sender list applies");
  }
}

TEST(SenderPolicy, UserOverrideComesFirst) {
  SenderPolicy p(senders({"@example.com"}, "relay@example.com", "dflt@example.com"));
  const auto u = user({"x@example.com"}, "scanner@example.com");
  for (const char* s : {"evil@evil.test", "", "nodomain"}) {
    const auto d = p.decide(s, &u);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.effective_sender, "scanner@example.com");
    EXPECT_EQ(d.reason, "sender_override of user 'scanner'");
  }
}

TEST(SenderPolicy, GlobalOverride) {
  SenderPolicy p(senders({"@example.com"}, "relay@example.com", "dflt@example.com"));
  const auto u = user({"x@example.com"});
  for (const auto* who : {&u, static_cast<const config::UserConfig*>(nullptr)}) {
    const auto d = p.decide("evil@evil.test", who);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.effective_sender, "relay@example.com");
    EXPECT_EQ(d.reason, "senders.override");
  }
}

TEST(SenderPolicy, DefaultReplacesNullAndDomainlessSenders) {
  SenderPolicy p(senders({}, "", "noreply@example.com"));
  auto d = p.decide("", nullptr);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.effective_sender, "noreply@example.com");
  EXPECT_EQ(d.reason, "null sender replaced by senders.default; no sender list applies");
  d = p.decide("scanner", nullptr);
  EXPECT_EQ(d.effective_sender, "noreply@example.com");
  EXPECT_EQ(d.reason,
            "sender without a domain replaced by senders.default; no sender list applies");
  d = p.decide("scanner@", nullptr);
  EXPECT_EQ(d.effective_sender, "noreply@example.com");
  d = p.decide("a@example.com", nullptr);
  EXPECT_EQ(d.effective_sender, "a@example.com");
}

TEST(SenderPolicy, NullSenderIsKeptWithoutDefault) {
  SenderPolicy p(senders({}));
  const auto d = p.decide("", nullptr);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.effective_sender, "");
}

TEST(SenderPolicy, GlobalList) {
  SenderPolicy p(senders({"@Example.com", "Boss@Partner.test"}));
  EXPECT_TRUE(p.decide("anyone@example.com", nullptr).allowed);
  EXPECT_TRUE(p.decide("ANYONE@EXAMPLE.COM", nullptr).allowed);
  EXPECT_TRUE(p.decide("boss@partner.test", nullptr).allowed);
  EXPECT_FALSE(p.decide("other@partner.test", nullptr).allowed);
  EXPECT_FALSE(p.decide("a@sub.example.com", nullptr).allowed);
  EXPECT_FALSE(p.decide("a@example.com.evil.test", nullptr).allowed);
  EXPECT_FALSE(p.decide("\"a@example.com\"@evil.test", nullptr).allowed);
  const auto ok = p.decide("a@example.com", nullptr);
  EXPECT_EQ(ok.reason, "matches '@Example.com' in senders.allowed");
  const auto no = p.decide("a@evil.test", nullptr);
  EXPECT_EQ(no.reason, "not in senders.allowed");
  EXPECT_EQ(no.effective_sender, "a@evil.test");
}

TEST(SenderPolicy, ListsRefuseNullAndDomainlessSendersWithoutDefault) {
  SenderPolicy p(senders({"@example.com"}));
  auto d = p.decide("", nullptr);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason,
            "null sender, and senders.allowed applies (set senders.default to replace it)");
  d = p.decide("scanner", nullptr);
  EXPECT_FALSE(d.allowed);
  EXPECT_NE(d.reason.find("sender without a domain"), std::string::npos);
}

TEST(SenderPolicy, DefaultIsCheckedAgainstTheList) {
  SenderPolicy in(senders({"@example.com"}, "", "noreply@example.com"));
  EXPECT_TRUE(in.decide("", nullptr).allowed);
  SenderPolicy out(senders({"@example.com"}, "", "noreply@other.test"));
  const auto d = out.decide("", nullptr);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.effective_sender, "noreply@other.test");
  EXPECT_EQ(d.reason, "null sender replaced by senders.default; not in senders.allowed");
}

TEST(SenderPolicy, UserListReplacesTheGlobalOne) {
  SenderPolicy p(senders({"@example.com"}));
  const auto u = user({"scanner@example.com", "@scans.example.com"});
  EXPECT_TRUE(p.decide("scanner@example.com", &u).allowed);
  EXPECT_TRUE(p.decide("x@scans.example.com", &u).allowed);
  const auto d = p.decide("other@example.com", &u);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "not in allowed_senders of user 'scanner'");
  // Without a list of its own the user gets the global one.
  const auto plain = user({});
  EXPECT_TRUE(p.decide("other@example.com", &plain).allowed);
  EXPECT_FALSE(p.decide("x@scans.example.com", &plain).allowed);
}

TEST(SenderPolicy, OverridesAreMarkedAndFromHeadersCheckedAgainstTheLists) {
  SenderPolicy open(senders({}));
  EXPECT_FALSE(open.decide("a@example.com", nullptr).overridden);
  EXPECT_TRUE(open.allows("anyone@anywhere.test", nullptr));
  SenderPolicy p(senders({"@example.com"}, "relay@example.com"));
  EXPECT_TRUE(p.decide("a@example.com", nullptr).overridden);
  const auto u = user({"scanner@example.com"}, "x@example.com");
  EXPECT_TRUE(p.decide("a@example.com", &u).overridden);

  SenderPolicy lists(senders({"@example.com"}));
  std::string reason;
  EXPECT_TRUE(lists.allows("Floor2@Example.com", nullptr));
  EXPECT_FALSE(lists.allows("ceo@other.test", nullptr, &reason));
  EXPECT_EQ(reason, "not in senders.allowed");
  const auto limited = user({"scanner@example.com"});
  EXPECT_FALSE(lists.allows("floor2@example.com", &limited, &reason)) << "the user's list replaces the global one";
  EXPECT_EQ(reason, "not in allowed_senders of user 'scanner'");
  EXPECT_TRUE(lists.allows("scanner@example.com", &limited));
}

TEST(SenderPolicy, Matches) {
  EXPECT_TRUE(SenderPolicy::matches("a@example.com", "@example.com"));
  EXPECT_TRUE(SenderPolicy::matches("A@Example.Com", "a@example.com"));
  EXPECT_FALSE(SenderPolicy::matches("a@example.com", "b@example.com"));
  EXPECT_FALSE(SenderPolicy::matches("", "@example.com"));
  EXPECT_FALSE(SenderPolicy::matches("example.com", "@example.com"));
  EXPECT_FALSE(SenderPolicy::matches("a@example.com", ""));
}

TEST(SenderPolicy, ValidatePattern) {
  for (const char* ok : {"@example.com", "scanner@example.com", "first.last+tag@mail.example.com",
                         "o'brien@example.com", "Scanner@EXAMPLE.com"}) {
    EXPECT_TRUE(SenderPolicy::validatePattern(ok).ok()) << ok;
  }
  auto error = [](std::string_view p) {
    Status st = SenderPolicy::validatePattern(p);
    EXPECT_FALSE(st.ok()) << p;
    return st.ok() ? std::string() : st.error().message;
  };
  EXPECT_EQ(error(""), "invalid sender pattern '': empty");
  EXPECT_EQ(error("example.com"),
            "invalid sender pattern 'example.com': expected an address such as "
            "scanner@example.com");
  EXPECT_EQ(error("@"), "invalid sender pattern '@': invalid domain '': empty");
  EXPECT_EQ(error("@exa mple.com"),
            "invalid sender pattern '@exa mple.com': invalid domain 'exa mple.com': only letters, "
            "digits, '-' and '.' are allowed");
  EXPECT_NE(error("@@example.com").find("without '@'"), std::string::npos);
  EXPECT_NE(error("a b@example.com").find("holds a space"), std::string::npos);
  EXPECT_NE(error("<a@example.com>").find("holds a space"), std::string::npos);
  EXPECT_NE(error("a@b@example.com").find("holds a space"), std::string::npos);
  EXPECT_NE(error(std::string(65, 'a') + "@example.com").find("longer than 64"), std::string::npos);
  EXPECT_NE(error("a@").find("invalid domain"), std::string::npos);
}

TEST(SenderPolicy, ValidateAddress) {
  EXPECT_TRUE(SenderPolicy::validateAddress("noreply@example.com").ok());
  Status st = SenderPolicy::validateAddress("@example.com");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "invalid address '@example.com': the part before '@' is empty");
  st = SenderPolicy::validateAddress("");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "invalid address '': empty");
}

}  // namespace
}  // namespace mb::policy
