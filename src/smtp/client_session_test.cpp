#include "smtp/client_session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "smtp/sasl.h"

namespace mb::smtp {
namespace {

using Step = ClientSession::Step;

std::vector<ServerReply> readAll(ReplyReader& r) {
  std::vector<ServerReply> out;
  while (auto reply = r.next()) out.push_back(*reply);
  return out;
}

TEST(ReplyReader, SplitsSingleAndMultiLineReplies) {
  ReplyReader r;
  r.feed("220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPE");
  auto got = readAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].code, 220);
  EXPECT_EQ(got[0].lines, std::vector<std::string>{"mx.example ESMTP"});
  r.feed("LINING\n250 SIZE 100\r\n");  // a bare LF ends a line too
  got = readAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].code, 250);
  EXPECT_EQ(got[0].lines, (std::vector<std::string>{"mx.example", "PIPELINING", "SIZE 100"}));
  EXPECT_TRUE(r.error().empty());
  EXPECT_FALSE(r.pending());
}

TEST(ReplyReader, RefusesWhatIsNotAReply) {
  for (const char* bad : {"hello\r\n", "25 short\r\n", "650 no\r\n", "250x\r\n", "250-a\r\n354 b\r\n"}) {
    ReplyReader r;
    r.feed(bad);
    readAll(r);
    EXPECT_FALSE(r.error().empty()) << bad;
  }
  ReplyReader r;
  r.feed(std::string(ReplyReader::kMaxLineBytes + 10, 'a'));
  EXPECT_FALSE(r.next());
  EXPECT_FALSE(r.error().empty());
}

TEST(ServerReply, EnhancedCodeAndDescription) {
  EXPECT_EQ((ServerReply{550, {"5.1.1 No such user"}}).enhanced(), "5.1.1");
  EXPECT_EQ((ServerReply{250, {"2.0.0"}}).enhanced(), "2.0.0");
  EXPECT_EQ((ServerReply{550, {"4.1.1 class differs"}}).enhanced(), "");
  EXPECT_EQ((ServerReply{550, {"No such user"}}).enhanced(), "");
  EXPECT_EQ((ServerReply{451, {"4.3.0 a", "b\x01"}}).describe(), "451 4.3.0 a b?");
}

TEST(ServerCapabilities, ReadsTheExtensions) {
  ServerReply ehlo{250, {"mx.example greets you", "PIPELINING", "SIZE 35882577", "8bitmime", "STARTTLS",
                          "AUTH LOGIN PLAIN XOAUTH2", "SMTPUTF8"}};
  auto caps = ServerCapabilities::fromEhlo(ehlo);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.size_limit, 35882577u);
  EXPECT_TRUE(caps.eight_bit_mime);
  EXPECT_TRUE(caps.starttls);
  EXPECT_TRUE(caps.auth_login && caps.auth_plain && caps.auth_xoauth2);
  EXPECT_TRUE(caps.smtputf8);
  auto old = ServerCapabilities::fromEhlo(ServerReply{250, {"mx", "AUTH=LOGIN", "SIZE"}});
  EXPECT_TRUE(old.auth_login);
  EXPECT_TRUE(old.size);
  EXPECT_EQ(old.size_limit, 0u);
  // The greeting line is not a capability.
  EXPECT_FALSE(ServerCapabilities::fromEhlo(ServerReply{250, {"STARTTLS"}}).starttls);
}

// Drives a session the way delivery/smtp does, against canned replies: each
// time the session reads, the next entry of `server` is fed. Collects what
// the client wrote.
struct Script {
  Script(ClientSession& s, std::vector<std::string> replies) : session(s), server(std::move(replies)) {}
  ClientSession& session;
  std::vector<std::string> server;
  std::size_t next = 0;
  std::string written;
  bool tls_done = false;

  // Runs until the session wants something the script cannot give.
  Step run() {
    for (;;) {
      switch (session.step()) {
        case Step::Write:
          written += session.takeOutput();
          break;
        case Step::Read:
          if (next >= server.size()) return Step::Read;
          session.receive(server[next++]);
          break;
        case Step::StartTls:
          tls_done = true;
          session.tlsStarted();
          break;
        default:
          return session.step();
      }
    }
  }
};

const char* kGreeting = "220 smarthost.test ESMTP\r\n";
const char* kEhloPlain = "250-smarthost.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n";
const char* kEhloTls =
    "250-smarthost.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n";

ClientOptions options(ClientAuth auth = ClientAuth::None) {
  ClientOptions o;
  o.helo_name = "relay.example";
  o.auth = auth;
  o.username = "relay@example.com";
  o.secret = "s3cret";
  return o;
}

