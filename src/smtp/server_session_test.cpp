#include "smtp/server_session.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "smtp/session_test_harness.h"

namespace mb::smtp {
namespace {

using namespace mb::smtp::testing;

TEST(ServerSession, Greeting) {
  FakeHandler h;
  CapturingSink s;
  ServerSession session(Harness::testLimits(), h, s);
  session.greet();
  ASSERT_EQ(s.replies.size(), 1u);
  EXPECT_EQ(s.replies[0], "220 mx.example ESMTP Mailbridge\r\n");
  EXPECT_FALSE(session.closed());
}

TEST(ServerSession, EhloAdvertisesExtensions) {
  Harness t;
  EXPECT_EQ(t.say("EHLO client.example"), "250");
  EXPECT_EQ(t.lastWire(),
            "250-mx.example\r\n"
            "250-PIPELINING\r\n"
            "250-SIZE 1000\r\n"
            "250-8BITMIME\r\n"
            "250-ENHANCEDSTATUSCODES\r\n"
            "250-SMTPUTF8\r\n"
            "250 CHUNKING\r\n");
  t.run("MAIL FROM:<a@b>\r\n");
  EXPECT_EQ(t.handler.last_txn.helo, "client.example");
  EXPECT_TRUE(t.handler.last_txn.esmtp);
}

TEST(ServerSession, Helo) {
  Harness t;
  EXPECT_EQ(t.say("HELO old.example"), "250");
  EXPECT_EQ(t.lastWire(), "250 mx.example\r\n");
  t.run("MAIL FROM:<a@b>\r\n");
  EXPECT_EQ(t.handler.last_txn.helo, "old.example");
  EXPECT_FALSE(t.handler.last_txn.esmtp);
}

TEST(ServerSession, HelloNeedsArgument) {
  Harness t;
  EXPECT_EQ(t.say("EHLO"), "501 5.5.4");
  EXPECT_EQ(t.say("HELO"), "501 5.5.4");
  EXPECT_EQ(t.say("EHLO a\x01" "b"), "501 5.5.4");
  EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "503 5.5.1");  // no valid greeting yet
}

// Every command in every state outside DATA.
TEST(ServerSession, CommandStateTable) {
  struct Row {
    const char* command;
    const char* expected[4];  // greeted, after EHLO, after MAIL, after RCPT
  };
  const Row rows[] = {
      {"EHLO x", {"250", "250", "250", "250"}},
      {"HELO x", {"250", "250", "250", "250"}},
      {"MAIL FROM:<a@b>", {"503 5.5.1", "250 2.1.0", "503 5.5.1", "503 5.5.1"}},
      {"RCPT TO:<c@d>", {"503 5.5.1", "503 5.5.1", "250 2.1.5", "250 2.1.5"}},
      {"DATA", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "354"}},
      {"DATA x", {"503 5.5.1", "503 5.5.1", "501 5.5.4", "501 5.5.4"}},
      {"RSET", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
      {"RSET x", {"501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4"}},
      {"NOOP", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
      {"NOOP hello", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
      {"VRFY user", {"252 2.5.2", "252 2.5.2", "252 2.5.2", "252 2.5.2"}},
      {"VRFY", {"501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4"}},
      {"EXPN list", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
      {"HELP", {"214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0"}},
      // Without TLS or AUTH on the listener (see auth_test.cpp for them).
      {"STARTTLS", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
      {"STARTTLS x", {"501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4"}},
      {"AUTH PLAIN AGFAYg==", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "503 5.5.1"}},
      {"BDAT 0 LAST", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "250 2.0.0"}},
      {"BDAT 0", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "250 2.0.0"}},
      {"BDAT x", {"501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4"}},
      {"XYZZY", {"500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2"}},
      {"QUIT", {"221 2.0.0", "221 2.0.0", "221 2.0.0", "221 2.0.0"}},
  };
  const char* setups[4] = {"", "EHLO c\r\n", "EHLO c\r\nMAIL FROM:<a@b>\r\n",
                           "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"};
  for (const Row& row : rows) {
    for (int state = 0; state < 4; ++state) {
      Harness t;
      t.run(setups[state]);
      EXPECT_EQ(t.say(row.command), row.expected[state]) << row.command << " in state " << state;
      EXPECT_EQ(t.session.closed(), std::string_view(row.command) == "QUIT");
      EXPECT_EQ(t.session.inData(), std::string_view(row.command) == "DATA" && state == 3);
    }
  }
}

TEST(ServerSession, CommandsAreCaseInsensitiveAndTolerant) {
  Harness t;
  EXPECT_EQ(t.run("ehlo c\r\nmail from: <a@b> size=10\r\nrcpt to:c@d\r\ndata\r\n"),
            (Replies{"250", "250 2.1.0", "250 2.1.5", "354"}));
  EXPECT_EQ(t.handler.last_txn.mail.size, 10u);
}

TEST(ServerSession, FullTransaction) {
  Harness t;
  t.auto_commit = false;
  EXPECT_EQ(t.run("EHLO c\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\nRCPT TO:<x@y.example>\r\n"
                  "RCPT TO:<@r.example:z@y.example>\r\nDATA\r\n"),
            (Replies{"250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354"}));
  EXPECT_EQ(t.sink.replies.back(), "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_TRUE(t.session.inData());
  EXPECT_EQ(t.run("Subject: x\r\n\r\n..dot\r\nline\r\n.\r\n"), Replies{});
  EXPECT_FALSE(t.session.inData());
  EXPECT_TRUE(t.session.awaitingCommit());
  ASSERT_EQ(t.handler.messages.size(), 1u);
  EXPECT_EQ(t.handler.messages[0], "Subject: x\r\n\r\n.dot\r\nline\r\n");
  const Transaction& txn = t.handler.last_txn;
  EXPECT_EQ(txn.mail.address, "a@b.example");
  EXPECT_TRUE(txn.mail.body_8bitmime);
  EXPECT_EQ(txn.recipients, (std::vector<std::string>{"x@y.example", "z@y.example"}));

  t.session.completeData(Reply{250, "2.0.0", "Queued as Q1", {}});
  EXPECT_EQ(t.sink.replies.back(), "250 2.0.0 Queued as Q1\r\n");
  EXPECT_FALSE(t.session.awaitingCommit());
  // Transaction gone, greeting kept.
  EXPECT_EQ(t.say("RCPT TO:<x@y>"), "503 5.5.1");
  EXPECT_EQ(t.say("MAIL FROM:<>"), "250 2.1.0");
  EXPECT_EQ(t.handler.last_txn.mail.address, "");
  EXPECT_EQ(t.handler.last_txn.helo, "c");
}

TEST(ServerSession, CommitFailureIsReportedAndResets) {
  Harness t;
  t.auto_commit = false;
  t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
  ASSERT_TRUE(t.session.awaitingCommit());
  t.session.completeData(Reply{451, "4.3.0", "Local error", {}});
  EXPECT_EQ(t.sink.replies.back(), "451 4.3.0 Local error\r\n");
  EXPECT_EQ(t.say("DATA"), "503 5.5.1");
  // completeData() when nothing waits is ignored.
  const std::size_t n = t.sink.replies.size();
  t.session.completeData(Reply{250, "2.0.0", "x", {}});
  EXPECT_EQ(t.sink.replies.size(), n);
}

TEST(ServerSession, MailSizeParameter) {
  Harness t;
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.say("MAIL FROM:<a@b> SIZE=1001"), "552 5.3.4");
  EXPECT_EQ(t.say("MAIL FROM:<a@b> SIZE=99999999999999999999999"), "501 5.5.4");
  EXPECT_EQ(t.say("MAIL FROM:<a@b> SIZE=99999999999999999999"), "552 5.3.4");
  EXPECT_EQ(t.say("MAIL FROM:<a@b> SIZE=1000"), "250 2.1.0");
  EXPECT_EQ(t.handler.last_txn.mail.size, 1000u);
}

TEST(ServerSession, MailErrors) {
  Harness t;
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.say("MAIL FROM:<a@b> FOO=1"), "555 5.5.4");
  EXPECT_EQ(t.say("MAIL FROM:<a@b@c>"), "501 5.1.7");
  EXPECT_EQ(t.say("MAIL FROM:"), "501 5.5.4");
  EXPECT_EQ(t.say("MAIL FROM:<j\xc3\xb6rg@example.com>"), "553 5.6.7");
  EXPECT_EQ(t.say("MAIL FROM:<j\xc3\xb6rg@example.com> SMTPUTF8"), "250 2.1.0");
  EXPECT_TRUE(t.handler.last_txn.mail.smtputf8);
  // UTF-8 recipients are fine in this transaction...
  EXPECT_EQ(t.say("RCPT TO:<m\xc3\xbcller@example.com>"), "250 2.1.5");
  EXPECT_EQ(t.say("RSET"), "250 2.0.0");
  // ...and not in one without SMTPUTF8.
  EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "250 2.1.0");
  EXPECT_EQ(t.say("RCPT TO:<m\xc3\xbcller@example.com>"), "553 5.6.7");
  EXPECT_EQ(t.say("RCPT TO:<postmaster>"), "553 5.1.3");
  EXPECT_EQ(t.say("RCPT TO:<a@b> NOTIFY=NEVER"), "555 5.5.4");
  EXPECT_EQ(t.say("RCPT TO:<a@@b>"), "501 5.1.3");
}

