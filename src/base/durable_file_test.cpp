#include "base/durable_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <string>

namespace mb::fs {
namespace {

namespace stdfs = std::filesystem;

// A fresh directory per test, removed afterwards; the umask is pinned so the
// mode checks do not depend on the environment.
class DurableFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    old_umask_ = ::umask(022);
    std::string tmpl = (stdfs::temp_directory_path() / "mb_durable_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    stdfs::remove_all(dir_, ec);
    ::umask(old_umask_);
  }

  static std::string pattern(std::size_t n, std::size_t seed = 0) {
    std::string s(n, '\0');
    // 251 is prime, so the pattern does not line up with any power-of-two boundary.
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i + seed) % 251);
    return s;
  }

  static std::uintmax_t sizeOnDisk(const stdfs::path& p) { return stdfs::file_size(p); }

  static unsigned modeOf(const stdfs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0);
    return st.st_mode & 07777;
  }

  stdfs::path dir_;
  mode_t old_umask_ = 0;
};

TEST_F(DurableFileTest, WriteAtomicThenRead) {
  const auto p = dir_ / "a.txt";
  ASSERT_TRUE(writeFileAtomic(p, "hello\n").ok());
  auto r = readFile(p);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, "hello\n");
  EXPECT_EQ(modeOf(p), 0640u);
}

