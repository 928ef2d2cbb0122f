#include "queue/dsn.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/testing/temp_dir.h"

namespace mb::queue {
namespace {

using mb::testing::TempDir;

constexpr std::int64_t kNow = 1'800'000'000;      // Fri, 15 Jan 2027 08:00:00 +0000
constexpr std::int64_t kArrival = 1'799'990'000;  // Fri, 15 Jan 2027 05:13:20 +0000

struct Part {
  std::string headers;  // unfolded, CRLF-separated
  std::string body;
};

struct ParsedDsn {
  std::string headers;
  std::string boundary;
  std::vector<Part> parts;
  bool closed = false;  // the closing delimiter was found
};

std::string unfold(std::string s) {
  for (std::size_t p; (p = s.find("\r\n ")) != std::string::npos;) s.replace(p, 3, " ");
  return s;
}

// The value of the first field `name` in an unfolded header block; "" if none.
std::string headerValue(const std::string& headers, std::string_view name) {
  const std::string block = "\r\n" + headers;
  const std::string key = "\r\n" + std::string(name) + ": ";
  const std::size_t at = block.find(key);
  if (at == std::string::npos) return "";
  const std::size_t start = at + key.size();
  const std::size_t end = block.find("\r\n", start);
  return block.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// Splits the message by hand, as a strict reader would: header section,
// boundary from Content-Type, body parts between "CRLF--boundary" lines.
ParsedDsn parseDsn(const std::string& msg) {
  ParsedDsn out;
  const std::size_t hend = msg.find("\r\n\r\n");
  if (hend == std::string::npos) return out;
  out.headers = unfold(msg.substr(0, hend + 2));
  const std::string ct = headerValue(out.headers, "Content-Type");
  const std::string key = "boundary=\"";
  const std::size_t b = ct.find(key);
  if (b == std::string::npos) return out;
  out.boundary = ct.substr(b + key.size(), ct.find('"', b + key.size()) - b - key.size());
  const std::string body = msg.substr(hend + 2);  // keeps the CRLF before the first delimiter
  const std::string delim = "\r\n--" + out.boundary;
  std::size_t pos = body.find(delim);
  while (pos != std::string::npos) {
    const std::size_t after = pos + delim.size();
    if (body.compare(after, 4, "--\r\n") == 0) {
      out.closed = true;
      break;
    }
    if (body.compare(after, 2, "\r\n") != 0) break;
    const std::size_t start = after + 2;
    const std::size_t next = body.find(delim, start);
    const std::string part = body.substr(start, next == std::string::npos ? std::string::npos : next - start);
    Part p;
    const std::size_t phend = part.find("\r\n\r\n");
    p.headers = unfold(part.substr(0, phend + 2));
    p.body = phend == std::string::npos ? "" : part.substr(phend + 4);
    out.parts.push_back(std::move(p));
    pos = next;
  }
  return out;
}

// Blocks separated by empty lines (the groups of message/delivery-status).
std::vector<std::string> fieldGroups(const std::string& body) {
  std::vector<std::string> groups;
  const std::string text = unfold(body) + "\r\n";
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find("\r\n\r\n", pos);
    if (end == std::string::npos) end = text.size() - 2;
    groups.push_back(text.substr(pos, end + 2 - pos));
    pos = end + 4;
  }
  return groups;
}

// Every line ends in CRLF, no line is longer than 998 octets, and there is
// no bare CR, LF or NUL anywhere.
void expectWellFormed(const std::string& msg) {
  ASSERT_GE(msg.size(), 2u);
  EXPECT_EQ(msg.substr(msg.size() - 2), "\r\n");
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < msg.size(); ++i) {
    ASSERT_NE(msg[i], '\0') << "NUL at " << i;
    if (msg[i] == '\r') {
      ASSERT_TRUE(i + 1 < msg.size() && msg[i + 1] == '\n') << "bare CR at " << i;
    } else if (msg[i] == '\n') {
      ASSERT_TRUE(i > 0 && msg[i - 1] == '\r') << "bare LF at " << i;
      EXPECT_LT(i + 1 - line_start, 1001u) << "line at " << line_start;  // 998 + CRLF
      line_start = i + 1;
    }
  }
}

std::vector<std::string> lines(const std::string& msg) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < msg.size()) {
    std::size_t end = msg.find("\r\n", pos);
    if (end == std::string::npos) end = msg.size();
    out.push_back(msg.substr(pos, end - pos));
    pos = end + 2;
  }
  return out;
}

