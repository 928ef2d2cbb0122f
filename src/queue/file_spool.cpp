#include "queue/file_spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <latch>
#include <optional>
#include <set>
#include <system_error>
#include <utility>
#include <vector>

#include "base/durable_file.h"
#include "base/log.h"
#include "base/text.h"

namespace mb::queue {
namespace {

namespace stdfs = std::filesystem;

// A message is `<id>.mail`: its content, then its envelope as it was at
// commit (the trailer). `<id>.env`, when present, is a later state of the
// envelope and wins over the trailer. `<id>.msg` is the content file of the
// older two-file layout (content in `.msg`, envelope only in `.env`), moved
// to `.mail` by recover().
constexpr std::string_view kContentExt = ".mail";
constexpr std::string_view kLegacyContentExt = ".msg";
constexpr std::string_view kEnvelopeExt = ".env";
// A content file being received: renamed to `<id>.mail` at its commit.
constexpr std::string_view kIncomingExt = ".mail.tmp";

// The trailer ends with a fixed-size line giving the envelope's length, so
// that the envelope can be found from the end of the file.
constexpr std::string_view kTrailerTag = "envelope-length ";
constexpr std::size_t kTrailerDigits = 10;
constexpr std::size_t kTrailerLineSize = kTrailerTag.size() + kTrailerDigits + 1;
constexpr std::uint64_t kMaxTrailerEnvelope = 64ull * 1024 * 1024;  // far above any real envelope

std::string envelopeTrailer(const Envelope& env) {
  std::string out = serialize(env);
  std::string digits = std::to_string(out.size());
  out += kTrailerTag;
  out.append(kTrailerDigits - std::min(kTrailerDigits, digits.size()), '0');
  out += digits;
  out += '\n';
  return out;
}

// The envelope in the trailer of `path`, checked against the file: its
// content must end exactly where the trailer begins.
Result<Envelope> readTrailer(const std::filesystem::path& path) {
  std::error_code ec;
  const std::uint64_t file_size = stdfs::file_size(path, ec);
  if (ec) return Error{"stat " + path.string() + ": " + ec.message(), ec.value()};
  if (file_size < kTrailerLineSize) return Error{"no envelope trailer (the file is too short)"};
  auto line = fs::readFileRange(path, file_size - kTrailerLineSize, kTrailerLineSize);
  if (!line) return line.error();
  const std::string_view l = *line;
  const std::string_view digits = l.substr(kTrailerTag.size(), kTrailerDigits);
  if (l.substr(0, kTrailerTag.size()) != kTrailerTag || l.back() != '\n' ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Error{"no envelope trailer (torn or truncated file)"};
  }
  const std::uint64_t length = std::stoull(std::string(digits));
  if (length == 0 || length > kMaxTrailerEnvelope || length > file_size - kTrailerLineSize) {
    return Error{"envelope trailer length " + std::to_string(length) + " does not fit the file"};
  }
  const std::uint64_t content_size = file_size - kTrailerLineSize - length;
  auto text = fs::readFileRange(path, content_size, length);
  if (!text) return text.error();
  auto env = parse(*text);
  if (!env) return env.error();
  if (env->size != content_size) {
    return Error{"envelope trailer says " + std::to_string(env->size) + " content bytes, the file holds " +
                 std::to_string(content_size)};
  }
  return env;
}

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// writeFileAtomicNoDirSync() names its temporaries `<path>.tmp.<random>`;
// anything else of ours in flight ends in `.tmp`.
bool isTemporary(std::string_view name) {
  return endsWith(name, ".tmp") || name.find(".tmp.") != std::string_view::npos;
}

/// The spool's IncomingMessage: a content file being written. Owned by one
/// session, then handed to the committer thread with commit(); whoever holds
/// it last removes the file unless the commit succeeded.
class FileIncomingMessage final : public IncomingMessage {
 public:
  FileIncomingMessage(std::string id, fs::FileWriter writer)
      : id_(std::move(id)), writer_(std::move(writer)) {}

  ~FileIncomingMessage() override {
    if (committed_) return;
    const stdfs::path path = writer_.path();
    // Close before unlinking so no descriptor keeps the data alive.
    (void)writer_.close();
    if (Status st = fs::removeFile(path); !st) {
      spdlog::error("spool: cannot remove abandoned content file: {}", st.error().message);
    }
  }

