// ServerSession: BDAT (RFC 3030 CHUNKING), the content line limit of RFC
// 5321 §4.5.3.1.6 in DATA and BDAT, and split-independence of whole
// sessions with AUTH and BDAT.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "smtp/sasl.h"
#include "smtp/server_session.h"
#include "smtp/session_test_harness.h"

namespace mb::smtp {
namespace {

using namespace mb::smtp::testing;

const char* const kEnvelope = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n";
const Replies kEnvelopeReplies{"250", "250 2.1.0", "250 2.1.5"};

std::string bdat(std::string_view content, bool last = false) {
  return "BDAT " + std::to_string(content.size()) + (last ? " LAST" : "") + "\r\n" +
         std::string(content);
}

// `content` as BDAT chunks cut at `cuts` (ascending offsets), the last LAST.
std::string chunked(std::string_view content, const std::vector<std::size_t>& cuts) {
  std::string out;
  std::size_t start = 0;
  for (std::size_t cut : cuts) {
    out += bdat(content.substr(start, cut - start));
    start = cut;
  }
  return out + bdat(content.substr(start), true);
}

Replies concat(Replies a, const Replies& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(SessionBdat, ThreeChunksMakeTheSameMessageAsData) {
  const std::string message = "Subject: chunks\r\n\r\nfirst line\r\n.leading dot\r\nlast line\r\n";
  Harness data;
  EXPECT_EQ(data.run(std::string(kEnvelope) +
                     "DATA\r\nSubject: chunks\r\n\r\nfirst line\r\n..leading dot\r\n"
                     "last line\r\n.\r\n"),
            concat(kEnvelopeReplies, {"354", "250 2.0.0"}));

  Harness t;
  t.auto_commit = false;
  EXPECT_EQ(t.run(std::string(kEnvelope) + chunked(message, {10, 30})),
            concat(kEnvelopeReplies, {"250 2.0.0", "250 2.0.0"}));
  EXPECT_EQ(t.sink.replies[3], "250 2.0.0 10 octets received\r\n");
  EXPECT_EQ(t.sink.replies[4], "250 2.0.0 20 octets received\r\n");
  EXPECT_TRUE(t.session.awaitingCommit());
  EXPECT_FALSE(t.session.inData());
  ASSERT_EQ(t.handler.messages.size(), 1u);
  EXPECT_EQ(t.handler.messages, data.handler.messages);
  EXPECT_EQ(t.handler.messages[0], message);
  EXPECT_EQ(t.handler.events, data.handler.events);
  EXPECT_EQ(t.handler.last_txn.recipients, std::vector<std::string>{"c@d"});
  t.session.completeData(Reply{250, "2.0.0", "Queued as Q1", {}});
  EXPECT_EQ(t.lastWire(), "250 2.0.0 Queued as Q1\r\n");
  // The transaction is over; the greeting stays.
  EXPECT_EQ(t.run(bdat("x", true)), Replies{"503 5.5.1"});
  EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "250 2.1.0");
}

TEST(SessionBdat, EmptyChunksAndEmptyMessage) {
  Harness t;
  EXPECT_EQ(t.run(std::string(kEnvelope) + "BDAT 0\r\nBDAT 0 LAST\r\n"),
            concat(kEnvelopeReplies, {"250 2.0.0", "250 2.0.0"}));
  EXPECT_EQ(t.sink.replies[3], "250 2.0.0 0 octets received\r\n");
  EXPECT_EQ(t.handler.messages, std::vector<std::string>{""});
  EXPECT_EQ(t.handler.events.back(), "end 0");
}

TEST(SessionBdat, ChunkBoundaryAtEveryPosition) {
  const std::string message = "ab\r\ncd\r\n\r\n.\r\nend\r\n";
  for (std::size_t i = 0; i <= message.size(); ++i) {
    for (std::size_t j = i; j <= message.size(); ++j) {
      Harness t;
      EXPECT_EQ(t.run(std::string(kEnvelope) + chunked(message, {i, j})),
                concat(kEnvelopeReplies, {"250 2.0.0", "250 2.0.0", "250 2.0.0"}));
      ASSERT_EQ(t.handler.messages, std::vector<std::string>{message}) << i << " " << j;
    }
  }
  // Bare line ends normalise the same wherever the chunks end.
  const std::string raw = "a\rb\nc\r\r\nd\r";
  for (std::size_t i = 0; i <= raw.size(); ++i) {
    Harness t;
    t.run(std::string(kEnvelope) + chunked(raw, {i}));
    ASSERT_EQ(t.handler.messages, std::vector<std::string>{"a b\r\nc \r\nd \r\n"}) << i;
  }
}

TEST(SessionBdat, CrAndLfInSeparateChunksAreOneLineEnd) {
  SessionLimits l = Harness::testLimits();
  l.bare_lf = BareLf::Reject;
  Harness t(l);
  EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("line\r") + bdat("\nnext\r\n", true)),
            concat(kEnvelopeReplies, {"250 2.0.0", "250 2.0.0"}));
  EXPECT_EQ(t.handler.messages, std::vector<std::string>{"line\r\nnext\r\n"});
}