void writeFile(const std::filesystem::path& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

// What the spool keeps after the message in the same file (the envelope);
// only the first `original_size` bytes are the message. Its first line looks
// like a header field, so a header section read too far would take it in.
const std::string kTrailer = "X-Envelope: {\"trailer\":\"MUST-NOT-LEAK\"}\r\nMBENV";

class Fixture {
 public:
  // Stores `message` followed by `trailer`, as the spool does.
  void store(const std::string& message, const std::string& trailer = kTrailer) {
    writeFile(input.original_content, message + trailer);
    input.original_size = message.size();
  }

  Fixture() {
    env.id = "0ABCdefGHIjkl0123456";
    env.sender = "scanner@example.com";
    env.recipients.push_back({"alice@example.org", RecipientState::Failed, 550, "5.1.1", "no such user"});
    env.recipients.push_back({"bob@example.org", RecipientState::Delivered, 250, "2.0.0", ""});
    env.client_address = "192.0.2.7";
    env.arrival = kArrival;
    input.envelope = &env;
    input.failed = {0};
    input.reporting_host = "relay.example.com";
    input.now = kNow;
    input.original_content = dir.path() / (env.id + ".msg");
    input.from_address = "MAILER-DAEMON@relay.example.com";
    input.to_address = env.sender;
  }

  TempDir dir;
  Envelope env;
  DsnInput input;
};

const std::string kOriginalHeaders =
    "Received: from printer (printer [192.0.2.7])\r\n"
    "\tby relay.example.com; Fri, 15 Jan 2027 05:13:20 +0000\r\n"
    "From: scanner@example.com\r\n"
    "To: alice@example.org, bob@example.org\r\n"
    "Subject: Scan from lobby\r\n"
    "Message-ID: <scan.1@example.com>\r\n";

TEST(Dsn, TwoRecipientsOneFailedParsesBack) {
  Fixture fx;
  fx.store(kOriginalHeaders + "\r\nSECRET-BODY-LINE\r\n");
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
  EXPECT_EQ(dsn->find("SECRET-BODY-LINE"), std::string::npos);

  const ParsedDsn p = parseDsn(*dsn);
  EXPECT_EQ(headerValue(p.headers, "From"), "Mail Delivery System <MAILER-DAEMON@relay.example.com>");
  EXPECT_EQ(headerValue(p.headers, "To"), "<scanner@example.com>");
  EXPECT_EQ(headerValue(p.headers, "Subject"), "Undelivered Mail Returned to Sender");
  EXPECT_EQ(headerValue(p.headers, "Date"), "Fri, 15 Jan 2027 08:00:00 +0000");
  EXPECT_EQ(headerValue(p.headers, "Message-ID"), "<dsn.0ABCdefGHIjkl0123456.1800000000@relay.example.com>");
  EXPECT_EQ(headerValue(p.headers, "Auto-Submitted"), "auto-replied");
  EXPECT_EQ(headerValue(p.headers, "MIME-Version"), "1.0");
  EXPECT_EQ(headerValue(p.headers, "Content-Type"),
            "multipart/report; report-type=delivery-status; boundary=\"" + p.boundary + "\"");
  EXPECT_NE(p.boundary.find(fx.env.id), std::string::npos);
  EXPECT_LE(p.boundary.size(), 70u);  // RFC 2046 §5.1.1
  ASSERT_TRUE(p.closed);
  ASSERT_EQ(p.parts.size(), 3u);

  // 1: for people.
  EXPECT_EQ(headerValue(p.parts[0].headers, "Content-Type"), "text/plain; charset=utf-8");
  const std::string& human = p.parts[0].body;
  EXPECT_NE(human.find("<alice@example.org>"), std::string::npos);
  EXPECT_NE(human.find("SMTP code 550, status 5.1.1"), std::string::npos);
  EXPECT_NE(human.find("no such user"), std::string::npos);
  EXPECT_NE(human.find("Queue ID: 0ABCdefGHIjkl0123456"), std::string::npos);
  EXPECT_NE(human.find("Fri, 15 Jan 2027 05:13:20 +0000"), std::string::npos);
  EXPECT_NE(human.find("delivered to 1 other recipient."), std::string::npos);
  EXPECT_EQ(human.find("bob@example.org"), std::string::npos);

  // 2: for machines.
  EXPECT_EQ(headerValue(p.parts[1].headers, "Content-Type"), "message/delivery-status");
  const auto groups = fieldGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(headerValue(groups[0], "Reporting-MTA"), "dns; relay.example.com");
  EXPECT_EQ(headerValue(groups[0], "X-Mailbridge-Queue-ID"), "0ABCdefGHIjkl0123456");
  EXPECT_EQ(headerValue(groups[0], "Arrival-Date"), "Fri, 15 Jan 2027 05:13:20 +0000");
  EXPECT_EQ(headerValue(groups[1], "Final-Recipient"), "rfc822; alice@example.org");
  EXPECT_EQ(headerValue(groups[1], "Action"), "failed");
  EXPECT_EQ(headerValue(groups[1], "Status"), "5.1.1");
  EXPECT_EQ(headerValue(groups[1], "Diagnostic-Code"), "smtp; 550 5.1.1 no such user");
  EXPECT_EQ(headerValue(groups[1], "Last-Attempt-Date"), "Fri, 15 Jan 2027 08:00:00 +0000");

  // 3: the original's header section, exactly (the delimiter takes the last CRLF).
  EXPECT_EQ(headerValue(p.parts[2].headers, "Content-Type"), "text/rfc822-headers");
  EXPECT_EQ(p.parts[2].body + "\r\n", kOriginalHeaders);
}

TEST(Dsn, EveryFailedRecipientGetsAGroupAndOthersAreMentioned) {
  Fixture fx;
  fx.env.recipients.push_back({"carol@example.org", RecipientState::Failed, 0, "", ""});
  fx.env.recipients.push_back({"dave@example.org", RecipientState::Pending, 451, "4.3.0", "try later"});
  fx.input.failed = {0, 2, 0};  // a repeated index counts once
  fx.store(kOriginalHeaders + "\r\nbody\r\n");
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  const ParsedDsn p = parseDsn(*dsn);
  ASSERT_EQ(p.parts.size(), 3u);
  const auto groups = fieldGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(headerValue(groups[2], "Final-Recipient"), "rfc822; carol@example.org");
  EXPECT_EQ(headerValue(groups[2], "Status"), "5.0.0");
  EXPECT_EQ(headerValue(groups[2], "Diagnostic-Code"), "smtp; 550 5.0.0");
  EXPECT_NE(p.parts[0].body.find("delivered to 1 other recipient."), std::string::npos);
  EXPECT_NE(p.parts[0].body.find("Delivery to 1 other recipient is still being tried"), std::string::npos);
}

TEST(Dsn, NullSenderNeverBounces) {
  Envelope env;
  env.sender = "";
  EXPECT_FALSE(shouldBounce(env));
  env.sender = "scanner@example.com";
  EXPECT_TRUE(shouldBounce(env));
}

TEST(Dsn, NonAsciiRecipientUsesUtf8AddressType) {
  Fixture fx;
  fx.env.recipients[0].address = "j\xc3\xb6rg+x@ex\xc3\xa4mple.org";  // jörg+x@exämple.org
  fx.store(kOriginalHeaders + "\r\n");
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
  const ParsedDsn p = parseDsn(*dsn);
  ASSERT_EQ(p.parts.size(), 3u);
  const auto groups = fieldGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  // RFC 6533 utf-8-addr-xtext: message/delivery-status stays ASCII.
  EXPECT_EQ(headerValue(groups[1], "Final-Recipient"), "utf-8; j\\x{F6}rg\\x{2B}x@ex\\x{E4}mple.org");
  for (char c : p.parts[1].body) EXPECT_LT(static_cast<unsigned char>(c), 0x80);
  // The explanation shows it as written, and says it is 8bit.
  EXPECT_NE(p.parts[0].body.find("j\xc3\xb6rg+x@ex\xc3\xa4mple.org"), std::string::npos);
  EXPECT_EQ(headerValue(p.parts[0].headers, "Content-Transfer-Encoding"), "8bit");
  EXPECT_EQ(headerValue(p.headers, "Content-Transfer-Encoding"), "8bit");
}

TEST(Dsn, HostileErrorTextCannotInjectOrOverflow) {
  Fixture fx;
  std::string evil = "550 5.1.1 bad\r\nBcc: victim@example.net\r\n\r\n--fake\rX-Evil: 1\n";
  evil += std::string(5000, 'A');  // one word far over any line limit
  evil += " \x01\x1b[31m\x7f";
  evil += std::string("\0tail", 5);
  evil += "\xff\xfe";  // not UTF-8
  fx.env.recipients[0].last_error = evil;
  fx.env.recipients[0].enhanced = "5.1.1\r\nX-Status: 2.0.0";
  fx.input.to_address = "scanner@example.com>\r\nBcc: other@example.net";
  fx.input.reporting_host = "relay.example.com\r\nX-Host: 1";
  fx.store(kOriginalHeaders + "\r\n");

  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
  for (const auto& line : lines(*dsn)) {
    EXPECT_NE(line.rfind("Bcc:", 0), 0u) << line;
    EXPECT_NE(line.rfind("X-Evil:", 0), 0u) << line;
    EXPECT_NE(line.rfind("X-Status:", 0), 0u) << line;
    EXPECT_NE(line.rfind("X-Host:", 0), 0u) << line;
    EXPECT_NE(line.rfind("--fake", 0), 0u) << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos);
    EXPECT_EQ(line.find('\x7f'), std::string::npos);
  }
  const ParsedDsn p = parseDsn(*dsn);
  EXPECT_EQ(headerValue(p.headers, "To"), "<scanner@example.com???Bcc:?other@example.net>");
  ASSERT_EQ(p.parts.size(), 3u);
  const auto groups = fieldGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(headerValue(groups[1], "Status"), "5.0.0");
  const std::string diag = headerValue(groups[1], "Diagnostic-Code");
  EXPECT_EQ(diag.rfind("smtp; 550 5.0.0 bad Bcc: victim@example.net --fake X-Evil: 1 AAAA", 0), 0u) << diag;
  // Overlong text is cut (with "..."), so what followed it is gone.
  EXPECT_EQ(dsn->find("tail"), std::string::npos);
  EXPECT_LT(diag.size(), 4300u);
  EXPECT_EQ(diag.substr(diag.size() - 3), "...");
}

