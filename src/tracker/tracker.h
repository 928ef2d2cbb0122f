#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "tracker/privacy.h"

struct sqlite3;

namespace mb::tracker {

/// What became of a message or of one of its recipients.
using WallTime = Clock::WallTime;

enum class Status { Queued, Delivered, Deferred, Bounced, Rejected };

const char* statusName(Status s);
std::optional<Status> statusFromName(std::string_view name);

/// A message accepted and queued (after the final 250).
struct Accepted {
  std::string id;                       // queue id
  WallTime time;
  std::string client_ip;
  std::string auth_user;                // empty: not authenticated
  std::string listener;
  std::string sender;                   // MAIL FROM; empty: the null sender
  std::vector<std::string> recipients;
  std::string header_from;
  std::string subject;
  std::string message_id;
  std::uint64_t size = 0;
  // The start of the header section as received: when given, the writer
  // fills header_from, subject and message_id from it (Options::header_parser)
  // off the acceptance path.
  std::string header;
};

/// One recipient's outcome of one delivery attempt.
struct Outcome {
  std::string id;
  std::size_t index = 0;                // the recipient's place in Accepted::recipients
  std::string recipient;
  int attempt = 0;                      // the message's attempt number (1 for the first)
  Status status = Status::Deferred;     // Delivered, Deferred or Bounced
  WallTime time;
  std::string provider;
  std::string remote_id;                // the provider's request or message id
  int code = 0;                         // SMTP code reported (250, 451, 550 ...)
  std::string enhanced;
  std::string error;                    // the explanation, for administrators
};

/// An attempt refused before anything was queued (access, size, AUTH,
/// sender rules); recorded only with tracker.log_rejected.
struct Rejected {
  WallTime time;
  std::string client_ip;
  std::string auth_user;
  std::string listener;
  std::string sender;
  std::vector<std::string> recipients;
  int code = 0;
  std::string enhanced;
  std::string reason;                   // "IP not allowed", "too big", "auth failed" ...
};

/// A message as the tracker keeps it.
struct MessageRow {
  std::string id;
  WallTime arrived;
  std::string client_ip, auth_user, listener, sender, header_from, subject, message_id;
  std::uint64_t size = 0;
  std::string provider;
  Status status = Status::Queued;
  int attempts = 0;                     // attempts that reported on this message
  std::optional<WallTime> delivered_at; // when the last recipient was delivered
  std::string remote_id;
  int last_code = 0;
  std::string last_enhanced, last_error;
  std::vector<std::string> recipients;
};

/// One recipient of a message: its latest state.
struct RecipientRow {
  std::string address;
  Status status = Status::Queued;
  int attempts = 0;
  int code = 0;
  std::string enhanced, error, provider, remote_id;
  WallTime updated;
};

/// A message with its recipients (in envelope order) and every outcome
/// reported, oldest first (Outcome::id is the message's id).
struct History {
  MessageRow message;
  std::vector<RecipientRow> recipients;
  std::vector<Outcome> events;
};

/// A refused attempt as kept.
struct RejectedRow {
  WallTime time;
  std::string client_ip, auth_user, listener, sender;
  std::vector<std::string> recipients;
  int code = 0;
  std::string enhanced, reason;
};

/// What to look for. Text fields match case-insensitively as substrings
/// (of the stored, possibly masked, text); every given field must match.
struct Query {
  std::optional<WallTime> since, until;  // arrival time, until exclusive
  std::string sender;
  std::string recipient;
  std::string subject;
  std::optional<Status> status;
  std::string text;                     // any of sender, recipients, From, subject, Message-ID, id, error
  std::size_t limit = 50;               // at most kMaxLimit
  std::size_t offset = 0;

