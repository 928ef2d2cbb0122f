// ServerSession: STARTTLS (RFC 3207), AUTH PLAIN and LOGIN (RFC 4954,
// RFC 4616) and what EHLO advertises for them.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "smtp/sasl.h"
#include "smtp/server_session.h"
#include "smtp/session_test_harness.h"

namespace mb::smtp {
namespace {

using namespace mb::smtp::testing;

SessionFeatures features(bool starttls, bool tls_active, bool auth, bool auth_without_tls) {
  SessionFeatures f;
  f.starttls = starttls;
  f.tls_active = tls_active;
  f.auth = auth;
  f.auth_without_tls = auth_without_tls;
  return f;
}

// A listener with STARTTLS and AUTH, plaintext AUTH allowed: every AUTH path
// is reachable without a handshake.
SessionFeatures plainAuth() {
  return features(false, false, true, true);
}
SessionFeatures tlsAuth() {
  return features(false, true, true, false);
}

std::string b64(std::string_view s) {
  return encodeBase64(s);
}

std::string plainIr(std::string_view authzid, std::string_view user, std::string_view password) {
  std::string m(authzid);
  m += '\0';
  m += user;
  m += '\0';
  m += password;
  return b64(m);
}

// ---------------------------------------------------------------- EHLO

TEST(SessionEhlo, AdvertisementInEveryFeatureCombination) {
  for (int bits = 0; bits < 16; ++bits) {
    const SessionFeatures f =
        features((bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, (bits & 8) != 0);
    Harness t(Harness::testLimits(), f);
    EXPECT_EQ(t.say("EHLO c"), "250");
    std::string expected =
        "250-mx.example\r\n"
        "250-PIPELINING\r\n"
        "250-SIZE 1000\r\n"
        "250-8BITMIME\r\n"
        "250-ENHANCEDSTATUSCODES\r\n"
        "250-SMTPUTF8\r\n";
    std::vector<std::string> tail{"CHUNKING"};
    if (f.starttls && !f.tls_active) tail.emplace_back("STARTTLS");
    if (f.auth && (f.tls_active || f.auth_without_tls)) tail.emplace_back("AUTH PLAIN LOGIN");
    for (std::size_t i = 0; i < tail.size(); ++i) {
      expected += (i + 1 == tail.size() ? "250 " : "250-") + tail[i] + "\r\n";
    }
    EXPECT_EQ(t.lastWire(), expected) << "features " << bits;
    // HELO says nothing of extensions.
    EXPECT_EQ(t.say("HELO c"), "250");
    EXPECT_EQ(t.lastWire(), "250 mx.example\r\n");
    // Transaction.tls mirrors the connection.
    t.run("MAIL FROM:<a@b>\r\n");
    EXPECT_EQ(t.handler.last_txn.tls, f.tls_active) << "features " << bits;
    EXPECT_EQ(t.handler.last_txn.auth_user, "");
  }
}

// ---------------------------------------------------------------- STARTTLS

TEST(SessionStarttls, Refusals) {
  {
    Harness t(Harness::testLimits(), features(true, false, false, false));
    t.run("EHLO c\r\n");
    EXPECT_EQ(t.say("STARTTLS x"), "501 5.5.4");
    EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "250 2.1.0");
    EXPECT_EQ(t.say("STARTTLS"), "503 5.5.1");  // inside a transaction
    EXPECT_EQ(t.say("RCPT TO:<c@d>"), "250 2.1.5");
    EXPECT_EQ(t.say("STARTTLS"), "503 5.5.1");
    EXPECT_FALSE(t.session.tlsRequested());
    EXPECT_EQ(t.say("RSET"), "250 2.0.0");
    EXPECT_EQ(t.say("STARTTLS"), "220 2.0.0");
  }
  {
    Harness t;  // the listener has no STARTTLS
    t.run("EHLO c\r\n");
    EXPECT_EQ(t.say("STARTTLS"), "502 5.5.1");
    EXPECT_EQ(t.say("STARTTLS x"), "501 5.5.4");
  }
  {
    Harness t(Harness::testLimits(), features(false, true, false, false));  // implicit TLS
    EXPECT_EQ(t.say("STARTTLS"), "502 5.5.1");
  }
  {
    Harness t(Harness::testLimits(), features(true, true, false, false));
    t.run("EHLO c\r\n");
    EXPECT_EQ(t.say("STARTTLS"), "503 5.5.1");
  }
}

TEST(SessionStarttls, PipelinedBytesAreDiscardedAndStateForgotten) {
  for (std::size_t piece : {0u, 1u, 3u}) {
    Harness t(Harness::testLimits(), features(true, false, true, false));
    const std::string input =
        "EHLO plain.example\r\n"
        "STARTTLS\r\n"
        "MAIL FROM:<injected@example>\r\n"
        "RCPT TO:<victim@example>\r\n";
    EXPECT_EQ(t.run(input, piece), (Replies{"250", "220 2.0.0"})) << piece;
    EXPECT_EQ(t.sink.replies.back(), "220 2.0.0 Ready to start TLS\r\n");
    EXPECT_TRUE(t.session.tlsRequested());
    EXPECT_EQ(t.session.buffered(), 0u);
    // Until the handshake is done, nothing counts.
    EXPECT_EQ(t.run("MAIL FROM:<more@example>\r\n"), Replies{});
    EXPECT_EQ(t.session.buffered(), 0u);
    EXPECT_TRUE(t.handler.events.empty());

    t.session.tlsStarted();
    EXPECT_FALSE(t.session.tlsRequested());
    EXPECT_FALSE(t.session.closed());
    // The client must greet again.
    EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "503 5.5.1");
    EXPECT_EQ(t.say("EHLO tls.example"), "250");
    EXPECT_EQ(t.lastWire().find("STARTTLS"), std::string::npos);
    EXPECT_NE(t.lastWire().find("AUTH PLAIN LOGIN"), std::string::npos);
    EXPECT_EQ(t.say("STARTTLS"), "503 5.5.1");
    EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "250 2.1.0");
    EXPECT_EQ(t.handler.events, std::vector<std::string>{"mail a@b"});
    EXPECT_EQ(t.handler.last_txn.helo, "tls.example");
    EXPECT_TRUE(t.handler.last_txn.tls);
  }
}