TEST(ServerSession, HandlerDecisions) {
  Harness t;
  t.run("EHLO c\r\n");
  t.handler.mail_verdict = Reply{530, "5.7.0", "Authentication required", {}};
  EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "530 5.7.0");
  EXPECT_EQ(t.say("RCPT TO:<c@d>"), "503 5.5.1");  // the refused MAIL opened nothing
  t.handler.mail_verdict = Reply{250, "2.1.0", "Fine by me", {}};
  EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "250 2.1.0");
  EXPECT_EQ(t.lastWire(), "250 2.1.0 Fine by me\r\n");

  t.handler.rcpt_verdict = [](std::string_view r) -> std::optional<Reply> {
    if (r == "bad@d") return Reply{550, "5.7.1", "Relay denied", {}};
    return std::nullopt;
  };
  EXPECT_EQ(t.say("RCPT TO:<bad@d>"), "550 5.7.1");
  EXPECT_EQ(t.say("RCPT TO:<good@d>"), "250 2.1.5");
  t.handler.data_start_verdict = Reply{451, "4.3.0", "Cannot store", {}};
  EXPECT_EQ(t.say("DATA"), "451 4.3.0");
  EXPECT_FALSE(t.session.inData());
  t.handler.data_start_verdict.reset();
  EXPECT_EQ(t.say("DATA"), "354");
  t.run(".\r\n");
  ASSERT_EQ(t.handler.messages.size(), 1u);
  EXPECT_EQ(t.handler.last_txn.recipients, std::vector<std::string>{"good@d"});
}

