#include "oauth/credential_scrub.h"

#include <gtest/gtest.h>

#include <string>

namespace mb::oauth {
namespace {

TEST(CredentialScrub, RedactsEveryOccurrence) {
  std::string text = "a=s3cr3t&b=s3cr3t&c=S3CR3T";
  redact(text, "s3cr3t");
  EXPECT_EQ(text, "a=[redacted]&b=[redacted]&c=S3CR3T");
}

TEST(CredentialScrub, LeavesShortCredentialsAlone) {
  std::string text = "abc abc";
  redact(text, "abc");
  EXPECT_EQ(text, "abc abc");
  redact(text, "");
  EXPECT_EQ(text, "abc abc");
}

TEST(CredentialScrub, ACredentialInsideTheMarkDoesNotLoop) {
  std::string text = "dact redacted dact";
  redact(text, "dact");
  EXPECT_EQ(text, "[redacted] re[redacted]ed [redacted]");
}

TEST(CredentialScrub, WipeEmpties) {
  std::string s(100, 'k');
  wipe(s);
  EXPECT_TRUE(s.empty());
  std::string empty;
  wipe(empty);
  EXPECT_TRUE(empty.empty());
}

}  // namespace
}  // namespace mb::oauth
