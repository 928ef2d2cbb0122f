#include "smtp/data_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mb::smtp {
namespace {

struct Outcome {
  std::string content;
  std::size_t consumed = 0;
  bool done = false;
  bool bare_lf = false;
  bool bare_cr = false;
  std::uint64_t emitted = 0;

  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  std::string shown;
  for (char c : o.content) {
    if (c == '\r') {
      shown += "\\r";
    } else if (c == '\n') {
      shown += "\\n";
    } else if (c == '\0') {
      shown += "\\0";
    } else {
      shown += c;
    }
  }
  return os << "{content=\"" << shown << "\" consumed=" << o.consumed << " done=" << o.done
            << " bare_lf=" << o.bare_lf << " bare_cr=" << o.bare_cr << " emitted=" << o.emitted << "}";
}

// Feeds `input` cut at the given ascending offsets, the way a session does:
// stop offering bytes once the reader says the data is over.
Outcome readPieces(std::string_view input, const std::vector<std::size_t>& cuts) {
  DataReader reader;
  Outcome o;
  std::size_t start = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(input.size());
  for (std::size_t end : ends) {
    const std::string_view piece = input.substr(start, end - start);
    const std::size_t used = reader.feed(piece, o.content);
    EXPECT_LE(used, piece.size());
    o.consumed += used;
    if (reader.done()) {
      EXPECT_EQ(reader.feed(input.substr(start + used), o.content), 0u);
      break;
    }
    EXPECT_EQ(used, piece.size()) << "a reader that is not done must take every byte";
    start = end;
  }
  o.done = reader.done();
  o.bare_lf = reader.sawBareLf();
  o.bare_cr = reader.sawBareCr();
  o.emitted = reader.emitted();
  return o;
}

Outcome readAll(std::string_view input) { return readPieces(input, {}); }

Outcome readByteByByte(std::string_view input) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < input.size(); ++i) cuts.push_back(i);
  return readPieces(input, cuts);
}

// Every way of cutting `input` once and twice, and byte by byte, must give
// what one feed gives.
void expectSplitInvariant(std::string_view input) {
  const Outcome whole = readAll(input);
  EXPECT_EQ(readByteByByte(input), whole);
  for (std::size_t i = 0; i <= input.size(); ++i) {
    ASSERT_EQ(readPieces(input, {i}), whole) << "cut at " << i;
    for (std::size_t j = i; j <= input.size(); ++j) {
      ASSERT_EQ(readPieces(input, {i, j}), whole) << "cuts at " << i << "," << j;
    }
  }
}

// A literal with its NULs.
template <std::size_t N>
std::string bytes(const char (&s)[N]) {
  return std::string(s, N - 1);
}

// Nothing with a bare CR or LF may leave the relay.
bool onlyCrlfLineEnds(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
  }
  return true;
}