  static constexpr std::size_t kMaxLimit = 1000;
};

struct Page {
  std::vector<MessageRow> messages;     // newest first
  std::size_t total = 0;                // matches in all
};

/// The tracker's own health, for /healthz and the statistics.
struct Health {
  bool writable = true;                 // the last batch was written
  std::string last_error;               // why not
  std::uint64_t dropped = 0;            // events lost to a full queue or a failed batch
  std::uint64_t written = 0;            // events written since start
};

/// Tracker: the mail log (`<state_dir>/tracker.db`, SQLite in WAL mode):
/// one row per message, one per recipient with its latest state, one per
/// reported outcome, and one per refused attempt — metadata only, never a
/// body or an attachment, with addresses and subjects stored as Privacy
/// says.
///
/// It can never slow down or block acceptance: accepted(), outcome() and
/// rejected() only queue the event (at most max_pending events and
/// max_pending_bytes; beyond, events are dropped and counted), and a writer
/// thread writes what has queued up in one transaction. The writer runs at a
/// lower CPU priority (nice +10), so that on a busy machine the log lags
/// behind the mail instead of slowing it. A database that cannot be written loses those events,
/// logs why and says so in health(); mail flows on. The writer also purges
/// rows older than retention_days, at start and then daily, in batches of
/// kPurgeBatch rows so that it never holds the database for long.
///
/// Neighbours: server/ reports accepted and refused mail, the queue reports
/// outcomes (through app/), admin/ and the CLI read with search(),
/// history() and rejections().
///
/// Threading: every method may be called from any thread. Reads use their
/// own connection and do not wait for the writer (WAL).
class Tracker {
 public:
  /// Fills an Accepted's header_from, subject and message_id from its
  /// header (app/ passes mime::summarizeHeader; the tracker parses no MIME).
  using HeaderParser = std::function<void(std::string_view header, Accepted& event)>;

  struct Options {
    std::filesystem::path database;
    HeaderParser header_parser;
    config::TrackerConfig config;
    std::size_t max_pending = 100'000;
    std::size_t max_pending_bytes = 64 * 1024 * 1024;  // headers mostly: each may be up to 64 KB
    std::chrono::milliseconds batch_delay{100};  // gathers events before writing
  };
  static constexpr std::size_t kPurgeBatch = 500;

  /// Opens (creating when needed) the database. Fails when it cannot be
  /// opened or its schema is not this version's.
  static Result<std::unique_ptr<Tracker>> open(Options options, const Clock& clock);
  ~Tracker();  // writes what is queued, then stops

  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  void accepted(Accepted event);
  void outcome(Outcome event);
  void rejected(Rejected event);

  /// Waits until every event queued before the call has been written (or
  /// dropped). For tests and for an orderly shutdown.
  void flush();

  Result<Page> search(const Query& query) const;
  /// nullopt when no message has that id.
  Result<std::optional<History>> history(const std::string& id) const;
  Result<std::vector<RejectedRow>> rejections(std::size_t limit) const;

  /// One purge pass now (every batch until nothing is older than the
  /// retention); the number of rows deleted. The writer runs it on its own
  /// at start and daily.
  Result<std::size_t> purge();

  Health health() const;

 private:
  using Event = std::variant<Accepted, Outcome, Rejected>;
  struct WriterStatements;
  Tracker(Options options, const Clock& clock, sqlite3* writer, sqlite3* reader);

  static std::size_t eventBytes(const Event& event);
  void enqueue(Event event);
  void run();
  mb::Status writeBatch(std::deque<Event>& batch);
  Result<std::size_t> purgeWith(sqlite3* db);

  const Options options_;
  const Privacy privacy_;
  const Clock& clock_;
  sqlite3* writer_;
  sqlite3* reader_;
  mutable std::mutex reader_mutex_;
  std::mutex writer_db_mutex_;          // the writer connection: the thread, and purge()
  std::unique_ptr<WriterStatements> statements_;  // under writer_db_mutex_; prepared at the first batch

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable written_;
  std::deque<Event> pending_;
  std::size_t pending_bytes_ = 0;       // eventBytes() of pending_
  std::uint64_t enqueued_ = 0;          // events ever queued (or dropped at the door)
  std::uint64_t done_ = 0;              // of which written or dropped
  Health health_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace mb::tracker
