#include "server/smtp_server.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <exception>
#include <optional>
#include <unordered_set>

#include "base/durable_file.h"
#include "base/log.h"
#include "base/text.h"
#include "base/time_format.h"
#include "base/units.h"
#include "base/worker_pool.h"
#include "net/asio.h"
#include "net/stream.h"
#include "net/tcp_listener.h"
#include "net/tls_context_holder.h"
#include "policy/auth_guard.h"
#include "policy/connection_counter.h"
#include "policy/network_list.h"
#include "policy/recipient_policy.h"
#include "policy/sender_policy.h"
#include "policy/user_store.h"
#include "queue/spool.h"
#include "smtp/header_capture.h"
#include "smtp/server_session.h"

namespace mb::server {
namespace {

namespace asio = net::asio;
using net::tcp;
using boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;
using Verdict = SmtpServer::Verdict;

// Collects the session's replies between two writes, so that pipelined
// replies leave in one segment and in order.
class BufferSink final : public smtp::ReplySink {
 public:
  void sendReply(std::string_view wire) override { out_.append(wire); }
  std::string take() { return std::exchange(out_, {}); }
  bool empty() const { return out_.empty(); }

 private:
  std::string out_;
};

smtp::SessionLimits limitsFrom(const config::Config& cfg) {
  smtp::SessionLimits limits;
  limits.hostname = cfg.server.hostname;
  limits.max_message_size = cfg.smtp.max_message_size;
  limits.max_recipients = cfg.smtp.max_recipients;
  limits.max_errors = cfg.smtp.max_errors;
  limits.max_line_length = cfg.smtp.max_line_length;
  limits.reject_long_lines = cfg.smtp.long_lines == config::LongLinePolicy::Reject;
  limits.bare_lf = cfg.smtp.bare_lf == config::BareLfPolicy::Reject ? smtp::BareLf::Reject
                                                                    : smtp::BareLf::Normalize;
  return limits;
}

policy::NetworkList networksOrEmpty(const std::vector<std::string>& cidrs, const char* what) {
  auto list = policy::NetworkList::parse(cidrs);
  if (!list) {
    // The loader validated these; reaching here is a programming error, and
    // an empty list fails closed.
    spdlog::error("{}: {}", what, list.error().message);
    return {};
  }
  return std::move(list).value();
}

const char* problemText(smtp::DataProblem why) {
  switch (why) {
    case smtp::DataProblem::TooBig: return "message too big";
    case smtp::DataProblem::BareLf: return "bare LF refused";
    case smtp::DataProblem::LineTooLong: return "line too long";
    case smtp::DataProblem::None: break;
  }
  return "aborted";
}

}  // namespace

// What a session works with, fixed when it connects: a configuration reload
// builds a new Settings for the sessions that come after it, and the ones
// already open finish with theirs.
struct Settings {
  explicit Settings(config::Config cfg)
      : config(std::move(cfg)),
        limits(limitsFrom(config)),
        allowed(networksOrEmpty(config.access.allowed_networks, "access.allowed_networks")),
        anonymous(networksOrEmpty(config.access.anonymous_networks, "access.anonymous_networks")),
        users(config.auth.users),
        senders(config.senders),
        recipients(config.recipients) {}

  bool mayConnect(const std::string& peer) const {
    return config.access.open_relay || allowed.contains(peer);
  }
  bool mayRelayAnonymously(const std::string& peer) const {
    return config.access.open_relay || anonymous.contains(peer);
  }

  const config::Config config;
  const smtp::SessionLimits limits;
  const policy::NetworkList allowed;
  const policy::NetworkList anonymous;
  const policy::UserStore users;
  const policy::SenderPolicy senders;
  const policy::RecipientPolicy recipients;
};

class Connection;

class SmtpServer::Impl : public std::enable_shared_from_this<SmtpServer::Impl> {
 public:
  Impl(asio::io_context& io, const config::Config& config, queue::Spool& spool,
       CommittedCallback on_committed, Clock& clock, std::shared_ptr<net::TlsContextHolder> tls)
      : io_(io),
        settings_(std::make_shared<const Settings>(config)),
        spool_(spool),
        on_committed_(std::move(on_committed)),
        clock_(clock),
        tls_(std::move(tls)),
        guard_(policy::AuthGuard::Params{config.auth.max_failures_per_ip,
                                         config.auth.max_failures_per_user,
                                         config.auth.failure_window, config.auth.lockout},
               clock),
        per_ip_(config.smtp.max_connections_per_ip),
        verifiers_(std::max<std::size_t>(1, config.auth.max_parallel_verifications), WorkerPool::kUnbounded,
                   "mb-auth-verify") {}

  ~Impl() { verifiers_.stop(); }

  Status start();
  void stop();
  asio::awaitable<void> acceptLoop(std::size_t index);
  void reconfigure(const config::Config& config);

