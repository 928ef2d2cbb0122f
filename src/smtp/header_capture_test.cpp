#include "smtp/header_capture.h"

#include <gtest/gtest.h>

#include <string>

namespace mb::smtp {
namespace {

// Feeds `content` in pieces of `step` bytes and returns what was kept.
std::string capture(std::string_view content, std::size_t step, std::size_t limit = HeaderCapture::kDefaultLimit,
                    bool* complete = nullptr) {
  HeaderCapture c(limit);
  for (std::size_t at = 0; at < content.size(); at += step) c.feed(content.substr(at, step));
  if (complete != nullptr) *complete = c.complete();
  return c.take();
}

TEST(HeaderCapture, KeepsTheHeaderSectionAndNotTheBody) {
  const std::string header = "From: a@example.com\r\nSubject: scan\r\n\r\n";
  const std::string content = header + std::string(4000, 'x') + "\r\n\r\nmore body\r\n";
  bool complete = false;
  EXPECT_EQ(capture(content, content.size(), HeaderCapture::kDefaultLimit, &complete), header);
  EXPECT_TRUE(complete);
}

TEST(HeaderCapture, FindsTheEmptyLineInAnySplit) {
  const std::string header = "From: a@example.com\r\nSubject: scan\r\n folded\r\n\r\n";
  const std::string content = header + "body\r\n\r\nsecond paragraph\r\n";
  for (std::size_t step = 1; step <= content.size(); ++step) {
    EXPECT_EQ(capture(content, step), header) << "pieces of " << step;
  }
}

TEST(HeaderCapture, TakesBareLineFeedsToo) {
  const std::string header = "From: a@example.com\nSubject: scan\n\n";
  for (std::size_t step = 1; step <= 8; ++step) {
    EXPECT_EQ(capture(header + "body\n\nmore\n", step), header) << "pieces of " << step;
  }
  // A CR LF line followed by a bare LF empty line, and the other way round.
  EXPECT_EQ(capture("A: 1\r\n\nbody", 1), "A: 1\r\n\n");
  EXPECT_EQ(capture("A: 1\n\r\nbody", 1), "A: 1\n\r\n");
}

TEST(HeaderCapture, ContentStartingWithAnEmptyLineHasAnEmptySection) {
  EXPECT_EQ(capture("\r\nbody\r\n", 1), "\r\n");
  EXPECT_EQ(capture("\r\nbody\r\n", 100), "\r\n");
  EXPECT_EQ(capture("\nbody\n", 3), "\n");
}

TEST(HeaderCapture, StopsAtTheLimitWithoutAnEmptyLine) {
  const std::string content(100, 'h');
  bool complete = false;
  EXPECT_EQ(capture(content, 7, 40, &complete), std::string(40, 'h'));
  EXPECT_TRUE(complete);
}

TEST(HeaderCapture, IsIncompleteUntilTheEmptyLineArrives) {
  HeaderCapture c;
  c.feed("From: a@example.com\r\n");
  EXPECT_FALSE(c.complete());
  c.feed("\r");
  EXPECT_FALSE(c.complete());
  c.feed("\nbody");
  EXPECT_TRUE(c.complete());
  EXPECT_EQ(c.header(), "From: a@example.com\r\n\r\n");
  c.feed("ignored\r\n\r\n");
  EXPECT_EQ(c.header(), "From: a@example.com\r\n\r\n");
}

TEST(HeaderCapture, TakeStartsAgainForTheNextMessage) {
  HeaderCapture c;
  c.feed("A: 1\r\n\r\nbody");
  EXPECT_EQ(c.take(), "A: 1\r\n\r\n");
  EXPECT_FALSE(c.complete());
  EXPECT_EQ(c.header(), "");
  c.feed("B: 2\r\n\r\n");
  EXPECT_EQ(c.take(), "B: 2\r\n\r\n");
}

}  // namespace
}  // namespace mb::smtp
