#include "base/durable_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <utility>

namespace mb::fs {
namespace {

Status writeAll(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno("write " + path.string(), errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

std::string tempSuffix() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = ".tmp.";
  auto v = rng();
  for (int i = 0; i < 12; ++i, v >>= 4) s += kHex[v & 0xf];
  return s;
}

}  // namespace

Status syncFd(int fd, std::string_view what) {
  while (::fsync(fd) != 0) {
    if (errno == EINTR) continue;
    return Error::fromErrno("fsync " + std::string(what), errno);
  }
  return {};
}

Status syncDirectory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error::fromErrno("open directory " + dir.string(), errno);
  Status st = syncFd(fd, dir.string());
  ::close(fd);
  return st;
}

Result<std::filesystem::path> writeSyncedTemporary(const std::filesystem::path& path, std::string_view data,
                                                   unsigned mode) {
  std::filesystem::path tmp = path;
  tmp += tempSuffix();
  auto writer = FileWriter::create(tmp, mode);
  if (!writer) return writer.error();
  Status st = writer->write(data);
  if (st) st = writer->sync();
  if (st) st = writer->close();
  if (!st) {
    ::unlink(tmp.c_str());
    return st.error();
  }
  return tmp;
}

Status writeFileAtomicNoDirSync(const std::filesystem::path& path, std::string_view data,
                                unsigned mode) {
  auto tmp = writeSyncedTemporary(path, data, mode);
  if (!tmp) return tmp.error();
  if (Status st = renameFile(*tmp, path); !st) {
    ::unlink(tmp->c_str());
    return st;
  }
  return {};
}

Status writeFileAtomic(const std::filesystem::path& path, std::string_view data, unsigned mode) {
  Status st = writeFileAtomicNoDirSync(path, data, mode);
  if (!st) return st;
  return syncDirectory(path.has_parent_path() ? path.parent_path() : std::filesystem::path("."));
}

Result<std::string> readFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::fromErrno("open " + path.string(), errno);
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return Error::fromErrno("read " + path.string(), err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

Status streamFileRange(const std::filesystem::path& path, std::uint64_t offset, std::uint64_t length,
                       const std::function<Status(std::string_view)>& sink) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::fromErrno("open " + path.string(), errno);
  std::string buf(static_cast<std::size_t>(std::min<std::uint64_t>(length, 64 * 1024)), '\0');
  std::uint64_t done = 0;
  Status st;
  while (done < length) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), length - done));
    const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      st = Error::fromErrno("read " + path.string(), errno);
      break;
    }
    if (n == 0) {
      st = Error{path.string() + " ends at byte " + std::to_string(offset + done) + ", before the " +
                     std::to_string(offset + length) + " bytes expected",
                 0};
      break;
    }
    done += static_cast<std::uint64_t>(n);
    st = sink(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    if (!st) break;
  }
  ::close(fd);
  return st;
}

Result<std::string> readFilePrefix(const std::filesystem::path& path, std::uint64_t size) {
  return readFileRange(path, 0, size);
}

Result<std::string> readFileRange(const std::filesystem::path& path, std::uint64_t offset, std::uint64_t length) {
  std::string out;
  Status st = streamFileRange(path, offset, length, [&out](std::string_view piece) {
    out.append(piece);
    return Status{};
  });
  if (!st) return st.error();
  return out;
}

Status renameFile(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return Error::fromErrno("rename " + from.string() + " -> " + to.string(), errno);
  }
  return {};
}

Status removeFile(const std::filesystem::path& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error::fromErrno("unlink " + path.string(), errno);
  }
  return {};
}

Result<std::uint64_t> freeSpace(const std::filesystem::path& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return Error::fromErrno("statvfs " + path.string(), errno);
  return static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize);
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);
}

DirectoryLock::DirectoryLock(DirectoryLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

DirectoryLock& DirectoryLock::operator=(DirectoryLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

Result<DirectoryLock> DirectoryLock::acquire(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return Error::fromErrno("open " + path.string(), errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    return Error::fromErrno("lock " + path.string(), err);
  }
  DirectoryLock lock;
  lock.fd_ = fd;
  return lock;
}

Status makeDirectories(const std::filesystem::path& dir, unsigned mode) {
  std::filesystem::path partial;
  for (const auto& part : dir) {
    partial /= part;
    if (partial.empty() || partial == partial.root_path()) continue;
    if (::mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) {
      return Error::fromErrno("mkdir " + partial.string(), errno);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Error::fromErrno("stat " + dir.string(), errno);
  if (!S_ISDIR(st.st_mode)) return Error{dir.string() + " exists and is not a directory", ENOTDIR};
  return {};
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

FileWriter::FileWriter(FileWriter&& other) noexcept
    : fd_(other.fd_),
      path_(std::move(other.path_)),
      buffer_(std::move(other.buffer_)),
      written_(other.written_) {
  other.fd_ = -1;
}

FileWriter& FileWriter::operator=(FileWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    buffer_ = std::move(other.buffer_);
    written_ = other.written_;
    other.fd_ = -1;
  }
  return *this;
}

Result<FileWriter> FileWriter::create(const std::filesystem::path& path, unsigned mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Error::fromErrno("create " + path.string(), errno);
  FileWriter w;
  w.fd_ = fd;
  w.path_ = path;
  w.buffer_.reserve(kBufferSize);
  return w;
}

Status FileWriter::write(std::string_view data) {
  if (fd_ < 0) return Error{"write to closed file " + path_.string(), EBADF};
  if (buffer_.size() + data.size() <= kBufferSize) {
    buffer_.append(data);
    return {};
  }
  if (Status st = flush(); !st) return st;
  if (data.size() >= kBufferSize) {
    if (Status st = writeAll(fd_, data, path_); !st) return st;
    written_ += data.size();
    return {};
  }
  buffer_.append(data);
  return {};
}

Status FileWriter::flush() {
  if (fd_ < 0) return Error{"flush closed file " + path_.string(), EBADF};
  if (buffer_.empty()) return {};
  Status st = writeAll(fd_, buffer_, path_);
  if (!st) return st;
  written_ += buffer_.size();
  buffer_.clear();
  return {};
}

Status FileWriter::sync() {
  if (Status st = flush(); !st) return st;
  return syncFd(fd_, path_.string());
}

Status FileWriter::close() {
  if (fd_ < 0) return {};
  Status st = flush();
  if (::close(fd_) != 0 && st) st = Error::fromErrno("close " + path_.string(), errno);
  fd_ = -1;
  return st;
}

}  // namespace mb::fs
