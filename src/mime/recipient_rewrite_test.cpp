#include "mime/recipient_rewrite.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/testing/temp_dir.h"
#include "mime/gmime_support.h"

namespace mb::mime {
namespace {

using Envelope = std::vector<std::string>;

struct Parsed {
  std::string name;
  std::string addr;
  bool operator==(const Parsed&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Parsed& p) { return os << '"' << p.name << "\" <" << p.addr << '>'; }

void flatten(InternetAddressList* list, std::vector<Parsed>& out) {
  for (int i = 0; i < internet_address_list_length(list); ++i) {
    InternetAddress* ia = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_GROUP(ia)) {
      flatten(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), out);
    } else {
      const char* name = internet_address_get_name(ia);
      out.push_back({name != nullptr ? name : "", internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia))});
    }
  }
}

// The values of the fields called `name` in a header block, unfolded.
std::vector<std::string> fieldValues(std::string_view headers, std::string_view name) {
  std::vector<std::string> out;
  auto block = headerBlockOf(headers);
  if (!block) return out;
  for (const HeaderField& f : block->fields()) {
    if (f.name != name) continue;
    std::string v;
    for (char c : f.value) {
      if (c != '\r' && c != '\n') v += c;
    }
    out.push_back(v);
  }
  return out;
}

// The mailboxes GMime reads from the one field called `name` (decoded).
std::vector<Parsed> addressesIn(std::string_view headers, std::string_view name) {
  detail::ensureGMime();
  std::vector<Parsed> out;
  const auto values = fieldValues(headers, name);
  EXPECT_LE(values.size(), 1u) << "more than one " << name << " field";
  if (values.empty()) return out;
  detail::GObjectPtr<InternetAddressList> list(internet_address_list_parse(nullptr, values[0].c_str()));
  if (list) flatten(list.get(), out);
  return out;
}

// Every line ends in CRLF, none is longer than RFC 5322 allows, the block
// ends with the blank line.
void expectWellFormed(const std::string& headers) {
  ASSERT_GE(headers.size(), 2u);
  EXPECT_EQ(headers.substr(headers.size() - 2), "\r\n");
  EXPECT_TRUE(headers.size() == 2 || headers.substr(headers.size() - 4) == "\r\n\r\n");
  std::size_t start = 0;
  while (start < headers.size()) {
    const std::size_t nl = headers.find('\n', start);
    ASSERT_NE(nl, std::string::npos) << "unterminated last line";
    ASSERT_GT(nl, start);
    EXPECT_EQ(headers[nl - 1], '\r') << "bare LF at " << nl;
    EXPECT_LE(nl - 1 - start, 998u);
    start = nl + 1;
  }
}

// What the spool keeps after the message in the same file (the envelope);
// only the first `size` bytes are the message. A To line in it would change
// the rewrite if it were ever read.
const std::string kTrailer = "\nTo: leak@trailer.example\n{\"trailer\":\"MUST-NOT-LEAK\"}\nMBENV";

class RecipientRewriteTest : public ::testing::Test {
 protected:
  // Stores `message` followed by kTrailer, as the spool does.
  ContentFile store(std::string_view message, std::string_view trailer = kTrailer) {
    const auto path = dir_.path() / ("msg-" + std::to_string(++count_) + ".eml");
    std::ofstream out(path, std::ios::binary);
    out.write(message.data(), static_cast<std::streamsize>(message.size()));
    out.write(trailer.data(), static_cast<std::streamsize>(trailer.size()));
    out.close();
    return {path, message.size()};
  }

  Result<RecipientRewrite> rewrite(std::string_view message, const Envelope& envelope) {
    return rewriteRecipients(store(message), envelope);
  }

  // For the cases that must succeed.
  RecipientRewrite ok(std::string_view message, const Envelope& envelope) {
    auto r = rewrite(message, envelope);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r) return {};
    if (r->changed) expectWellFormed(r->headers);
    EXPECT_EQ(r->headers.find("trailer"), std::string::npos) << r->headers;
    EXPECT_LE(r->body_offset, message.size());
    return std::move(r).value();
  }

  mb::testing::TempDir dir_;
  int count_ = 0;
};

const std::string kFrom = "From: Scanner <scan@example.com>\r\n";
const std::string kSubject = "Subject: Scan 0042\r\n";