TEST(SessionBdat, NormalisationAndBareLfReject) {
  {
    Harness t;
    t.run(std::string(kEnvelope) + bdat("bare\nlf and bare\rcr\r\n") + bdat("no end", true));
    EXPECT_EQ(t.handler.messages, std::vector<std::string>{"bare\r\nlf and bare cr\r\nno end\r\n"});
  }
  {
    SessionLimits l = Harness::testLimits();
    l.bare_lf = BareLf::Reject;
    Harness t(l);
    // Refused at LAST, not before: the chunks in between are read as usual.
    EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("bare\nlf\r\n") + bdat("more\r\n") +
                    bdat("end\r\n", true) + "NOOP\r\n"),
              concat(kEnvelopeReplies, {"250 2.0.0", "250 2.0.0", "550 5.5.2", "250 2.0.0"}));
    EXPECT_EQ(t.handler.ends, 0);
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::BareLf});
    EXPECT_EQ(t.say("RCPT TO:<c@d>"), "503 5.5.1");
    // A bare CR is no reason to refuse.
    EXPECT_EQ(t.run("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n" + bdat("a\rb\r\n", true)),
              (Replies{"250 2.1.0", "250 2.1.5", "250 2.0.0"}));
  }
}

std::vector<std::string> smuggleSequences() {
  return {"\n.\n",
          "\n.\r",
          "\r.\n",
          "\r.\r",
          "\n.\r\n",
          "\r.\r\n",
          std::string("\r\n\0.\r\n", 6),
          "\r\n.\r\r\n",
          "\r\r\n.\r\r\n",
          "\r\n.\n",
          "\r\n.\r\n",
          "\r\n.\r\nQUIT\r\n"};
}

TEST(SessionBdat, SmugglingSequencesAreOnlyContent) {
  for (const std::string& seq : smuggleSequences()) {
    const std::string content =
        "Subject: s\r\n\r\nbody" + seq +
        "MAIL FROM:<x@y>\r\nRCPT TO:<v@w>\r\nDATA\r\nevil\r\n.\r\nBDAT 5 LAST\r\nQUIT\r\n";
    for (std::size_t cut = 0; cut <= content.size(); ++cut) {
      Harness t;
      const Replies got = t.run(std::string(kEnvelope) + chunked(content, {cut}) + "NOOP\r\n");
      ASSERT_EQ(got, concat(kEnvelopeReplies, {"250 2.0.0", "250 2.0.0", "250 2.0.0"})) << cut;
      ASSERT_EQ(t.handler.ends, 1);
      EXPECT_FALSE(t.session.closed());
      const std::string& m = t.handler.messages[0];
      ASSERT_NE(
          m.find(
              "MAIL FROM:<x@y>\r\nRCPT TO:<v@w>\r\nDATA\r\nevil\r\n.\r\nBDAT 5 LAST\r\nQUIT\r\n"),
          std::string::npos);
      EXPECT_EQ(t.handler.last_txn.recipients, std::vector<std::string>{"c@d"});
      for (std::size_t i = 0; i < m.size(); ++i) {
        if (m[i] == '\r') {
          ASSERT_TRUE(i + 1 < m.size() && m[i + 1] == '\n');
        }
        if (m[i] == '\n') {
          ASSERT_TRUE(i > 0 && m[i - 1] == '\r');
        }
      }
    }
  }
}