TEST(Dsn, BareLineEndsInOriginalHeadersBecomeCrlf) {
  Fixture fx;
  fx.store("A: 1\nB: 2\rC: 3\r\n\nbody\r\n");
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
  const ParsedDsn p = parseDsn(*dsn);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].body, "A: 1\r\nB: 2\r\nC: 3");
}

TEST(Dsn, HeaderSectionOver64KiBIsCut) {
  Fixture fx;
  std::string original;
  for (int k = 0; original.size() < 200 * 1024; ++k) {
    original += "X-Filler-" + std::to_string(k) + ": " + std::string(60, 'f') + "\r\n";
  }
  original += "\r\nbody\r\n";
  fx.store(original);

  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
  const ParsedDsn p = parseDsn(*dsn);
  ASSERT_EQ(p.parts.size(), 3u);
  const std::string copied = p.parts[2].body + "\r\n";
  const std::string note = "X-Mailbridge-Note: header section cut at a line boundary\r\n";
  ASSERT_GT(copied.size(), note.size());
  EXPECT_EQ(copied.substr(copied.size() - note.size()), note);
  const std::string kept = copied.substr(0, copied.size() - note.size());
  EXPECT_LE(kept.size(), 64u * 1024);
  EXPECT_GT(kept.size(), 60u * 1024);
  EXPECT_EQ(original.compare(0, kept.size(), kept), 0);  // a prefix, ending at a line end
  EXPECT_NE(p.parts[0].body.find("cut after"), std::string::npos);
}