TEST(ServerSession, DataWithoutRecipients) {
  Harness t;
  t.run("EHLO c\r\nMAIL FROM:<a@b>\r\n");
  EXPECT_EQ(t.say("DATA"), "503 5.5.1");
  t.handler.rcpt_verdict = [](std::string_view) { return std::optional<Reply>(Reply{550, "5.1.1", "No", {}}); };
  EXPECT_EQ(t.run("RCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n"), (Replies{"550 5.1.1", "550 5.1.1", "554 5.5.1"}));
  EXPECT_EQ(t.say("RSET"), "250 2.0.0");
  EXPECT_EQ(t.run("MAIL FROM:<a@b>\r\nRCPT TO:<bad syntax>\r\nDATA\r\n"), (Replies{"250 2.1.0", "501 5.1.3", "554 5.5.1"}));
  EXPECT_EQ(t.handler.events.back(), "mail a@b");  // onDataStart never called
}

TEST(ServerSession, EhloResetsTransaction) {
  Harness t;
  t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
  EXPECT_EQ(t.say("EHLO again"), "250");
  EXPECT_EQ(t.say("DATA"), "503 5.5.1");
  EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "250 2.1.0");
  EXPECT_EQ(t.handler.last_txn.helo, "again");
  EXPECT_TRUE(t.handler.last_txn.recipients.empty());
  // A failed EHLO leaves things as they were.
  EXPECT_EQ(t.say("EHLO"), "501 5.5.4");
  EXPECT_EQ(t.say("RCPT TO:<c@d>"), "250 2.1.5");
}