TEST(SessionBdat, DataAfterBdatIsRefused) {
  Harness t;
  EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("part one\r\n") + "DATA\r\n" +
                  bdat("part two\r\n", true)),
            concat(kEnvelopeReplies, {"250 2.0.0", "503 5.5.1", "250 2.0.0"}));
  EXPECT_EQ(t.sink.replies[4], "503 5.5.1 DATA not allowed after BDAT\r\n");
  EXPECT_EQ(t.handler.messages, std::vector<std::string>{"part one\r\npart two\r\n"});
  // MAIL, too, waits for the end of the transaction.
  EXPECT_EQ(t.run("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n" + bdat("x\r\n") + "MAIL FROM:<e@f>\r\n"),
            (Replies{"250 2.1.0", "250 2.1.5", "250 2.0.0", "503 5.5.1"}));
}

TEST(SessionBdat, SizeLimit) {
  // max_message_size = 1000
  for (std::size_t piece : {0u, 1u, 7u, 100u}) {
    Harness t;
    const std::string six(598, 'x');
    const std::string input = std::string(kEnvelope) + bdat(six + "\r\n") + bdat(six + "\r\n") +
                              bdat("tail\r\n", true) + "NOOP\r\nMAIL FROM:<a@b>\r\n";
    EXPECT_EQ(t.run(input, piece), concat(kEnvelopeReplies, {"250 2.0.0", "552 5.3.4", "503 5.5.1",
                                                             "250 2.0.0", "250 2.1.0"}))
        << piece;
    EXPECT_EQ(t.sink.replies[4], "552 5.3.4 Message too big\r\n");
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::TooBig});
    EXPECT_EQ(t.handler.ends, 0);
    EXPECT_LE(t.handler.chunked, 1000u);
    EXPECT_EQ(t.session.buffered(), 0u);
  }
  {
    // One chunk over the limit is not passed on at all.
    Harness t;
    EXPECT_EQ(t.run(std::string(kEnvelope) + bdat(std::string(1001, 'y'), true) + "NOOP\r\n"),
              concat(kEnvelopeReplies, {"552 5.3.4", "250 2.0.0"}));
    EXPECT_EQ(t.handler.chunked, 0u);
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::TooBig});
  }
  {
    // Exactly at the limit.
    Harness t;
    std::string content;
    for (int i = 0; i < 10; ++i) content += std::string(98, 'z') + "\r\n";
    EXPECT_EQ(t.run(std::string(kEnvelope) + chunked(content, {500})),
              concat(kEnvelopeReplies, {"250 2.0.0", "250 2.0.0"}));
    EXPECT_EQ(t.handler.messages, std::vector<std::string>{content});
  }
  {
    // Bare LFs grow the content past the limit.
    Harness t;
    std::string content;
    for (int i = 0; i < 10; ++i) content += std::string(99, 'z') + "\n";
    EXPECT_EQ(t.run(std::string(kEnvelope) + bdat(content, true)),
              concat(kEnvelopeReplies, {"552 5.3.4"}));
    EXPECT_LE(t.handler.chunked, 1000u);
  }
  {
    // So does the line end added to an unterminated last line.
    Harness t;
    EXPECT_EQ(t.run(std::string(kEnvelope) + bdat(std::string(999, 'w'), true)),
              concat(kEnvelopeReplies, {"552 5.3.4"}));
  }
}

TEST(SessionBdat, RefusedChunksAreStillRead) {
  // The chunk's octets look like commands; none of them may run.
  const std::string evil = "NOOP\r\nQUIT\r\nMAIL FROM:<x@y>\r\n";
  for (std::size_t piece : {0u, 1u, 5u}) {
    Harness t;
    EXPECT_EQ(t.run(bdat(evil) + "EHLO c\r\n" + bdat(evil, true) + "MAIL FROM:<a@b>\r\n" +
                        bdat(evil) + "RCPT TO:<c@d>\r\nNOOP\r\n",
                    piece),
              (Replies{"503 5.5.1", "250", "503 5.5.1", "250 2.1.0", "503 5.5.1", "503 5.5.1",
                       "250 2.0.0"}))
        << piece;
    EXPECT_FALSE(t.session.closed());
    // A refused chunk fails the transaction (RFC 3030 §2), so the RCPT after it has no MAIL.
    EXPECT_EQ(t.handler.events, std::vector<std::string>{"mail a@b"});
  }
  // After RCPTs that all failed.
  Harness t;
  t.handler.rcpt_verdict = [](std::string_view) {
    return std::optional<Reply>(Reply{550, "5.1.1", "No", {}});
  };
  EXPECT_EQ(t.run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\n" + bdat(evil, true) + "NOOP\r\n"),
            (Replies{"250", "250 2.1.0", "550 5.1.1", "554 5.5.1", "250 2.0.0"}));
}

