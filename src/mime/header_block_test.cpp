#include "mime/header_block.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include "base/testing/temp_dir.h"

namespace mb::mime {
namespace {

namespace stdfs = std::filesystem;

void writeFile(const stdfs::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good());
}

std::vector<std::string> names(const HeaderBlock& block) {
  std::vector<std::string> out;
  for (const HeaderField& f : block.fields()) out.emplace_back(f.name);
  return out;
}

TEST(HeaderBlockTest, EndsAtTheBlankLine) {
  const std::string msg = "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n\r\nmore\r\n";
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(block->end, HeaderEnd::BlankLine);
  EXPECT_EQ(block->body_offset, msg.find("body"));
  EXPECT_EQ(block->bytes, msg.substr(0, msg.find("body")));
  EXPECT_EQ(block->fields_size, msg.find("\r\n\r\n") + 2);
  EXPECT_EQ(names(*block), (std::vector<std::string>{"From", "Subject"}));
}

TEST(HeaderBlockTest, BareLineFeeds) {
  const std::string msg = "From: a@example.com\nSubject: hi\n\nbody\n";
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(block->end, HeaderEnd::BlankLine);
  EXPECT_EQ(block->body_offset, msg.find("body"));
  const auto fields = block->fields();
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(fields[1].raw, "Subject: hi\n");
  EXPECT_EQ(fields[1].value, " hi\n");
}

TEST(HeaderBlockTest, FoldedLinesBelongToTheirField) {
  const std::string msg = "To: a@example.com,\r\n b@example.com,\r\n\tc@example.com\r\nSubject: x\r\n\r\n";
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  const auto fields = block->fields();
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(fields[0].name, "To");
  EXPECT_EQ(fields[0].raw, "To: a@example.com,\r\n b@example.com,\r\n\tc@example.com\r\n");
  EXPECT_EQ(fields[1].raw, "Subject: x\r\n");
}

TEST(HeaderBlockTest, WhiteSpaceBeforeTheColon) {
  auto block = headerBlockOf("To : a@example.com\r\n\r\n");
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(block->end, HeaderEnd::BlankLine);
  EXPECT_EQ(names(*block), (std::vector<std::string>{"To"}));
}

TEST(HeaderBlockTest, NoBodyAtAll) {
  const std::string msg = "From: a@example.com\r\nSubject: hi\r\n";
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(block->end, HeaderEnd::EndOfInput);
  EXPECT_EQ(block->body_offset, msg.size());
  EXPECT_EQ(block->bytes, msg);
  EXPECT_EQ(block->fields().size(), 2u);
}

TEST(HeaderBlockTest, NoFinalLineEnd) {
  const std::string msg = "From: a@example.com\r\nSubject: hi";
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(block->end, HeaderEnd::EndOfInput);
  EXPECT_EQ(block->body_offset, msg.size());
  const auto fields = block->fields();
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(fields[1].raw, "Subject: hi");
}

TEST(HeaderBlockTest, EmptyMessageAndEmptyHeader) {
  auto empty = headerBlockOf("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->body_offset, 0u);
  EXPECT_TRUE(empty->fields().empty());

  auto no_fields = headerBlockOf("\r\nbody");
  ASSERT_TRUE(no_fields.ok());
  EXPECT_EQ(no_fields->end, HeaderEnd::BlankLine);
  EXPECT_EQ(no_fields->body_offset, 2u);
  EXPECT_TRUE(no_fields->fields().empty());
}

TEST(HeaderBlockTest, ALineThatIsNoFieldStartsTheBody) {
  const std::string msg = "Subject: x\r\nHello world\r\nTo: someone@example.com\r\n";
  auto block = headerBlockOf(msg);
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(block->end, HeaderEnd::BodyLine);
  EXPECT_EQ(block->body_offset, msg.find("Hello"));
  EXPECT_EQ(names(*block), (std::vector<std::string>{"Subject"}));

  // Neither may a message start with a continuation line.
  auto leading = headerBlockOf(" folded: x\r\nTo: a@example.com\r\n\r\n");
  ASSERT_TRUE(leading.ok());
  EXPECT_EQ(leading->end, HeaderEnd::BodyLine);
  EXPECT_EQ(leading->body_offset, 0u);

  // A space inside the name makes it text, not a field.
  auto spaced = headerBlockOf("X-Foo bar: baz\r\n\r\n");
  ASSERT_TRUE(spaced.ok());
  EXPECT_EQ(spaced->end, HeaderEnd::BodyLine);
}

TEST(HeaderBlockTest, ScannerFedByteByByteAgreesWithOneBuffer) {
  const std::string msg = "From: a@example.com\r\nTo: b@example.com,\r\n c@example.com\r\n\r\nbody\r\n";
  HeaderScanner scanner;
  std::size_t fed = 0;
  bool done = false;
  while (!done && fed < msg.size()) {
    ++fed;
    done = scanner.scan(std::string_view(msg).substr(0, fed), false);
  }
  ASSERT_TRUE(done);
  EXPECT_EQ(scanner.bodyOffset(), msg.find("body"));
  EXPECT_EQ(scanner.end(), HeaderEnd::BlankLine);
  // It needed no more than the blank line to decide.
  EXPECT_EQ(fed, msg.find("body"));
}

TEST(HeaderBlockTest, LimitApplies) {
  const std::string msg = "Subject: " + std::string(200, 'x') + "\r\n\r\nbody";
  EXPECT_FALSE(headerBlockOf(msg, 100).ok());
  EXPECT_TRUE(headerBlockOf(msg, msg.find("body")).ok());
}

TEST(HeaderBlockFileTest, ReadsOnlyTheHeader) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "big.eml";
  const std::string head = "From: a@example.com\r\nTo: b@example.com\r\n\r\n";
  {
    std::ofstream out(path, std::ios::binary);
    out << head;
    const std::string line(998, 'A');
    for (int i = 0; i < 20 * 1024; ++i) out << line << "\r\n";  // about 20 MB
    ASSERT_TRUE(out.good());
  }
  ASSERT_GT(stdfs::file_size(path), 20u * 1000 * 1000);
  auto block = readHeaderBlock({path, stdfs::file_size(path)});
  ASSERT_TRUE(block.ok()) << block.error().message;
  EXPECT_EQ(block->body_offset, head.size());
  EXPECT_EQ(block->bytes, head);
  EXPECT_LT(block->bytes.capacity(), 128u * 1024);
}

TEST(HeaderBlockFileTest, StopsReadingAtTheBlankLine) {
  // A FIFO whose writer stays open: a read past what was written would wait
  // for the writer to give up, and the test would see that.
  mb::testing::TempDir dir;
  const auto path = dir.path() / "fifo";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  const std::string data = "From: a@example.com\r\nTo: b@example.com\r\n\r\nThe body goes on and on";
  std::promise<void> reader_done;
  std::atomic<bool> writer_gave_up{false};
  std::thread writer([&, done = reader_done.get_future()] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    const ssize_t n = ::write(fd, data.data(), data.size());
    (void)n;
    if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) writer_gave_up = true;
    ::close(fd);
  });
  auto block = readHeaderBlock({path, data.size()});
  const bool gave_up = writer_gave_up.load();
  reader_done.set_value();
  writer.join();
  ASSERT_TRUE(block.ok()) << block.error().message;
  EXPECT_FALSE(gave_up);
  EXPECT_EQ(block->body_offset, data.find("The body"));
}

