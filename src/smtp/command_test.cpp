#include "smtp/command.h"

#include <gtest/gtest.h>

#include <limits>
#include <optional>
#include <string>

namespace mb::smtp {
namespace {

// "501 5.5.4" etc. for the error of a parse, "" when it parsed.
std::string codeOf(const ParsedCommand& p) {
  if (p.ok()) return "";
  return std::to_string(p.error->code) + " " + p.error->enhanced;
}

std::string codeOf(std::string_view line, bool utf8 = false) { return codeOf(Command::parse(line, utf8)); }

TEST(Command, VerbsAreCaseInsensitive) {
  struct Case {
    const char* line;
    Verb verb;
  };
  for (const Case& c : {Case{"EHLO x", Verb::Ehlo}, Case{"ehlo x", Verb::Ehlo}, Case{"HeLo x", Verb::Helo},
                        Case{"mail FROM:<a@b>", Verb::Mail}, Case{"rcpt to:<a@b>", Verb::Rcpt},
                        Case{"data", Verb::Data}, Case{"RSET", Verb::Rset}, Case{"noop", Verb::Noop},
                        Case{"Quit", Verb::Quit}, Case{"VRFY x", Verb::Vrfy}, Case{"EXPN x", Verb::Expn},
                        Case{"HELP", Verb::Help}, Case{"starttls", Verb::Starttls},
                        Case{"AUTH PLAIN", Verb::Auth}, Case{"BDAT 10 LAST", Verb::Bdat}}) {
    const ParsedCommand p = Command::parse(c.line);
    EXPECT_TRUE(p.ok()) << c.line;
    EXPECT_EQ(p.command.verb, c.verb) << c.line;
  }
  EXPECT_EQ(Command::verbName(Verb::Starttls), "STARTTLS");
  EXPECT_EQ(Command::verbName(Verb::Unknown), "?");
}

TEST(Command, UnknownVerbs) {
  for (const char* line : {"", " ", "FOO", "MAILFROM:<a@b>", "EHL", "EHLOO x", "DATA.", " DATA", "\tNOOP",
                           "NOOP\tx", "DATA\r"}) {
    const ParsedCommand p = Command::parse(line);
    EXPECT_EQ(codeOf(p), "500 5.5.2") << line;
    EXPECT_EQ(p.command.verb, Verb::Unknown) << line;
  }
}

TEST(Command, NulIsNeverACommand) {
  EXPECT_EQ(codeOf(std::string_view("NOOP\0", 5)), "500 5.5.2");
  EXPECT_EQ(codeOf(std::string_view("MAIL FROM:<a\0@b>", 16)), "500 5.5.2");
  EXPECT_EQ(codeOf(std::string_view("\0", 1)), "500 5.5.2");
}

TEST(Command, TrailingBlanksAreIgnored) {
  EXPECT_EQ(codeOf("DATA   "), "");
  EXPECT_EQ(codeOf("RSET \t "), "");
  const ParsedCommand p = Command::parse("MAIL FROM:<a@b>  ");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.address, "a@b");
  EXPECT_EQ(Command::parse("EHLO host.example  ").command.argument, "host.example");
}

TEST(Command, HelloArguments) {
  EXPECT_EQ(codeOf("EHLO"), "501 5.5.4");
  EXPECT_EQ(codeOf("HELO"), "501 5.5.4");
  EXPECT_EQ(codeOf("EHLO   "), "501 5.5.4");
  EXPECT_EQ(codeOf("EHLO a\x01"), "501 5.5.4");
  EXPECT_EQ(codeOf("EHLO a\tb"), "501 5.5.4");
  EXPECT_EQ(codeOf("EHLO h\xc3\xa4st"), "501 5.5.4");
  EXPECT_EQ(codeOf("EHLO a\rb"), "501 5.5.4");
  const ParsedCommand p = Command::parse("EHLO  [192.0.2.1]");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.argument, "[192.0.2.1]");
  // Devices send names with spaces or underscores; they are only recorded.
  EXPECT_EQ(Command::parse("HELO Canon MF4400_series").command.argument, "Canon MF4400_series");
}

TEST(Command, MailFromForms) {
  for (const char* line : {"MAIL FROM:<user@example.com>", "MAIL FROM: <user@example.com>",
                           "MAIL FROM:   <user@example.com>", "mail from:<user@example.com>",
                           "MAIL FROM:user@example.com", "MAIL FROM: user@example.com",
                           "MAIL  FROM:<user@example.com>", "MAIL FROM:<user@example.com> ",
                           "MAIL FROM:<@relay.example:user@example.com>"}) {
    const ParsedCommand p = Command::parse(line);
    ASSERT_TRUE(p.ok()) << line << " " << codeOf(p);
    EXPECT_EQ(p.command.verb, Verb::Mail);
    EXPECT_EQ(p.command.address, "user@example.com") << line;
  }
}