TEST(SessionStarttls, HeloIsForgotten) {
  Harness t(Harness::testLimits(), features(true, false, false, false));
  t.run("HELO c\r\nSTARTTLS\r\n");
  t.session.tlsStarted();
  EXPECT_EQ(t.say("MAIL FROM:<a@b>"), "503 5.5.1");
  EXPECT_EQ(t.say("AUTH PLAIN"), "503 5.5.1");
}

TEST(SessionStarttls, AuthenticationIsForgotten) {
  Harness t(Harness::testLimits(), features(true, false, true, true));
  t.run("EHLO c\r\nAUTH PLAIN " + plainIr("", "user", "pw") + "\r\n");
  EXPECT_EQ(t.session.authUser(), "user");
  EXPECT_EQ(t.say("STARTTLS"), "220 2.0.0");
  t.session.tlsStarted();
  EXPECT_EQ(t.session.authUser(), "");
  EXPECT_EQ(t.run("EHLO c\r\nMAIL FROM:<a@b>\r\n"), (Replies{"250", "250 2.1.0"}));
  EXPECT_EQ(t.handler.last_txn.auth_user, "");
  EXPECT_EQ(t.say("RSET"), "250 2.0.0");
  EXPECT_EQ(t.run("AUTH PLAIN " + plainIr("", "other", "pw") + "\r\n"), Replies{"235 2.7.0"});
  EXPECT_EQ(t.session.authUser(), "other");
}