TEST_F(RecipientRewriteTest, UnchangedMessageIsKeptByteForByte) {
  const std::string head = kFrom +
                           "To: Alice <alice@example.com>, bob@example.com\r\n"
                           "Cc: \"Carol C.\" <carol@example.com>\r\n" +
                           kSubject + "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n";
  const std::string msg = head + "body\r\n";
  auto r = ok(msg, {"alice@example.com", "bob@example.com", "carol@example.com"});
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(r.headers, head);
  EXPECT_EQ(r.body_offset, head.size());
  EXPECT_TRUE(r.removed.empty());
  EXPECT_TRUE(r.added_bcc.empty());
  EXPECT_EQ(r.from_address, "scan@example.com");
}

TEST_F(RecipientRewriteTest, EnvelopeOnlyRecipientGoesIntoBcc) {
  const std::string msg = kFrom + "To: Alice <alice@example.com>\r\n" + kSubject + "\r\nbody\r\n";
  auto r = ok(msg, {"alice@example.com", "dave@example.com"});
  EXPECT_TRUE(r.changed);
  // To stays as written; the new Bcc goes at the end of the header.
  EXPECT_EQ(r.headers, kFrom + "To: Alice <alice@example.com>\r\n" + kSubject + "Bcc: dave@example.com\r\n\r\n");
  EXPECT_EQ(r.added_bcc, (Envelope{"dave@example.com"}));
  EXPECT_TRUE(r.removed.empty());
  EXPECT_EQ(r.body_offset, msg.find("body"));
}