TEST(Command, NullSender) {
  ParsedCommand p = Command::parse("MAIL FROM:<>");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.address, "");
  p = Command::parse("MAIL FROM: <> SIZE=10");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.size, 10u);
  EXPECT_EQ(codeOf("RCPT TO:<>"), "501 5.1.3");
}

TEST(Command, MailSyntaxErrors) {
  EXPECT_EQ(codeOf("MAIL"), "501 5.5.4");
  EXPECT_EQ(codeOf("MAIL FROM"), "501 5.5.4");
  EXPECT_EQ(codeOf("MAIL FROM:"), "501 5.5.4");
  EXPECT_EQ(codeOf("MAIL FROM:   "), "501 5.5.4");
  EXPECT_EQ(codeOf("MAIL TO:<a@b>"), "501 5.5.4");
  EXPECT_EQ(codeOf("MAIL FROM <a@b>"), "501 5.5.4");
  EXPECT_EQ(codeOf("MAIL FROM:<a@b"), "501 5.1.7");
  EXPECT_EQ(codeOf("MAIL FROM:<a@b>x"), "501 5.1.7");
  EXPECT_EQ(codeOf("MAIL FROM:<a@b>SIZE=1"), "501 5.1.7");
  EXPECT_EQ(codeOf("MAIL FROM:<a@b@c>"), "501 5.1.7");
  EXPECT_EQ(codeOf("MAIL FROM:<<a@b>>"), "501 5.1.7");
  EXPECT_EQ(codeOf("MAIL FROM:a@b>"), "501 5.1.7");
  EXPECT_EQ(codeOf("MAIL FROM:<a@b\r>"), "501 5.1.7");
  EXPECT_EQ(codeOf("MAIL FROM:<a b@c>"), "501 5.1.7");
  EXPECT_EQ(codeOf("MAIL FROM:<j\xc3\xb6rg@example.com>"), "553 5.6.7");
  EXPECT_EQ(codeOf("MAIL FROM:<" + std::string(65, 'a') + "@b>"), "553 5.1.3");
}

TEST(Command, QuotedLocalPartWithSpaceAndBracket) {
  ParsedCommand p = Command::parse(R"(MAIL FROM:<"a >b"@example.com> SIZE=5)");
  ASSERT_TRUE(p.ok()) << codeOf(p);
  EXPECT_EQ(p.command.address, R"("a >b"@example.com)");
  EXPECT_EQ(p.command.size, 5u);
  p = Command::parse(R"(RCPT TO:"a b"@example.com)");
  ASSERT_TRUE(p.ok()) << codeOf(p);
  EXPECT_EQ(p.command.address, R"("a b"@example.com)");
}

TEST(Command, MailParameters) {
  ParsedCommand p = Command::parse("MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME SMTPUTF8");
  ASSERT_TRUE(p.ok()) << codeOf(p);
  EXPECT_EQ(p.command.size, 1000u);
  EXPECT_TRUE(p.command.body_8bitmime);
  EXPECT_TRUE(p.command.smtputf8);

  p = Command::parse("MAIL FROM:<a@b> size=0 body=7bit");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.size, 0u);
  EXPECT_FALSE(p.command.body_8bitmime);
  EXPECT_FALSE(p.command.smtputf8);

  p = Command::parse("MAIL FROM:<a@b>");
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p.command.size.has_value());

  p = Command::parse("MAIL FROM:<a@b>   SIZE=12   SMTPUTF8");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.size, 12u);

  p = Command::parse("MAIL FROM:<a@b> SIZE=99999999999999999999");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.size, std::numeric_limits<std::uint64_t>::max());

  p = Command::parse("MAIL FROM:<a@b> SIZE=18446744073709551615");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.size, std::numeric_limits<std::uint64_t>::max());
  p = Command::parse("MAIL FROM:<a@b> SIZE=18446744073709551614");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.size, std::numeric_limits<std::uint64_t>::max() - 1);
}