TEST(SessionStarttls, ErrorCountSurvives) {
  SessionLimits l = Harness::testLimits();
  l.max_errors = 3;
  Harness t(l, features(true, false, false, false));
  EXPECT_EQ(t.run("FOO\r\nBAR\r\nSTARTTLS\r\n"), (Replies{"500 5.5.2", "500 5.5.2", "220 2.0.0"}));
  t.session.tlsStarted();
  EXPECT_EQ(t.run("BAZ\r\n"), (Replies{"500 5.5.2", "421 4.7.0"}));
  EXPECT_TRUE(t.session.closed());
}

TEST(SessionStarttls, TimeoutBeforeHandshakeAndStrayTlsStarted) {
  Harness t(Harness::testLimits(), features(true, false, false, false));
  t.session.tlsStarted();  // nothing was requested: no effect
  EXPECT_EQ(t.run("MAIL FROM:<a@b>\r\n"), Replies{"503 5.5.1"});
  t.run("EHLO c\r\nSTARTTLS\r\n");
  t.session.timeout();
  EXPECT_TRUE(t.session.closed());
  EXPECT_FALSE(t.session.tlsRequested());
  EXPECT_EQ(brief(t.lastWire()), "421 4.4.2");
  t.session.tlsStarted();
  EXPECT_TRUE(t.session.closed());
}

// ---------------------------------------------------------------- AUTH

TEST(SessionAuth, SequenceAndAvailability) {
  {
    Harness t(Harness::testLimits(), plainAuth());
    EXPECT_EQ(t.say("AUTH PLAIN"), "503 5.5.1");  // no EHLO yet
    t.run("EHLO c\r\nMAIL FROM:<a@b>\r\n");
    EXPECT_EQ(t.say("AUTH PLAIN"), "503 5.5.1");  // inside a transaction
    t.run("RSET\r\n");
    EXPECT_EQ(t.say("AUTH"), "501 5.5.4");
    EXPECT_EQ(t.say("AUTH PLAIN a b"), "501 5.5.4");
    EXPECT_EQ(t.say("AUTH CRAM-MD5"), "504 5.5.4");
    EXPECT_EQ(t.say("AUTH XOAUTH2 abc"), "504 5.5.4");
    EXPECT_EQ(t.run("AUTH plain " + plainIr("", "u", "p") + "\r\n"), Replies{"235 2.7.0"});
    EXPECT_EQ(t.lastWire(), "235 2.7.0 Authentication successful\r\n");
    // Once is enough, however often it is asked.
    EXPECT_EQ(t.say("AUTH PLAIN"), "503 5.5.1");
    EXPECT_EQ(t.say("AUTH LOGIN"), "503 5.5.1");
    EXPECT_EQ(t.handler.auths.size(), 1u);
  }
  {
    Harness t;  // the listener has no AUTH
    t.run("EHLO c\r\n");
    EXPECT_EQ(t.say("AUTH PLAIN"), "503 5.5.1");
    EXPECT_EQ(t.lastWire(), "503 5.5.1 Authentication not enabled\r\n");
  }
  {
    Harness t(Harness::testLimits(), features(true, false, true, false));  // AUTH only under TLS
    t.run("EHLO c\r\n");
    EXPECT_EQ(t.say("AUTH PLAIN " + plainIr("", "u", "p")), "538 5.7.11");
    EXPECT_EQ(t.lastWire(),
              "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    EXPECT_EQ(t.say("AUTH LOGIN"), "538 5.7.11");
    EXPECT_EQ(t.say("AUTH CRAM-MD5"), "538 5.7.11");
    EXPECT_TRUE(t.handler.auths.empty());
    t.run("STARTTLS\r\n");
    t.session.tlsStarted();
    EXPECT_EQ(t.run("EHLO c\r\nAUTH PLAIN " + plainIr("", "u", "p") + "\r\n"),
              (Replies{"250", "235 2.7.0"}));
  }
}

TEST(SessionAuth, PlainWithInitialResponse) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.auto_auth = false;
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.run("AUTH PLAIN " + plainIr("", "alice", "s3cret") + "\r\n"), Replies{});
  EXPECT_TRUE(t.session.awaitingAuth());
  ASSERT_EQ(t.handler.auths.size(), 1u);
  EXPECT_EQ(t.handler.auths[0].mechanism, "PLAIN");
  EXPECT_EQ(t.handler.auths[0].authzid, "");
  EXPECT_EQ(t.handler.auths[0].user, "alice");
  EXPECT_EQ(t.handler.auths[0].password, "s3cret");
  EXPECT_EQ(t.session.authUser(), "");  // not before the verdict
  t.session.completeAuth(AuthResult::Success);
  EXPECT_FALSE(t.session.awaitingAuth());
  EXPECT_EQ(t.lastWire(), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(t.session.authUser(), "alice");
  t.run("MAIL FROM:<a@b>\r\n");
  EXPECT_EQ(t.handler.last_txn.auth_user, "alice");
  // It outlives transactions and a new EHLO.
  t.run("RSET\r\nEHLO again\r\nMAIL FROM:<a@b>\r\n");
  EXPECT_EQ(t.handler.last_txn.auth_user, "alice");
}