  const std::string& id() const override { return id_; }

  Status write(std::string_view bytes) override {
    if (error_) return *error_;
    Status st = writer_.write(bytes);
    if (!st) error_ = st.error();
    return st;
  }

  std::uint64_t size() const override { return writer_.bytesWritten(); }

  // For the committer thread.
  const std::optional<Error>& stickyError() const { return error_; }
  const stdfs::path& path() const { return writer_.path(); }

  /// Appends the envelope's trailer, flushes, fsyncs and closes the file,
  /// then checks that the file in the directory is still the one written: a
  /// file removed or replaced underneath must not be committed as a message
  /// without its content.
  Status finish(std::string_view trailer) {
    if (error_) return *error_;
    Status st = writer_.write(trailer);
    if (st) st = writer_.sync();
    if (st) st = writer_.close();
    if (!st) {
      error_ = st.error();
      return st;
    }
    struct stat info {};
    if (::stat(writer_.path().c_str(), &info) != 0) {
      error_ = Error::fromErrno("content file " + writer_.path().string() + " vanished before commit", errno);
      return *error_;
    }
    if (static_cast<std::uint64_t>(info.st_size) != writer_.bytesWritten()) {
      error_ = Error{"content file " + writer_.path().string() + " has " + std::to_string(info.st_size) +
                     " bytes, " + std::to_string(writer_.bytesWritten()) + " were written"};
      return *error_;
    }
    return {};
  }

  void markCommitted() { committed_ = true; }

 private:
  std::string id_;
  fs::FileWriter writer_;
  std::optional<Error> error_;
  bool committed_ = false;
};

}  // namespace

struct FileSpool::PendingCommit {
  std::unique_ptr<IncomingMessage> msg;
  Envelope env;
  CommitCallback done;
};

FileSpool::FileSpool(stdfs::path state_dir)
    : queue_dir_(state_dir / "queue"),
      corrupt_dir_(state_dir / "corrupt"),
      committer_([this] {
        nameThisThread("mb-spool-commit");
        committerLoop();
      }) {}

FileSpool::~FileSpool() {
  stop();
  if (dir_fd_.load() >= 0) ::close(dir_fd_.load());
}

void FileSpool::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (committer_.joinable()) committer_.join();
}

Status FileSpool::open() {
  if (Status st = fs::makeDirectories(queue_dir_); !st) return st;
  if (Status st = fs::makeDirectories(corrupt_dir_); !st) return st;
  std::lock_guard lock(mutex_);
  if (dir_fd_.load() < 0) {
    const int fd = ::open(queue_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Error::fromErrno("open directory " + queue_dir_.string(), errno);
    dir_fd_.store(fd);
  }
  return {};
}

std::size_t FileSpool::directorySyncs() const { return dir_syncs_.load(); }

Status FileSpool::syncQueueDirectory() {
  dir_syncs_.fetch_add(1);
  if (const int fd = dir_fd_.load(); fd >= 0) return fs::syncFd(fd, queue_dir_.string());
  return fs::syncDirectory(queue_dir_);
}

Result<std::unique_ptr<IncomingMessage>> FileSpool::create() {
  // Ids are unique by construction; the retry only covers a leftover file
  // with the same name, which O_EXCL refuses rather than overwrites.
  constexpr int kAttempts = 3;
  Error last;
  for (int i = 0; i < kAttempts; ++i) {
    std::string id = newQueueId();
    auto writer = fs::FileWriter::create(incomingPath(id));
    if (writer) {
      return std::unique_ptr<IncomingMessage>(
          std::make_unique<FileIncomingMessage>(std::move(id), std::move(writer).value()));
    }
    last = writer.error();
    if (last.sys_errno != EEXIST) break;
  }
  return last;
}

void FileSpool::commit(std::unique_ptr<IncomingMessage> msg, Envelope env, CommitCallback done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopped_) {
      pending_.push_back(PendingCommit{std::move(msg), std::move(env), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  msg.reset();  // removes the content file: nothing was acknowledged
  if (done) done(Error{"the spool is stopped"});
}

void FileSpool::committerLoop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !pending_.empty() || removals_unsynced_; });
    // Cleared before the fsync that covers them: a removal after this point
    // sets it again and gets a later fsync.
    const bool removals = std::exchange(removals_unsynced_, false);
    if (!pending_.empty()) {
      std::deque<PendingCommit> batch;
      batch.swap(pending_);
      lock.unlock();
      const bool synced = commitBatch(batch);  // its directory fsync covers the removals too
      if (removals && !synced) syncRemovals();
      lock.lock();
      continue;
    }
    if (removals) {
      lock.unlock();
      syncRemovals();
      lock.lock();
      continue;
    }
    stopped_ = true;  // stopping, and nothing left to finish
    return;
  }
}

