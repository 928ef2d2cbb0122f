#include "tracker/tracker.h"

#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "base/worker_pool.h"

namespace mb::tracker {
namespace {

constexpr int kSchemaVersion = 1;
constexpr auto kPurgeInterval = std::chrono::hours(24);
constexpr int kNiceIncrement = 10;  // a tenth of the CPU share of a normal thread when contended

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
  id TEXT PRIMARY KEY, arrived INTEGER NOT NULL, client_ip TEXT NOT NULL DEFAULT '',
  auth_user TEXT NOT NULL DEFAULT '', listener TEXT NOT NULL DEFAULT '', sender TEXT NOT NULL DEFAULT '',
  header_from TEXT NOT NULL DEFAULT '', subject TEXT NOT NULL DEFAULT '', message_id TEXT NOT NULL DEFAULT '',
  size INTEGER NOT NULL DEFAULT 0, provider TEXT NOT NULL DEFAULT '', status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, delivered_at INTEGER, remote_id TEXT NOT NULL DEFAULT '',
  last_code INTEGER NOT NULL DEFAULT 0, last_enhanced TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS messages_arrived ON messages(arrived);
CREATE TABLE IF NOT EXISTS recipients(
  message TEXT NOT NULL, idx INTEGER NOT NULL, address TEXT NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, code INTEGER NOT NULL DEFAULT 0, enhanced TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '', provider TEXT NOT NULL DEFAULT '', remote_id TEXT NOT NULL DEFAULT '',
  updated INTEGER NOT NULL, PRIMARY KEY(message, idx));
CREATE TABLE IF NOT EXISTS events(
  message TEXT NOT NULL, time INTEGER NOT NULL, idx INTEGER NOT NULL, recipient TEXT NOT NULL,
  attempt INTEGER NOT NULL, status TEXT NOT NULL, code INTEGER NOT NULL, enhanced TEXT NOT NULL,
  error TEXT NOT NULL, provider TEXT NOT NULL, remote_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_message ON events(message);
CREATE TABLE IF NOT EXISTS rejections(
  time INTEGER NOT NULL, client_ip TEXT NOT NULL, auth_user TEXT NOT NULL, listener TEXT NOT NULL,
  sender TEXT NOT NULL, recipients TEXT NOT NULL, code INTEGER NOT NULL, enhanced TEXT NOT NULL,
  reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rejections_time ON rejections(time);
)sql";

std::int64_t toMillis(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

WallTime fromMillis(std::int64_t ms) { return WallTime(std::chrono::milliseconds(ms)); }

std::string sqliteError(sqlite3* db, const std::string& what) {
  return what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory");
}

// Recipients are kept in one column of a rejection as lines.
std::string joinLines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += '\n';
    out += s;
  }
  return out;
}

std::vector<std::string> splitLines(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    const std::size_t nl = s.find('\n', start);
    const std::size_t end = nl == std::string::npos ? s.size() : nl;
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// A prepared statement that finalises itself. Binding counts from 1, as
// SQLite does; column() from 0.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) error_ = sqliteError(db, "prepare");
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  Statement& bind(int i, const std::string& v) {
    if (ok()) sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  /// Binds without a copy, for the writer's hot path: `v` must stay alive
  /// and unchanged until the statement has run. Temporaries are refused.
  Statement& bindRef(int i, const std::string& v) {
    if (ok()) sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Statement& bindRef(int i, std::string&& v) = delete;
  /// Binds text of static storage (a status name) without a copy.
  Statement& bindName(int i, std::string_view name) {
    if (ok()) sqlite3_bind_text(stmt_, i, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    if (ok()) sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& bindNull(int i) {
    if (ok()) sqlite3_bind_null(stmt_, i);
    return *this;
  }

  /// SQLITE_ROW, SQLITE_DONE, or an error (kept in error()).
  int step() {
    if (!ok()) return SQLITE_ERROR;
    const int rc = sqlite3_step(stmt_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) error_ = sqliteError(db_, "step");
    return rc;
  }
  /// Ready to be stepped again. Bindings stay: every use binds all of
  /// its parameters anew.
  void reset() { sqlite3_reset(stmt_); }
  /// Runs to completion; false on error.
  bool run() {
    const int rc = step();
    reset();
    return rc == SQLITE_DONE || rc == SQLITE_ROW;
  }

  std::string text(int c) const {
    const auto* p = sqlite3_column_text(stmt_, c);
    return p != nullptr ? std::string(reinterpret_cast<const char*>(p),
                                      static_cast<std::size_t>(sqlite3_column_bytes(stmt_, c)))
                        : std::string();
  }
  std::int64_t integer(int c) const { return sqlite3_column_int64(stmt_, c); }
  bool null(int c) const { return sqlite3_column_type(stmt_, c) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string error_;
};

mb::Status exec(sqlite3* db, const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message != nullptr ? message : "unknown error";
    sqlite3_free(message);
    return Error{text};
  }
  return {};
}

Result<sqlite3*> openDatabase(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    std::string why = sqliteError(db, "cannot open " + path.string());
    sqlite3_close_v2(db);
    return Error{why};
  }
  // A reader meeting the writer's commit waits a little instead of failing.
  sqlite3_busy_timeout(db, 2000);
  return db;
}

// Escapes LIKE's wildcards in `text` (with '\' as the escape) and wraps it
// in '%' for a substring match.
std::string likePattern(const std::string& text) {
  std::string out = "%";
  for (char c : text) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  out += '%';
  return out;
}

// The message's status from its recipients': anything still to do decides
// (deferred over queued), then any bounce, else delivered.
Status messageStatus(const std::vector<Status>& recipients) {
  bool pending = false, deferred = false, bounced = false;
  for (Status s : recipients) {
    pending |= s == Status::Queued || s == Status::Deferred;
    deferred |= s == Status::Deferred;
    bounced |= s == Status::Bounced;
  }
  if (deferred) return Status::Deferred;
  if (pending) return Status::Queued;
  if (bounced) return Status::Bounced;
  return recipients.empty() ? Status::Queued : Status::Delivered;
}

constexpr const char* kMessageColumns =
    "id, arrived, client_ip, auth_user, listener, sender, header_from, subject, message_id, size, provider, "
    "status, attempts, delivered_at, remote_id, last_code, last_enhanced, last_error";

MessageRow readMessage(const Statement& st) {
  MessageRow m;
  m.id = st.text(0);
  m.arrived = fromMillis(st.integer(1));
  m.client_ip = st.text(2);
  m.auth_user = st.text(3);
  m.listener = st.text(4);
  m.sender = st.text(5);
  m.header_from = st.text(6);
  m.subject = st.text(7);
  m.message_id = st.text(8);
  m.size = static_cast<std::uint64_t>(st.integer(9));
  m.provider = st.text(10);
  m.status = statusFromName(st.text(11)).value_or(Status::Queued);
  m.attempts = static_cast<int>(st.integer(12));
  if (!st.null(13)) m.delivered_at = fromMillis(st.integer(13));
  m.remote_id = st.text(14);
  m.last_code = static_cast<int>(st.integer(15));
  m.last_enhanced = st.text(16);
  m.last_error = st.text(17);
  return m;
}

Result<std::vector<std::string>> recipientsOf(sqlite3* db, const std::string& id) {
  Statement st(db, "SELECT address FROM recipients WHERE message = ?1 ORDER BY idx");
  st.bind(1, id);
  std::vector<std::string> out;
  int rc = 0;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(st.text(0));
  if (rc != SQLITE_DONE) return Error{st.error()};
  return out;
}

}  // namespace

const char* statusName(Status s) {
  switch (s) {
    case Status::Queued:
      return "queued";
    case Status::Delivered:
      return "delivered";
    case Status::Deferred:
      return "deferred";
    case Status::Bounced:
      return "bounced";
    case Status::Rejected:
      return "rejected";
  }
  return "queued";
}

std::optional<Status> statusFromName(std::string_view name) {
  for (Status s : {Status::Queued, Status::Delivered, Status::Deferred, Status::Bounced, Status::Rejected}) {
    if (name == statusName(s)) return s;
  }
  return std::nullopt;
}

// The writer's statements, prepared once and reset after every use:
// preparing them for every batch cost more than running them.
struct Tracker::WriterStatements {
  explicit WriterStatements(sqlite3* db)
      // An outcome can be written before its acceptance (they come from
      // different threads): it makes a bare row, which the acceptance fills in.
      : upsert_message(db,
                       "INSERT INTO messages(id, arrived, client_ip, auth_user, listener, sender, header_from, "
                       "subject, message_id, size, status) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                       "'queued') ON CONFLICT(id) DO UPDATE SET arrived = excluded.arrived, client_ip = "
                       "excluded.client_ip, auth_user = excluded.auth_user, listener = excluded.listener, sender "
                       "= excluded.sender, header_from = excluded.header_from, subject = excluded.subject, "
                       "message_id = excluded.message_id, size = excluded.size"),
        insert_bare_message(db, "INSERT OR IGNORE INTO messages(id, arrived, status) VALUES(?1, ?2, 'queued')"),
        insert_recipient(db,
                         "INSERT OR IGNORE INTO recipients(message, idx, address, status, updated) "
                         "VALUES(?1, ?2, ?3, 'queued', ?4)"),
        upsert_recipient(
            db,
            "INSERT INTO recipients(message, idx, address, status, attempts, code, enhanced, error, provider, "
            "remote_id, updated) VALUES(?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8, ?9, ?10) "
            "ON CONFLICT(message, idx) DO UPDATE SET status = excluded.status, attempts = attempts + 1, "
            "code = excluded.code, enhanced = excluded.enhanced, error = excluded.error, provider = "
            "excluded.provider, remote_id = CASE WHEN excluded.remote_id = '' THEN remote_id ELSE "
            "excluded.remote_id END, updated = excluded.updated"),
        insert_event(db,
                     "INSERT INTO events(message, time, idx, recipient, attempt, status, code, enhanced, error, "
                     "provider, remote_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        statuses(db, "SELECT status FROM recipients WHERE message = ?1"),
        update_message(
            db,
            "UPDATE messages SET status = ?2, attempts = MAX(attempts, ?3), provider = ?4, "
            "remote_id = CASE WHEN ?5 = '' THEN remote_id ELSE ?5 END, last_code = ?6, last_enhanced = ?7, "
            "last_error = ?8, delivered_at = CASE WHEN ?2 = 'delivered' THEN ?9 ELSE delivered_at END WHERE id = ?1"),
        insert_rejection(db,
                         "INSERT INTO rejections(time, client_ip, auth_user, listener, sender, recipients, code, "
                         "enhanced, reason) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        begin(db, "BEGIN IMMEDIATE"),
        commit(db, "COMMIT") {}

  /// The first preparation error, or empty.
  std::string error() const {
    for (const Statement* s : {&upsert_message, &insert_bare_message, &insert_recipient, &upsert_recipient,
                               &insert_event, &statuses, &update_message, &insert_rejection, &begin, &commit}) {
      if (!s->ok()) return s->error();
    }
    return {};
  }

  Statement upsert_message, insert_bare_message, insert_recipient, upsert_recipient, insert_event, statuses,
      update_message, insert_rejection, begin, commit;
};

Result<std::unique_ptr<Tracker>> Tracker::open(Options options, const Clock& clock) {
  auto writer = openDatabase(options.database);
  if (!writer) return writer.error();
  const auto fail = [&](const std::string& what, sqlite3* reader = nullptr) -> Result<std::unique_ptr<Tracker>> {
    sqlite3_close_v2(*writer);
    sqlite3_close_v2(reader);
    return Error{"tracker " + options.database.string() + ": " + what};
  };
  // WAL: readers never wait for the writer; NORMAL: a crash may lose the
  // last batches of the log, never the database (the mail is safe in the
  // spool either way).
  if (auto st = exec(*writer, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"); !st) {
    return fail(st.error().message);
  }
  if (auto st = exec(*writer, kSchema); !st) return fail(st.error().message);
  {
    Statement get(*writer, "SELECT value FROM meta WHERE key = 'schema'");
    const int rc = get.step();
    if (rc == SQLITE_ROW) {
      if (get.text(0) != std::to_string(kSchemaVersion)) {
        return fail("schema version " + get.text(0) + ", this relay knows " + std::to_string(kSchemaVersion));
      }
    } else if (rc == SQLITE_DONE) {
      Statement put(*writer, "INSERT INTO meta(key, value) VALUES('schema', ?1)");
      put.bind(1, std::to_string(kSchemaVersion));
      if (!put.run()) return fail(put.error());
    } else {
      return fail(get.error());
    }
  }
  auto reader = openDatabase(options.database);
  if (!reader) return fail(reader.error().message);
  return std::unique_ptr<Tracker>(new Tracker(std::move(options), clock, *writer, *reader));
}

Tracker::Tracker(Options options, const Clock& clock, sqlite3* writer, sqlite3* reader)
    : options_(std::move(options)), privacy_(options_.config), clock_(clock), writer_(writer), reader_(reader) {
  thread_ = std::thread([this] {
    nameThisThread("mb-tracker");
    run();
  });
}

Tracker::~Tracker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  statements_.reset();  // finalised before their connection closes
  sqlite3_close_v2(reader_);
  sqlite3_close_v2(writer_);
}

// What an event holds beyond its own size: its strings, the header most.
std::size_t Tracker::eventBytes(const Event& event) {
  std::size_t n = sizeof(Event);
  if (const auto* a = std::get_if<Accepted>(&event)) {
    n += a->header.size() + a->subject.size() + a->header_from.size();
    for (const auto& r : a->recipients) n += r.size() + sizeof(std::string);
  } else if (const auto* o = std::get_if<Outcome>(&event)) {
    n += o->error.size() + o->recipient.size();
  } else if (const auto* r = std::get_if<Rejected>(&event)) {
    n += r->reason.size();
    for (const auto& rcpt : r->recipients) n += rcpt.size() + sizeof(std::string);
  }
  return n;
}

void Tracker::enqueue(Event event) {
  {
    std::lock_guard lock(mutex_);
    ++enqueued_;
    const std::size_t bytes = eventBytes(event);
    if (pending_.size() >= options_.max_pending || pending_bytes_ + bytes > options_.max_pending_bytes ||
        stopping_) {
      ++done_;
      ++health_.dropped;
      return;
    }
    pending_bytes_ += bytes;
    pending_.push_back(std::move(event));
    // Only the first event of a batch wakes the writer. Later ones find it
    // gathering (batch_delay, which waits for nothing but stopping) or
    // writing, and are taken with the batch or the next one; waking it for
    // each would cost two context switches per message for nothing.
    if (pending_.size() > 1) return;
  }
  wake_.notify_one();
}

void Tracker::accepted(Accepted event) { enqueue(std::move(event)); }
void Tracker::outcome(Outcome event) { enqueue(std::move(event)); }

void Tracker::rejected(Rejected event) {
  if (options_.config.log_rejected) enqueue(std::move(event));
}

void Tracker::flush() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = enqueued_;
  wake_.notify_one();
  written_.wait(lock, [&] { return done_ >= target; });
}

Health Tracker::health() const {
  std::lock_guard lock(mutex_);
  return health_;
}

void Tracker::run() {
  // The mail log is background work: where mail and the log compete for
  // the CPU, mail goes first and the log catches up after the burst.
  // Linux gives each thread its own nice value.
  errno = 0;
  const int nice_now = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  if (errno == 0 && ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), std::min(nice_now + kNiceIncrement, 19)) != 0) {
    spdlog::debug("tracker: cannot lower the writer's priority: {}", std::strerror(errno));
  }
  auto next_purge = std::chrono::steady_clock::now();  // at start, then daily
  std::unique_lock lock(mutex_);
  for (;;) {
    if (std::chrono::steady_clock::now() >= next_purge) {
      lock.unlock();
      if (auto purged = purge(); !purged) {
        spdlog::warn("tracker: purge failed: {}", purged.error().message);
      } else if (*purged > 0) {
        spdlog::info("tracker: purged {} rows older than {} days", *purged, options_.config.retention_days);
      }
      next_purge = std::chrono::steady_clock::now() + kPurgeInterval;
      lock.lock();
    }
    wake_.wait_until(lock, next_purge, [&] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) {
      if (stopping_) return;
      continue;
    }
    if (!stopping_ && options_.batch_delay.count() > 0) {
      // Let a burst gather into one transaction.
      wake_.wait_for(lock, options_.batch_delay, [&] { return stopping_; });
    }
    // Swapped, not moved event by event: the spool's committer waits on
    // this lock to enqueue, and this thread runs at a low priority.
    std::deque<Event> batch;
    batch.swap(pending_);
    pending_bytes_ = 0;
    lock.unlock();
    const mb::Status st = writeBatch(batch);
    if (!st) spdlog::error("tracker: {} events not recorded: {}", batch.size(), st.error().message);
    lock.lock();
    done_ += batch.size();
    if (st) {
      health_.written += batch.size();
      if (!health_.writable) spdlog::info("tracker: the database is writable again");
      health_.writable = true;
      health_.last_error.clear();
    } else {
      health_.dropped += batch.size();
      health_.writable = false;
      health_.last_error = st.error().message;
    }
    written_.notify_all();
  }
}

mb::Status Tracker::writeBatch(std::deque<Event>& batch) {
  std::lock_guard db_lock(writer_db_mutex_);
  sqlite3* db = writer_;
  if (!statements_) {
    auto prepared = std::make_unique<WriterStatements>(db);
    // Prepared again next batch: the database may be back by then.
    if (std::string why = prepared->error(); !why.empty()) return Error{why};
    statements_ = std::move(prepared);
  }
  WriterStatements& w = *statements_;
  if (!w.begin.run()) {
    Error e{w.begin.error()};
    statements_.reset();  // a statement that failed keeps its error
    return e;
  }
  auto& upsert_message = w.upsert_message;
  auto& insert_bare_message = w.insert_bare_message;
  auto& insert_recipient = w.insert_recipient;
  auto& upsert_recipient = w.upsert_recipient;
  auto& insert_event = w.insert_event;
  auto& statuses = w.statuses;
  auto& update_message = w.update_message;
  auto& insert_rejection = w.insert_rejection;

  std::string failure;
  const auto check = [&failure](Statement& s) {
    if (!s.run() && failure.empty()) failure = s.error();
  };
  for (Event& event : batch) {
    // Text is bound by reference (no copy per column): every string bound
    // below lives until its statement has run.
    if (auto* a = std::get_if<Accepted>(&event)) {
      if (!a->header.empty() && options_.header_parser) options_.header_parser(a->header, *a);
      const std::int64_t time = toMillis(a->time);
      const std::string sender = privacy_.address(a->sender);
      const std::string header_from = privacy_.address(a->header_from);
      const std::string subject = privacy_.subject(a->subject);
      upsert_message.bindRef(1, a->id).bind(2, time).bindRef(3, a->client_ip).bindRef(4, a->auth_user);
      upsert_message.bindRef(5, a->listener).bindRef(6, sender).bindRef(7, header_from).bindRef(8, subject);
      upsert_message.bindRef(9, a->message_id).bind(10, static_cast<std::int64_t>(a->size));
      check(upsert_message);
      for (std::size_t i = 0; i < a->recipients.size(); ++i) {
        const std::string address = privacy_.address(a->recipients[i]);
        insert_recipient.bindRef(1, a->id).bind(2, static_cast<std::int64_t>(i)).bindRef(3, address).bind(4, time);
        check(insert_recipient);
      }
    } else if (auto* o = std::get_if<Outcome>(&event)) {
      const std::int64_t time = toMillis(o->time);
      const std::string address = privacy_.address(o->recipient);
      const std::string_view status = statusName(o->status);
      const auto index = static_cast<std::int64_t>(o->index);
      upsert_recipient.bindRef(1, o->id).bind(2, index).bindRef(3, address).bindName(4, status);
      upsert_recipient.bind(5, std::int64_t{o->code}).bindRef(6, o->enhanced).bindRef(7, o->error);
      upsert_recipient.bindRef(8, o->provider).bindRef(9, o->remote_id).bind(10, time);
      check(upsert_recipient);
      insert_event.bindRef(1, o->id).bind(2, time).bind(3, index).bindRef(4, address);
      insert_event.bind(5, std::int64_t{o->attempt}).bindName(6, status).bind(7, std::int64_t{o->code});
      insert_event.bindRef(8, o->enhanced).bindRef(9, o->error).bindRef(10, o->provider).bindRef(11, o->remote_id);
      check(insert_event);
      std::vector<Status> all;
      statuses.bindRef(1, o->id);
      while (statuses.step() == SQLITE_ROW) all.push_back(statusFromName(statuses.text(0)).value_or(Status::Queued));
      if (!statuses.ok() && failure.empty()) failure = statuses.error();
      statuses.reset();
      update_message.bindRef(1, o->id).bindName(2, statusName(messageStatus(all)));
      update_message.bind(3, std::int64_t{o->attempt}).bindRef(4, o->provider).bindRef(5, o->remote_id);
      update_message.bind(6, std::int64_t{o->code}).bindRef(7, o->enhanced).bindRef(8, o->error).bind(9, time);
      check(update_message);
      if (failure.empty() && sqlite3_changes(db) == 0) {
        // An outcome for a message accepted before the tracker was on, or
        // whose acceptance is still on its way: a bare row, which the
        // acceptance fills in. Looked for only when the update found no
        // row, which saves a statement for every other outcome.
        insert_bare_message.bindRef(1, o->id).bind(2, time);
        check(insert_bare_message);
        check(update_message);  // its bindings stay
      }
    } else if (auto* r = std::get_if<Rejected>(&event)) {
      std::vector<std::string> recipients;
      for (const auto& rcpt : r->recipients) recipients.push_back(privacy_.address(rcpt));
      const std::string sender = privacy_.address(r->sender);
      const std::string joined = joinLines(recipients);
      insert_rejection.bind(1, toMillis(r->time)).bindRef(2, r->client_ip).bindRef(3, r->auth_user);
      insert_rejection.bindRef(4, r->listener).bindRef(5, sender).bindRef(6, joined);
      insert_rejection.bind(7, std::int64_t{r->code}).bindRef(8, r->enhanced).bindRef(9, r->reason);
      check(insert_rejection);
    }
    if (!failure.empty()) break;
  }
  if (failure.empty() && !w.commit.run()) failure = w.commit.error();
  if (!failure.empty()) {
    (void)exec(db, "ROLLBACK");
    statements_.reset();  // a statement that failed keeps its error
    return Error{failure};
  }
  return {};
}

Result<std::size_t> Tracker::purge() {
  std::lock_guard db_lock(writer_db_mutex_);
  return purgeWith(writer_);
}

Result<std::size_t> Tracker::purgeWith(sqlite3* db) {
  if (options_.config.retention_days <= 0) return std::size_t{0};
  const auto cutoff = toMillis(clock_.wallNow() - std::chrono::hours(24) * options_.config.retention_days);
  std::size_t total = 0;
  const auto batch = static_cast<std::int64_t>(kPurgeBatch);
  // Each batch is its own short transaction, so that the writer's next
  // batch of events never waits long behind the purge.
  for (;;) {
    if (auto st = exec(db, "BEGIN IMMEDIATE"); !st) return st.error();
    Statement pick(db, "SELECT id FROM messages WHERE arrived < ?1 LIMIT ?2");
    pick.bind(1, cutoff).bind(2, batch);
    std::vector<std::string> ids;
    while (pick.step() == SQLITE_ROW) ids.push_back(pick.text(0));
    Statement del_events(db, "DELETE FROM events WHERE message = ?1");
    Statement del_recipients(db, "DELETE FROM recipients WHERE message = ?1");
    Statement del_message(db, "DELETE FROM messages WHERE id = ?1");
    Statement del_rejections(db,
                             "DELETE FROM rejections WHERE rowid IN (SELECT rowid FROM rejections WHERE time < ?1 "
                             "LIMIT ?2)");
    bool ok = pick.ok();
    for (const auto& id : ids) {
      for (Statement* s : {&del_events, &del_recipients, &del_message}) {
        s->bind(1, id);
        ok = s->run() && ok;
      }
    }
    del_rejections.bind(1, cutoff).bind(2, batch);
    ok = del_rejections.run() && ok;
    const auto rejections = static_cast<std::size_t>(sqlite3_changes(db));
    if (!ok) {
      std::string why = !pick.ok() ? pick.error() : !del_rejections.ok() ? del_rejections.error() : "delete failed";
      (void)exec(db, "ROLLBACK");
      return Error{why};
    }
    if (auto st = exec(db, "COMMIT"); !st) return st.error();
    total += ids.size() + rejections;
    if (ids.size() < kPurgeBatch && rejections < kPurgeBatch) break;
  }
  return total;
}

Result<Page> Tracker::search(const Query& query) const {
  std::string where = " WHERE 1=1";
  std::vector<std::pair<int, std::variant<std::string, std::int64_t>>> binds;
  int n = 0;
  const auto add = [&](const std::string& clause, std::variant<std::string, std::int64_t> value) {
    ++n;
    std::string c = clause;
    for (std::size_t p = c.find('?'); p != std::string::npos; p = c.find('?', p + 1)) {
      c.insert(p + 1, std::to_string(n));
    }
    where += " AND " + c;
    binds.emplace_back(n, std::move(value));
  };
  if (query.since) add("arrived >= ?", toMillis(*query.since));
  if (query.until) add("arrived < ?", toMillis(*query.until));
  if (!query.sender.empty()) add("sender LIKE ? ESCAPE '\\'", likePattern(query.sender));
  if (!query.recipient.empty()) {
    add("EXISTS (SELECT 1 FROM recipients r WHERE r.message = messages.id AND r.address LIKE ? ESCAPE '\\')",
        likePattern(query.recipient));
  }
  if (!query.subject.empty()) add("subject LIKE ? ESCAPE '\\'", likePattern(query.subject));
  if (query.status) add("status = ?", std::string(statusName(*query.status)));
  if (!query.text.empty()) {
    add("(id LIKE ? ESCAPE '\\' OR sender LIKE ? ESCAPE '\\' OR header_from LIKE ? ESCAPE '\\' OR subject LIKE ? "
        "ESCAPE '\\' OR message_id LIKE ? ESCAPE '\\' OR last_error LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM "
        "recipients r WHERE r.message = messages.id AND r.address LIKE ? ESCAPE '\\'))",
        likePattern(query.text));
  }
  const auto bindAll = [&binds](Statement& st) {
    for (const auto& [i, v] : binds) {
      if (const auto* s = std::get_if<std::string>(&v)) {
        st.bind(i, *s);
      } else {
        st.bind(i, std::get<std::int64_t>(v));
      }
    }
  };

  std::lock_guard lock(reader_mutex_);
  Page page;
  Statement count(reader_, ("SELECT COUNT(*) FROM messages" + where).c_str());
  bindAll(count);
  if (count.step() != SQLITE_ROW) return Error{count.error()};
  page.total = static_cast<std::size_t>(count.integer(0));
  const std::size_t limit = std::min(query.limit, Query::kMaxLimit);
  Statement rows(reader_, (std::string("SELECT ") + kMessageColumns + " FROM messages" + where +
                           " ORDER BY arrived DESC, id LIMIT " + std::to_string(limit) + " OFFSET " +
                           std::to_string(query.offset))
                              .c_str());
  bindAll(rows);
  int rc = 0;
  while ((rc = rows.step()) == SQLITE_ROW) page.messages.push_back(readMessage(rows));
  if (rc != SQLITE_DONE) return Error{rows.error()};
  for (auto& m : page.messages) {
    auto r = recipientsOf(reader_, m.id);
    if (!r) return r.error();
    m.recipients = std::move(*r);
  }
  return page;
}

Result<std::optional<History>> Tracker::history(const std::string& id) const {
  std::lock_guard lock(reader_mutex_);
  Statement msg(reader_, (std::string("SELECT ") + kMessageColumns + " FROM messages WHERE id = ?1").c_str());
  msg.bind(1, id);
  const int rc = msg.step();
  if (rc == SQLITE_DONE) return std::optional<History>();
  if (rc != SQLITE_ROW) return Error{msg.error()};
  History h;
  h.message = readMessage(msg);
  auto addresses = recipientsOf(reader_, id);
  if (!addresses) return addresses.error();
  h.message.recipients = std::move(*addresses);

  Statement rcpts(reader_,
                  "SELECT address, status, attempts, code, enhanced, error, provider, remote_id, updated "
                  "FROM recipients WHERE message = ?1 ORDER BY idx");
  rcpts.bind(1, id);
  int step = 0;
  while ((step = rcpts.step()) == SQLITE_ROW) {
    RecipientRow r;
    r.address = rcpts.text(0);
    r.status = statusFromName(rcpts.text(1)).value_or(Status::Queued);
    r.attempts = static_cast<int>(rcpts.integer(2));
    r.code = static_cast<int>(rcpts.integer(3));
    r.enhanced = rcpts.text(4);
    r.error = rcpts.text(5);
    r.provider = rcpts.text(6);
    r.remote_id = rcpts.text(7);
    r.updated = fromMillis(rcpts.integer(8));
    h.recipients.push_back(std::move(r));
  }
  if (step != SQLITE_DONE) return Error{rcpts.error()};

  Statement events(reader_,
                   "SELECT time, idx, recipient, attempt, status, code, enhanced, error, provider, remote_id "
                   "FROM events WHERE message = ?1 ORDER BY time, rowid");
  events.bind(1, id);
  while ((step = events.step()) == SQLITE_ROW) {
    Outcome o;
    o.id = id;
    o.time = fromMillis(events.integer(0));
    o.index = static_cast<std::size_t>(events.integer(1));
    o.recipient = events.text(2);
    o.attempt = static_cast<int>(events.integer(3));
    o.status = statusFromName(events.text(4)).value_or(Status::Deferred);
    o.code = static_cast<int>(events.integer(5));
    o.enhanced = events.text(6);
    o.error = events.text(7);
    o.provider = events.text(8);
    o.remote_id = events.text(9);
    h.events.push_back(std::move(o));
  }
  if (step != SQLITE_DONE) return Error{events.error()};
  return std::optional<History>(std::move(h));
}

Result<std::vector<RejectedRow>> Tracker::rejections(std::size_t limit) const {
  std::lock_guard lock(reader_mutex_);
  Statement st(reader_,
               "SELECT time, client_ip, auth_user, listener, sender, recipients, code, enhanced, reason "
               "FROM rejections ORDER BY time DESC, rowid DESC LIMIT ?1");
  st.bind(1, static_cast<std::int64_t>(std::min(limit, Query::kMaxLimit)));
  std::vector<RejectedRow> out;
  int rc = 0;
  while ((rc = st.step()) == SQLITE_ROW) {
    RejectedRow r;
    r.time = fromMillis(st.integer(0));
    r.client_ip = st.text(1);
    r.auth_user = st.text(2);
    r.listener = st.text(3);
    r.sender = st.text(4);
    r.recipients = splitLines(st.text(5));
    r.code = static_cast<int>(st.integer(6));
    r.enhanced = st.text(7);
    r.reason = st.text(8);
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return Error{st.error()};
  return out;
}

}  // namespace mb::tracker