TEST(ServerSession, RsetClearsTransaction) {
  Harness t;
  t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
  EXPECT_EQ(t.say("RSET"), "250 2.0.0");
  EXPECT_EQ(t.say("RCPT TO:<c@d>"), "503 5.5.1");
  EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "250 2.1.0");
}

TEST(ServerSession, InTransactionFromMailToTheEndOfTheMessage) {
  Harness t;
  t.auto_commit = false;
  t.run("EHLO c\r\n");
  EXPECT_FALSE(t.session.inTransaction());
  t.run("MAIL FROM:<a@b>\r\n");
  EXPECT_TRUE(t.session.inTransaction());
  t.run("RCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n");
  EXPECT_TRUE(t.session.inTransaction());
  t.run("\r\nbody\r\n.\r\n");
  EXPECT_TRUE(t.session.awaitingCommit());
  EXPECT_TRUE(t.session.inTransaction()) << "not answered yet";
  t.session.completeData(Reply{250, "2.0.0", "Queued", {}});
  EXPECT_FALSE(t.session.inTransaction()) << "the commit was answered";
  t.run("MAIL FROM:<a@b>\r\n");
  EXPECT_TRUE(t.session.inTransaction());
  t.run("RSET\r\n");
  EXPECT_FALSE(t.session.inTransaction());
  t.run("MAIL FROM:<a@b>\r\n");
  t.run("EHLO again\r\n");
  EXPECT_FALSE(t.session.inTransaction());
}

TEST(ServerSession, QuitClosesAndIgnoresTheRest) {
  Harness t;
  EXPECT_EQ(t.run("NOOP\r\nQUIT\r\nNOOP\r\n"), (Replies{"250 2.0.0", "221 2.0.0"}));
  EXPECT_EQ(t.lastWire(), "221 2.0.0 Bye\r\n");
  EXPECT_TRUE(t.session.closed());
  EXPECT_EQ(t.session.buffered(), 0u);
  EXPECT_EQ(t.run("NOOP\r\n"), Replies{});
}

TEST(ServerSession, NulInCommand) {
  Harness t;
  EXPECT_EQ(t.run(std::string("NO\0OP\r\n", 7)), Replies{"500 5.5.2"});
  EXPECT_EQ(t.run(std::string("EHLO a\0b\r\n", 10)), Replies{"500 5.5.2"});
  EXPECT_EQ(t.run(std::string("\0\r\n", 3)), Replies{"500 5.5.2"});
  EXPECT_EQ(t.say("NOOP"), "250 2.0.0");
}

TEST(ServerSession, BareLfAndCrlfCommandEndings) {
  Harness t;
  EXPECT_EQ(t.run("EHLO c\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\nNOOP\r\n"),
            (Replies{"250", "250 2.1.0", "250 2.1.5", "250 2.0.0"}));
  // Only one CR is a line ending.
  EXPECT_EQ(t.say("NOOP\r"), "500 5.5.2");
}

TEST(ServerSession, RepliesDoNotEchoClientText) {
  Harness t;
  t.run("EHLO <script>\r\nXYZ <b>evil</b>\r\nMAIL FROM:<evil\x01@x>\r\nVRFY <evil>\r\n");
  for (const std::string& r : t.sink.replies) {
    EXPECT_EQ(r.find("evil"), std::string::npos) << r;
    EXPECT_EQ(r.find("script"), std::string::npos) << r;
  }
}

std::string lineOfOctets(std::size_t octets, std::string_view ending = "\r\n") {
  // "NOOP xxxx...": a harmless command of exactly `octets` with its ending.
  std::string line = "NOOP ";
  line.append(octets - line.size() - ending.size(), 'x');
  line += ending;
  return line;
}

TEST(ServerSession, LongLines) {
  for (std::size_t piece : {0u, 1u, 7u, 512u}) {
    Harness t;
    EXPECT_EQ(t.run(lineOfOctets(511), piece), Replies{"250 2.0.0"});
    EXPECT_EQ(t.run(lineOfOctets(512), piece), Replies{"250 2.0.0"});
    EXPECT_EQ(t.run(lineOfOctets(513), piece), Replies{"500 5.5.6"}) << piece;
    EXPECT_EQ(t.run(lineOfOctets(512, "\n"), piece), Replies{"250 2.0.0"});
    EXPECT_EQ(t.run(lineOfOctets(513, "\n"), piece), Replies{"500 5.5.6"});
    EXPECT_EQ(t.run(lineOfOctets(5000) + "NOOP\r\n", piece), (Replies{"500 5.5.6", "250 2.0.0"}));
    EXPECT_EQ(t.lastWire(), "250 2.0.0 OK\r\n");
  }
}