TEST(SessionAuth, PlainWithoutInitialResponse) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.say("AUTH PLAIN"), "334");
  EXPECT_EQ(t.lastWire(), "334 \r\n");
  EXPECT_EQ(t.run(plainIr("admin", "bob", "pw") + "\r\n"), Replies{"235 2.7.0"});
  ASSERT_EQ(t.handler.auths.size(), 1u);
  EXPECT_EQ(t.handler.auths[0].authzid, "admin");
  EXPECT_EQ(t.handler.auths[0].user, "bob");
  EXPECT_EQ(t.handler.auths[0].password, "pw");
}

TEST(SessionAuth, PlainMalformed) {
  const std::string one_nul = b64(std::string("user\0pw", 7));
  const std::string three_nuls = b64(std::string("\0user\0pw\0", 9));
  for (const std::string& response :
       {std::string("="), std::string("!!!!"), std::string("AGFAYg"), std::string("AGFAYg=="),
        one_nul, three_nuls, plainIr("", "", "pw"), plainIr("", "us\ner", "pw"),
        plainIr("x\ry", "user", "pw")}) {
    Harness t(Harness::testLimits(), tlsAuth());
    t.run("EHLO c\r\n");
    // "AGFAYg==" decodes to "\0a@b": one NUL.
    EXPECT_EQ(t.say("AUTH PLAIN " + response), "501 5.5.2") << response;
    EXPECT_EQ(t.run("AUTH PLAIN\r\n" + response + "\r\n"), (Replies{"334", "501 5.5.2"}))
        << response;
    EXPECT_TRUE(t.handler.auths.empty());
    EXPECT_EQ(t.say("NOOP"), "250 2.0.0");  // back to commands
  }
  // "=" is only the empty initial response; as a continuation it is bad base64.
  Harness t(Harness::testLimits(), tlsAuth());
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.run("AUTH PLAIN\r\n=\r\n"), (Replies{"334", "501 5.5.2"}));
  // An empty password is for the verifier to refuse.
  EXPECT_EQ(t.run("AUTH PLAIN " + plainIr("", "u", "") + "\r\n"), Replies{"235 2.7.0"});
  EXPECT_EQ(t.handler.auths.at(0).password, "");
}

TEST(SessionAuth, LoginWithoutInitialResponse) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.say("auth login"), "334");
  EXPECT_EQ(t.lastWire(), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(t.say(b64("carol")), "334");
  EXPECT_EQ(t.lastWire(), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(t.say(b64("pass word")), "235 2.7.0");
  ASSERT_EQ(t.handler.auths.size(), 1u);
  EXPECT_EQ(t.handler.auths[0].mechanism, "LOGIN");
  EXPECT_EQ(t.handler.auths[0].user, "carol");
  EXPECT_EQ(t.handler.auths[0].password, "pass word");
  EXPECT_EQ(t.session.authUser(), "carol");
}

TEST(SessionAuth, LoginWithInitialResponse) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.say("AUTH LOGIN " + b64("dave")), "334");
  EXPECT_EQ(t.lastWire(), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(t.say(b64("pw")), "235 2.7.0");
  EXPECT_EQ(t.handler.auths.at(0).user, "dave");
}

