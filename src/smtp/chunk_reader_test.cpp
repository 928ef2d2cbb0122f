#include "smtp/chunk_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mb::smtp {
namespace {

struct Outcome {
  std::string content;
  bool bare_lf = false;
  bool bare_cr = false;
  bool long_line = false;
  std::uint64_t emitted = 0;

  bool operator==(const Outcome&) const = default;
};

// Feeds `input` cut at the given ascending offsets, then finishes.
Outcome readPieces(std::string_view input, const std::vector<std::size_t>& cuts,
                   std::size_t max_line = 0) {
  ChunkReader reader;
  reader.setMaxLineLength(max_line);
  Outcome o;
  std::size_t start = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(input.size());
  for (std::size_t end : ends) {
    reader.feed(input.substr(start, end - start), o.content);
    start = end;
  }
  reader.finish(o.content);
  o.bare_lf = reader.sawBareLf();
  o.bare_cr = reader.sawBareCr();
  o.long_line = reader.sawLongLine();
  o.emitted = reader.emitted();
  EXPECT_EQ(o.emitted, o.content.size());
  return o;
}

Outcome read(std::string_view input, std::size_t max_line = 0) {
  return readPieces(input, {}, max_line);
}

TEST(ChunkReader, PassesCrlfContentUnchanged) {
  const std::string m = "Subject: x\r\n\r\n.leading dot stays\r\n.\r\n..\r\nend\r\n";
  const Outcome o = read(m);
  EXPECT_EQ(o.content, m);
  EXPECT_FALSE(o.bare_lf);
  EXPECT_FALSE(o.bare_cr);
}

TEST(ChunkReader, NormalisesLineEnds) {
  EXPECT_EQ(read("a\nb\r\n").content, "a\r\nb\r\n");
  EXPECT_TRUE(read("a\nb\r\n").bare_lf);
  EXPECT_EQ(read("a\rb\r\n").content, "a b\r\n");
  EXPECT_TRUE(read("a\rb\r\n").bare_cr);
  EXPECT_FALSE(read("a\rb\r\n").bare_lf);
  EXPECT_EQ(read("a\r\r\n").content, "a \r\n");
  EXPECT_EQ(read("\n\n").content, "\r\n\r\n");
  EXPECT_EQ(read("\r").content, " \r\n");
}

TEST(ChunkReader, FinishEndsTheLastLine) {
  EXPECT_EQ(read("").content, "");
  EXPECT_EQ(read("no end").content, "no end\r\n");
  EXPECT_EQ(read("end\r").content, "end \r\n");
  EXPECT_EQ(read("done\r\n").content, "done\r\n");
}

TEST(ChunkReader, CrLfAcrossFeeds) {
  const Outcome o = readPieces("line\r\nnext\r\n", {5});
  EXPECT_EQ(o.content, "line\r\nnext\r\n");
  EXPECT_FALSE(o.bare_cr);
  EXPECT_EQ(readPieces("a\r\rb", {2}).content, "a  b\r\n");
  EXPECT_EQ(readPieces("a\r", {2, 2, 2}).content, "a \r\n");
}

TEST(ChunkReader, LongLines) {
  for (std::size_t octets : {999u, 1000u, 1001u}) {
    const std::string line = std::string(octets - 2, 'x') + "\r\n";
    EXPECT_EQ(read("a\r\n" + line + "b\r\n", 1000).long_line, octets > 1000) << octets;
    EXPECT_EQ(readPieces("a\r\n" + line, {3 + octets / 2, 3 + octets - 1}, 1000).long_line,
              octets > 1000);
    // The CR LF that finish() adds counts.
    EXPECT_EQ(read(std::string(octets - 2, 'x'), 1000).long_line, octets > 1000);
    // A bare LF ends a line too, as the CR LF it becomes.
    EXPECT_EQ(read(std::string(octets - 2, 'x') + "\nb", 1000).long_line, octets > 1000);
    EXPECT_FALSE(read("a\r\n" + line, 0).long_line);
  }
  ChunkReader reader;
  reader.setMaxLineLength(10);
  std::string out;
  reader.feed("0123456789ab\r\n", out);
  EXPECT_TRUE(reader.sawLongLine());
  reader.reset();
  EXPECT_FALSE(reader.sawLongLine());
  reader.feed("0123456789ab\r\n", out);
  EXPECT_TRUE(reader.sawLongLine()) << "reset() keeps the limit";
}

// Output and flags do not depend on the split: every input over an alphabet
// that matters, every way to cut it in up to three pieces.
TEST(ChunkReader, SplitIndependent) {
  const char alphabet[] = {'a', '\r', '\n', '.'};
  for (std::size_t len = 0; len <= 6; ++len) {
    std::size_t total = 1;
    for (std::size_t i = 0; i < len; ++i) total *= 4;
    for (std::size_t n = 0; n < total; ++n) {
      std::string input;
      for (std::size_t i = 0, k = n; i < len; ++i, k /= 4) input += alphabet[k % 4];
      const Outcome whole = read(input, 3);
      for (std::size_t i = 0; i < whole.content.size(); ++i) {
        if (whole.content[i] == '\r') {
          ASSERT_TRUE(i + 1 < whole.content.size() && whole.content[i + 1] == '\n');
        }
        if (whole.content[i] == '\n') {
          ASSERT_TRUE(i > 0 && whole.content[i - 1] == '\r');
        }
      }
      for (std::size_t a = 0; a <= len; ++a) {
        for (std::size_t b = a; b <= len; ++b) {
          ASSERT_EQ(readPieces(input, {a, b}, 3), whole) << n << " " << a << " " << b;
        }
      }
    }
  }
}

}  // namespace
}  // namespace mb::smtp
