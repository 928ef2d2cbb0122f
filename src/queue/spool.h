#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "queue/envelope.h"

namespace mb::queue {

/// A message being received: its content file is open in the spool, not yet
/// visible to delivery. Destroying it without Spool::commit() removes the
/// partial file, so an aborted or failed DATA leaves nothing behind.
/// Not thread-safe; one session owns it.
class IncomingMessage {
 public:
  virtual ~IncomingMessage() = default;
  virtual const std::string& id() const = 0;
  /// Appends content. A write error (ENOSPC, EIO) is sticky: later writes
  /// fail too, and commit() must not be attempted.
  virtual Status write(std::string_view bytes) = 0;
  virtual std::uint64_t size() const = 0;
};

/// Spool: durable storage of queued messages. A message is one file: its
/// content, then its envelope as committed; a later state of the envelope
/// may be kept beside it. Readers of the content read the envelope's `size`
/// bytes from the start of contentPath(), never to the end of the file.
///
/// Threading: create()/IncomingMessage are used from session threads;
/// commit() may be called from any thread and completes on the spool's own
/// committer thread; load/update/remove are thread-safe for different ids.
class Spool {
 public:
  virtual ~Spool() = default;

  /// Opens a new content file with a fresh queue id.
  virtual Result<std::unique_ptr<IncomingMessage>> create() = 0;

  /// Makes the message durable, in this order: envelope appended to the
  /// content, the file fsynced, renamed into place, directory fsynced. Then calls
  /// done(ok) — only then may the client be told 250. On failure nothing of
  /// the message remains and done gets the error. `env.id` and `env.size` are
  /// filled in from the message. Commits that arrive together share the
  /// directory fsync.
  using CommitCallback = std::function<void(Status)>;
  virtual void commit(std::unique_ptr<IncomingMessage> msg, Envelope env, CommitCallback done) = 0;

  /// Reads and validates an envelope.
  virtual Result<Envelope> load(const std::string& id) = 0;

  /// Durably replaces the envelope (write new, fsync, rename, fsync dir), e.g.
  /// after some recipients were delivered.
  virtual Status update(const Envelope& env) = 0;

  /// Removes a message (a later envelope first, then the message). The removal may
  /// become durable a moment later, shared with others: after a crash in
  /// between the message is back and is delivered again, never lost.
  virtual Status remove(const std::string& id) = 0;

  /// Where the content of a committed message can be read: its first
  /// `Envelope::size` bytes.
  virtual std::filesystem::path contentPath(const std::string& id) const = 0;

  /// At start-up: removes temporary files and content without an envelope,
  /// moves messages whose envelope fails validation to the corrupt directory
  /// with a log line, and returns every valid queued envelope.
  virtual Result<std::vector<Envelope>> recover() = 0;
};

}  // namespace mb::queue