TEST(ServerSession, EndlessLineIsNotBuffered) {
  Harness t;
  const std::string junk(100000, 'A');
  for (std::size_t i = 0; i < junk.size(); i += 1000) {
    t.session.feed(std::string_view(junk).substr(i, 1000));
    EXPECT_LE(t.session.buffered(), 512u);
  }
  EXPECT_EQ(t.sink.replies.size(), 1u);
  EXPECT_EQ(brief(t.sink.replies[0]), "500 5.5.6");
  EXPECT_EQ(t.run("still the same line\r\nNOOP\r\n"), Replies{"250 2.0.0"});
  // A partial command is kept, but never more than a line's worth.
  t.session.feed("NOOP");
  EXPECT_EQ(t.session.buffered(), 4u);
  EXPECT_EQ(t.run("\r\n"), Replies{"250 2.0.0"});
  EXPECT_EQ(t.session.buffered(), 0u);
}

const char* const kPipelinedSession =
    "EHLO client.example\r\n"
    "MAIL FROM:<sender@example.com> SIZE=100\r\n"
    "RCPT TO:<one@example.com>\r\n"
    "RCPT TO:<bad@@example.com>\r\n"
    "RCPT TO:<two@example.com>\r\n"
    "DATA\r\n"
    "Subject: pipelined\r\n"
    "\r\n"
    "..leading dot\r\n"
    "MAIL FROM:<inside@data>\r\n"
    ".\r\n"
    "MAIL FROM:<second@example.com>\r\n"
    "RCPT TO:<three@example.com>\r\n"
    "DATA\r\n"
    ".\r\n"
    "NOOP\r\n"
    "QUIT\r\n";

TEST(ServerSession, PipelinedInOneFeedEqualsByteByByte) {
  Harness whole;
  const Replies expected{"250",       "250 2.1.0", "250 2.1.5", "501 5.1.3", "250 2.1.5", "354",
                         "250 2.0.0", "250 2.1.0", "250 2.1.5", "354",       "250 2.0.0", "250 2.0.0",
                         "221 2.0.0"};
  EXPECT_EQ(whole.run(kPipelinedSession), expected);
  ASSERT_EQ(whole.handler.messages.size(), 2u);
  EXPECT_EQ(whole.handler.messages[0], "Subject: pipelined\r\n\r\n.leading dot\r\nMAIL FROM:<inside@data>\r\n");
  EXPECT_EQ(whole.handler.messages[1], "");
  EXPECT_TRUE(whole.session.closed());

  const std::string_view input(kPipelinedSession);
  for (std::size_t piece = 1; piece <= 13; ++piece) {
    Harness split;
    EXPECT_EQ(split.run(input, piece), expected) << "pieces of " << piece;
    EXPECT_EQ(split.handler.events, whole.handler.events) << "pieces of " << piece;
    EXPECT_EQ(split.handler.messages, whole.handler.messages);
  }
  // And every single cut point.
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    Harness split;
    Replies got = split.run(input.substr(0, cut));
    for (const std::string& r : split.run(input.substr(cut))) got.push_back(r);
    ASSERT_EQ(got, expected) << "cut at " << cut;
    ASSERT_EQ(split.handler.events, whole.handler.events) << "cut at " << cut;
  }
}

TEST(ServerSession, SynchronousCommitFromOnDataEnd) {
  Harness t;
  t.auto_commit = false;
  t.handler.complete_at_once = true;
  EXPECT_EQ(t.run(kPipelinedSession),
            (Replies{"250", "250 2.1.0", "250 2.1.5", "501 5.1.3", "250 2.1.5", "354", "250 2.0.0", "250 2.1.0",
                     "250 2.1.5", "354", "250 2.0.0", "250 2.0.0", "221 2.0.0"}));
  EXPECT_EQ(t.handler.ends, 2);
}