TEST(Command, BadMailParameters) {
  for (const char* line : {"MAIL FROM:<a@b> SIZE", "MAIL FROM:<a@b> SIZE=", "MAIL FROM:<a@b> SIZE=-1",
                           "MAIL FROM:<a@b> SIZE=1k", "MAIL FROM:<a@b> SIZE=123456789012345678901",
                           "MAIL FROM:<a@b> SIZE=1 SIZE=2", "MAIL FROM:<a@b> BODY=BINARYMIME",
                           "MAIL FROM:<a@b> BODY", "MAIL FROM:<a@b> BODY=7BIT BODY=8BITMIME",
                           "MAIL FROM:<a@b> SMTPUTF8=yes", "MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8",
                           "MAIL FROM:<a@b> =x", "MAIL FROM:<a@b> -X=1", "MAIL FROM:<a@b> X=a=b",
                           "MAIL FROM:<a@b> X_Y=1", "MAIL FROM:<a@b> SIZE=1\x01"}) {
    EXPECT_EQ(codeOf(line), "501 5.5.4") << line;
  }
  for (const char* line : {"MAIL FROM:<a@b> AUTH", "MAIL FROM:<a@b> AUTH=<> AUTH=<>"}) {
    EXPECT_EQ(codeOf(line), "501 5.5.4") << line;
  }
  for (const char* line : {"MAIL FROM:<a@b> RET=HDRS", "MAIL FROM:<a@b> ENVID=x",
                           "MAIL FROM:<a@b> XFOO", "MAIL FROM:<a@b> SIZE=1 X-Y=2"}) {
    EXPECT_EQ(codeOf(line), "555 5.5.4") << line;
  }
}

TEST(Command, SmtpUtf8ParameterAllowsUtf8Sender) {
  const ParsedCommand p = Command::parse("MAIL FROM:<j\xc3\xb6rg@example.com> SMTPUTF8");
  ASSERT_TRUE(p.ok()) << codeOf(p);
  EXPECT_EQ(p.command.address, "j\xc3\xb6rg@example.com");
  EXPECT_EQ(codeOf("MAIL FROM:<\xff@example.com> SMTPUTF8"), "501 5.1.7");
}

TEST(Command, RcptToForms) {
  for (const char* line : {"RCPT TO:<user@example.com>", "RCPT TO: <user@example.com>", "rcpt to:user@example.com",
                           "RCPT TO:<@a.example,@b.example:user@example.com>", "RCPT TO:<user@example.com>   "}) {
    const ParsedCommand p = Command::parse(line);
    ASSERT_TRUE(p.ok()) << line << " " << codeOf(p);
    EXPECT_EQ(p.command.verb, Verb::Rcpt);
    EXPECT_EQ(p.command.address, "user@example.com") << line;
  }
}

TEST(Command, RcptErrors) {
  EXPECT_EQ(codeOf("RCPT"), "501 5.5.4");
  EXPECT_EQ(codeOf("RCPT TO:"), "501 5.5.4");
  EXPECT_EQ(codeOf("RCPT FROM:<a@b>"), "501 5.5.4");
  EXPECT_EQ(codeOf("RCPT TO:<a@b"), "501 5.1.3");
  EXPECT_EQ(codeOf("RCPT TO:<a@b@c>"), "501 5.1.3");
  EXPECT_EQ(codeOf("RCPT TO:<postmaster>"), "553 5.1.3");
  EXPECT_EQ(codeOf("RCPT TO:<@a:postmaster>"), "553 5.1.3");
  EXPECT_EQ(codeOf("RCPT TO:<a@b> NOTIFY=NEVER"), "555 5.5.4");
  EXPECT_EQ(codeOf("RCPT TO:<a@b> SMTPUTF8"), "555 5.5.4");
  EXPECT_EQ(codeOf("RCPT TO:<a@b> =="), "501 5.5.4");
  EXPECT_EQ(codeOf("RCPT TO:<" + std::string(250, 'a') + "@b.c>"), "553 5.1.3");
}

TEST(Command, RcptUtf8DependsOnTransaction) {
  const std::string line = "RCPT TO:<j\xc3\xb6rg@example.com>";
  EXPECT_EQ(codeOf(line, false), "553 5.6.7");
  EXPECT_EQ(codeOf(line, true), "");
}

TEST(Command, ArgumentRules) {
  EXPECT_EQ(codeOf("DATA x"), "501 5.5.4");
  EXPECT_EQ(codeOf("RSET x"), "501 5.5.4");
  EXPECT_EQ(codeOf("VRFY"), "501 5.5.4");
  EXPECT_EQ(codeOf("VRFY user"), "");
  EXPECT_EQ(codeOf("NOOP anything at all"), "");
  EXPECT_EQ(codeOf("HELP MAIL"), "");
  EXPECT_EQ(codeOf("QUIT now"), "");
  EXPECT_EQ(codeOf("EXPN"), "");
  EXPECT_EQ(Command::parse("AUTH PLAIN abc").command.argument, "PLAIN abc");
}