TEST_F(DurableFileTest, WriteAtomicReplacesAndLeavesNoTemporaries) {
  const auto p = dir_ / "state";
  ASSERT_TRUE(writeFileAtomic(p, "old contents that are longer").ok());
  ASSERT_TRUE(writeFileAtomic(p, "new").ok());
  ASSERT_TRUE(writeFileAtomicNoDirSync(p, "newer").ok());
  EXPECT_EQ(*readFile(p), "newer");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : stdfs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(DurableFileTest, WriteAtomicEmptyAndLarge) {
  ASSERT_TRUE(writeFileAtomic(dir_ / "empty", "").ok());
  EXPECT_EQ(*readFile(dir_ / "empty"), "");
  const std::string big = pattern(300'000);
  ASSERT_TRUE(writeFileAtomic(dir_ / "big", big).ok());
  EXPECT_EQ(*readFile(dir_ / "big"), big);  // more than readFile's 64 KiB chunk
}

TEST_F(DurableFileTest, WriteAtomicIntoMissingDirectoryFailsWithErrno) {
  const auto p = dir_ / "missing" / "a.txt";
  Status st = writeFileAtomic(p, "x");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, ENOENT);
  EXPECT_NE(st.error().message.find((dir_ / "missing").string()), std::string::npos);
  EXPECT_FALSE(stdfs::exists(dir_ / "missing"));
}

TEST_F(DurableFileTest, ReadMissingFileCarriesErrnoAndPath) {
  auto r = readFile(dir_ / "nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ENOENT);
  EXPECT_NE(r.error().message.find("nope"), std::string::npos);
  EXPECT_NE(r.error().message.find("No such file"), std::string::npos);
}

TEST_F(DurableFileTest, ReadFilePrefixStopsAtTheSize) {
  const std::string message = pattern(200'000);  // several 64 KiB reads
  const std::string trailer = "\n{\"trailer\":\"MUST-NOT-LEAK\"}\nMBENV";
  const auto p = dir_ / "with-trailer";
  ASSERT_TRUE(writeFileAtomic(p, message + trailer).ok());
  auto r = readFilePrefix(p, message.size());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(*r == message);
  EXPECT_EQ(*readFilePrefix(p, 0), "");
  EXPECT_EQ(*readFilePrefix(p, message.size() + trailer.size()), message + trailer);
}

TEST_F(DurableFileTest, ReadFilePrefixOfAShorterFileFails) {
  const auto p = dir_ / "short";
  ASSERT_TRUE(writeFileAtomic(p, "12345").ok());
  auto r = readFilePrefix(p, 6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, 0);
  EXPECT_NE(r.error().message.find(p.string()), std::string::npos) << r.error().message;
  auto missing = readFilePrefix(dir_ / "nope", 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().sys_errno, ENOENT);
}

TEST_F(DurableFileTest, StreamFileRangeHandsOverExactlyTheRange) {
  const std::string data = pattern(300'000);
  const auto p = dir_ / "data";
  ASSERT_TRUE(writeFileAtomic(p, data).ok());
  std::string got;
  std::size_t pieces = 0;
  Status st = streamFileRange(p, 1000, 200'000, [&](std::string_view piece) {
    EXPECT_LE(piece.size(), 64u * 1024);
    got.append(piece);
    ++pieces;
    return Status{};
  });
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_TRUE(got == data.substr(1000, 200'000));
  EXPECT_GE(pieces, 4u);

  // The sink's error stops the reading and comes back as it is.
  pieces = 0;
  st = streamFileRange(p, 0, data.size(), [&](std::string_view) {
    ++pieces;
    return Status(Error{"sink full", ENOSPC});
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "sink full");
  EXPECT_EQ(pieces, 1u);

  // A range past the end of the file is an error, after what was there.
  got.clear();
  st = streamFileRange(p, data.size() - 10, 20, [&](std::string_view piece) {
    got.append(piece);
    return Status{};
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(got, data.substr(data.size() - 10));
  EXPECT_TRUE(streamFileRange(p, 5, 0, [](std::string_view) { return Status(Error{"never called"}); }).ok());
}

TEST_F(DurableFileTest, ReadDirectoryFails) {
  auto r = readFile(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, EISDIR);
}

TEST_F(DurableFileTest, RemoveFile) {
  const auto p = dir_ / "gone";
  ASSERT_TRUE(writeFileAtomic(p, "x").ok());
  EXPECT_TRUE(removeFile(p).ok());
  EXPECT_FALSE(stdfs::exists(p));
  EXPECT_TRUE(removeFile(p).ok()) << "removing a file that is already gone is not an error";
  Status st = removeFile(dir_);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, EISDIR);
}

TEST_F(DurableFileTest, RenameFile) {
  ASSERT_TRUE(writeFileAtomic(dir_ / "from", "x").ok());
  ASSERT_TRUE(renameFile(dir_ / "from", dir_ / "to").ok());
  EXPECT_FALSE(stdfs::exists(dir_ / "from"));
  EXPECT_EQ(*readFile(dir_ / "to"), "x");
  Status st = renameFile(dir_ / "from", dir_ / "to2");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, ENOENT);
}

TEST_F(DurableFileTest, SyncDirectory) {
  EXPECT_TRUE(syncDirectory(dir_).ok());
  Status st = syncDirectory(dir_ / "nope");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, ENOENT);
  ASSERT_TRUE(writeFileAtomic(dir_ / "f", "x").ok());
  st = syncDirectory(dir_ / "f");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, ENOTDIR);
}

TEST_F(DurableFileTest, MakeDirectoriesNestedAndIdempotent) {
  const auto p = dir_ / "a" / "b" / "c";
  ASSERT_TRUE(makeDirectories(p).ok());
  EXPECT_TRUE(stdfs::is_directory(p));
  EXPECT_EQ(modeOf(dir_ / "a"), 0750u);
  EXPECT_EQ(modeOf(p), 0750u);
  EXPECT_TRUE(makeDirectories(p).ok());
  ASSERT_TRUE(makeDirectories(dir_ / "x", 0700).ok());
  EXPECT_EQ(modeOf(dir_ / "x"), 0700u);
}

TEST_F(DurableFileTest, MakeDirectoriesThroughAFileFails) {
  ASSERT_TRUE(writeFileAtomic(dir_ / "file", "x").ok());
  Status st = makeDirectories(dir_ / "file");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, ENOTDIR);
  st = makeDirectories(dir_ / "file" / "sub");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, ENOTDIR);
}

TEST_F(DurableFileTest, CreateIsExclusive) {
  const auto p = dir_ / "msg";
  {
    auto w = FileWriter::create(p);
    ASSERT_TRUE(w.ok()) << w.error().message;
    EXPECT_TRUE(w->isOpen());
    EXPECT_EQ(w->path(), p);
    ASSERT_TRUE(w->write("first").ok());
    ASSERT_TRUE(w->close().ok());
  }
  EXPECT_EQ(modeOf(p), 0640u);
  auto again = FileWriter::create(p);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().sys_errno, EEXIST);
  EXPECT_NE(again.error().message.find(p.string()), std::string::npos);
  EXPECT_EQ(*readFile(p), "first") << "a failed create must not truncate";

  auto missing = FileWriter::create(dir_ / "no" / "msg");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().sys_errno, ENOENT);
}

TEST_F(DurableFileTest, WriterBuffersUpToExactly64KiB) {
  constexpr std::size_t kBuf = 64 * 1024;
  const auto p = dir_ / "buffered";
  auto w = FileWriter::create(p);
  ASSERT_TRUE(w.ok());
  const std::string data = pattern(kBuf + 1);

  ASSERT_TRUE(w->write(std::string_view(data).substr(0, kBuf - 1)).ok());
  EXPECT_EQ(sizeOnDisk(p), 0u) << "below the buffer size nothing reaches the file";
  ASSERT_TRUE(w->write(std::string_view(data).substr(kBuf - 1, 1)).ok());
  EXPECT_EQ(sizeOnDisk(p), 0u) << "a full buffer is still held";
  EXPECT_EQ(w->bytesWritten(), kBuf);

  ASSERT_TRUE(w->write(std::string_view(data).substr(kBuf, 1)).ok());
  EXPECT_EQ(sizeOnDisk(p), kBuf) << "one byte more flushes the full buffer";
  EXPECT_EQ(w->bytesWritten(), kBuf + 1);

  ASSERT_TRUE(w->flush().ok());
  EXPECT_EQ(sizeOnDisk(p), kBuf + 1);
  ASSERT_TRUE(w->close().ok());
  EXPECT_EQ(*readFile(p), data);
}