TEST(ServerSession, AwaitingCommitBuffersThenResumes) {
  Harness t;
  t.auto_commit = false;
  const std::string after = "MAIL FROM:<n@x>\r\nRCPT TO:<m@x>\r\nNOOP\r\n";
  EXPECT_EQ(t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\r\n.\r\n" + after),
            (Replies{"250", "250 2.1.0", "250 2.1.5", "354"}));
  EXPECT_TRUE(t.session.awaitingCommit());
  EXPECT_EQ(t.session.buffered(), after.size());
  // More input while waiting: kept, not acted on, even a long line or QUIT.
  const std::string more = std::string(600, 'z') + "\r\nQUIT\r\n";
  EXPECT_EQ(t.run(more), Replies{});
  EXPECT_EQ(t.session.buffered(), after.size() + more.size());
  EXPECT_EQ(t.handler.events.back(), "end 7");
  t.session.completeData(Reply{250, "2.0.0", "Queued", {}});
  Replies got;
  for (std::size_t i = t.sink.replies.size() - 6; i < t.sink.replies.size(); ++i) got.push_back(brief(t.sink.replies[i]));
  EXPECT_EQ(got, (Replies{"250 2.0.0", "250 2.1.0", "250 2.1.5", "250 2.0.0", "500 5.5.6", "221 2.0.0"}));
  EXPECT_TRUE(t.session.closed());
}

TEST(ServerSession, MessageSizeLimit) {
  const std::string head = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
  // Exactly at the limit: 1000 octets of content.
  const std::string line(98, 'x');
  std::string at_limit;
  for (int i = 0; i < 10; ++i) at_limit += line + "\r\n";
  ASSERT_EQ(at_limit.size(), 1000u);
  for (std::size_t piece : {0u, 1u, 64u}) {
    Harness t;
    EXPECT_EQ(t.run(head + at_limit + ".\r\n", piece), (Replies{"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}));
    ASSERT_EQ(t.handler.messages.size(), 1u);
    EXPECT_EQ(t.handler.messages[0], at_limit);

    Harness big;
    EXPECT_EQ(big.run(head + at_limit + "y\r\n" + at_limit + ".\r\nNOOP\r\n", piece),
              (Replies{"250", "250 2.1.0", "250 2.1.5", "354", "552 5.3.4", "250 2.0.0"}));
    EXPECT_EQ(big.handler.ends, 0);
    EXPECT_EQ(big.handler.aborts, std::vector<DataProblem>{DataProblem::TooBig});
    EXPECT_LE(big.handler.chunked, 1000u);
    EXPECT_EQ(big.say("RCPT TO:<c@d>"), "503 5.5.1");  // transaction reset
  }
}

TEST(ServerSession, RecipientLimit) {
  Harness t;  // max_recipients = 5
  t.run("EHLO c\r\nMAIL FROM:<a@b>\r\n");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(t.say("RCPT TO:<r" + std::to_string(i) + "@d>"), "250 2.1.5");
  EXPECT_EQ(t.say("RCPT TO:<r5@d>"), "452 4.5.3");
  EXPECT_EQ(t.say("RCPT TO:<r6@d>"), "452 4.5.3");
  EXPECT_EQ(t.say("DATA"), "354");
  t.run(".\r\n");
  EXPECT_EQ(t.handler.last_txn.recipients.size(), 5u);
}

TEST(ServerSession, ErrorLimit) {
  SessionLimits l = Harness::testLimits();
  l.max_errors = 3;
  Harness t(l);
  EXPECT_EQ(t.run("FOO\r\nNOOP\r\nBAR\r\nMAIL FROM:<a@b>\r\nNOOP\r\nNOOP\r\n"),
            (Replies{"500 5.5.2", "250 2.0.0", "500 5.5.2", "503 5.5.1", "421 4.7.0"}));
  EXPECT_EQ(t.lastWire(), "421 4.7.0 Too many errors\r\n");
  EXPECT_TRUE(t.session.closed());
}

TEST(ServerSession, ErrorLimitCountsHandlerRefusals) {
  SessionLimits l = Harness::testLimits();
  l.max_errors = 2;
  Harness t(l);
  t.handler.rcpt_verdict = [](std::string_view) { return std::optional<Reply>(Reply{550, "5.7.1", "No", {}}); };
  EXPECT_EQ(t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nRCPT TO:<w@y>\r\n"),
            (Replies{"250", "250 2.1.0", "550 5.7.1", "550 5.7.1", "421 4.7.0"}));
}

TEST(ServerSession, HandlerReply421Closes) {
  Harness t;
  t.handler.mail_verdict = Reply{421, "4.7.0", "Too busy", {}};
  EXPECT_EQ(t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nNOOP\r\n"), (Replies{"250", "421 4.7.0"}));
  EXPECT_TRUE(t.session.closed());
}

TEST(ServerSession, TimeoutShutdownDisconnect) {
  {
    Harness t;
    t.run("EHLO c\r\nNO");
    t.session.timeout();
    EXPECT_EQ(t.lastWire(), "421 4.4.2 Idle timeout, closing connection\r\n");
    EXPECT_TRUE(t.session.closed());
    EXPECT_EQ(t.session.buffered(), 0u);
    const std::size_t n = t.sink.replies.size();
    t.session.timeout();
    t.session.shutdown();
    t.session.feed("OP\r\n");
    EXPECT_EQ(t.sink.replies.size(), n);
  }
  {
    Harness t;
    t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial");
    EXPECT_TRUE(t.session.inData());
    t.session.timeout();
    EXPECT_EQ(brief(t.lastWire()), "421 4.4.2");
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::None});
    EXPECT_FALSE(t.session.inData());
  }
  {
    Harness t;
    t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial");
    t.session.shutdown();
    EXPECT_EQ(t.lastWire(), "421 4.3.2 Service shutting down\r\n");
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::None});
    EXPECT_TRUE(t.session.closed());
  }
  {
    Harness t;
    t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial");
    const std::size_t n = t.sink.replies.size();
    t.session.disconnected();
    EXPECT_EQ(t.sink.replies.size(), n);
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::None});
    EXPECT_TRUE(t.session.closed());
  }
  {
    Harness t;
    t.run("EHLO c\r\n");
    t.session.disconnected();
    EXPECT_TRUE(t.handler.aborts.empty());
    EXPECT_TRUE(t.session.closed());
  }
  {
    // Waiting for a commit: the message is the handler's; no abort.
    Harness t;
    t.auto_commit = false;
    t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    t.session.shutdown();
    EXPECT_TRUE(t.handler.aborts.empty());
    EXPECT_TRUE(t.session.closed());
    const std::size_t n = t.sink.replies.size();
    t.session.completeData(Reply{250, "2.0.0", "Queued", {}});
    EXPECT_EQ(t.sink.replies.size(), n);
  }
}