TEST(SessionAuth, LoginMalformed) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.say("AUTH LOGIN ="), "501 5.5.2");  // empty user
  EXPECT_EQ(t.say("AUTH LOGIN Zm9v!"), "501 5.5.2");
  EXPECT_EQ(t.run("AUTH LOGIN\r\n\r\n"), (Replies{"334", "501 5.5.2"}));  // empty user
  EXPECT_EQ(t.run("AUTH LOGIN\r\n" + b64(std::string("a\0b", 3)) + "\r\n"),
            (Replies{"334", "501 5.5.2"}));
  EXPECT_EQ(t.run("AUTH LOGIN\r\n" + b64("user") + "\r\nnot base64\r\n"),
            (Replies{"334", "334", "501 5.5.2"}));
  EXPECT_TRUE(t.handler.auths.empty());
  EXPECT_EQ(t.say("NOOP"), "250 2.0.0");
}

TEST(SessionAuth, StarCancelsAtEveryContinuation) {
  for (const char* input :
       {"AUTH PLAIN\r\n*\r\n", "AUTH LOGIN\r\n*\r\n", "AUTH LOGIN dXNlcg==\r\n*\r\n"}) {
    Harness t(Harness::testLimits(), tlsAuth());
    t.run("EHLO c\r\n");
    const Replies got = t.run(input);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.back(), "501 5.0.0") << input;
    EXPECT_EQ(t.lastWire(), "501 5.0.0 Authentication cancelled\r\n");
    EXPECT_TRUE(t.handler.auths.empty());
    EXPECT_EQ(t.say("NOOP"), "250 2.0.0");
    // A new exchange starts from the beginning (CVE-2011-1720).
    EXPECT_EQ(t.say("AUTH LOGIN"), "334");
    EXPECT_EQ(t.lastWire(), "334 VXNlcm5hbWU6\r\n");
    EXPECT_EQ(t.say(b64("fresh")), "334");
    EXPECT_EQ(t.say(b64("pw")), "235 2.7.0");
    EXPECT_EQ(t.handler.auths.at(0).user, "fresh");
  }
}

TEST(SessionAuth, EveryNewAuthStartsClean) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.handler.auth_result = AuthResult::Failure;
  t.run("EHLO c\r\n");
  // A failed PLAIN leaves nothing behind for LOGIN, and vice versa.
  EXPECT_EQ(t.say("AUTH PLAIN " + plainIr("zz", "first", "pw1")), "535 5.7.8");
  EXPECT_EQ(t.say("AUTH LOGIN"), "334");
  EXPECT_EQ(t.lastWire(), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(t.say(b64("second")), "334");
  t.handler.auth_result = AuthResult::Success;
  EXPECT_EQ(t.say(b64("pw2")), "235 2.7.0");
  ASSERT_EQ(t.handler.auths.size(), 2u);
  EXPECT_EQ(t.handler.auths[1].mechanism, "LOGIN");
  EXPECT_EQ(t.handler.auths[1].authzid, "");
  EXPECT_EQ(t.handler.auths[1].user, "second");
  EXPECT_EQ(t.handler.auths[1].password, "pw2");
  EXPECT_EQ(t.session.authUser(), "second");
}

