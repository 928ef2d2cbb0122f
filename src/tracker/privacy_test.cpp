#include "tracker/privacy.h"

#include <gtest/gtest.h>

namespace mb::tracker {
namespace {

TEST(MaskAddress, KeepsFirstAndLastCharacterOfEachPart) {
  EXPECT_EQ(maskAddress("mail@example.com"), "m**l@e*****e.com");
  EXPECT_EQ(maskAddress("a@b.de"), "*@*.de");
  EXPECT_EQ(maskAddress("ab@mx.example.co.uk"), "a*@m*.e*****e.c*.uk");
  EXPECT_EQ(maskAddress("user@localhost"), "u**r@l*******t");
  EXPECT_EQ(maskAddress("no-at-sign"), "n********n");
  // UTF-8 characters are masked whole.
  EXPECT_EQ(maskAddress("jörg@bücher.de"), "j**g@b****r.de");
  EXPECT_EQ(maskAddress("\xc3\xa9t\xc3\xa9@x.fr"), "\xc3\xa9*\xc3\xa9@*.fr");
}

TEST(MaskSubject, CutsAfterFifteenCharacters) {
  EXPECT_EQ(maskSubject("short"), "short");
  EXPECT_EQ(maskSubject("exactly 15 char"), "exactly 15 char");
  EXPECT_EQ(maskSubject("Invoice 2026-11 for Contoso"), "Invoice 2026-11\xE2\x80\xA6");
  EXPECT_EQ(maskSubject("Überweisung für Rechnung"), "Überweisung für\xE2\x80\xA6");
  // A stray byte is one character and is not completed into garbage.
  EXPECT_EQ(maskSubject(std::string(20, '\xff')), std::string(15, '\xff') + "\xE2\x80\xA6");
}

TEST(Privacy, FollowsTheSettings) {
  config::TrackerConfig c;
  Privacy plain(c);
  EXPECT_EQ(plain.address("mail@example.com"), "mail@example.com");
  EXPECT_EQ(plain.subject("Quarterly report for the board"), "Quarterly report for the board");
  c.masking = config::Masking::Partial;
  Privacy partial(c);
  EXPECT_EQ(partial.address("mail@example.com"), "m**l@e*****e.com");
  EXPECT_EQ(partial.address(""), "");
  EXPECT_EQ(partial.subject("Quarterly report for the board"), "Quarterly repor\xE2\x80\xA6");
  c.store_addresses = false;
  c.store_subject = false;
  Privacy hidden(c);
  EXPECT_EQ(hidden.address("mail@example.com"), "***");
  EXPECT_EQ(hidden.address(""), "***");
  EXPECT_EQ(hidden.subject("anything"), "***");
}

}  // namespace
}  // namespace mb::tracker