TEST_F(RecipientRewriteTest, NoToOrCcAtAllMeansEveryoneInBcc) {
  const std::string msg = kFrom + kSubject + "\r\nbody\r\n";
  auto r = ok(msg, {"alice@example.com", "bob@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers, kFrom + kSubject + "Bcc: alice@example.com, bob@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, HeaderOnlyBccIsDropped) {
  const std::string msg = kFrom + "To: alice@example.com\r\nBcc: eve@example.com\r\n" + kSubject + "\r\nbody";
  auto r = ok(msg, {"alice@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers, kFrom + "To: alice@example.com\r\n" + kSubject + "\r\n");
  EXPECT_EQ(r.removed, (Envelope{"eve@example.com"}));
  EXPECT_TRUE(r.added_bcc.empty());
}

TEST_F(RecipientRewriteTest, BccInTheEnvelopeIsRewrittenWhereItStood) {
  const std::string msg = kFrom + "Bcc: Eve <eve@example.com>, dave@example.com\r\nTo: alice@example.com\r\n" +
                          "Bcc: other@example.com\r\n" + kSubject + "\r\nbody";
  auto r = ok(msg, {"alice@example.com", "dave@example.com"});
  EXPECT_EQ(r.headers, kFrom + "Bcc: dave@example.com\r\nTo: alice@example.com\r\n" + kSubject + "\r\n");
  EXPECT_EQ(r.removed, (Envelope{"eve@example.com", "other@example.com"}));
  EXPECT_EQ(r.added_bcc, (Envelope{"dave@example.com"}));
}

TEST_F(RecipientRewriteTest, BccOfSomeoneAlreadyInToIsDroppedWithoutLog) {
  const std::string msg = "To: alice@example.com\r\nBcc: alice@example.com\r\n\r\n";
  auto r = ok(msg, {"alice@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers, "To: alice@example.com\r\n\r\n");
  EXPECT_TRUE(r.removed.empty());
  EXPECT_TRUE(r.added_bcc.empty());
}

TEST_F(RecipientRewriteTest, HeaderOnlyToIsDroppedAndTheOtherStays) {
  const std::string msg = kFrom + "To: Alice <alice@example.com>, Mallory <mallory@evil.example>\r\n" + kSubject +
                          "\r\nbody";
  auto r = ok(msg, {"alice@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers, kFrom + "To: Alice <alice@example.com>\r\n" + kSubject + "\r\n");
  EXPECT_EQ(r.removed, (Envelope{"mallory@evil.example"}));
}

TEST_F(RecipientRewriteTest, EmptiedToIsRemoved) {
  const std::string msg = kFrom + "To: mallory@evil.example\r\nCc: alice@example.com\r\n" + kSubject + "\r\nbody";
  auto r = ok(msg, {"alice@example.com"});
  EXPECT_EQ(r.headers, kFrom + "Cc: alice@example.com\r\n" + kSubject + "\r\n");
  EXPECT_EQ(r.removed, (Envelope{"mallory@evil.example"}));
}

TEST_F(RecipientRewriteTest, EmptiedToWithTheRecipientInBcc) {
  const std::string msg = kFrom + "To: mallory@evil.example\r\n" + kSubject + "\r\nbody";
  auto r = ok(msg, {"bob@example.com"});
  EXPECT_EQ(r.headers, kFrom + kSubject + "Bcc: bob@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, EmptyToFieldIsRemoved) {
  auto r = ok("To:\r\nCc: alice@example.com\r\n\r\n", {"alice@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers, "Cc: alice@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, UndisclosedRecipientsGroupStays) {
  const std::string msg = kFrom + "To: undisclosed-recipients:;\r\n" + kSubject + "\r\nbody";
  auto r = ok(msg, {"alice@example.com", "bob@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers,
            kFrom + "To: undisclosed-recipients:;\r\n" + kSubject + "Bcc: alice@example.com, bob@example.com\r\n\r\n");
  EXPECT_TRUE(r.removed.empty());
}

TEST_F(RecipientRewriteTest, EmptyGroupAloneIsUnchanged) {
  const std::string msg = "To: undisclosed-recipients:;\r\nCc: alice@example.com\r\n\r\nbody";
  auto r = ok(msg, {"alice@example.com"});
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(r.headers, msg.substr(0, msg.find("body")));
}

TEST_F(RecipientRewriteTest, EmptyGroupStaysWhenItsNeighbourGoes) {
  auto r = ok("To: undisclosed-recipients:;, mallory@evil.example\r\n\r\n", {"alice@example.com"});
  EXPECT_EQ(r.headers, "To: undisclosed-recipients: ;\r\nBcc: alice@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, GroupMembersAreFiltered) {
  auto r = ok("To: Team: alice@example.com, mallory@evil.example;\r\n\r\n", {"alice@example.com"});
  EXPECT_EQ(r.headers, "To: Team: alice@example.com;\r\n\r\n");
  EXPECT_EQ(r.removed, (Envelope{"mallory@evil.example"}));
}

TEST_F(RecipientRewriteTest, GroupEmptiedByTheFilterGoes) {
  auto r = ok("To: Team: mallory@evil.example;, alice@example.com\r\n\r\n", {"alice@example.com"});
  EXPECT_EQ(r.headers, "To: alice@example.com\r\n\r\n");
  auto gone = ok("To: Team: mallory@evil.example;\r\n\r\n", {"alice@example.com"});
  EXPECT_EQ(gone.headers, "Bcc: alice@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, DisplayNamesWithAtSignAndComma) {
  const std::string msg =
      "To: \"Doe, John\" <john@example.com>, \"printer@3rd floor\" <scan@example.com>,\r\n"
      " mallory@evil.example\r\n\r\n";
  auto r = ok(msg, {"john@example.com", "scan@example.com"});
  EXPECT_EQ(r.headers, "To: \"Doe, John\" <john@example.com>, \"printer@3rd floor\" <scan@example.com>\r\n\r\n");
  EXPECT_EQ(r.removed, (Envelope{"mallory@evil.example"}));

  // Unchanged when all are in the envelope: the quoted '@' and ',' are no addresses.
  auto same = ok(msg, {"john@example.com", "scan@example.com", "mallory@evil.example"});
  EXPECT_FALSE(same.changed);
}

TEST_F(RecipientRewriteTest, EncodedWordDisplayNameSurvives) {
  const std::string msg =
      "To: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <jm@example.de>, =?iso-8859-1?q?Ren=E9?= <rene@example.fr>,\r\n"
      " mallory@evil.example\r\n\r\n";
  auto r = ok(msg, {"jm@example.de", "rene@example.fr"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(addressesIn(r.headers, "To"),
            (std::vector<Parsed>{{"Jürgen Müller", "jm@example.de"}, {"René", "rene@example.fr"}}));
  for (char c : r.headers) EXPECT_LT(static_cast<unsigned char>(c), 0x80) << r.headers;
}

TEST_F(RecipientRewriteTest, EightBitDisplayNames) {
  // Raw UTF-8 (RFC 6532) is kept as it is when nothing changes ...
  const std::string msg = "To: Jürgen Müller <jm@example.de>, 山田 <yamada@example.jp>\r\n\r\nbody";
  auto same = ok(msg, {"jm@example.de", "yamada@example.jp"});
  EXPECT_FALSE(same.changed);
  EXPECT_EQ(same.headers, msg.substr(0, msg.find("body")));

  // ... and encoded when the field is written anew.
  auto r = ok(msg, {"jm@example.de"});
  EXPECT_EQ(addressesIn(r.headers, "To"), (std::vector<Parsed>{{"Jürgen Müller", "jm@example.de"}}));
  for (char c : r.headers) EXPECT_LT(static_cast<unsigned char>(c), 0x80) << r.headers;
}

TEST_F(RecipientRewriteTest, Latin1DisplayNameIsReadWithTheFallbackCharset) {
  auto r = ok("To: J\xfcrgen <jm@example.de>, mallory@evil.example\r\n\r\n", {"jm@example.de"});
  EXPECT_EQ(addressesIn(r.headers, "To"), (std::vector<Parsed>{{"Jürgen", "jm@example.de"}}));
}

TEST_F(RecipientRewriteTest, ToFoldedOverThreeLines) {
  const std::string to =
      "To: Alice <alice@example.com>,\r\n"
      " Bob <bob@example.com>,\r\n"
      "\tMallory <mallory@evil.example>\r\n";
  const std::string msg = kFrom + to + kSubject + "\r\nbody";
  auto r = ok(msg, {"alice@example.com", "bob@example.com"});
  EXPECT_EQ(r.headers, kFrom + "To: Alice <alice@example.com>, Bob <bob@example.com>\r\n" + kSubject + "\r\n");

  auto same = ok(msg, {"alice@example.com", "bob@example.com", "mallory@evil.example"});
  EXPECT_FALSE(same.changed);
  EXPECT_EQ(same.headers, msg.substr(0, msg.find("body")));
}

TEST_F(RecipientRewriteTest, RepeatedToFieldsBecomeOneWhereTheFirstStood) {
  const std::string msg = "To: alice@example.com\r\n" + kSubject + "To: Bob <bob@example.com>\r\n\r\nbody";
  auto r = ok(msg, {"alice@example.com", "bob@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers, "To: alice@example.com, Bob <bob@example.com>\r\n" + kSubject + "\r\n");
  EXPECT_TRUE(r.removed.empty());
  EXPECT_TRUE(r.added_bcc.empty());
}

TEST_F(RecipientRewriteTest, RepeatedCcWithTheFirstEmptied) {
  auto r = ok("Cc: mallory@evil.example\r\nX-A: 1\r\nCc: carol@example.com\r\n\r\n", {"carol@example.com"});
  EXPECT_EQ(r.headers, "Cc: carol@example.com\r\nX-A: 1\r\n\r\n");
}

TEST_F(RecipientRewriteTest, CaseDifferencesMatch) {
  const std::string msg = "To: Alice <ALICE@Example.COM>\r\nCc: Bob@example.com\r\n\r\n";
  auto r = ok(msg, {"alice@example.com", "bob@EXAMPLE.com"});
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(r.headers, msg);

  // The new Bcc uses the envelope's spelling.
  auto bcc = ok("To: a@example.com\r\nBcc: dave@example.com\r\n\r\n", {"a@example.com", "Dave@EXAMPLE.com"});
  EXPECT_EQ(bcc.headers, "To: a@example.com\r\nBcc: Dave@EXAMPLE.com\r\n\r\n");
  EXPECT_TRUE(bcc.removed.empty());
}

TEST_F(RecipientRewriteTest, IdnDomainMatchesItsALabel) {
  auto r = ok("To: user@münchen.de\r\n\r\n", {"user@xn--mnchen-3ya.de"});
  EXPECT_FALSE(r.changed);
  auto back = ok("To: user@xn--mnchen-3ya.de\r\n\r\n", {"user@münchen.de"});
  EXPECT_FALSE(back.changed);
}

TEST_F(RecipientRewriteTest, BareAngleAndCommentAddresses) {
  const std::string msg = "To: <alice@example.com>, bob@example.com (Bob B.), Carol (work) <carol@example.com>\r\n\r\n";
  auto same = ok(msg, {"alice@example.com", "bob@example.com", "carol@example.com"});
  EXPECT_FALSE(same.changed);

  auto r = ok(msg, {"alice@example.com", "bob@example.com"});
  const auto to = addressesIn(r.headers, "To");
  ASSERT_EQ(to.size(), 2u);
  EXPECT_EQ(to[0].addr, "alice@example.com");
  EXPECT_EQ(to[1].addr, "bob@example.com");
  EXPECT_EQ(r.removed, (Envelope{"carol@example.com"}));
}

TEST_F(RecipientRewriteTest, WhatTheParserSkippedIsNotLeftInPlace) {
  // GMime stops at the ';' (not a list separator in RFC 5322), a lenient
  // reader would not: the field is written from what GMime parsed.
  auto r = ok("To: alice@example.com; mallory@evil.example\r\n\r\n", {"alice@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers, "To: alice@example.com\r\n\r\n");

  // A recipient hidden that way is still reached, through Bcc.
  auto both = ok("To: alice@example.com; bob@example.com\r\n\r\n", {"alice@example.com", "bob@example.com"});
  EXPECT_EQ(both.headers, "To: alice@example.com\r\nBcc: bob@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, ResentFieldsAreLeftAlone) {
  const std::string msg = "Resent-To: mallory@evil.example\r\nResent-Bcc: eve@example.com\r\nTo: bob@example.com, x@evil.example\r\n"
                          "Resent-Cc: x@y.example\r\n\r\n";
  auto r = ok(msg, {"bob@example.com"});
  EXPECT_EQ(r.headers,
            "Resent-To: mallory@evil.example\r\nResent-Bcc: eve@example.com\r\nTo: bob@example.com\r\n"
            "Resent-Cc: x@y.example\r\n\r\n");
  EXPECT_EQ(r.removed, (Envelope{"x@evil.example"}));
}

TEST_F(RecipientRewriteTest, OtherFieldsKeepOrderFoldingAndBytes) {
  const std::string other1 = "Received: from printer (printer.lan [192.0.2.7])\r\n\tby relay; Mon, 1 Jan 2024\r\n";
  const std::string other2 = "X-Weird :  spaced   value \r\nsubject: lower case\r\n";
  const std::string other3 = "Content-Type: multipart/mixed;\r\n boundary=\"xyz\"\r\n";
  const std::string msg = other1 + "TO: a@example.com, b@evil.example\r\n" + other2 + "cc: c@example.com\r\n" + other3 +
                          "\r\n--xyz\r\n";
  auto r = ok(msg, {"a@example.com", "c@example.com"});
  EXPECT_EQ(r.headers, other1 + "To: a@example.com\r\n" + other2 + "cc: c@example.com\r\n" + other3 + "\r\n");
  EXPECT_EQ(r.body_offset, msg.find("--xyz"));
}

TEST_F(RecipientRewriteTest, NoBody) {
  const std::string msg = kFrom + "To: alice@example.com\r\n";
  auto same = ok(msg, {"alice@example.com"});
  EXPECT_FALSE(same.changed);
  EXPECT_EQ(same.headers, msg);
  EXPECT_EQ(same.body_offset, msg.size());

  auto r = ok(msg, {"alice@example.com", "bob@example.com"});
  EXPECT_EQ(r.headers, msg + "Bcc: bob@example.com\r\n\r\n");
  EXPECT_EQ(r.body_offset, msg.size());

  // Not even a line end after the last field.
  auto bare = ok("To: alice@example.com", {"alice@example.com", "bob@example.com"});
  EXPECT_EQ(bare.headers, "To: alice@example.com\r\nBcc: bob@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, BareLineFeeds) {
  const std::string msg = "From: a@example.com\nTo: alice@example.com, m@evil.example\nX-Folded: a\n b\n\nbody\n";
  auto r = ok(msg, {"alice@example.com"});
  EXPECT_EQ(r.headers, "From: a@example.com\r\nTo: alice@example.com\r\nX-Folded: a\r\n b\r\n\r\n");
  EXPECT_EQ(r.body_offset, msg.find("body"));

  auto same = ok(msg, {"alice@example.com", "m@evil.example"});
  EXPECT_FALSE(same.changed);
  EXPECT_EQ(same.headers, msg.substr(0, msg.find("body")));
}

TEST_F(RecipientRewriteTest, BodyWithoutBlankLineGetsOne) {
  const std::string msg = "Subject: x\r\nTo: alice@example.com\r\nThis is the body\r\nTo: mallory@evil.example\r\n";
  auto r = ok(msg, {"alice@example.com"});
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.headers, "Subject: x\r\nTo: alice@example.com\r\n\r\n");
  EXPECT_EQ(r.body_offset, msg.find("This"));
  EXPECT_TRUE(r.removed.empty());
}

TEST_F(RecipientRewriteTest, FiveHundredRecipients) {
  Envelope envelope;
  std::string to = "To: ";
  for (int i = 0; i < 500; ++i) {
    const std::string addr = "user" + std::to_string(i) + "@example.com";
    envelope.push_back(addr);
    if (i % 2 == 0) to += "User Number " + std::to_string(i) + " <" + addr + ">,\r\n ";
  }
  for (int i = 0; i < 10; ++i) to += "stranger" + std::to_string(i) + "@evil.example,\r\n ";
  to += "last@evil.example\r\n";
  auto r = ok(kFrom + to + kSubject + "\r\nbody", envelope);
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.removed.size(), 11u);
  EXPECT_EQ(r.added_bcc.size(), 250u);
  const auto to_list = addressesIn(r.headers, "To");
  ASSERT_EQ(to_list.size(), 250u);
  EXPECT_EQ(to_list[3], (Parsed{"User Number 6", "user6@example.com"}));
  const auto bcc_list = addressesIn(r.headers, "Bcc");
  ASSERT_EQ(bcc_list.size(), 250u);
  EXPECT_EQ(bcc_list[0].addr, "user1@example.com");
  EXPECT_EQ(bcc_list[249].addr, "user499@example.com");
  EXPECT_EQ(fieldValues(r.headers, "Subject"), (std::vector<std::string>{" Scan 0042"}));
}

TEST_F(RecipientRewriteTest, LongDisplayNameIsFolded) {
  const std::string name(1500, 'n');
  auto r = ok("To: \"" + name + "\" <a@example.com>, m@evil.example\r\n\r\n", {"a@example.com"});
  EXPECT_EQ(addressesIn(r.headers, "To"), (std::vector<Parsed>{{name, "a@example.com"}}));
}

TEST_F(RecipientRewriteTest, HugeBodyIsNotRead) {
  const auto path = dir_.path() / "huge.eml";
  const std::string head = kFrom + "To: alice@example.com\r\n" + kSubject + "\r\n";
  {
    std::ofstream out(path, std::ios::binary);
    out << head;
    const std::string line(76, 'Q');
    for (int i = 0; i < 270'000; ++i) out << line << "\r\n";  // about 21 MB
  }
  const ContentFile content{path, std::filesystem::file_size(path)};
  auto r = rewriteRecipients(content, {"alice@example.com", "bob@example.com"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->body_offset, head.size());
  EXPECT_EQ(r->headers, kFrom + "To: alice@example.com\r\n" + kSubject + "Bcc: bob@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, HeaderTooBigIsAnError) {
  std::string msg = "To: alice@example.com\r\n";
  while (msg.size() < kMaxHeaderBlock + 1000) msg += "X-Filler: " + std::string(500, 'f') + "\r\n";
  msg += "\r\nbody";
  auto r = rewrite(msg, {"alice@example.com"});
  EXPECT_FALSE(r.ok());
}

TEST_F(RecipientRewriteTest, MissingFileIsAnError) {
  auto r = rewriteRecipients(ContentFile{dir_.path() / "nope.eml", 10}, {"alice@example.com"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ENOENT);
}

TEST_F(RecipientRewriteTest, AllHeaderMessageEndsAtItsSize) {
  // No blank line and no final line end: read past its size, the trailer's
  // To line would join the header.
  auto r = ok(kFrom + "To: a@example.com", {"a@example.com"});
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(r.headers, kFrom + "To: a@example.com");
  auto added = ok(kFrom + kSubject, {"a@example.com"});
  EXPECT_EQ(added.headers, kFrom + kSubject + "Bcc: a@example.com\r\n\r\n");
  EXPECT_TRUE(added.removed.empty());
}

TEST_F(RecipientRewriteTest, ShortFileIsAnError) {
  const std::string msg = kFrom + "To: a@example.com\r\n\r\nbody\r\n";
  ContentFile content = store(msg, "");
  content.size += 1;
  EXPECT_FALSE(rewriteRecipients(content, {"a@example.com"}).ok());
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  auto rw = rewriteRecipients(*block, {"a@example.com"});
  ASSERT_TRUE(rw.ok());
  EXPECT_FALSE(rewrittenMessage(content, *rw).ok()) << "a file shorter than the message's size";
}

TEST_F(RecipientRewriteTest, RewrittenMessageStopsAtTheSize) {
  const std::string msg = kFrom + "To: a@example.com, m@evil.example\r\n" + kSubject + "\r\nbody line\r\nend";
  const ContentFile with_trailer = store(msg);
  const ContentFile without = store(msg, "");
  auto rw = rewriteRecipients(with_trailer, {"a@example.com"});
  ASSERT_TRUE(rw.ok()) << rw.error().message;
  ASSERT_TRUE(rw->changed);
  auto sent = rewrittenMessage(with_trailer, *rw);
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  EXPECT_EQ(*sent, rw->headers + "body line\r\nend");
  EXPECT_EQ(sent->find("MUST-NOT-LEAK"), std::string::npos);
  EXPECT_EQ(sent->find("MBENV"), std::string::npos);
  auto plain_rw = rewriteRecipients(without, {"a@example.com"});
  ASSERT_TRUE(plain_rw.ok());
  auto plain = rewrittenMessage(without, *plain_rw);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*sent, *plain) << "the trailer changes nothing";

  // Unchanged header, and a message that is nothing but its header.
  auto same = rewriteRecipients(with_trailer, {"a@example.com", "m@evil.example"});
  ASSERT_TRUE(same.ok());
  EXPECT_FALSE(same->changed);
  EXPECT_EQ(*rewrittenMessage(with_trailer, *same), msg);
  const std::string head_only = kFrom + "To: a@example.com";
  const ContentFile bare = store(head_only);
  auto bare_rw = rewriteRecipients(bare, {"a@example.com"});
  ASSERT_TRUE(bare_rw.ok());
  EXPECT_EQ(*rewrittenMessage(bare, *bare_rw), head_only);
}

TEST_F(RecipientRewriteTest, FromAddress) {
  EXPECT_EQ(ok("To: a@example.com\r\n\r\n", {"a@example.com"}).from_address, "");
  EXPECT_EQ(ok("From: \"printer@3rd floor\" <scan@example.com>\r\n\r\n", {"a@example.com"}).from_address,
            "scan@example.com");
  EXPECT_EQ(ok("From: plain@example.com\r\nFrom: second@example.com\r\n\r\n", {"a@example.com"}).from_address,
            "plain@example.com");
  EXPECT_EQ(ok("From: =?UTF-8?Q?B=C3=BCro?=\r\n <office@example.com>\r\n\r\n", {"a@example.com"}).from_address,
            "office@example.com");
  EXPECT_EQ(ok("From: not an address\r\n\r\n", {"a@example.com"}).from_address, "");
  EXPECT_EQ(ok("From:\r\n\r\n", {"a@example.com"}).from_address, "");
}

TEST_F(RecipientRewriteTest, DuplicateEnvelopeRecipientsAppearOnce) {
  auto r = ok("Subject: x\r\n\r\n", {"a@example.com", "A@example.com", "b@example.com", "a@example.com"});
  EXPECT_EQ(r.headers, "Subject: x\r\nBcc: a@example.com, b@example.com\r\n\r\n");
  EXPECT_EQ(r.added_bcc, (Envelope{"a@example.com", "b@example.com"}));
}

TEST_F(RecipientRewriteTest, QuotedLocalPartInTheEnvelope) {
  auto r = ok("To: \"john doe\"@example.com\r\n\r\n", {"\"john doe\"@example.com", "b@example.com"});
  EXPECT_EQ(r.headers, "To: \"john doe\"@example.com\r\nBcc: b@example.com\r\n\r\n");
}

TEST_F(RecipientRewriteTest, Utf8EnvelopeRecipient) {
  // RFC 6531 mailboxes reach Bcc as they are (RFC 6532 allows UTF-8 there).
  auto r = ok("To: a@example.com\r\n\r\n", {"a@example.com", "j\xc3\xbcrgen@example.de"});
  EXPECT_EQ(r.headers, "To: a@example.com\r\nBcc: j\xc3\xbcrgen@example.de\r\n\r\n");
  auto same = ok("To: J\xc3\xbcrgen@Example.de\r\n\r\n", {"J\xc3\xbcrgen@example.de"});
  EXPECT_FALSE(same.changed);
}

TEST_F(RecipientRewriteTest, UnusableEnvelopeRecipientIsAnError) {
  EXPECT_FALSE(rewrite("To: a@example.com\r\n\r\n", {"a@example.com, b@evil.example"}).ok());
  EXPECT_FALSE(rewrite("To: a@example.com\r\n\r\n", {"a@example.com\r\nX-Injected: yes"}).ok());
  EXPECT_FALSE(rewrite("To: a@example.com\r\n\r\n", {""}).ok());
  EXPECT_FALSE(rewrite("To: a@example.com\r\n\r\n", {"Name <a@example.com>"}).ok());
}

TEST_F(RecipientRewriteTest, FromMemoryAgreesWithFile) {
  const std::string msg = "To: a@example.com, m@evil.example\r\n\r\nbody";
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  auto mem = rewriteRecipients(*block, {"a@example.com"});
  ASSERT_TRUE(mem.ok());
  EXPECT_EQ(mem->headers, ok(msg, {"a@example.com"}).headers);
}

TEST_F(RecipientRewriteTest, ConcurrentCallsFromSeveralThreads) {
  const std::string msg = "To: =?UTF-8?B?SsO8cmdlbg==?= <j@example.de>, m@evil.example\r\n\r\nbody";
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        auto r = rewriteRecipients(*block, {"j@example.de", "x@example.com"});
        if (!r || r->added_bcc.size() != 1 || r->removed.size() != 1) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(HeaderFromAddress, CopiersAndOddDisplayNames) {
  EXPECT_EQ(headerFromAddress("From: scan@example.com\r\n\r\nbody"), "scan@example.com");
  EXPECT_EQ(headerFromAddress("Subject: x\r\nFrom: \"Floor 2, a@b.example\" <floor2@example.com>\r\n\r\n"),
            "floor2@example.com");
  EXPECT_EQ(headerFromAddress("From: Scanner\r\n  on floor 2\r\n <floor2@example.com>\r\nTo: x@y.example\r\n\r\n"),
            "floor2@example.com")
      << "folded";
  EXPECT_EQ(headerFromAddress("From: =?utf-8?q?Dr=C3=BCcker?= <druck@example.com>\n\n"), "druck@example.com");
  EXPECT_EQ(headerFromAddress("From: a@one.example, b@two.example\r\n\r\n"), "a@one.example") << "the first";
  EXPECT_EQ(headerFromAddress("To: x@y.example\r\nSubject: no from\r\n\r\nFrom: body@example.com\r\n"), "")
      << "a From line in the body is not a header";
  EXPECT_EQ(headerFromAddress("From: scanner\r\n\r\n"), "") << "no domain";
  EXPECT_EQ(headerFromAddress("From: <>\r\n\r\n"), "");
  EXPECT_EQ(headerFromAddress(""), "");
  EXPECT_EQ(headerFromAddress("From: first@example.com\r\nFrom: second@example.com\r\n\r\n"), "first@example.com");
  EXPECT_EQ(headerFromAddress("From: cut@example.com\r\nSubject: header cut off here"), "cut@example.com");
}

// The last From field is remembered per thread: a repeat, a change and a
// change back each give their own address, and so does a field that differs
// only in its folding or its display name.
TEST(HeaderFromAddress, RepeatedAndAlternatingFields) {
  const std::string a = "From: Scanner <scan@example.com>\r\n\r\n";
  const std::string b = "From: Copier <copy@example.com>\r\n\r\n";
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(headerFromAddress(a), "scan@example.com");
    EXPECT_EQ(headerFromAddress(a), "scan@example.com");
    EXPECT_EQ(headerFromAddress(b), "copy@example.com");
    EXPECT_EQ(headerFromAddress("Subject: no from\r\n\r\n"), "");
    EXPECT_EQ(headerFromAddress(a), "scan@example.com");
    EXPECT_EQ(headerFromAddress("From: Scanner\r\n <scan2@example.com>\r\n\r\n"), "scan2@example.com");
    EXPECT_EQ(headerFromAddress("From: scanner\r\n\r\n"), "");
  }
  std::string other_thread;
  std::thread([&] { other_thread = headerFromAddress(b); }).join();
  EXPECT_EQ(other_thread, "copy@example.com");
  EXPECT_EQ(headerFromAddress("From: Scanner <scan@example.com>\r\n\r\n"), "scan@example.com");
}

}  // namespace
}  // namespace mb::mime