TEST(SessionBdat, HandlerRefusesTheMessage) {
  Harness t;
  t.handler.data_start_verdict = Reply{451, "4.3.0", "Cannot store", {}};
  EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("QUIT\r\n") + bdat("QUIT\r\n", true) + "NOOP\r\n"),
            concat(kEnvelopeReplies, {"451 4.3.0", "503 5.5.1", "250 2.0.0"}));
  EXPECT_EQ(t.handler.events, (std::vector<std::string>{"mail a@b", "rcpt c@d", "start"}));
  // The transaction is gone: a new one can start.
  t.handler.data_start_verdict.reset();
  EXPECT_EQ(t.run("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n" + bdat("ok\r\n", true)),
            (Replies{"250 2.1.0", "250 2.1.5", "250 2.0.0"}));
}

TEST(SessionBdat, BadSyntax) {
  // The size parsed: its octets are read, and the transaction fails.
  Harness t;
  EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("one\r\n") + "BDAT 6 FIRST\r\nNOOP\r\n" +
                  bdat("two\r\n", true) + "NOOP\r\n"),
            concat(kEnvelopeReplies, {"250 2.0.0", "501 5.5.4", "503 5.5.1", "250 2.0.0"}));
  EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::None});
  EXPECT_EQ(t.handler.ends, 0);

  // No size: nobody knows how much follows, so what follows is commands.
  for (const char* line :
       {"BDAT", "BDAT x", "BDAT -1 LAST", "BDAT 1k", "BDAT 123456789012345678901 LAST"}) {
    Harness b;
    EXPECT_EQ(
        b.run(std::string(kEnvelope) + bdat("one\r\n") + line + "\r\nNOOP\r\nRCPT TO:<c@d>\r\n"),
        concat(kEnvelopeReplies, {"250 2.0.0", "501 5.5.4", "250 2.0.0", "503 5.5.1"}))
        << line;
    EXPECT_EQ(b.handler.aborts, std::vector<DataProblem>{DataProblem::None});
  }
}

TEST(SessionBdat, ResetsDropTheOpenMessage) {
  struct Case {
    const char* command;
    const char* reply;
  };
  for (const Case& c :
       {Case{"RSET", "250 2.0.0"}, Case{"EHLO again", "250"}, Case{"HELO again", "250"}}) {
    Harness t;
    const std::string command = c.command;
    EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("part\r\n") + command + "\r\n" + bdat("x", true)),
              concat(kEnvelopeReplies, {"250 2.0.0", c.reply, "503 5.5.1"}))
        << command;
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::None}) << command;
    EXPECT_EQ(t.handler.open, 0);
  }
  {
    Harness t;
    EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("part\r\n") + "QUIT\r\n"),
              concat(kEnvelopeReplies, {"250 2.0.0", "221 2.0.0"}));
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::None});
    EXPECT_TRUE(t.session.closed());
  }
}

TEST(SessionBdat, ConnectionEventsMidChunk) {
  {
    Harness t;
    t.run(std::string(kEnvelope) + "BDAT 100\r\npartial");
    EXPECT_TRUE(t.session.inData());
    EXPECT_EQ(t.session.buffered(), 0u);
    t.session.disconnected();
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::None});
    EXPECT_TRUE(t.session.closed());
  }
  {
    Harness t;
    t.run(std::string(kEnvelope) + bdat("done\r\n"));
    EXPECT_FALSE(t.session.inData());
    t.session.timeout();
    EXPECT_EQ(brief(t.lastWire()), "421 4.4.2");
    EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::None});
  }
  {
    // A refused chunk opened nothing: nothing to abort.
    Harness t;
    t.run("EHLO c\r\nBDAT 100\r\npartial");
    EXPECT_TRUE(t.session.inData());
    t.session.shutdown();
    EXPECT_TRUE(t.handler.aborts.empty());
    EXPECT_TRUE(t.session.closed());
  }
  {
    // A size no client will ever send in full: read and dropped, never held.
    Harness t;
    t.run(std::string(kEnvelope) + "BDAT 99999999999999999999 LAST\r\n");
    for (int i = 0; i < 100; ++i) t.session.feed(std::string(1000, 'q'));
    EXPECT_EQ(t.session.buffered(), 0u);
    EXPECT_TRUE(t.session.inData());
    EXPECT_EQ(t.handler.chunked, 0u);
    EXPECT_EQ(t.sink.replies.size(), 3u);
  }
}

