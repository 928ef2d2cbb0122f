#include "smtp/line_end_finder.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace mb::smtp {
namespace {

std::size_t reference(std::string_view in, std::size_t pos) {
  const std::size_t at = in.find_first_of("\r\n", pos);
  return at == std::string_view::npos ? in.size() : at;
}

TEST(LineEndFinder, FindsTheNextCrOrLf) {
  const std::string in = "ab\r\ncd\nef\rgh";
  LineEndFinder f(in);
  EXPECT_EQ(f.next(0), 2u);
  EXPECT_EQ(f.next(3), 3u);
  EXPECT_EQ(f.next(4), 6u);
  EXPECT_EQ(f.next(7), 9u);
  EXPECT_EQ(f.next(10), in.size());
  EXPECT_EQ(f.next(in.size()), in.size());
}

TEST(LineEndFinder, EmptyInputAndNoLineEnd) {
  EXPECT_EQ(LineEndFinder("").next(0), 0u);
  EXPECT_EQ(LineEndFinder("plain text").next(3), 10u);
}

// Every walk a reader could make (any monotone sequence of positions) over
// random inputs rich in CR and LF gives what find_first_of gives.
TEST(LineEndFinder, AgreesWithFindFirstOfOnRandomWalks) {
  std::mt19937 rng(7);
  const std::string alphabet = "\r\n\r\nab.";
  for (int round = 0; round < 2000; ++round) {
    std::string in(rng() % 40, 'x');
    for (char& c : in) c = alphabet[rng() % alphabet.size()];
    LineEndFinder f(in);
    std::size_t pos = 0;
    while (pos <= in.size()) {
      ASSERT_EQ(f.next(pos), reference(in, pos)) << "round " << round << " pos " << pos;
      pos += rng() % 4;
    }
  }
}

}  // namespace
}  // namespace mb::smtp
