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

TEST(CredentialScrubber, RedactsEverySpelling) {
  CredentialScrubber scrubber;
  scrubber.add("pa ss+&\"word");
  std::string text =
      "raw pa ss+&\"word, form pa%20ss%2B%26%22word, json pa ss+&\\\"word, other password";
  scrubber.apply(text);
  EXPECT_EQ(text, "raw [redacted], form [redacted], json [redacted], other password");
}

TEST(CredentialScrubber, LongestSpellingFirst) {
  // The raw secret is the start of its form-encoded spelling: that one is
  // found whole, not cut after the raw part.
  CredentialScrubber scrubber;
  scrubber.add("abc%");
  std::string text = "a=abc%25&b=abc%";
  scrubber.apply(text);
  EXPECT_EQ(text, "a=[redacted]&b=[redacted]");
}

TEST(CredentialScrubber, SeveralCredentialsAndShortOnes) {
  CredentialScrubber scrubber;
  scrubber.add("header.claims.signature");
  scrubber.add("signature");
  scrubber.add("abc");  // too short to search for
  scrubber.add("");
  std::string text = "header.claims.signature | signature | abc";
  scrubber.apply(text);
  EXPECT_EQ(text, "[redacted] | [redacted] | abc");
}

TEST(CredentialScrubber, ACredentialInsideTheMarkDoesNotLoop) {
  CredentialScrubber scrubber;
  scrubber.add("dact");
  std::string text = "dact";
  scrubber.apply(text);
  EXPECT_EQ(text, "[redacted]");
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