TEST(ServerSession, Refuse) {
  FakeHandler h;
  CapturingSink s;
  ServerSession session(Harness::testLimits(), h, s);
  session.refuse(Reply{554, "5.7.1", "Access denied", {}});
  EXPECT_EQ(s.replies, std::vector<std::string>{"554 5.7.1 Access denied\r\n"});
  EXPECT_TRUE(session.closed());
  session.feed("EHLO c\r\n");
  EXPECT_EQ(s.replies.size(), 1u);
}

TEST(ServerSession, DataStateTakesCommandsAsContent) {
  Harness t;
  t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
  EXPECT_EQ(t.run("QUIT\r\nRSET\r\nMAIL FROM:<x@y>\r\nDATA\r\n" + std::string(700, 'L') + "\r\n"), Replies{});
  EXPECT_TRUE(t.session.inData());
  EXPECT_EQ(t.run(".\r\n"), Replies{"250 2.0.0"});
  EXPECT_EQ(t.handler.messages[0], "QUIT\r\nRSET\r\nMAIL FROM:<x@y>\r\nDATA\r\n" + std::string(700, 'L') + "\r\n");
}

// The smuggling matrix through a whole session.
struct SmuggleCase {
  std::string sequence;
  bool has_bare_lf;
};

std::vector<SmuggleCase> smuggleCases() {
  return {
      {"\n.\n", true},          {"\n.\r", true},     {"\r.\n", true},         {"\r.\r", false},
      {"\n.\r\n", true},        {"\r.\r\n", false},  {std::string("\r\n\0.\r\n", 6), false},
      {"\r\n.\r\r\n", false},   {"\r\r\n.\r\r\n", false}, {"\r\n.\n", true},
  };
}

