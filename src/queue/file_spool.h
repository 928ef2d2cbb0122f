#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "base/worker_pool.h"
#include "queue/spool.h"

namespace mb::queue {

/// FileSpool: the Spool on a local file system. Files live in
/// `<state_dir>/queue/`; invalid ones are moved to `<state_dir>/corrupt/`.
/// A message is one file, `<id>.mail`: the content, then the envelope as it
/// was at commit (a trailer); `<id>.env` holds later states of the envelope.
/// A message is received into `<id>.mail.tmp`. A committer thread takes
/// every commit that is waiting; for each message, on one of kSyncThreads
/// threads side by side, it appends the trailer and fsyncs the file, then
/// renames it to `<id>.mail`; then it fsyncs the directory once for the batch
/// and runs the callbacks (on the committer). Side by side, because the file
/// system merges concurrent fsyncs, where one after the other each waits for
/// its own. remove() unlinks at once and leaves the directory fsync to the
/// committer, which makes every removal since its last one durable with one
/// fsync (the fsync of a commit batch counts).
class FileSpool final : public Spool {
 public:
  explicit FileSpool(std::filesystem::path state_dir);
  ~FileSpool() override;   // stop()

  /// Creates the directories; call once before use.
  Status open();

  /// Finishes the commits already handed over (their callbacks run) and
  /// stops the committer thread; a commit after that fails at once. For an
  /// orderly shutdown, while whatever the callbacks reach is still alive.
  /// Idempotent.
  void stop();

  // Spool
  Result<std::unique_ptr<IncomingMessage>> create() override;
  void commit(std::unique_ptr<IncomingMessage> msg, Envelope env, CommitCallback done) override;
  Result<Envelope> load(const std::string& id) override;
  Status update(const Envelope& env) override;
  Status remove(const std::string& id) override;
  std::filesystem::path contentPath(const std::string& id) const override;
  Result<std::vector<Envelope>> recover() override;

  const std::filesystem::path& queueDir() const { return queue_dir_; }
  /// Where a message is received until its commit renames it (tests).
  std::filesystem::path incomingPath(const std::string& id) const;
  const std::filesystem::path& corruptDir() const { return corrupt_dir_; }

  /// Directory fsyncs so far (tests: removals share them).
  std::size_t directorySyncs() const;

 private:
  struct PendingCommit;
  void committerLoop();
  /// False when no message of the batch reached the directory fsync.
  bool commitBatch(std::deque<PendingCommit>& batch);
  Status syncQueueDirectory();
  void syncRemovals();  // logs a failure

  std::filesystem::path queue_dir_;
  std::filesystem::path corrupt_dir_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<PendingCommit> pending_;
  static constexpr std::size_t kSyncThreads = 32;  // they wait on the disk, not the CPU
  WorkerPool sync_pool_{kSyncThreads, WorkerPool::kUnbounded, "mb-spool-sync"};
  bool stopping_ = false;
  bool stopped_ = false;  // the committer has exited
  bool removals_unsynced_ = false;  // a remove() since the last directory fsync began
  std::atomic<int> dir_fd_{-1};     // the queue directory, for its fsyncs (set by open())
  std::atomic<std::size_t> dir_syncs_{0};
  std::thread committer_;
};

}  // namespace mb::queue