TEST(Dsn, OverlongOriginalHeaderLineIsFolded) {
  Fixture fx;
  fx.store("Subject: " + std::string(3000, 's') + "\r\nFrom: a@b\r\n\r\n");
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
}

TEST(Dsn, MissingOriginalStillProducesDsn) {
  Fixture fx;  // nothing written at original_content
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
  const ParsedDsn p = parseDsn(*dsn);
  ASSERT_TRUE(p.closed);
  ASSERT_EQ(p.parts.size(), 2u);  // RFC 6522: the third part is optional
  EXPECT_EQ(headerValue(p.parts[0].headers, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(headerValue(p.parts[1].headers, "Content-Type"), "message/delivery-status");
  EXPECT_NE(p.parts[0].body.find("could not be read"), std::string::npos);
}

TEST(Dsn, BoundaryDoesNotCollide) {
  Fixture fx;
  // The original tries to guess the boundary's fixed part.
  std::string original = kOriginalHeaders;
  original += "X-Trap: --=_mb_" + fx.env.id + "_\r\n";
  original += "X-Trap2: =_mb_" + fx.env.id + "_00000000000000000000000000000000--\r\n\r\n";
  fx.store(original);
  auto first = buildDsn(fx.input);
  auto second = buildDsn(fx.input);
  ASSERT_TRUE(first.ok() && second.ok());
  const ParsedDsn a = parseDsn(*first);
  const ParsedDsn b = parseDsn(*second);
  EXPECT_NE(a.boundary, b.boundary);
  ASSERT_EQ(a.parts.size(), 3u);
  for (const auto& part : a.parts) {
    EXPECT_EQ(part.headers.find(a.boundary), std::string::npos);
    EXPECT_EQ(part.body.find(a.boundary), std::string::npos);
  }
  EXPECT_NE(a.parts[2].body.find("X-Trap2"), std::string::npos);
}

TEST(Dsn, OriginalHeadersStopAtTheMessageSize) {
  // All header, no blank line: the section ends where the message does.
  Fixture fx;
  fx.store(kOriginalHeaders);
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
  EXPECT_EQ(dsn->find("MUST-NOT-LEAK"), std::string::npos);
  EXPECT_EQ(dsn->find("MBENV"), std::string::npos);
  const ParsedDsn p = parseDsn(*dsn);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].body + "\r\n", kOriginalHeaders);
  EXPECT_NE(p.parts[0].body.find("The headers of your message are attached; its body"), std::string::npos);

  Fixture plain;
  plain.store(kOriginalHeaders, "");
  auto expected = buildDsn(plain.input);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(parseDsn(*expected).parts.at(2).body, p.parts[2].body);

  // A last line without its line end, cut by the size.
  Fixture cut;
  cut.store("From: a@example.com\r\nSubject: no line end");
  const ParsedDsn c = parseDsn(*buildDsn(cut.input));
  ASSERT_EQ(c.parts.size(), 3u);
  EXPECT_EQ(c.parts[2].body, "From: a@example.com\r\nSubject: no line end");
}