void FileSpool::syncRemovals() {
  if (Status st = syncQueueDirectory(); !st) {
    // The files are gone; only their removal may not survive a crash, and
    // then the message is delivered once more.
    spdlog::error("spool: directory fsync after removals failed: {}", st.error().message);
  }
}

bool FileSpool::commitBatch(std::deque<PendingCommit>& batch) {
  // Callbacks run only after the files they report on are settled, and never
  // under mutex_, so a callback may commit again.
  const auto discard = [this](PendingCommit& c, bool renamed) {
    if (renamed) (void)fs::removeFile(contentPath(c.env.id));
    c.msg.reset();  // removes the file under its incoming name, if still there
  };
  const auto fail = [&discard](PendingCommit& c, const Error& error, bool renamed) {
    discard(c, renamed);
    if (c.done) c.done(error);
  };

  // Each message's trailer is appended and its file fsynced on the sync
  // threads, side by side; the rename to `<id>.mail`, the commit point,
  // follows once the file is on disk.
  struct Work {
    FileIncomingMessage* msg = nullptr;
    Status content;
    std::string trailer;
  };
  std::vector<Work> work(batch.size());
  std::vector<std::function<void()>> tasks;
  tasks.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    PendingCommit& c = batch[i];
    Work& w = work[i];
    w.msg = dynamic_cast<FileIncomingMessage*>(c.msg.get());
    if (w.msg == nullptr) {
      w.content = Error{"commit of a message that was not created by this spool"};
      continue;
    }
    if (w.msg->stickyError()) {
      w.content = *w.msg->stickyError();
      continue;
    }
    c.env.id = w.msg->id();
    c.env.size = w.msg->size();  // before the trailer is appended
    w.trailer = envelopeTrailer(c.env);
    tasks.emplace_back([&w] {
      w.content = w.msg->finish(w.trailer);
      if (!w.content) {
        spdlog::error("spool: {}: message not committed: {}", w.msg->id(), w.content.error().message);
      }
    });
  }
  if (!tasks.empty()) {
    std::latch all_done(static_cast<std::ptrdiff_t>(tasks.size()));
    // The last one on this thread, which would only wait otherwise.
    for (std::size_t t = 0; t + 1 < tasks.size(); ++t) {
      auto task = [&tasks, &all_done, t] {
        tasks[t]();
        all_done.count_down();
      };
      if (!sync_pool_.submit(task)) task();  // the pool is stopping: do it here
    }
    tasks.back()();
    all_done.count_down();
    all_done.wait();
  }

  std::vector<PendingCommit*> written;
  written.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Work& w = work[i];
    Status st = w.content;
    if (st) {
      st = fs::renameFile(w.msg->path(), contentPath(batch[i].env.id));
      if (!st) spdlog::error("spool: {}: message not renamed: {}", batch[i].env.id, st.error().message);
    }
    if (!st) {
      fail(batch[i], st.error(), false);
      continue;
    }
    // Renamed: from here the file is the message's, not the incoming one's.
    w.msg->markCommitted();
    written.push_back(&batch[i]);
  }
  if (written.empty()) return false;

  // The one directory fsync that makes every rename of the batch durable.
  if (Status st = syncQueueDirectory(); !st) {
    spdlog::error("spool: directory fsync failed, {} message(s) not committed: {}", written.size(),
                  st.error().message);
    for (auto* c : written) discard(*c, true);
    // Best effort to make the removals durable before the client hears of the
    // failure: a message it was told failed should not come back after a crash.
    (void)syncQueueDirectory();
    for (auto* c : written) {
      if (c->done) c->done(st.error());
    }
    return true;
  }
  for (auto* c : written) {
    c->msg.reset();
    if (c->done) c->done(Status{});
  }
  return true;
}

