#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace mb::fs {

/// fsync(2) on an open descriptor; `what` names the file in the error.
Status syncFd(int fd, std::string_view what);

/// Opens a directory and fsyncs it, so that renames and creations inside it
/// survive a power loss.
Status syncDirectory(const std::filesystem::path& dir);

/// Writes `data` to `path` so that after return either the old file or the
/// complete new one exists, durably: write a temporary in the same directory
/// (created with `mode`, so a private key is never readable by others even
/// for a moment), fsync it, rename it over `path`, fsync the directory.
Status writeFileAtomic(const std::filesystem::path& path, std::string_view data,
                       unsigned mode = 0640);

/// Same, but leaves the directory fsync to the caller (who may batch several).
Status writeFileAtomicNoDirSync(const std::filesystem::path& path, std::string_view data,
                                unsigned mode = 0640);

/// The first half of writeFileAtomicNoDirSync: writes `data` to a new
/// temporary beside `path` (`<path>.tmp.<random>`) and fsyncs it. Returns the
/// temporary's path; the caller renames it into place or unlinks it. On
/// failure nothing is left behind.
Result<std::filesystem::path> writeSyncedTemporary(const std::filesystem::path& path, std::string_view data,
                                                   unsigned mode = 0640);

/// Reads a whole (small) file.
Result<std::string> readFile(const std::filesystem::path& path);

/// Reads the first `size` bytes of `path` and never a byte past them: a
/// spooled content file may hold more after the message (the envelope as a
/// trailer). A file shorter than `size` is an error.
Result<std::string> readFilePrefix(const std::filesystem::path& path, std::uint64_t size);

/// Reads bytes [offset, offset + length) of `path`, nothing outside them; a
/// file that ends before the range does is an error (sys_errno 0).
Result<std::string> readFileRange(const std::filesystem::path& path, std::uint64_t offset, std::uint64_t length);

/// Hands bytes [offset, offset + length) of `path` to `sink` in pieces of at
/// most 64 KiB, in order, reading nothing outside that range (pread). Fails
/// when the file ends before the range does (sys_errno 0), on a read error,
/// or with the first error `sink` returns (then reads no further).
Status streamFileRange(const std::filesystem::path& path, std::uint64_t offset, std::uint64_t length,
                       const std::function<Status(std::string_view)>& sink);

/// rename(2), reported as a Status.
Status renameFile(const std::filesystem::path& from, const std::filesystem::path& to);

/// unlink(2); a file that is already gone is not an error.
Status removeFile(const std::filesystem::path& path);

/// mkdir -p with the given mode for the directories it creates.
Status makeDirectories(const std::filesystem::path& dir, unsigned mode = 0750);

/// Bytes an unprivileged writer may still use on the filesystem holding
/// `path` (statvfs f_bavail × f_frsize).
Result<std::uint64_t> freeSpace(const std::filesystem::path& path);

/// An exclusive advisory lock (flock) on a file, held while the object
/// lives: one relay per state directory. The kernel drops it when the
/// process dies, so a SIGKILL leaves no stale lock behind.
class DirectoryLock {
 public:
  DirectoryLock() = default;
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  DirectoryLock(DirectoryLock&& other) noexcept;
  DirectoryLock& operator=(DirectoryLock&& other) noexcept;

  /// Creates `path` if needed and locks it without waiting. An error with
  /// sys_errno EWOULDBLOCK means another process holds it.
  static Result<DirectoryLock> acquire(const std::filesystem::path& path);

 private:
  int fd_ = -1;
};

/// A file opened for writing with a user-space buffer, for streaming message
/// content to disk without holding it in memory. Not thread-safe; one owner.
/// The destructor closes the descriptor but never removes the file.
class FileWriter {
 public:
  FileWriter() = default;
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  FileWriter(FileWriter&& other) noexcept;
  FileWriter& operator=(FileWriter&& other) noexcept;

  /// Creates `path` exclusively (O_EXCL).
  static Result<FileWriter> create(const std::filesystem::path& path, unsigned mode = 0640);

  /// Buffered write; errors (ENOSPC, EIO) surface here or at flush/sync.
  Status write(std::string_view data);
  Status flush();
  /// flush() then fsync().
  Status sync();
  Status close();

  bool isOpen() const { return fd_ >= 0; }
  std::uint64_t bytesWritten() const { return written_ + buffer_.size(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  static constexpr std::size_t kBufferSize = 64 * 1024;
  int fd_ = -1;
  std::filesystem::path path_;
  std::string buffer_;
  std::uint64_t written_ = 0;
};

}  // namespace mb::fs