std::string smuggleInput(const std::string& seq) {
  return "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n\r\nbody" + seq +
         "MAIL FROM:<x@y>\r\nRCPT TO:<v@w>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n";
}

TEST(ServerSession, SmugglingNormalize) {
  for (const SmuggleCase& c : smuggleCases()) {
    const std::string input = smuggleInput(c.sequence);
    const Replies expected{"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"};
    for (std::size_t piece : {0u, 1u, 2u, 3u, 5u}) {
      Harness t;
      EXPECT_EQ(t.run(input, piece), expected) << piece;
      ASSERT_EQ(t.handler.ends, 1);
      EXPECT_TRUE(t.handler.aborts.empty());
      const std::string& m = t.handler.messages[0];
      EXPECT_NE(m.find("MAIL FROM:<x@y>\r\nRCPT TO:<v@w>\r\nDATA\r\nevil\r\n"), std::string::npos);
      EXPECT_EQ(t.handler.last_txn.recipients, std::vector<std::string>{"c@d"});
      for (std::size_t i = 0; i < m.size(); ++i) {
        if (m[i] == '\r') { ASSERT_TRUE(i + 1 < m.size() && m[i + 1] == '\n'); }
        if (m[i] == '\n') { ASSERT_TRUE(i > 0 && m[i - 1] == '\r'); }
      }
    }
    // Every cut point.
    for (std::size_t cut = 0; cut <= input.size(); ++cut) {
      Harness t;
      Replies got = t.run(std::string_view(input).substr(0, cut));
      for (const std::string& r : t.run(std::string_view(input).substr(cut))) got.push_back(r);
      ASSERT_EQ(got, expected) << "cut at " << cut;
      ASSERT_EQ(t.handler.ends, 1);
    }
  }
}

TEST(ServerSession, SmugglingReject) {
  for (const SmuggleCase& c : smuggleCases()) {
    SessionLimits l = Harness::testLimits();
    l.bare_lf = BareLf::Reject;
    for (std::size_t piece : {0u, 1u}) {
      Harness t(l);
      const Replies got = t.run(smuggleInput(c.sequence), piece);
      if (c.has_bare_lf) {
        EXPECT_EQ(got, (Replies{"250", "250 2.1.0", "250 2.1.5", "354", "550 5.5.2", "221 2.0.0"}));
        EXPECT_EQ(t.handler.ends, 0);
        EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::BareLf});
      } else {
        EXPECT_EQ(got, (Replies{"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"}));
        EXPECT_EQ(t.handler.ends, 1);
      }
    }
  }
}

TEST(ServerSession, BareLfRejectModeAcceptsCleanMessages) {
  SessionLimits l = Harness::testLimits();
  l.bare_lf = BareLf::Reject;
  Harness t(l);
  EXPECT_EQ(t.run("EHLO c\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nclean\r\n.\r\n"),
            (Replies{"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}));
  EXPECT_EQ(t.run("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nbare\nlf\r\n.\r\nNOOP\r\n"),
            (Replies{"250 2.1.0", "250 2.1.5", "354", "550 5.5.2", "250 2.0.0"}));
  EXPECT_EQ(t.lastWire(), "250 2.0.0 OK\r\n");
}

TEST(ServerSession, ReentrantShutdownFromHandler) {
  // A handler that shuts the session down from a callback must not leave the
  // session running commands.
  class Closer : public FakeHandler {
   public:
    std::optional<Reply> onRcpt(const Transaction& txn, std::string_view r) override {
      auto v = FakeHandler::onRcpt(txn, r);
      session->shutdown();
      return v;
    }
  };
  Closer h;
  CapturingSink s;
  ServerSession session(Harness::testLimits(), h, s);
  h.session = &session;
  session.feed("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nNOOP\r\n");
  ASSERT_EQ(s.replies.size(), 3u);
  EXPECT_EQ(brief(s.replies[2]), "421 4.3.2");
  EXPECT_TRUE(session.closed());
  EXPECT_EQ(session.buffered(), 0u);
}

}  // namespace
}  // namespace mb::smtp