Result<Envelope> FileSpool::load(const std::string& id) {
  if (!isValidQueueId(id)) return Error{"invalid queue id '" + printable(id) + "'"};
  const stdfs::path env_path = queue_dir_ / (id + std::string(kEnvelopeExt));
  auto text = fs::readFile(env_path);
  if (!text && text.error().sys_errno != ENOENT) return text.error();
  Result<Envelope> env = text ? parse(*text) : readTrailer(contentPath(id));
  const std::string source = text ? id + std::string(kEnvelopeExt) : contentPath(id).filename().string();
  if (!env) return Error{source + ": " + env.error().message};
  if (env->id != id) return Error{source + ": holds the envelope of " + env->id};
  return env;
}

Status FileSpool::update(const Envelope& env) {
  if (!isValidQueueId(env.id)) return Error{"invalid queue id '" + printable(env.id) + "'"};
  // An envelope without content would be moved to corrupt/ at the next start;
  // refuse to recreate one for a message that is already gone.
  struct stat info {};
  if (::stat(contentPath(env.id).c_str(), &info) != 0) {
    return Error::fromErrno("update of " + env.id + ": content " + contentPath(env.id).string(), errno);
  }
  return fs::writeFileAtomic(queue_dir_ / (env.id + std::string(kEnvelopeExt)), serialize(env));
}

Status FileSpool::remove(const std::string& id) {
  if (!isValidQueueId(id)) return Error{"invalid queue id '" + printable(id) + "'"};
  // A later envelope first, if there is one: a crash between the two never
  // leaves an envelope without its message.
  if (Status st = fs::removeFile(queue_dir_ / (id + std::string(kEnvelopeExt))); !st) return st;
  if (Status st = fs::removeFile(contentPath(id)); !st) return st;
  // The committer makes the removal durable, together with others: a crash
  // before that brings the message back, to be delivered again, never lost.
  {
    std::lock_guard lock(mutex_);
    if (!stopped_) {
      removals_unsynced_ = true;
      cv_.notify_one();
      return {};
    }
  }
  return syncQueueDirectory();
}

stdfs::path FileSpool::contentPath(const std::string& id) const {
  return queue_dir_ / (id + std::string(kContentExt));
}

stdfs::path FileSpool::incomingPath(const std::string& id) const {
  return queue_dir_ / (id + std::string(kIncomingExt));
}