TEST(SessionBdat, LastWaitsForTheCommit) {
  Harness t;
  t.auto_commit = false;
  const std::string after = "MAIL FROM:<n@x>\r\nNOOP\r\n";
  EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("hello\r\n", true) + after), kEnvelopeReplies);
  EXPECT_TRUE(t.session.awaitingCommit());
  EXPECT_EQ(t.session.buffered(), after.size());
  t.session.completeData(Reply{451, "4.3.0", "Local error", {}});
  Replies got;
  for (std::size_t i = 3; i < t.sink.replies.size(); ++i) got.push_back(brief(t.sink.replies[i]));
  EXPECT_EQ(got, (Replies{"451 4.3.0", "250 2.1.0", "250 2.0.0"}));
}

TEST(SessionBdat, SynchronousCommitFromOnDataEnd) {
  Harness t;
  t.auto_commit = false;
  t.handler.complete_at_once = true;
  EXPECT_EQ(t.run(std::string(kEnvelope) + bdat("a\r\n", true) + "MAIL FROM:<a@b>\r\n"),
            concat(kEnvelopeReplies, {"250 2.0.0", "250 2.1.0"}));
  EXPECT_EQ(t.handler.ends, 1);
}

// ---------------------------------------------------------------- long lines

std::string lineOf(std::size_t octets) {
  return std::string(octets - 2, 'L') + "\r\n";
}

TEST(SessionLongLines, DataRejectsOrPasses) {
  SessionLimits l = Harness::testLimits();
  l.max_message_size = 100000;
  for (bool reject : {true, false}) {
    for (std::size_t octets : {999u, 1000u, 1001u, 5000u}) {
      for (std::size_t piece : {0u, 1u, 333u}) {
        l.reject_long_lines = reject;
        Harness t(l);
        const std::string content = "Subject: x\r\n\r\n" + lineOf(octets) + "short\r\n";
        const Replies got =
            t.run(std::string(kEnvelope) + "DATA\r\n" + content + ".\r\nNOOP\r\n", piece);
        if (reject && octets > 1000) {
          EXPECT_EQ(got, concat(kEnvelopeReplies, {"354", "500 5.5.6", "250 2.0.0"})) << octets;
          EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::LineTooLong});
          EXPECT_EQ(t.handler.ends, 0);
          EXPECT_EQ(t.say("RCPT TO:<c@d>"), "503 5.5.1");
        } else {
          EXPECT_EQ(got, concat(kEnvelopeReplies, {"354", "250 2.0.0", "250 2.0.0"}))
              << octets << reject;
          EXPECT_EQ(t.handler.messages, std::vector<std::string>{content});
        }
      }
    }
  }
}

SessionLimits roomy() {
  SessionLimits l = Harness::testLimits();
  l.max_message_size = 100000;
  return l;
}

TEST(SessionLongLines, StuffingDotDoesNotCount) {
  Harness t(roomy());
  // 1001 octets on the wire, 1000 in the message.
  EXPECT_EQ(t.run(std::string(kEnvelope) + "DATA\r\n." + lineOf(1000) + ".\r\n"),
            concat(kEnvelopeReplies, {"354", "250 2.0.0"}));
  EXPECT_EQ(t.run("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.." + lineOf(1000) + ".\r\n"),
            (Replies{"250 2.1.0", "250 2.1.5", "354", "500 5.5.6"}));
}