TEST(Command, MailAuthParameterIsAcceptedAndDropped) {
  for (const char* line : {"MAIL FROM:<a@b> AUTH=<>", "MAIL FROM:<a@b> auth=user+2Bx@example.com SIZE=5"}) {
    const ParsedCommand p = Command::parse(line);
    ASSERT_TRUE(p.ok()) << line << " " << codeOf(p);
    EXPECT_EQ(p.command.address, "a@b");
  }
}

TEST(Command, Starttls) {
  EXPECT_EQ(codeOf("STARTTLS"), "");
  EXPECT_EQ(codeOf("starttls  "), "");
  EXPECT_EQ(codeOf("STARTTLS now"), "501 5.5.4");
  EXPECT_EQ(Command::parse("STARTTLS now").command.verb, Verb::Starttls);
}

TEST(Command, AuthArguments) {
  ParsedCommand p = Command::parse("AUTH PLAIN");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.mechanism, "PLAIN");
  EXPECT_FALSE(p.command.initial_response.has_value());

  p = Command::parse("auth  login   dXNlcg==  ");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.mechanism, "login");  // the session compares without case
  EXPECT_EQ(p.command.initial_response, "dXNlcg==");

  p = Command::parse("AUTH PLAIN =");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.command.initial_response, "=");

  EXPECT_EQ(codeOf("AUTH X-UNKNOWN"), "");  // the session answers 504
  EXPECT_EQ(codeOf("AUTH"), "501 5.5.4");
  EXPECT_EQ(codeOf("AUTH   "), "501 5.5.4");
  EXPECT_EQ(codeOf("AUTH PLAIN a b"), "501 5.5.4");
  EXPECT_EQ(Command::parse("AUTH").command.verb, Verb::Auth);
}

TEST(Command, BdatArguments) {
  struct Case {
    const char* line;
    std::optional<std::uint64_t> size;
    bool last;
    const char* code;
  };
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  for (const Case& c : {
           Case{"BDAT 0", 0, false, ""},
           Case{"BDAT 10 LAST", 10, true, ""},
           Case{"bdat 10 last", 10, true, ""},
           Case{"BDAT  007   Last ", 7, true, ""},
           Case{"BDAT 18446744073709551615", max, false, ""},
           Case{"BDAT 99999999999999999999", max, false, ""},  // 20 digits saturate
           // The size parses but the line does not: it still tells how much follows.
           Case{"BDAT 10 FIRST", 10, false, "501 5.5.4"},
           Case{"BDAT 10 LAST x", 10, false, "501 5.5.4"},
           Case{"BDAT 10 LASTX", 10, false, "501 5.5.4"},
           // No size: nobody knows.
           Case{"BDAT", std::nullopt, false, "501 5.5.4"},
           Case{"BDAT LAST", std::nullopt, false, "501 5.5.4"},
           Case{"BDAT -1", std::nullopt, false, "501 5.5.4"},
           Case{"BDAT +1", std::nullopt, false, "501 5.5.4"},
           Case{"BDAT 1k LAST", std::nullopt, false, "501 5.5.4"},
           Case{"BDAT 0x10", std::nullopt, false, "501 5.5.4"},
           Case{"BDAT 123456789012345678901", std::nullopt, false, "501 5.5.4"},  // 21 digits
       }) {
    const ParsedCommand p = Command::parse(c.line);
    EXPECT_EQ(p.command.verb, Verb::Bdat) << c.line;
    EXPECT_EQ(p.command.chunk_size, c.size) << c.line;
    EXPECT_EQ(p.command.last, c.last) << c.line;
    EXPECT_EQ(codeOf(p), c.code) << c.line;
  }
  EXPECT_FALSE(Command::parse("DATA").command.chunk_size.has_value());
}

TEST(Command, ErrorKeepsVerb) {
  EXPECT_EQ(Command::parse("DATA x").command.verb, Verb::Data);
  EXPECT_EQ(Command::parse("MAIL FROM:<a").command.verb, Verb::Mail);
  EXPECT_EQ(Command::parse("RCPT TO:<a b>").command.verb, Verb::Rcpt);
}

}  // namespace
}  // namespace mb::smtp