Result<std::vector<Envelope>> FileSpool::recover() {
  if (Status st = open(); !st) return st.error();

  std::error_code ec;
  std::vector<std::string> names;
  for (stdfs::directory_iterator it(queue_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) return Error{"list " + queue_dir_.string() + ": " + ec.message(), ec.value()};
  std::sort(names.begin(), names.end());

  bool changed_queue = false;
  bool changed_corrupt = false;
  std::set<std::string> content_stems;
  std::set<std::string> legacy_stems;
  std::set<std::string> envelope_stems;
  const auto stemOf = [](const std::string& name, std::string_view ext) {
    return name.substr(0, name.size() - ext.size());
  };
  for (const auto& name : names) {
    const stdfs::path path = queue_dir_ / name;
    if (isTemporary(name)) {
      spdlog::info("spool: removing temporary file {}", path.string());
      if (Status st = fs::removeFile(path); !st) spdlog::error("spool: {}", st.error().message);
      changed_queue = true;
    } else if (endsWith(name, kContentExt)) {
      content_stems.insert(stemOf(name, kContentExt));
    } else if (endsWith(name, kLegacyContentExt)) {
      legacy_stems.insert(stemOf(name, kLegacyContentExt));
    } else if (endsWith(name, kEnvelopeExt)) {
      envelope_stems.insert(stemOf(name, kEnvelopeExt));
    } else {
      spdlog::warn("spool: ignoring unexpected file {}", path.string());
    }
  }

  // The older layout: `<id>.msg` was committed once its `<id>.env` existed.
  // Its content moves to `<id>.mail`, where the `.env` keeps winning.
  for (const auto& stem : legacy_stems) {
    const stdfs::path legacy = queue_dir_ / (stem + std::string(kLegacyContentExt));
    if (content_stems.count(stem) != 0) {
      spdlog::warn("spool: ignoring {}: {} exists too", legacy.string(), contentPath(stem).string());
    } else if (envelope_stems.count(stem) == 0) {
      spdlog::info("spool: removing content without envelope {}", legacy.string());
      if (Status st = fs::removeFile(legacy); !st) spdlog::error("spool: {}", st.error().message);
      changed_queue = true;
    } else {
      if (Status st = fs::renameFile(legacy, contentPath(stem)); !st) {
        return Error{"cannot move queued message to the current layout: " + st.error().message};
      }
      content_stems.insert(stem);
      changed_queue = true;
    }
  }

  // Moves a message's files aside for a person to look at. A name already
  // taken in corrupt/ gets a numbered suffix rather than being overwritten.
  const auto quarantine = [&](const std::string& stem, const std::string& reason) {
    spdlog::warn("spool: moving message {} from {} to {}: {}", stem, queue_dir_.string(), corrupt_dir_.string(),
                 reason);
    for (std::string_view ext : {kEnvelopeExt, kContentExt}) {
      const auto& present = ext == kEnvelopeExt ? envelope_stems : content_stems;
      if (present.count(stem) == 0) continue;
      const stdfs::path from = queue_dir_ / (stem + std::string(ext));
      stdfs::path to = corrupt_dir_ / from.filename();
      for (int n = 1; stdfs::exists(to, ec) && n < 1000; ++n) {
        to = corrupt_dir_ / (from.filename().string() + "." + std::to_string(n));
      }
      if (Status st = fs::renameFile(from, to); !st) {
        spdlog::error("spool: cannot quarantine: {}", st.error().message);
      }
    }
    content_stems.erase(stem);
    changed_queue = true;
    changed_corrupt = true;
  };

  std::vector<Envelope> valid;
  // A message with a later envelope in `<id>.env`.
  for (const auto& stem : envelope_stems) {
    const stdfs::path path = queue_dir_ / (stem + std::string(kEnvelopeExt));
    if (!isValidQueueId(stem)) {
      quarantine(stem, "file name is not a queue id");
      continue;
    }
    auto text = fs::readFile(path);
    if (!text) {
      quarantine(stem, text.error().message);
      continue;
    }
    auto env = parse(*text);
    if (!env) {
      quarantine(stem, path.filename().string() + ": " + env.error().message);
      continue;
    }
    if (env->id != stem) {
      quarantine(stem, path.filename().string() + " holds the envelope of " + env->id);
      continue;
    }
    if (content_stems.count(stem) == 0) {
      quarantine(stem, "content file " + contentPath(stem).string() + " is missing");
      continue;
    }
    const std::uint64_t on_disk = stdfs::file_size(contentPath(stem), ec);
    if (ec || on_disk < env->size) {
      quarantine(stem, "content file " + contentPath(stem).string() + " holds " +
                           (ec ? ec.message() : std::to_string(on_disk) + " bytes") + ", the envelope says " +
                           std::to_string(env->size));
      continue;
    }
    content_stems.erase(stem);
    valid.push_back(std::move(env).value());
  }
  // A message as committed: its envelope is the trailer.
  const std::set<std::string> trailer_stems = content_stems;  // quarantine() erases from content_stems
  for (const auto& stem : trailer_stems) {
    if (!isValidQueueId(stem)) {
      quarantine(stem, "file name is not a queue id");
      continue;
    }
    auto env = readTrailer(contentPath(stem));
    if (!env) {
      quarantine(stem, contentPath(stem).filename().string() + ": " + env.error().message);
      continue;
    }
    if (env->id != stem) {
      quarantine(stem, contentPath(stem).filename().string() + " holds the envelope of " + env->id);
      continue;
    }
    valid.push_back(std::move(env).value());
  }

  if (changed_queue) {
    if (Status st = fs::syncDirectory(queue_dir_); !st) spdlog::error("spool: {}", st.error().message);
  }
  if (changed_corrupt) {
    if (Status st = fs::syncDirectory(corrupt_dir_); !st) spdlog::error("spool: {}", st.error().message);
  }
  std::sort(valid.begin(), valid.end(), [](const Envelope& a, const Envelope& b) { return a.id < b.id; });
  spdlog::info("spool: recovered {} message(s) from {}", valid.size(), queue_dir_.string());
  return valid;
}

}  // namespace mb::queue