TEST_F(DurableFileTest, WriterLargeWriteAfterBufferedDataKeepsOrder) {
  const auto p = dir_ / "mixed";
  auto w = FileWriter::create(p);
  ASSERT_TRUE(w.ok());
  const std::string head = pattern(100, 1);
  const std::string big = pattern(200'000, 2);
  const std::string exact = pattern(64 * 1024, 3);
  const std::string tail = pattern(10, 4);
  ASSERT_TRUE(w->write(head).ok());
  ASSERT_TRUE(w->write(big).ok());  // larger than the buffer: written through
  EXPECT_EQ(sizeOnDisk(p), head.size() + big.size());
  ASSERT_TRUE(w->write(exact).ok());  // exactly the buffer size into an empty buffer
  ASSERT_TRUE(w->write(tail).ok());
  EXPECT_EQ(w->bytesWritten(), head.size() + big.size() + exact.size() + tail.size());
  ASSERT_TRUE(w->sync().ok());
  ASSERT_TRUE(w->close().ok());
  EXPECT_EQ(*readFile(p), head + big + exact + tail);
}

TEST_F(DurableFileTest, WriterManySmallWritesAcrossSeveralBuffers) {
  const auto p = dir_ / "small";
  auto w = FileWriter::create(p);
  ASSERT_TRUE(w.ok());
  std::string expected;
  for (std::size_t i = 0; i < 3000; ++i) {
    const std::string chunk = pattern(1 + i % 97, i);
    expected += chunk;
    ASSERT_TRUE(w->write(chunk).ok());
  }
  EXPECT_EQ(w->bytesWritten(), expected.size());
  ASSERT_TRUE(w->close().ok());
  EXPECT_EQ(*readFile(p), expected);
}

TEST_F(DurableFileTest, WriterAfterCloseReportsEbadf) {
  auto w = FileWriter::create(dir_ / "closed");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->close().ok());
  EXPECT_FALSE(w->isOpen());
  EXPECT_TRUE(w->close().ok()) << "closing twice is harmless";
  Status st = w->write("x");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, EBADF);
  st = w->flush();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, EBADF);
  EXPECT_FALSE(FileWriter().isOpen());
}

TEST_F(DurableFileTest, WriterMoves) {
  const auto p = dir_ / "moved";
  auto created = FileWriter::create(p);
  ASSERT_TRUE(created.ok());
  FileWriter a = std::move(created).value();
  ASSERT_TRUE(a.write("abc").ok());
  FileWriter b(std::move(a));
  EXPECT_FALSE(a.isOpen());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_TRUE(b.isOpen());
  EXPECT_EQ(b.bytesWritten(), 3u);
  ASSERT_TRUE(b.write("def").ok());

  FileWriter c;
  c = std::move(b);
  EXPECT_FALSE(b.isOpen());  // NOLINT(bugprone-use-after-move)
  ASSERT_TRUE(c.write("ghi").ok());
  ASSERT_TRUE(c.close().ok());
  EXPECT_EQ(*readFile(p), "abcdefghi");
}

TEST_F(DurableFileTest, WriterDestructorKeepsTheFile) {
  const auto p = dir_ / "kept";
  {
    auto w = FileWriter::create(p);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->write("data").ok());
    ASSERT_TRUE(w->flush().ok());
  }
  EXPECT_TRUE(stdfs::exists(p));
  EXPECT_EQ(*readFile(p), "data");
}

TEST(DurableFileErrors, FromErrnoAppendsStrerror) {
  const Error e = Error::fromErrno("open /x", ENOSPC);
  EXPECT_EQ(e.sys_errno, ENOSPC);
  EXPECT_EQ(e.message, "open /x: No space left on device");
}

TEST_F(DurableFileTest, FreeSpace) {
  auto free = freeSpace(dir_);
  ASSERT_TRUE(free.ok()) << free.error().message;
  EXPECT_GT(*free, 0u);
  auto missing = freeSpace(dir_ / "missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().sys_errno, ENOENT);
}

TEST_F(DurableFileTest, DirectoryLockIsExclusiveUntilReleased) {
  const auto p = dir_ / "lock";
  auto first = DirectoryLock::acquire(p);
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = DirectoryLock::acquire(p);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().sys_errno, EWOULDBLOCK);

  DirectoryLock moved = std::move(first).value();
  EXPECT_FALSE(DirectoryLock::acquire(p).ok());
  moved = DirectoryLock();  // released
  EXPECT_TRUE(DirectoryLock::acquire(p).ok());
}

}  // namespace
}  // namespace mb::fs
