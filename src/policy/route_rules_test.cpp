#include "policy/route_rules.h"

#include <gtest/gtest.h>

namespace mb::policy {
namespace {

config::RouteConfig route(std::string provider, std::vector<std::string> from = {}, std::vector<std::string> users = {},
                          std::vector<std::string> listeners = {}, std::vector<std::string> to_domains = {}) {
  config::RouteConfig r;
  r.provider = std::move(provider);
  r.from = std::move(from);
  r.users = std::move(users);
  r.listeners = std::move(listeners);
  r.to_domains = std::move(to_domains);
  return r;
}

TEST(RouteRules, FirstMatchingRuleWins) {
  const RouteRules rules({route("gws", {"@subsidiary.example"}), route("smarthost", {}, {"erp"}),
                          route("partners", {}, {}, {}, {"partner.example", "partner.test"}),
                          route("internal", {}, {}, {"lan"}), route("m365")});
  const std::vector<std::string> one{"a@example.com"};
  auto c = rules.choose("Scanner@Subsidiary.Example", "erp", "lan", one);
  EXPECT_EQ(c.provider, "gws");
  EXPECT_EQ(c.rule, 0u);
  EXPECT_EQ(rules.choose("scanner@example.com", "erp", "lan", one).provider, "smarthost");
  EXPECT_EQ(rules.choose("scanner@example.com", "", "wan", {"x@partner.example", "y@PARTNER.test"}).provider,
            "partners");
  EXPECT_EQ(rules.choose("scanner@example.com", "", "wan", {"x@partner.example", "y@other.example"}).provider, "m365")
      << "to_domain needs every recipient";
  EXPECT_EQ(rules.choose("scanner@example.com", "", "lan", one).provider, "internal");
  EXPECT_EQ(rules.choose("", "", "wan", one).rule, 4u) << "a rule without conditions takes the rest";
}

TEST(RouteRules, ConditionsOfOneRuleMustAllHold) {
  const RouteRules rules({route("a", {"@example.com"}, {"erp"})});
  EXPECT_EQ(rules.choose("x@example.com", "erp", "", {"r@x.test"}).provider, "a");
  EXPECT_TRUE(rules.choose("x@example.com", "other", "", {"r@x.test"}).provider.empty());
  EXPECT_TRUE(rules.choose("x@other.test", "erp", "", {"r@x.test"}).provider.empty());
  EXPECT_FALSE(rules.choose("x@other.test", "erp", "", {"r@x.test"}).rule.has_value());
  EXPECT_TRUE(RouteRules({}).choose("x@example.com", "", "", {}).provider.empty());
}

TEST(RouteRules, UserNamesAreExactAndSubdomainsDoNotMatch) {
  const RouteRules rules({route("a", {}, {"ERP"}), route("b", {"@example.com"})});
  EXPECT_TRUE(rules.choose("x@sub.example.com", "erp", "", {"r@x.test"}).provider.empty());
}

}  // namespace
}  // namespace mb::policy