TEST(SessionLongLines, BdatAcrossChunks) {
  SessionLimits l = Harness::testLimits();
  l.max_message_size = 100000;
  for (bool reject : {true, false}) {
    for (std::size_t octets : {999u, 1000u, 1001u}) {
      l.reject_long_lines = reject;
      const std::string content = "a\r\n" + lineOf(octets) + "b\r\n";
      for (std::size_t cut : {std::size_t{0}, std::size_t{500}, std::size_t{3} + octets - 1}) {
        Harness t(l);
        const Replies got = t.run(std::string(kEnvelope) + chunked(content, {cut}) + "NOOP\r\n");
        if (reject && octets > 1000) {
          EXPECT_EQ(got, concat(kEnvelopeReplies, {"250 2.0.0", "500 5.5.6", "250 2.0.0"}));
          EXPECT_EQ(t.handler.aborts, std::vector<DataProblem>{DataProblem::LineTooLong});
        } else {
          EXPECT_EQ(got, concat(kEnvelopeReplies, {"250 2.0.0", "250 2.0.0", "250 2.0.0"}));
          EXPECT_EQ(t.handler.messages, std::vector<std::string>{content});
        }
      }
    }
  }
  // An unterminated last line is measured with the CR LF it gets.
  l = Harness::testLimits();
  l.max_message_size = 100000;
  Harness t(l);
  EXPECT_EQ(t.run(std::string(kEnvelope) + bdat(std::string(998, 'x'), true)),
            concat(kEnvelopeReplies, {"250 2.0.0"}));
  EXPECT_EQ(t.run("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n" + bdat(std::string(999, 'x'), true)),
            (Replies{"250 2.1.0", "250 2.1.5", "500 5.5.6"}));
}

TEST(SessionLongLines, CountsAsAnError) {
  SessionLimits l = roomy();
  l.max_errors = 2;
  Harness t(l);
  EXPECT_EQ(
      t.run("FOO\r\n" + std::string(kEnvelope) + "DATA\r\n" + lineOf(1001) + ".\r\nNOOP\r\n"),
      (Replies{"500 5.5.2", "250", "250 2.1.0", "250 2.1.5", "354", "500 5.5.6", "421 4.7.0"}));
}

// ---------------------------------------------------------------- split independence

std::string b64(std::string_view s) {
  return encodeBase64(s);
}

std::string scriptedSession() {
  return "EHLO client.example\r\n"
         "AUTH LOGIN\r\n" +
         b64("user") + "\r\n" + b64("password") +
         "\r\n"
         "MAIL FROM:<a@example.com>\r\n"
         "RCPT TO:<b@example.com>\r\n"
         "BDAT 13\r\n"
         "Subject: x\r\n\r"
         "BDAT 20\r\n"
         "\nline\r\n.\r\nQUIT\r\nend\r"
         "BDAT 7 LAST\r\n"
         "\nlast\r\n"
         "MAIL FROM:<c@example.com>\r\n"
         "RCPT TO:<d@example.com>\r\n"
         "DATA\r\n"
         "via data\r\n"
         ".\r\n"
         "BDAT 12\r\n"
         "RSET\r\nQUIT\r\n"
         "BDAT nope\r\n"
         "AUTH PLAIN\r\n"
         "NOOP\r\n"
         "QUIT\r\n";
}

TEST(SessionSplits, AuthAndBdatSessionByteByByte) {
  SessionFeatures f;
  f.auth = true;
  f.tls_active = true;
  const Replies expected{"250",       "334",       "334",       "235 2.7.0", "250 2.1.0",
                         "250 2.1.5", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.1.0",
                         "250 2.1.5", "354",       "250 2.0.0", "503 5.5.1", "501 5.5.4",
                         "503 5.5.1", "250 2.0.0", "221 2.0.0"};
  const std::string input = scriptedSession();
  Harness whole(Harness::testLimits(), f);
  EXPECT_EQ(whole.run(input), expected);
  EXPECT_EQ(whole.handler.messages,
            (std::vector<std::string>{"Subject: x\r\n\r\nline\r\n.\r\nQUIT\r\nend\r\nlast\r\n",
                                      "via data\r\n"}));
  EXPECT_EQ(whole.handler.auths.size(), 1u);
  EXPECT_TRUE(whole.session.closed());

  for (std::size_t piece = 1; piece <= 13; ++piece) {
    Harness split(Harness::testLimits(), f);
    EXPECT_EQ(split.run(input, piece), expected) << "pieces of " << piece;
    EXPECT_EQ(split.handler.events, whole.handler.events) << "pieces of " << piece;
    EXPECT_EQ(split.handler.messages, whole.handler.messages);
  }
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    Harness split(Harness::testLimits(), f);
    Replies got = split.run(std::string_view(input).substr(0, cut));
    for (const std::string& r : split.run(std::string_view(input).substr(cut))) got.push_back(r);
    ASSERT_EQ(got, expected) << "cut at " << cut;
    ASSERT_EQ(split.handler.events, whole.handler.events) << "cut at " << cut;
    ASSERT_EQ(split.handler.messages, whole.handler.messages) << "cut at " << cut;
  }
}

}  // namespace
}  // namespace mb::smtp