TEST(DataReader, EmptyMessage) {
  const Outcome o = readAll(".\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.consumed, 3u);
  EXPECT_EQ(o.content, "");
  EXPECT_EQ(o.emitted, 0u);
}

TEST(DataReader, SimpleMessageLeavesPipelinedCommands) {
  const std::string in = "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n";
  const Outcome o = readAll(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.content, "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_EQ(o.consumed, in.size() - 6);
  EXPECT_EQ(o.emitted, o.content.size());
  EXPECT_FALSE(o.bare_lf);
  EXPECT_FALSE(o.bare_cr);
  expectSplitInvariant(in);
}

TEST(DataReader, DotUnstuffing) {
  EXPECT_EQ(readAll("..\r\n.\r\n").content, ".\r\n");
  EXPECT_EQ(readAll("...\r\n.\r\n").content, "..\r\n");
  EXPECT_EQ(readAll(".hidden\r\n.\r\n").content, "hidden\r\n");
  EXPECT_EQ(readAll("..dot\r\n.\r\n").content, ".dot\r\n");
  EXPECT_EQ(readAll("a.\r\n.\r\n").content, "a.\r\n");
  EXPECT_EQ(readAll("a\r\n. x\r\n.\r\n").content, "a\r\n x\r\n");
  expectSplitInvariant("x\r\n..\r\n...y\r\n.\r\n");
}

TEST(DataReader, NotDoneWithoutFinalDot) {
  const Outcome o = readAll("abc\r\n.x\r\n");
  EXPECT_FALSE(o.done);
  EXPECT_EQ(o.consumed, 9u);
  EXPECT_EQ(o.content, "abc\r\nx\r\n");
}

TEST(DataReader, PendingBytesAreNotEmittedEarly) {
  DataReader r;
  std::string out;
  EXPECT_EQ(r.feed("a\r", out), 2u);
  EXPECT_EQ(out, "a");  // the CR may be half of a CR LF
  EXPECT_EQ(r.feed("\n.", out), 2u);
  EXPECT_EQ(out, "a\r\n");  // the dot may be the end
  EXPECT_EQ(r.feed("\r", out), 1u);
  EXPECT_EQ(out, "a\r\n");
  EXPECT_EQ(r.feed("\nNEXT", out), 1u);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(out, "a\r\n");
  EXPECT_EQ(r.feed("NEXT", out), 0u);
}

TEST(DataReader, BareLfNormalisedAndRecorded) {
  const Outcome o = readAll("a\nb\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.content, "a\r\nb\r\n");
  EXPECT_TRUE(o.bare_lf);
  EXPECT_FALSE(o.bare_cr);
}

TEST(DataReader, BareCrBecomesSpace) {
  const Outcome o = readAll("a\rb\r\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.content, "a b \r\n");
  EXPECT_TRUE(o.bare_cr);
  EXPECT_FALSE(o.bare_lf);
  EXPECT_EQ(readAll("\r\r\r\n.\r\n").content, "  \r\n");
}

TEST(DataReader, LoneDotAfterBareLfIsContent) {
  // "\n.\r\n": the dot line began after a bare LF, so it is not the end.
  Outcome o = readAll("a\n.\r\nb\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.content, "a\r\n.\r\nb\r\n");
  // The CR LF after that lone dot is real, so a dot line right after it ends.
  o = readAll("a\n.\r\n.\r\nAFTER");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.content, "a\r\n.\r\n");
  EXPECT_EQ(o.consumed, 8u);
  // "." LF is never the end, on any kind of line.
  o = readAll("a\r\n.\nb\r\n.\r\n");
  EXPECT_EQ(o.content, "a\r\n.\r\nb\r\n");
  EXPECT_TRUE(o.bare_lf);
  o = readAll(".\n.\r\n");  // at the very start too
  EXPECT_FALSE(o.done);
  EXPECT_EQ(o.content, ".\r\n.\r\n");
}

TEST(DataReader, DotThenBareCr) {
  EXPECT_EQ(readAll("\r\n.\rx\r\n.\r\n").content, "\r\n x\r\n");
  EXPECT_EQ(readAll(".\r\r\n.\r\n").content, " \r\n");
}

TEST(DataReader, DoneIsFinalAndResetStartsOver) {
  DataReader r;
  std::string out;
  EXPECT_EQ(r.feed(".\r\n.\r\n", out), 3u);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(r.feed(".\r\n", out), 0u);
  r.reset();
  EXPECT_FALSE(r.done());
  EXPECT_EQ(r.emitted(), 0u);
  EXPECT_EQ(r.feed("x\n.\r\n", out), 5u);
  EXPECT_FALSE(r.done());
  EXPECT_TRUE(r.sawBareLf());
}

// The SMTP smuggling matrix: each sequence, inside a message, followed by a
// command that must stay content, then a real end.
struct SmuggleCase {
  const char* sequence;
  const char* content;  // expected content for "body" + sequence + "MAIL FROM:<x@y>\r\n"
};

class Smuggling : public ::testing::TestWithParam<SmuggleCase> {};

TEST_P(Smuggling, NeverEndsTheMessage) {
  const std::string seq = GetParam().sequence;
  const std::string input = "body" + seq + "MAIL FROM:<x@y>\r\nRCPT TO:<v@w>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n";
  const Outcome o = readAll(input);
  ASSERT_TRUE(o.done);
  EXPECT_EQ(o.consumed, input.size() - 6) << "exactly one message, ending at the real CRLF.CRLF";
  EXPECT_EQ(o.content, std::string(GetParam().content) + "RCPT TO:<v@w>\r\nDATA\r\nevil\r\n");
  EXPECT_NE(o.content.find("MAIL FROM:<x@y>\r\n"), std::string::npos);
  EXPECT_TRUE(onlyCrlfLineEnds(o.content)) << o;
  EXPECT_EQ(o.emitted, o.content.size());
  expectSplitInvariant(input);

  // And right at the start of the data, where the DATA line's CRLF counts.
  std::string at_start = seq + "MAIL FROM:<x@y>\r\n.\r\n";
  if (seq.rfind("\r\n", 0) == 0) at_start = at_start.substr(2);  // that CRLF is the DATA line's
  const Outcome s = readAll(at_start);
  ASSERT_TRUE(s.done) << s;
  EXPECT_EQ(s.consumed, at_start.size());
  EXPECT_NE(s.content.find("MAIL FROM:<x@y>\r\n"), std::string::npos) << s;
  EXPECT_TRUE(onlyCrlfLineEnds(s.content)) << s;
  expectSplitInvariant(at_start);
}

INSTANTIATE_TEST_SUITE_P(
    DataReader, Smuggling,
    ::testing::Values(SmuggleCase{"\n.\n", "body\r\n.\r\nMAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\n.\r", "body\r\n MAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\r.\n", "body .\r\nMAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\r.\r", "body . MAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\n.\r\n", "body\r\n.\r\nMAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\r.\r\n", "body .\r\nMAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\r\n.\r\r\n", "body\r\n \r\nMAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\r\r\n.\r\r\n", "body \r\n \r\nMAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\r\n.\n", "body\r\n.\r\nMAIL FROM:<x@y>\r\n"},
                      SmuggleCase{"\n\r\n.\n", "body\r\n\r\n.\r\nMAIL FROM:<x@y>\r\n"}));

// The NUL case cannot go through a const char* table; it gets its own test.
TEST(DataReader, NulBeforeDotIsContent) {
  const std::string input = bytes("body\r\n\0.\r\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n");
  const Outcome o = readAll(input);
  ASSERT_TRUE(o.done);
  EXPECT_EQ(o.consumed, input.size() - 6);
  EXPECT_EQ(o.content, bytes("body\r\n\0.\r\nMAIL FROM:<x@y>\r\n"));
  expectSplitInvariant(input);
}

// A model of the rules written as plainly as possible, over whole lines:
// the end is the first CR LF "." CR LF (counting the DATA line's CR LF);
// before it, each LF ends a line, one CR before it belongs to the line end,
// a leading dot goes unless it is alone, other CRs become spaces.
Outcome model(std::string_view input) {
  Outcome o;
  const std::string framed = "\r\n" + std::string(input);
  const std::size_t end = framed.find("\r\n.\r\n");
  if (end == std::string::npos) {
    o.done = false;
    return o;  // only complete inputs are compared
  }
  o.done = true;
  o.consumed = end + 5 - 2;
  const std::string_view before = input.substr(0, end);  // up to and including the last LF before the dot
  std::size_t start = 0;
  while (start < before.size()) {
    const std::size_t lf = before.find('\n', start);
    std::string line(before.substr(start, lf - start));
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    } else {
      o.bare_lf = true;
    }
    if (line.size() > 1 && line[0] == '.') line.erase(0, 1);
    for (char& c : line) {
      if (c == '\r') {
        c = ' ';
        o.bare_cr = true;
      }
    }
    o.content += line + "\r\n";
    start = lf + 1;
  }
  o.emitted = o.content.size();
  return o;
}

TEST(DataReader, AgreesWithTheModelOnEveryShortInput) {
  // Every string of up to 8 bytes over CR, LF, "." and "a", followed by a
  // guaranteed end and a trailing command byte.
  const char alphabet[] = {'\r', '\n', '.', 'a'};
  std::size_t checked = 0;
  for (std::size_t len = 0; len <= 8; ++len) {
    std::size_t total = 1;
    for (std::size_t k = 0; k < len; ++k) total *= 4;
    for (std::size_t n = 0; n < total; ++n) {
      std::string input;
      std::size_t v = n;
      for (std::size_t k = 0; k < len; ++k) {
        input += alphabet[v % 4];
        v /= 4;
      }
      input += "\r\n.\r\nZ";
      const Outcome expected = model(input);
      ASSERT_TRUE(expected.done);
      const Outcome whole = readAll(input);
      ASSERT_EQ(whole, expected) << "input #" << n << " of length " << len;
      ASSERT_TRUE(onlyCrlfLineEnds(whole.content));
      ASSERT_EQ(readByteByByte(input), expected) << "input #" << n << " of length " << len;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 87381u);
}

TEST(DataReader, LongLines) {
  for (std::size_t octets : {999u, 1000u, 1001u}) {
    const std::string line = std::string(octets - 2, 'x') + "\r\n";
    for (std::size_t piece : {0u, 1u, 100u}) {
      DataReader reader;
      reader.setMaxLineLength(1000);
      const std::string input = "a\r\n" + line + "b\r\n.\r\n";
      std::string out;
      const std::size_t step = piece == 0 ? input.size() : piece;
      for (std::size_t i = 0; i < input.size(); i += step) reader.feed(std::string_view(input).substr(i, step), out);
      EXPECT_TRUE(reader.done());
      EXPECT_EQ(reader.sawLongLine(), octets > 1000) << octets << " " << piece;
      EXPECT_EQ(out, "a\r\n" + line + "b\r\n");  // passed unchanged either way
    }
  }
}

TEST(DataReader, LongLinesAreMeasuredAfterUnstuffing) {
  const std::string line = std::string(998, 'x') + "\r\n";  // 1000 octets
  DataReader reader;
  reader.setMaxLineLength(1000);
  std::string out;
  reader.feed("." + line + ".\r\n", out);
  EXPECT_TRUE(reader.done());
  EXPECT_FALSE(reader.sawLongLine());
  reader.reset();
  reader.feed("..x" + line + ".\r\n", out);
  EXPECT_TRUE(reader.done());
  EXPECT_TRUE(reader.sawLongLine()) << "reset() keeps the limit";
  reader.reset();
  // A bare LF ends the line, and counts as the CR LF it becomes.
  reader.feed(std::string(998, 'y') + "\n" + std::string(999, 'z') + "\r\n.\r\n", out);
  EXPECT_TRUE(reader.sawLongLine());
  reader.reset();
  reader.feed(std::string(998, 'y') + "\n" + std::string(998, 'z') + "\r\n.\r\n", out);
  EXPECT_FALSE(reader.sawLongLine());
  // Without a limit nothing is long.
  DataReader unlimited;
  unlimited.feed(std::string(100000, 'q') + "\r\n.\r\n", out);
  EXPECT_FALSE(unlimited.sawLongLine());
}

}  // namespace
}  // namespace mb::smtp