TEST(HeaderBlockFileTest, TooLargeIsAnError) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "huge-header.eml";
  std::string msg;
  while (msg.size() <= kMaxHeaderBlock) msg += "X-Filler: " + std::string(900, 'f') + "\r\n";
  msg += "\r\nbody\r\n";
  writeFile(path, msg);
  auto block = readHeaderBlock({path, msg.size()});
  ASSERT_FALSE(block.ok());
  EXPECT_NE(block.error().message.find("header section larger"), std::string::npos);
}

TEST(HeaderBlockFileTest, TooLargeWithoutAnyLineEnd) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "one-line.eml";
  const std::string msg = "Subject: " + std::string(kMaxHeaderBlock + 10, 'x');
  writeFile(path, msg);
  EXPECT_FALSE(readHeaderBlock({path, msg.size()}).ok());
}

TEST(HeaderBlockFileTest, MissingFileReportsErrno) {
  mb::testing::TempDir dir;
  auto block = readHeaderBlock({dir.path() / "missing", 10});
  ASSERT_FALSE(block.ok());
  EXPECT_EQ(block.error().sys_errno, ENOENT);
}

// The spool keeps the serialized envelope after the message in the same
// file; only the first `size` bytes are the message.
const std::string kTrailer = "X-Leak: {\"trailer\":\"MUST-NOT-LEAK\"}\r\n\r\nMBENV";

TEST(HeaderBlockFileTest, ReadsNothingPastTheMessageSize) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "with-trailer.msg";
  // All header, no blank line: unbounded, the trailer would read as a field.
  const std::string msg = "From: a@example.com\r\nSubject: hi\r\n";
  writeFile(path, msg + kTrailer);
  auto block = readHeaderBlock({path, msg.size()});
  ASSERT_TRUE(block.ok()) << block.error().message;
  EXPECT_EQ(block->bytes, msg);
  EXPECT_EQ(block->body_offset, msg.size());
  EXPECT_EQ(block->end, HeaderEnd::EndOfInput);
  EXPECT_EQ(names(*block), (std::vector<std::string>{"From", "Subject"}));
  auto expected = headerBlockOf(msg);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(block->bytes, expected->bytes);
  EXPECT_EQ(block->fields_size, expected->fields_size);
}

TEST(HeaderBlockFileTest, AFieldCutAtTheSizeEndsThere) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "cut.msg";
  const std::string msg = "From: a@example.com\r\nSubject: no line end";
  writeFile(path, msg + kTrailer);
  auto block = readHeaderBlock({path, msg.size()});
  ASSERT_TRUE(block.ok()) << block.error().message;
  EXPECT_EQ(block->bytes, msg);
  EXPECT_EQ(block->bytes.find("MUST-NOT-LEAK"), std::string::npos);
}

TEST(HeaderBlockFileTest, SizeZeroIsAnEmptyMessage) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "empty.msg";
  writeFile(path, kTrailer);
  auto block = readHeaderBlock({path, 0});
  ASSERT_TRUE(block.ok()) << block.error().message;
  EXPECT_EQ(block->bytes, "");
  EXPECT_EQ(block->body_offset, 0u);
}

TEST(HeaderBlockFileTest, AFileShorterThanTheSizeIsAnError) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "short.msg";
  const std::string msg = "From: a@example.com\r\n\r\nbody\r\n";
  writeFile(path, msg);
  auto block = readHeaderBlock({path, msg.size() + 1});
  ASSERT_FALSE(block.ok());
  EXPECT_NE(block.error().message.find("less than"), std::string::npos) << block.error().message;
}

}  // namespace
}  // namespace mb::mime