TEST(SessionAuth, EveryResult) {
  struct Case {
    AuthResult result;
    const char* wire;
    bool closes;
  };
  for (const Case& c :
       {Case{AuthResult::Success, "235 2.7.0 Authentication successful\r\n", false},
        Case{AuthResult::Failure, "535 5.7.8 Authentication credentials invalid\r\n", false},
        Case{AuthResult::TempFailure, "454 4.7.0 Temporary authentication failure\r\n", false},
        Case{AuthResult::LockedOut, "421 4.7.0 Too many authentication failures\r\n", true}}) {
    Harness t(Harness::testLimits(), tlsAuth());
    t.auto_auth = false;
    // Input behind the AUTH waits, unprocessed, for the verdict.
    const std::string after = "MAIL FROM:<a@b>\r\nNOOP\r\n";
    EXPECT_EQ(t.run("EHLO c\r\nAUTH LOGIN " + b64("erin") + "\r\n" + b64("pw") + "\r\n" + after),
              (Replies{"250", "334"}));
    EXPECT_TRUE(t.session.awaitingAuth());
    EXPECT_EQ(t.session.buffered(), after.size());
    EXPECT_EQ(t.run("QUIT\r\n"), Replies{});
    EXPECT_EQ(t.handler.events, std::vector<std::string>{"auth LOGIN erin"});
    const std::size_t before = t.sink.replies.size();
    t.session.completeAuth(c.result);
    ASSERT_GT(t.sink.replies.size(), before);
    EXPECT_EQ(t.sink.replies[before], c.wire);
    if (c.closes) {
      EXPECT_TRUE(t.session.closed());
    }
    EXPECT_EQ(t.session.authUser(), c.result == AuthResult::Success ? "erin" : "");
    if (!c.closes) {
      Replies rest;
      for (std::size_t i = before + 1; i < t.sink.replies.size(); ++i)
        rest.push_back(brief(t.sink.replies[i]));
      EXPECT_EQ(rest, (Replies{"250 2.1.0", "250 2.0.0", "221 2.0.0"}));
      EXPECT_EQ(t.handler.last_txn.auth_user, c.result == AuthResult::Success ? "erin" : "");
    } else {
      EXPECT_EQ(t.sink.replies.size(), before + 1);
      EXPECT_EQ(t.session.buffered(), 0u);
    }
    // A second verdict is ignored.
    const std::size_t n = t.sink.replies.size();
    t.session.completeAuth(AuthResult::Success);
    EXPECT_EQ(t.sink.replies.size(), n);
  }
}

TEST(SessionAuth, FailureCanBeRetriedAndCountsAsError) {
  SessionLimits l = Harness::testLimits();
  l.max_errors = 3;
  Harness t(l, tlsAuth());
  t.handler.auth_result = AuthResult::Failure;
  t.run("EHLO c\r\n");
  EXPECT_EQ(t.say("AUTH PLAIN " + plainIr("", "u", "1")), "535 5.7.8");
  t.handler.auth_result = AuthResult::TempFailure;
  EXPECT_EQ(t.say("AUTH PLAIN " + plainIr("", "u", "2")), "454 4.7.0");
  t.handler.auth_result = AuthResult::Failure;
  EXPECT_EQ(t.run("AUTH PLAIN " + plainIr("", "u", "3") + "\r\n"),
            (Replies{"535 5.7.8", "421 4.7.0"}));
  EXPECT_TRUE(t.session.closed());
}

TEST(SessionAuth, VerdictFromInsideOnAuth) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.auto_auth = false;
  t.handler.auth_at_once = true;
  EXPECT_EQ(t.run("EHLO c\r\nAUTH PLAIN " + plainIr("", "u", "p") + "\r\nMAIL FROM:<a@b>\r\n"),
            (Replies{"250", "235 2.7.0", "250 2.1.0"}));
  EXPECT_EQ(t.handler.last_txn.auth_user, "u");
  Harness locked(Harness::testLimits(), tlsAuth());
  locked.auto_auth = false;
  locked.handler.auth_at_once = true;
  locked.handler.auth_result = AuthResult::LockedOut;
  EXPECT_EQ(locked.run("EHLO c\r\nAUTH PLAIN " + plainIr("", "u", "p") + "\r\nNOOP\r\n"),
            (Replies{"250", "421 4.7.0"}));
  EXPECT_TRUE(locked.session.closed());
}