  struct Listener {
    config::ListenerConfig config;
    std::unique_ptr<net::TcpListener> socket;
  };

  asio::io_context& io_;
  std::shared_ptr<const Settings> settings_;  // replaced by reconfigure()
  queue::Spool& spool_;
  CommittedCallback on_committed_;
  HeaderFromParser header_from_;
  SmtpServer::AcceptedObserver on_accepted_;
  bool accepted_with_header_ = false;
  SmtpServer::RefusalObserver on_refused_;
  PasswordVerifier password_verifier_;
  Clock& clock_;
  const std::shared_ptr<net::TlsContextHolder> tls_;
  policy::AuthGuard guard_;
  policy::ConnectionCounter per_ip_;
  WorkerPool verifiers_;
  std::vector<Listener> listeners_;
  std::unordered_set<Connection*> connections_;
  bool stopping_ = false;
};

/// One client connection: drives an smtp::ServerSession and is its
/// SessionHandler, writing the message into the spool.
class Connection final : public std::enable_shared_from_this<Connection>,
                         private smtp::SessionHandler {
 public:
  Connection(std::shared_ptr<SmtpServer::Impl> server, tcp::socket socket,
             const config::ListenerConfig& listener)
      : server_(std::move(server)),
        settings_(server_->settings_),
        stream_(std::move(socket)),
        deadline_(stream_.socket().get_executor()),
        wakeup_(stream_.socket().get_executor()),
        delivery_wait_(stream_.socket().get_executor()),
        listener_(listener),
        session_(settings_->limits, *this, sink_) {}

  static asio::awaitable<void> run(std::shared_ptr<Connection> self);

  // Asks the session to end: at once when it waits for its next command,
  // after the transaction it is in otherwise (the shutdown grace bounds
  // that), so that a message half sent is not thrown away.
  void stop() {
    stopping_ = true;
    if (reading_ && !session_.inTransaction()) stream_.cancel();
    // A session waiting for a first delivery attempt answers "queued" now
    // rather than holding up the shutdown.
    delivery_wait_.cancel();
  }

 private:
  asio::awaitable<void> serve();
  asio::awaitable<bool> admit();
  asio::awaitable<bool> flush();
  asio::awaitable<bool> handshake();
  void armDeadline(SteadyClock::duration timeout);
  SteadyClock::duration readTimeout();
  void onCommitted(const Status& status, const std::string& id, const std::shared_ptr<std::atomic<bool>>& wait);
  // Tells the refusal observer, if any; returns `reply` for the caller to send.
  smtp::Reply refused(smtp::Reply reply, const char* reason, const smtp::Transaction* txn = nullptr,
                      std::string_view recipient = {}, std::string_view user = {});
  // smtp.wait_for_delivery: the first attempt's verdict, or the wait's end.
  void onFirstAttempt(const std::shared_ptr<std::atomic<bool>>& wait, const queue::FirstAttempt& first,
                      const std::string& id);
  void onDeliveryWaitOver(const std::shared_ptr<std::atomic<bool>>& wait, const std::string& id);
  void onVerified(SmtpServer::Verdict verdict, const std::string& user);
  smtp::SessionFeatures features() const;

  // smtp::SessionHandler
  std::optional<smtp::Reply> onMail(const smtp::Transaction& txn) override;
  std::optional<smtp::Reply> onRcpt(const smtp::Transaction& txn,
                                    std::string_view recipient) override;
  std::optional<smtp::Reply> onDataStart(const smtp::Transaction& txn) override;
  void onDataChunk(std::string_view bytes) override;
  void onDataEnd(const smtp::Transaction& txn) override;
  void onDataAbort(smtp::DataProblem why) override;
  void onAuth(const smtp::AuthRequest& request) override;

  static smtp::Reply localError() { return {451, "4.3.0", "Local error in processing"}; }

  std::shared_ptr<SmtpServer::Impl> server_;
  const std::shared_ptr<const Settings> settings_;
  net::Stream stream_;
  asio::steady_timer deadline_;
  asio::steady_timer wakeup_;  // cancelled when a commit or a verification completes
  asio::steady_timer delivery_wait_;  // smtp.wait_for_delivery
  config::ListenerConfig listener_;
  BufferSink sink_;
  smtp::ServerSession session_;
  std::string peer_;
  bool counted_ = false;  // holds a slot in the per-IP counter

  std::unique_ptr<queue::IncomingMessage> message_;
  bool write_failed_ = false;
  std::string effective_sender_;  // MAIL FROM after the sender rules
  bool sender_overridden_ = false;  // an override decided effective_sender_
  // The content's header section (at most 64 KB), for senders.use_from_header
  // and the mail log.
  smtp::HeaderCapture header_;
  std::optional<smtp::Reply> commit_reply_;
  // The current transaction's wait for its first delivery attempt: whoever
  // sets it first (the verdict or the timer) answers the client.
  std::shared_ptr<std::atomic<bool>> delivery_answered_;
  std::optional<smtp::AuthResult> auth_result_;

  // Minimum data rate: the content deadline grows with what arrived.
  bool in_data_ = false;
  SteadyClock::time_point data_start_{};
  std::uint64_t data_bytes_ = 0;

  bool reading_ = false;
  bool timed_out_ = false;
  bool stopping_ = false;
};

asio::awaitable<void> Connection::run(std::shared_ptr<Connection> self) {
  auto& server = *self->server_;
  server.connections_.insert(self.get());
  try {
    co_await self->serve();
  } catch (const std::exception& e) {
    spdlog::error("session with {} failed: {}", self->peer_, e.what());
  }
  self->session_.disconnected();
  self->deadline_.cancel();
  self->wakeup_.cancel();
  if (self->stream_.tls()) {
    self->armDeadline(std::chrono::seconds(2));
    co_await self->stream_.shutdown();
    self->deadline_.cancel();
  }
  self->stream_.close();
  if (self->counted_) server.per_ip_.release(self->peer_);
  server.connections_.erase(self.get());
  spdlog::debug("disconnect from {}", self->peer_);
}

// Decides whether the client gets a greeting, and sends either it or the
// refusal. False when the connection is to end.
asio::awaitable<bool> Connection::admit() {
  peer_ = net::peerAddress(stream_.socket());
  auto& server = *server_;
  if (!settings_->mayConnect(peer_)) {
    spdlog::warn("refused connection from {} on {}: not in access.allowed_networks", peer_,
                 listener_.name);
    session_.refuse(refused({554, "5.7.1", "Access denied"}, "IP not allowed"));
    co_return true;
  }
  if (server.stopping_) {
    session_.refuse({421, "4.3.2", "Service shutting down"});
    co_return true;
  }
  if (server.connections_.size() > settings_->config.smtp.max_connections) {
    spdlog::warn("refused connection from {} on {}: smtp.max_connections ({}) reached", peer_,
                 listener_.name, settings_->config.smtp.max_connections);
    session_.refuse({421, "4.7.0", "Too many connections, try again later"});
    co_return true;
  }
  if (!server.per_ip_.tryAcquire(peer_)) {
    spdlog::warn("refused connection from {} on {}: smtp.max_connections_per_ip ({}) reached",
                 peer_, listener_.name, settings_->config.smtp.max_connections_per_ip);
    session_.refuse({421, "4.7.0", "Too many connections from your address, try again later"});
    co_return true;
  }
  counted_ = true;
  if (server.guard_.locked(peer_)) {
    spdlog::warn("refused connection from {}: locked out after authentication failures", peer_);
    session_.refuse(refused({421, "4.7.0", "Too many authentication failures, try again later"}, "locked out"));
    co_return true;
  }
  if (listener_.tls == config::TlsMode::Implicit && !co_await handshake()) co_return false;

  // A client that talks before the greeting is not waiting for replies: a
  // spam engine, or an attack on pipelining (RFC 5321 §4.3.1, RFC 2920).
  if (settings_->config.smtp.greeting_delay.count() > 0) {
    asio::steady_timer delay(stream_.socket().get_executor(), settings_->config.smtp.greeting_delay);
    error_code ec;
    co_await delay.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (stream_.available() > 0) {
    spdlog::warn("refused {}: sent data before the greeting", peer_);
    session_.refuse({554, "5.5.0", "SMTP protocol synchronization error"});
    co_return true;
  }
  spdlog::info("connect from {} on {}{}", peer_, listener_.name, stream_.tls() ? " (TLS)" : "");
  session_.setFeatures(features());
  session_.greet();
  co_return true;
}

smtp::SessionFeatures Connection::features() const {
  smtp::SessionFeatures f;
  f.starttls = listener_.tls == config::TlsMode::StartTls && server_->tls_ != nullptr;
  f.tls_active = stream_.tls();
  // AUTH with nobody to authenticate as would only invite guessing.
  f.auth = listener_.auth != config::AuthPolicy::None &&
           (!settings_->users.empty() || static_cast<bool>(server_->password_verifier_));
  f.auth_without_tls = listener_.allow_plaintext_auth;
  return f;
}

asio::awaitable<void> Connection::serve() {
  if (!co_await admit()) co_return;

  // Sized for commands and ordinary DATA; the spool writer buffers further.
  std::array<char, 16 * 1024> buffer{};
  for (;;) {
    if (!co_await flush()) co_return;
    if (session_.closed()) co_return;
    if (session_.tlsRequested()) {
      if (!co_await handshake()) co_return;
      session_.tlsStarted();
      continue;
    }
    if (session_.awaitingCommit() || session_.awaitingAuth()) {
      if (commit_reply_) {
        smtp::Reply reply = std::move(*commit_reply_);
        commit_reply_.reset();
        session_.completeData(reply);
      } else if (auth_result_) {
        const smtp::AuthResult result = *auth_result_;
        auth_result_.reset();
        session_.completeAuth(result);
      } else {
        wakeup_.expires_at(asio::steady_timer::time_point::max());
        error_code ec;
        co_await wakeup_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      continue;
    }
    if (stopping_ && !session_.inTransaction()) {
      session_.shutdown();
      continue;
    }
    armDeadline(readTimeout());
    error_code ec;
    reading_ = true;
    const std::size_t n = co_await stream_.readSome(asio::buffer(buffer), ec);
    reading_ = false;
    deadline_.cancel();
    if (ec) {
      if (timed_out_) {
        spdlog::info("timeout from {}{}", peer_, in_data_ ? " during message content" : "");
        session_.timeout();
        continue;
      }
      if (stopping_ && ec == asio::error::operation_aborted) continue;
      spdlog::debug("read from {}: {}", peer_, ec.message());
      co_return;
    }
    if (in_data_) data_bytes_ += n;
    session_.feed(std::string_view(buffer.data(), n));
  }
}

// Commands wait up to idle_timeout; message content must arrive within
// data_timeout, extended by what was received at min_data_rate, so a slow
// client cannot hold a slot forever and a fast one is never cut off.
SteadyClock::duration Connection::readTimeout() {
  const auto& smtp_cfg = settings_->config.smtp;
  if (!session_.inData()) {
    in_data_ = false;
    return smtp_cfg.idle_timeout;
  }
  const auto now = SteadyClock::now();
  if (!in_data_) {
    in_data_ = true;
    data_start_ = now;
    data_bytes_ = 0;
  }
  SteadyClock::duration allowed = smtp_cfg.data_timeout;
  if (smtp_cfg.min_data_rate > 0) {
    allowed += std::chrono::milliseconds(data_bytes_ * 1000 / smtp_cfg.min_data_rate);
  }
  const auto remaining = data_start_ + allowed - now;
  return std::clamp<SteadyClock::duration>(remaining, SteadyClock::duration::zero(),
                                           SteadyClock::duration(smtp_cfg.idle_timeout));
}

asio::awaitable<bool> Connection::handshake() {
  auto ctx = server_->tls_ ? server_->tls_->current() : nullptr;
  if (!ctx) {
    spdlog::error("TLS requested on {} but no certificate is loaded", listener_.name);
    co_return false;
  }
  armDeadline(settings_->config.smtp.idle_timeout);
  error_code ec;
  co_await stream_.startTls(std::move(ctx), ec);
  deadline_.cancel();
  if (ec) {
    spdlog::info("TLS handshake with {} failed: {}", peer_, timed_out_ ? "timeout" : ec.message());
    co_return false;
  }
  spdlog::debug("TLS with {}: {} {}", peer_, stream_.tlsVersion(), stream_.tlsCipher());
  co_return true;
}

asio::awaitable<bool> Connection::flush() {
  if (sink_.empty()) co_return true;
  const std::string out = sink_.take();
  armDeadline(settings_->config.smtp.idle_timeout);
  error_code ec;
  co_await stream_.write(out, ec);
  deadline_.cancel();
  if (ec) spdlog::debug("write to {}: {}", peer_, ec.message());
  co_return !ec;
}

void Connection::armDeadline(SteadyClock::duration timeout) {
  timed_out_ = false;
  deadline_.expires_after(timeout);
  deadline_.async_wait([weak = weak_from_this()](error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    // A handler that was already queued when the deadline was re-armed is stale.
    if (self->deadline_.expiry() > asio::steady_timer::clock_type::now()) return;
    self->timed_out_ = true;
    self->stream_.cancel();
  });
}

std::optional<smtp::Reply> Connection::onMail(const smtp::Transaction& txn) {
  // A MAIL pipelined behind the last message of a stopping session would
  // otherwise start a transaction that the shutdown then has to wait for.
  if (stopping_) return smtp::Reply{421, "4.3.2", "Service shutting down"};
  const config::UserConfig* user = nullptr;
  if (!txn.auth_user.empty()) {
    user = settings_->users.find(txn.auth_user);
  } else if (!settings_->mayRelayAnonymously(peer_)) {
    spdlog::warn("refused MAIL FROM:<{}> from {}: not authenticated and not in "
                 "access.anonymous_networks",
                 printable(txn.mail.address), peer_);
    const smtp::SessionFeatures f = features();
    if (f.auth && !txn.tls && !f.auth_without_tls && f.starttls) {
      return refused({530, "5.7.0", "Must issue a STARTTLS command first"}, "authentication required", &txn);
    }
    return refused({530, "5.7.0", "Authentication required"}, "authentication required", &txn);
  }
  if (const std::uint64_t floor = config::freeSpaceFloor(settings_->config.queue, settings_->config.smtp); floor > 0) {
    // Refusing here, before any content, is what lets the client try again
    // later (or elsewhere) instead of sending megabytes that cannot be stored.
    const auto free = fs::freeSpace(settings_->config.server.state_dir);
    if (free && *free < floor) {
      spdlog::warn("refused MAIL FROM:<{}> from {}: {} free in {}, below queue.min_free_space {}",
                   printable(txn.mail.address), peer_, formatSize(*free),
                   settings_->config.server.state_dir.string(), formatSize(floor));
      return smtp::Reply{452, "4.3.1", "Insufficient system storage, try again later"};
    }
    if (!free) spdlog::warn("cannot check free space: {}", free.error().message);
  }
  const auto decision = settings_->senders.decide(txn.mail.address, user);
  if (!decision.allowed) {
    spdlog::warn("refused MAIL FROM:<{}> from {}{}: {}", printable(txn.mail.address), peer_,
                 user ? " user " + printable(user->name) : std::string(), decision.reason);
    return refused({550, "5.7.1", "Sender address not allowed"}, "sender not allowed", &txn);
  }
  if (decision.effective_sender != txn.mail.address) {
    spdlog::info("MAIL FROM:<{}> from {} sent as <{}>: {}", printable(txn.mail.address), peer_,
                 printable(decision.effective_sender), decision.reason);
  }
  effective_sender_ = decision.effective_sender;
  sender_overridden_ = decision.overridden;
  return std::nullopt;
}

std::optional<smtp::Reply> Connection::onRcpt(const smtp::Transaction& txn,
                                              std::string_view recipient) {
  const config::UserConfig* user =
      txn.auth_user.empty() ? nullptr : settings_->users.find(txn.auth_user);
  if (!settings_->recipients.allowed(recipient, user)) {
    spdlog::warn("refused RCPT TO:<{}> from {}: domain not in the allowed recipient domains",
                 printable(recipient), peer_);
    return refused({550, "5.7.1", "Recipient address not allowed"}, "recipient not allowed", &txn, recipient);
  }
  return std::nullopt;
}

std::optional<smtp::Reply> Connection::onDataStart(const smtp::Transaction& txn) {
  auto created = server_->spool_.create();
  if (!created) {
    spdlog::error("cannot store message from {}: {}", peer_, created.error().message);
    return localError();
  }
  message_ = std::move(created).value();
  write_failed_ = false;
  (void)header_.take();

  smtp::ReceivedInfo received;
  received.helo = txn.helo;
  received.client_address = peer_;
  received.by_host = settings_->config.server.hostname;
  // RFC 3848: ESMTP, plus S for TLS and A for AUTH.
  received.protocol = txn.esmtp ? "ESMTP" : "SMTP";
  if (txn.esmtp && txn.tls) received.protocol += "S";
  if (txn.esmtp && !txn.auth_user.empty()) received.protocol += "A";
  received.id = message_->id();
  if (txn.recipients.size() == 1) received.for_recipient = txn.recipients.front();
  received.date = rfc5322Date(unixSeconds(server_->clock_.wallNow()));
  if (Status st = message_->write(smtp::formatReceived(received)); !st) {
    spdlog::error("{}: cannot write to the spool: {}", message_->id(), st.error().message);
    message_.reset();
    return localError();
  }
  return std::nullopt;
}

void Connection::onDataChunk(std::string_view bytes) {
  if (!message_ || write_failed_) return;
  if (settings_->senders.useFromHeader() || server_->accepted_with_header_) header_.feed(bytes);
  if (Status st = message_->write(bytes); !st) {
    // Keep reading to the end of the content, then answer 451: the client
    // must not think a truncated message was accepted.
    spdlog::error("{}: cannot write to the spool: {}", message_->id(), st.error().message);
    write_failed_ = true;
  }
}

void Connection::onDataEnd(const smtp::Transaction& txn) {
  if (!message_ || write_failed_) {
    message_.reset();
    commit_reply_ = localError();
    return;
  }
  queue::Envelope env;
  env.id = message_->id();
  env.size = message_->size();
  env.sender = effective_sender_;
  if (settings_->senders.useFromHeader() && !sender_overridden_) {
    // The device's From header names the mailbox, checked like MAIL FROM:
    // a user limited to some senders must not reach other mailboxes by
    // writing another From.
    const std::string from = server_->header_from_ ? server_->header_from_(header_.header()) : std::string();
    const config::UserConfig* user = txn.auth_user.empty() ? nullptr : settings_->users.find(txn.auth_user);
    std::string reason;
    if (from.empty()) {
      spdlog::info("{}: no usable From header address; sending as the envelope sender <{}>", env.id,
                   printable(effective_sender_));
    } else if (!settings_->senders.allows(from, user, &reason)) {
      spdlog::warn("{}: refused from {}: From header address <{}> {}", env.id, peer_, printable(from), reason);
      message_.reset();
      commit_reply_ = refused({550, "5.7.1", "From address not allowed"}, "From address not allowed", &txn);
      return;
    } else {
      env.mailbox = from;
      if (!iequals(from, effective_sender_)) {
        spdlog::info("{}: sending from the From header's mailbox <{}>", env.id, printable(from));
      }
    }
  }
  // The observer gets the header; the connection keeps no copy.
  std::string header = header_.take();
  for (const auto& rcpt : txn.recipients) {
    queue::RecipientEntry entry;
    entry.address = rcpt;
    env.recipients.push_back(std::move(entry));
  }
  env.client_address = peer_;
  env.helo = printable(txn.helo);
  env.auth_user = txn.auth_user;
  env.listener = listener_.name;
  env.arrival = unixSeconds(server_->clock_.wallNow());

  auto self = shared_from_this();
  queue::FirstAttemptCallback on_first;
  delivery_answered_.reset();
  if (settings_->config.smtp.wait_for_delivery.count() > 0 && !stopping_) {
    auto answered = std::make_shared<std::atomic<bool>>(false);
    delivery_answered_ = answered;
    // Runs on a delivery thread, maybe before onCommitted(). Holds the
    // connection weakly: a message waiting behind pacing must not keep a
    // closed connection alive.
    on_first = [weak = weak_from_this(), answered, id = env.id](const queue::FirstAttempt& first) {
      auto conn = weak.lock();
      if (!conn || answered->exchange(true)) return false;
      asio::post(conn->stream_.socket().get_executor(),
                 [conn, answered, first, id]() { conn->onFirstAttempt(answered, first, id); });
      return true;
    };
  }
  server_->spool_.commit(std::move(message_), env,
                         [self, env, on_first = std::move(on_first), header = std::move(header),
                          wait = delivery_answered_](Status st) mutable {
    // On the spool's own thread: hand the message to the queue before
    // the client can hear 250, then answer on the session's own thread.
    if (st && self->server_->on_accepted_) self->server_->on_accepted_(env, std::move(header));
    if (st) self->server_->on_committed_(env, on_first);
    asio::post(self->stream_.socket().get_executor(),
               [self, st, id = env.id, wait]() { self->onCommitted(st, id, wait); });
  });
}

void Connection::onCommitted(const Status& status, const std::string& id,
                             const std::shared_ptr<std::atomic<bool>>& wait) {
  // The first attempt's verdict can overtake this (it is posted from the
  // delivery thread, this from the committer): it has answered already —
  // its reply may still wait to be written, or be gone (then the wait it
  // answered is no longer the connection's). A second 250 would answer the
  // client's next command.
  if (commit_reply_) return;
  if (wait && wait != delivery_answered_) return;
  if (status && delivery_answered_) {
    spdlog::info("{}: queued from {}, waiting up to {}ms for the first delivery attempt", id, peer_,
                 settings_->config.smtp.wait_for_delivery.count());
    // The verdict may already be on its way (posted before this); then it
    // answers and the timer is moot.
    if (delivery_answered_->load()) return;
    delivery_wait_.expires_after(settings_->config.smtp.wait_for_delivery);
    delivery_wait_.async_wait([self = shared_from_this(), answered = delivery_answered_, id](const error_code&) {
      self->onDeliveryWaitOver(answered, id);
    });
    if (stopping_) delivery_wait_.cancel();
    return;
  }
  delivery_answered_.reset();
  if (status) {
    spdlog::info("{}: queued from {}", id, peer_);
    commit_reply_ = smtp::Reply{250, "2.0.0", "Ok: queued as " + id};
  } else {
    spdlog::error("{}: commit failed: {}", id, status.error().message);
    commit_reply_ = localError();
  }
  wakeup_.cancel();
}

void Connection::onDeliveryWaitOver(const std::shared_ptr<std::atomic<bool>>& wait, const std::string& id) {
  if (wait != delivery_answered_ || wait->exchange(true)) return;  // the verdict came first
  delivery_answered_.reset();
  spdlog::info("{}: no delivery result within the wait; answered queued", id);
  commit_reply_ = smtp::Reply{250, "2.0.0", "Ok: queued as " + id};
  wakeup_.cancel();
}

namespace {

// Provider words and ids on an SMTP reply line: printable ASCII only, short.
std::string replySafe(std::string_view text, std::size_t max) {
  std::string out;
  for (char c : text.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

void Connection::onFirstAttempt(const std::shared_ptr<std::atomic<bool>>& wait, const queue::FirstAttempt& first,
                                const std::string& id) {
  if (wait != delivery_answered_) return;  // a connection that moved on; cannot happen while waiting
  delivery_answered_.reset();
  delivery_wait_.cancel();
  switch (first.verdict) {
    case queue::FirstAttempt::Verdict::Delivered: {
      const std::string remote = replySafe(first.remote_id, 128);
      spdlog::info("{}: delivered while the client waited, via {}", id, printable(first.provider));
      commit_reply_ = smtp::Reply{
          250, "2.0.0",
          remote.empty() ? "Ok: delivered, queue id " + id : "Ok: delivered as " + remote + ", queue id " + id};
      break;
    }
    case queue::FirstAttempt::Verdict::Rejected: {
      // The provider's code when it is a proper 5xx; its words only when it
      // chose client-safe ones.
      const bool valid = first.smtp_code >= 500 && first.smtp_code <= 559 && first.enhanced.size() >= 5 &&
                         first.enhanced.rfind("5.", 0) == 0;
      const int code = valid ? first.smtp_code : 550;
      const std::string enhanced = valid ? replySafe(first.enhanced, 16) : "5.0.0";
      const std::string summary = replySafe(first.summary, 200);
      spdlog::warn("{}: refused by {} while the client waited: {} {}; the client is told, no bounce", id,
                   printable(first.provider), code, enhanced);
      commit_reply_ = smtp::Reply{code, enhanced,
                                  summary.empty() ? "Message refused by the mail service" : "Message refused: " + summary};
      break;
    }
    case queue::FirstAttempt::Verdict::Deferred:
      spdlog::info("{}: first delivery attempt deferred; answered queued", id);
      commit_reply_ = smtp::Reply{250, "2.0.0", "Ok: queued as " + id};
      break;
  }
  wakeup_.cancel();
}

void Connection::onDataAbort(smtp::DataProblem why) {
  if (message_) spdlog::info("{}: discarded from {}: {}", message_->id(), peer_, problemText(why));
  message_.reset();
  // The session answers these itself (552 5.3.4, 550 5.5.2, 500 5.5.6).
  switch (why) {
    case smtp::DataProblem::TooBig:
      refused({552, "5.3.4", "Message too big"}, "message too big");
      break;
    case smtp::DataProblem::BareLf:
      refused({550, "5.5.2", "Bare LF"}, "bare LF line ends");
      break;
    case smtp::DataProblem::LineTooLong:
      refused({500, "5.5.6", "Line too long"}, "line too long");
      break;
    case smtp::DataProblem::None:
      break;
  }
}

smtp::Reply Connection::refused(smtp::Reply reply, const char* reason, const smtp::Transaction* txn,
                                std::string_view recipient, std::string_view user) {
  if (!server_->on_refused_) return reply;
  SmtpServer::Refusal r;
  r.client_ip = peer_;
  r.listener = listener_.name;
  if (txn != nullptr) {
    r.auth_user = txn->auth_user;
    r.sender = txn->mail.address;
    r.recipients = txn->recipients;
  }
  if (!user.empty()) r.auth_user = std::string(user);
  // A refused recipient alone: the accepted ones may still be delivered.
  if (!recipient.empty()) r.recipients = {std::string(recipient)};
  r.code = reply.code;
  r.enhanced = reply.enhanced;
  r.reason = reason;
  server_->on_refused_(std::move(r));
  return reply;
}

void Connection::onAuth(const smtp::AuthRequest& request) {
  auto& server = *server_;
  if (server.guard_.locked(peer_)) {
    auth_result_ = smtp::AuthResult::LockedOut;
    return;
  }
  // Acting for another identity (a PLAIN authzid) is not supported; treat it
  // as a failure so that it counts against the client like one.
  const bool proxy = !request.authzid.empty() && request.authzid != request.user;
  auto self = shared_from_this();
  const bool queued = server.verifiers_.submit(
      [self, user = request.user, password = request.password, proxy]() mutable {
        Verdict verdict = Verdict::Failure;
        const auto& external = self->server_->password_verifier_;
        if (proxy) {
          verdict = Verdict::Failure;
        } else if (external && self->settings_->users.find(user) == nullptr) {
          verdict = external(user, password);
        } else {
          verdict = self->settings_->users.verify(user, password) ? Verdict::Success : Verdict::Failure;
        }
        sodium_memzero(password.data(), password.size());
        asio::post(self->stream_.socket().get_executor(),
                   [self, verdict, user = std::move(user)]() { self->onVerified(verdict, user); });
      });
  if (!queued) auth_result_ = smtp::AuthResult::TempFailure;
}

void Connection::onVerified(Verdict verdict, const std::string& user) {
  auto& server = *server_;
  if (verdict == Verdict::TempFailure) {
    // The identity platform could not be asked: not the client's fault, and
    // not counted against it.
    spdlog::warn("authentication of {} from {} could not be checked now", printable(user), peer_);
    auth_result_ = smtp::AuthResult::TempFailure;
  } else if (verdict == Verdict::Success) {
    server.guard_.recordSuccess(peer_, user);
    spdlog::info("{} authenticated as {}", peer_, printable(user));
    auth_result_ = smtp::AuthResult::Success;
  } else {
    const auto guard_verdict = server.guard_.recordFailure(peer_, user);
    if (guard_verdict == policy::AuthGuard::Verdict::LockOut) {
      spdlog::warn("authentication failed for {} from {}; address locked out for {}s",
                   printable(user), peer_, settings_->config.auth.lockout.count());
      auth_result_ = smtp::AuthResult::LockedOut;
    } else {
      spdlog::warn("authentication failed for {} from {}", printable(user), peer_);
      auth_result_ = smtp::AuthResult::Failure;
    }
    refused({535, "5.7.8", "Authentication credentials invalid"}, "authentication failed", nullptr, {}, user);
  }
  wakeup_.cancel();
}

Status SmtpServer::Impl::start() {
  for (const auto& cfg : settings_->config.listeners) {
    if (cfg.tls != config::TlsMode::None && !tls_) {
      return Error{"listener " + cfg.name + " uses TLS but no certificate is loaded"};
    }
    auto socket = std::make_unique<net::TcpListener>(io_);
    if (Status st = socket->bind(cfg.host, cfg.port); !st) {
      for (auto& l : listeners_) l.socket->close();
      listeners_.clear();
      return Error{"listener " + cfg.name + ": " + st.error().message, st.error().sys_errno};
    }
    listeners_.push_back({cfg, std::move(socket)});
  }
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    const auto& cfg = listeners_[i].config;
    const char* tls = cfg.tls == config::TlsMode::Implicit   ? "implicit TLS"
                      : cfg.tls == config::TlsMode::StartTls ? "STARTTLS"
                                                             : "no TLS";
    spdlog::info("listening on {} ({}, {})", listeners_[i].socket->address(), cfg.name, tls);
    asio::co_spawn(io_, acceptLoop(i), asio::detached);
  }
  return {};
}

asio::awaitable<void> SmtpServer::Impl::acceptLoop(std::size_t index) {
  auto self = shared_from_this();
  for (;;) {
    error_code ec;
    tcp::socket socket = co_await listeners_[index].socket->accept(ec);
    if (stopping_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // Out of descriptors and the like: pause instead of spinning.
      spdlog::warn("accept on {}: {}", listeners_[index].config.name, ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::use_awaitable);
      continue;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto conn = std::make_shared<Connection>(self, std::move(socket), listeners_[index].config);
    asio::co_spawn(io_, Connection::run(std::move(conn)), asio::detached);
  }
}

void SmtpServer::Impl::reconfigure(const config::Config& config) {
  settings_ = std::make_shared<const Settings>(config);
  guard_.setParams(policy::AuthGuard::Params{config.auth.max_failures_per_ip,
                                             config.auth.max_failures_per_user,
                                             config.auth.failure_window, config.auth.lockout});
  per_ip_.setMaxPerIp(config.smtp.max_connections_per_ip);
  // Addresses and TLS modes need a restart (the caller keeps those as they
  // were); what a listener asks of its clients applies to new connections.
  for (auto& l : listeners_) {
    for (const auto& cfg : config.listeners) {
      if (cfg.name == l.config.name && cfg.host == l.config.host && cfg.tls == l.config.tls) {
        const std::uint16_t port = l.config.port;  // 0 in tests: keep the bound one's entry
        l.config = cfg;
        l.config.port = port;
      }
    }
  }
}

void SmtpServer::Impl::stop() {
  stopping_ = true;
  for (auto& l : listeners_) l.socket->close();
  for (Connection* c : connections_) c->stop();
}

SmtpServer::SmtpServer(boost::asio::io_context& io, const config::Config& config,
                       queue::Spool& spool, CommittedCallback on_committed, Clock& clock,
                       std::shared_ptr<net::TlsContextHolder> tls)
    : impl_(std::make_shared<Impl>(io, config, spool, std::move(on_committed), clock,
                                   std::move(tls))) {}

SmtpServer::~SmtpServer() {
  // Verifications still running hold connections that post back to the
  // io_context; finish them while it is alive.
  impl_->verifiers_.stop();
}

Status SmtpServer::start() { return impl_->start(); }

void SmtpServer::stop() { impl_->stop(); }

void SmtpServer::reconfigure(const config::Config& config) { impl_->reconfigure(config); }

void SmtpServer::setHeaderFromParser(HeaderFromParser parser) { impl_->header_from_ = std::move(parser); }

void SmtpServer::setAcceptedObserver(AcceptedObserver observer, bool with_header) {
  impl_->accepted_with_header_ = observer && with_header;
  impl_->on_accepted_ = std::move(observer);
}

void SmtpServer::setRefusalObserver(RefusalObserver observer) { impl_->on_refused_ = std::move(observer); }

void SmtpServer::setPasswordVerifier(PasswordVerifier verifier) { impl_->password_verifier_ = std::move(verifier); }

std::vector<std::string> SmtpServer::boundAddresses() const {
  std::vector<std::string> out;
  for (const auto& l : impl_->listeners_) out.push_back(l.socket->address());
  return out;
}

std::size_t SmtpServer::activeSessions() const { return impl_->connections_.size(); }

}  // namespace mb::server