TEST(Dsn, EmptyMessageHasNoHeadersToAttach) {
  Fixture fx;
  fx.store("");  // size 0: nothing of the file is the message
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  EXPECT_EQ(dsn->find("MUST-NOT-LEAK"), std::string::npos);
  const ParsedDsn p = parseDsn(*dsn);
  EXPECT_EQ(p.parts.size(), 2u);
  EXPECT_NE(p.parts[0].body.find("no header section"), std::string::npos);
}

TEST(Dsn, OriginalShorterThanItsSizeIsUnreadable) {
  Fixture fx;
  fx.store(kOriginalHeaders + "\r\nbody\r\n", "");
  fx.input.original_size += 10;
  auto dsn = buildDsn(fx.input);
  ASSERT_TRUE(dsn.ok()) << dsn.error().message;
  expectWellFormed(*dsn);
  const ParsedDsn p = parseDsn(*dsn);
  EXPECT_EQ(p.parts.size(), 2u);
  EXPECT_NE(p.parts[0].body.find("could not be read"), std::string::npos);
  EXPECT_NE(p.parts[0].body.find("shorter"), std::string::npos);
}

TEST(Dsn, RejectsUnusableInput) {
  Fixture fx;
  DsnInput in = fx.input;
  in.envelope = nullptr;
  EXPECT_FALSE(buildDsn(in).ok());
  in = fx.input;
  in.failed.clear();
  EXPECT_FALSE(buildDsn(in).ok());
  in = fx.input;
  in.failed = {7};
  EXPECT_FALSE(buildDsn(in).ok());
  in = fx.input;
  in.to_address.clear();
  EXPECT_FALSE(buildDsn(in).ok());
}

}  // namespace
}  // namespace mb::queue