TEST(ClientSession, StartTlsThenAuthPlainThenPipelinedMixedRecipients) {
  ClientSession s(options(ClientAuth::Plain));
  Script script{s, {kGreeting, kEhloPlain, "220 2.0.0 go ahead\r\n", kEhloTls, "235 2.7.0 ok\r\n"}};
  ASSERT_EQ(script.run(), Step::Ready);
  EXPECT_TRUE(script.tls_done);
  EXPECT_TRUE(s.tls());
  const std::string plain = encodeBase64(std::string("\0relay@example.com\0s3cret", 25));
  EXPECT_EQ(script.written, "EHLO relay.example\r\nSTARTTLS\r\nEHLO relay.example\r\nAUTH PLAIN " + plain + "\r\n");

  script.written.clear();
  s.begin(ClientTransaction{"a@example.com", {"ok@x.test", "later@x.test", "gone@x.test"}, 10, true, false});
  script.server.insert(script.server.end(), {"250 2.1.0 ok\r\n250 2.1.5 ok\r\n450 4.2.0 busy\r\n",
                                             "550 5.1.1 no such user\r\n354 go\r\n"});
  ASSERT_EQ(script.run(), Step::SendBody);
  // One pipelined group, DATA last.
  EXPECT_EQ(script.written,
            "MAIL FROM:<a@example.com> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<ok@x.test>\r\nRCPT TO:<later@x.test>\r\n"
            "RCPT TO:<gone@x.test>\r\nDATA\r\n");
  s.bodySent();
  EXPECT_TRUE(s.awaitingDotReply());
  script.server.push_back("250 2.0.0 queued as 123\r\n");
  ASSERT_EQ(script.run(), Step::Ready);
  ASSERT_TRUE(s.hasOutcome());
  auto outcome = s.takeOutcome();
  ASSERT_EQ(outcome.recipients.size(), 3u);
  EXPECT_EQ(outcome.recipients[0].code, 250);
  EXPECT_EQ(outcome.recipients[1].code, 450);
  EXPECT_EQ(outcome.recipients[2].code, 550);
  EXPECT_EQ(outcome.recipients[2].enhanced(), "5.1.1");
  EXPECT_FALSE(outcome.possible_duplicate);
  EXPECT_EQ(s.transactions(), 1u);

  script.written.clear();
  s.quit();
  script.server.push_back("221 2.0.0 bye\r\n");
  EXPECT_EQ(script.run(), Step::Closed);
  EXPECT_EQ(script.written, "QUIT\r\n");
  EXPECT_FALSE(s.failure());
}

TEST(ClientSession, NeverGoesOnInPlaintextWithoutStartTls) {
  ClientSession s(options(ClientAuth::Plain));
  Script script{s, {kGreeting, "250-smarthost.test\r\n250 AUTH PLAIN\r\n"}};
  EXPECT_EQ(script.run(), Step::Closed);
  EXPECT_EQ(script.written, "EHLO relay.example\r\n");
  ASSERT_TRUE(s.failure());
  EXPECT_NE(s.failure()->detail.find("STARTTLS"), std::string::npos);
}

TEST(ClientSession, RefusesPlaintextInjectedAfterStartTls) {
  ClientSession s(options());
  Script script{s, {kGreeting, kEhloPlain, "220 go ahead\r\n250 injected\r\n"}};
  EXPECT_EQ(script.run(), Step::Closed);
  EXPECT_FALSE(script.tls_done);
  ASSERT_TRUE(s.failure());
}

TEST(ClientSession, StartTlsRefusedIsAFailure) {
  ClientSession s(options());
  Script script{s, {kGreeting, kEhloPlain, "454 4.7.0 TLS not available\r\n"}};
  EXPECT_EQ(script.run(), Step::Closed);
  EXPECT_NE(s.failure()->detail.find("plaintext"), std::string::npos);
}

TEST(ClientSession, AuthLoginAnswersTwoChallenges) {
  auto o = options(ClientAuth::Login);
  o.tls_from_start = true;
  ClientSession s(std::move(o));
  Script script{s, {kGreeting, kEhloTls, "334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n", "235 ok\r\n"}};
  ASSERT_EQ(script.run(), Step::Ready);
  EXPECT_EQ(script.written, "EHLO relay.example\r\nAUTH LOGIN\r\n" + encodeBase64("relay@example.com") + "\r\n" +
                                encodeBase64("s3cret") + "\r\n");
}