TEST(SessionAuth, CompleteAuthWhenNothingWaitsIsIgnored) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.run("EHLO c\r\n");
  t.session.completeAuth(AuthResult::Success);
  EXPECT_TRUE(t.sink.replies.size() == 1u);
  EXPECT_EQ(t.session.authUser(), "");
}

TEST(SessionAuth, ShutdownWhileAwaiting) {
  Harness t(Harness::testLimits(), tlsAuth());
  t.auto_auth = false;
  t.run("EHLO c\r\nAUTH PLAIN " + plainIr("", "u", "p") + "\r\n");
  ASSERT_TRUE(t.session.awaitingAuth());
  t.session.shutdown();
  EXPECT_TRUE(t.session.closed());
  EXPECT_FALSE(t.session.awaitingAuth());
  const std::size_t n = t.sink.replies.size();
  t.session.completeAuth(AuthResult::Success);
  EXPECT_EQ(t.sink.replies.size(), n);
  EXPECT_EQ(t.session.authUser(), "");
}

TEST(SessionAuth, ContinuationLineLimit) {
  SessionLimits l = Harness::testLimits();
  l.max_auth_line = 64;
  for (std::size_t piece : {0u, 1u, 10u}) {
    Harness t(l, tlsAuth());
    t.run("EHLO c\r\n");
    const std::string fits = b64(std::string(45, 'a'));  // 60 + CRLF
    ASSERT_EQ(fits.size(), 60u);
    EXPECT_EQ(t.run("AUTH LOGIN\r\n" + fits + "\r\n", piece), (Replies{"334", "334"}));
    const std::string too_long = b64(std::string(48, 'a'));  // 64 + CRLF
    EXPECT_EQ(t.run(too_long + "\r\nNOOP\r\n", piece), (Replies{"500 5.5.6", "250 2.0.0"}))
        << piece;
    EXPECT_EQ(t.lastWire(), "250 2.0.0 OK\r\n");
    // Never more than a line's worth kept: answered before the line ends.
    EXPECT_EQ(t.run("AUTH PLAIN\r\n" + std::string(1000, 'A'), piece),
              (Replies{"334", "500 5.5.6"}));
    EXPECT_LE(t.session.buffered(), 64u);
    EXPECT_EQ(t.run("AAAA\r\nNOOP\r\n", piece), Replies{"250 2.0.0"});
    EXPECT_TRUE(t.handler.auths.empty());
  }
  // Longer than a command line is fine for a continuation.
  Harness t(Harness::testLimits(), tlsAuth());
  t.run("EHLO c\r\n");
  const std::string big = plainIr("", "user", std::string(1000, 'p'));
  EXPECT_EQ(t.run("AUTH PLAIN\r\n" + big + "\r\n"), (Replies{"334", "235 2.7.0"}));
  EXPECT_EQ(t.handler.auths.at(0).password.size(), 1000u);
}

TEST(SessionAuth, RepliesNeverCarryCredentials) {
  Harness t(Harness::testLimits(), tlsAuth());
  const std::string ir = plainIr("", "mallory", "hunter2");
  t.handler.auth_result = AuthResult::Failure;
  t.run("EHLO c\r\nAUTH PLAIN " + ir + "\r\nAUTH LOGIN " + b64("mallory") + "\r\n" +
        b64("hunter2") + "\r\nAUTH PLAIN\r\n" + ir + "x\r\nAUTH LOGIN\r\n" + b64("mallory") +
        "\r\n*\r\n");
  EXPECT_EQ(t.handler.auths.size(), 2u);
  for (const std::string& r : t.sink.replies) {
    for (const std::string& secret :
         {std::string("mallory"), std::string("hunter2"), ir, b64("mallory"), b64("hunter2")}) {
      EXPECT_EQ(r.find(secret), std::string::npos) << r;
    }
  }
}

}  // namespace
}  // namespace mb::smtp