TEST(ClientSession, XOAuth2RefusalIsAnsweredEmptyAndReported) {
  auto o = options(ClientAuth::XOAuth2);
  o.tls_from_start = true;
  o.secret = "ya29.token";
  ClientSession s(std::move(o));
  const std::string err = encodeBase64(R"({"status":"401","schemes":"bearer","scope":"https://mail.google.com/"})");
  Script script{s, {kGreeting, kEhloTls, "334 \r\n", "334 " + err + "\r\n", "535-5.7.8 Username and\r\n535 5.7.8 no\r\n"}};
  EXPECT_EQ(script.run(), Step::Closed);
  const std::string payload = encodeBase64("user=relay@example.com\x01" "auth=Bearer ya29.token\x01\x01");
  EXPECT_EQ(script.written, "EHLO relay.example\r\nAUTH XOAUTH2\r\n" + payload + "\r\n\r\n");
  ASSERT_TRUE(s.failure());
  EXPECT_TRUE(s.failure()->auth_rejected);
  EXPECT_NE(s.failure()->detail.find("\"status\":\"401\""), std::string::npos);
  EXPECT_EQ(s.failure()->detail.find("ya29"), std::string::npos);
}

TEST(ClientSession, MechanismNotOfferedIsAFailure) {
  auto o = options(ClientAuth::XOAuth2);
  o.tls_from_start = true;
  ClientSession s(std::move(o));
  Script script{s, {kGreeting, "250-x\r\n250 AUTH PLAIN LOGIN\r\n"}};
  EXPECT_EQ(script.run(), Step::Closed);
  EXPECT_NE(s.failure()->detail.find("offers PLAIN LOGIN"), std::string::npos);
}

// A session over implicit TLS, past EHLO (with PIPELINING), ready for a
// transaction; `script` has nothing written yet.
class ReadySession : public ::testing::Test {
 protected:
  ReadySession() : s(tlsOptions()), script(s, {kGreeting, kEhloTls}) {
    EXPECT_EQ(script.run(), Step::Ready);
    script.written.clear();
  }

 public:
  static ClientOptions tlsOptions() {
    auto o = options();
    o.tls_from_start = true;
    return o;
  }

 protected:
  ClientSession s;
  Script script;
};

TEST(ClientSession, WithoutPipeliningOneCommandAtATimeAndRsetWhenNobodyIsTaken) {
  ClientSession s(ReadySession::tlsOptions());
  Script script{s, {kGreeting, "250-x\r\n250 SIZE\r\n"}};
  ASSERT_EQ(script.run(), Step::Ready);
  script.written.clear();
  s.begin(ClientTransaction{"", {"a@x.test", "b@x.test"}, 5, false, false});
  EXPECT_EQ(script.run(), Step::Read);
  EXPECT_EQ(script.written, "MAIL FROM:<> SIZE=5\r\n");
  script.server.push_back("250 ok\r\n");
  script.run();
  EXPECT_EQ(script.written, "MAIL FROM:<> SIZE=5\r\nRCPT TO:<a@x.test>\r\n");
  script.server.insert(script.server.end(), {"550 5.1.1 no\r\n", "551 5.1.6 no\r\n", "250 reset\r\n"});
  EXPECT_EQ(script.run(), Step::Ready);
  EXPECT_EQ(script.written, "MAIL FROM:<> SIZE=5\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRSET\r\n");
  auto outcome = s.takeOutcome();
  EXPECT_EQ(outcome.recipients[0].code, 550);
  EXPECT_EQ(outcome.recipients[1].code, 551);
}

TEST_F(ReadySession, PipelinedSenderRefusalAppliesToEveryone) {
  s.begin(ClientTransaction{"bad@x.test", {"a@y.test", "b@y.test"}, 5, false, false});
  script.server.push_back("553 5.7.1 sender not allowed\r\n503 5.5.1 no\r\n503 5.5.1 no\r\n503 5.5.1 no\r\n");
  EXPECT_EQ(script.run(), Step::Ready);
  auto outcome = s.takeOutcome();
  EXPECT_EQ(outcome.recipients[0].code, 553);
  EXPECT_EQ(outcome.recipients[1].code, 553);
  EXPECT_EQ(script.written.find("RSET"), std::string::npos);
}

TEST_F(ReadySession, DataRefusedFailsTheAcceptedRecipientsAndResets) {
  s.begin(ClientTransaction{"a@x.test", {"a@y.test", "b@y.test"}, 5, false, false});
  script.server.push_back("250 ok\r\n250 ok\r\n550 no\r\n451 4.3.0 later\r\n250 reset\r\n");
  EXPECT_EQ(script.run(), Step::Ready);
  auto outcome = s.takeOutcome();
  EXPECT_EQ(outcome.recipients[0].code, 451);
  EXPECT_EQ(outcome.recipients[1].code, 550);
  EXPECT_NE(script.written.find("RSET\r\n"), std::string::npos);
}

TEST_F(ReadySession, ConnectionLostAfterTheDotIsAPossibleDuplicate) {
  s.begin(ClientTransaction{"a@x.test", {"a@y.test", "b@y.test"}, 5, false, false});
  script.server.push_back("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
  ASSERT_EQ(script.run(), Step::SendBody);
  s.bodySent();
  EXPECT_EQ(script.run(), Step::Read);
  s.connectionLost("connection reset by peer");
  EXPECT_EQ(s.step(), Step::Closed);
  ASSERT_TRUE(s.hasOutcome());
  auto outcome = s.takeOutcome();
  EXPECT_TRUE(outcome.possible_duplicate);
  EXPECT_FALSE(outcome.lost_before_mail_reply);
  EXPECT_EQ(outcome.recipients[0].code, 451);
  EXPECT_EQ(outcome.recipients[1].code, 550);
}

TEST_F(ReadySession, ConnectionLostBeforeMailIsAnsweredCanBeRetriedElsewhere) {
  s.begin(ClientTransaction{"a@x.test", {"a@y.test"}, 5, false, false});
  script.run();
  s.connectionLost("end of stream");
  auto outcome = s.takeOutcome();
  EXPECT_TRUE(outcome.lost_before_mail_reply);
  EXPECT_FALSE(outcome.possible_duplicate);
  EXPECT_EQ(outcome.recipients[0].code, 451);
}

TEST_F(ReadySession, ServerClosing421EndsTheTransactionTemporarily) {
  s.begin(ClientTransaction{"a@x.test", {"a@y.test"}, 5, false, false});
  script.server.push_back("421 4.3.2 shutting down\r\n");
  EXPECT_EQ(script.run(), Step::Closed);
  auto outcome = s.takeOutcome();
  EXPECT_EQ(outcome.recipients[0].code, 451);
}

TEST_F(ReadySession, OverTheServersSizeLimitNothingIsSent) {
  s.begin(ClientTransaction{"a@x.test", {"a@y.test"}, 1001, false, false});
  EXPECT_EQ(script.run(), Step::Ready);
  EXPECT_EQ(script.written, "");
  auto outcome = s.takeOutcome();
  EXPECT_EQ(outcome.recipients[0].code, 552);
  EXPECT_EQ(outcome.recipients[0].enhanced(), "5.3.4");
}

TEST_F(ReadySession, ASecondTransactionReusesTheSession) {
  for (int i = 0; i < 2; ++i) {
    s.begin(ClientTransaction{"a@x.test", {"a@y.test"}, 5, false, false});
    script.server.push_back("250 ok\r\n250 ok\r\n354 go\r\n");
    ASSERT_EQ(script.run(), Step::SendBody);
    s.bodySent();
    script.server.push_back("250 queued\r\n");
    ASSERT_EQ(script.run(), Step::Ready);
    EXPECT_EQ(s.takeOutcome().recipients[0].code, 250);
  }
  EXPECT_EQ(s.transactions(), 2u);
}

std::string encoded(std::vector<std::string> pieces) {
  DataEncoder e;
  std::string out;
  for (const auto& p : pieces) e.encode(p, out);
  e.finish(out);
  return out;
}

TEST(DataEncoder, StuffsDotsAndEndsEveryLineWithCrlf) {
  EXPECT_EQ(encoded({"a\r\n.b\r\n..c\r\n"}), "a\r\n..b\r\n...c\r\n.\r\n");
  EXPECT_EQ(encoded({".\r\n"}), "..\r\n.\r\n");
  EXPECT_EQ(encoded({"bare\nlf\rcr\r\n"}), "bare\r\nlf\r\ncr\r\n.\r\n");
  EXPECT_EQ(encoded({"no end"}), "no end\r\n.\r\n");
  EXPECT_EQ(encoded({""}), ".\r\n");
  // CR and LF split across pieces are still one line end.
  EXPECT_EQ(encoded({"a\r", "\n.b\r", "", "\nc"}), "a\r\n..b\r\nc\r\n.\r\n");
  EXPECT_EQ(encoded({"a\r", "\r\n"}), "a\r\n\r\n.\r\n");
}

TEST(DataEncoder, BreaksLinesLongerThan998Octets) {
  const std::string line(2100, 'x');
  const std::string out = encoded({line + "\r\n"});
  std::size_t start = 0;
  std::size_t longest = 0;
  std::size_t xs = 0;
  while (start < out.size()) {
    const std::size_t end = out.find("\r\n", start);
    ASSERT_NE(end, std::string::npos);
    longest = std::max(longest, end - start);
    for (std::size_t i = start; i < end; ++i) xs += out[i] == 'x';
    start = end + 2;
  }
  EXPECT_EQ(longest, 998u);
  EXPECT_EQ(xs, 2100u);
  EXPECT_EQ(out.find("\r\n x"), 998u);
  EXPECT_EQ(out.find('\r') , 998u);
  EXPECT_EQ(out.find('\n'), 999u);
}

}  // namespace
}  // namespace mb::smtp
