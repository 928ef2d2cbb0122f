#include "server/smtp_server.h"

#include <array>
#include <chrono>
#include <exception>
#include <optional>
#include <unordered_set>

#include "base/log.h"
#include "base/text.h"
#include "net/asio.h"
#include "net/tcp_listener.h"
#include "policy/network_list.h"
#include "queue/spool.h"
#include "smtp/server_session.h"

namespace mb::server {
namespace {

namespace asio = net::asio;
using net::tcp;
using boost::system::error_code;

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

std::int64_t unixSeconds(Clock::WallTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

class Connection;

class SmtpServer::Impl : public std::enable_shared_from_this<SmtpServer::Impl> {
 public:
  Impl(asio::io_context& io, const config::Config& config, queue::Spool& spool,
       CommittedCallback on_committed, Clock& clock)
      : io_(io),
        config_(config),
        spool_(spool),
        on_committed_(std::move(on_committed)),
        clock_(clock),
        limits_(limitsFrom(config)),
        allowed_(networksOrEmpty(config.access.allowed_networks, "access.allowed_networks")),
        anonymous_(networksOrEmpty(config.access.anonymous_networks, "access.anonymous_networks")) {}

  Status start();
  void stop();
  asio::awaitable<void> acceptLoop(std::size_t index);

  bool mayConnect(const std::string& peer) const {
    return config_.access.open_relay || allowed_.contains(peer);
  }
  bool mayRelayAnonymously(const std::string& peer) const {
    return config_.access.open_relay || anonymous_.contains(peer);
  }

  struct Listener {
    config::ListenerConfig config;
    std::unique_ptr<net::TcpListener> socket;
  };

  asio::io_context& io_;
  const config::Config config_;
  queue::Spool& spool_;
  CommittedCallback on_committed_;
  Clock& clock_;
  const smtp::SessionLimits limits_;
  const policy::NetworkList allowed_;
  const policy::NetworkList anonymous_;
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
        socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        commit_wakeup_(socket_.get_executor()),
        listener_(listener),
        session_(server_->limits_, *this, sink_) {}

  static asio::awaitable<void> run(std::shared_ptr<Connection> self);

  // Asks the session to end: at once when it is waiting for the client,
  // after the current commit otherwise.
  void stop() {
    stopping_ = true;
    if (reading_) {
      error_code ignored;
      socket_.cancel(ignored);
    }
  }

 private:
  asio::awaitable<void> serve();
  asio::awaitable<bool> flush();
  void armDeadline(std::chrono::seconds timeout);
  void onCommitted(const Status& status, const std::string& id);

  // smtp::SessionHandler
  std::optional<smtp::Reply> onMail(const smtp::Transaction& txn) override;
  std::optional<smtp::Reply> onRcpt(const smtp::Transaction& txn,
                                    std::string_view recipient) override;
  std::optional<smtp::Reply> onDataStart(const smtp::Transaction& txn) override;
  void onDataChunk(std::string_view bytes) override;
  void onDataEnd(const smtp::Transaction& txn) override;
  void onDataAbort(smtp::DataProblem why) override;

  static smtp::Reply localError() { return {451, "4.3.0", "Local error in processing"}; }

  std::shared_ptr<SmtpServer::Impl> server_;
  tcp::socket socket_;
  asio::steady_timer deadline_;
  asio::steady_timer commit_wakeup_;
  config::ListenerConfig listener_;
  BufferSink sink_;
  smtp::ServerSession session_;
  std::string peer_;

  std::unique_ptr<queue::IncomingMessage> message_;
  bool write_failed_ = false;
  std::optional<smtp::Reply> commit_reply_;

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
  error_code ignored;
  self->deadline_.cancel();
  self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
  self->socket_.close(ignored);
  server.connections_.erase(self.get());
  spdlog::debug("disconnect from {}", self->peer_);
}

asio::awaitable<void> Connection::serve() {
  peer_ = net::peerAddress(socket_);
  if (!server_->mayConnect(peer_)) {
    spdlog::warn("refused connection from {} on {}: not in access.allowed_networks", peer_,
                 listener_.name);
    session_.refuse({554, "5.7.1", "Access denied"});
  } else if (server_->connections_.size() > server_->config_.smtp.max_connections) {
    spdlog::warn("refused connection from {} on {}: smtp.max_connections ({}) reached", peer_,
                 listener_.name, server_->config_.smtp.max_connections);
    session_.refuse({421, "4.7.0", "Too many connections, try again later"});
  } else if (server_->stopping_) {
    session_.refuse({421, "4.3.2", "Service shutting down"});
  } else {
    spdlog::info("connect from {} on {}", peer_, listener_.name);
    session_.greet();
  }

  // Sized for commands and ordinary DATA; the spool writer buffers further.
  std::array<char, 16 * 1024> buffer{};
  for (;;) {
    if (!co_await flush()) co_return;
    if (session_.closed()) co_return;
    if (session_.awaitingCommit()) {
      if (!commit_reply_) {
        // Woken by onCommitted() cancelling the timer.
        commit_wakeup_.expires_at(asio::steady_timer::time_point::max());
        error_code ec;
        co_await commit_wakeup_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      smtp::Reply reply = std::move(*commit_reply_);
      commit_reply_.reset();
      session_.completeData(reply);
      continue;
    }
    if (stopping_) {
      session_.shutdown();
      continue;
    }
    armDeadline(session_.inData() ? server_->config_.smtp.data_timeout
                                  : server_->config_.smtp.idle_timeout);
    error_code ec;
    reading_ = true;
    const std::size_t n = co_await socket_.async_read_some(
        asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    reading_ = false;
    deadline_.cancel();
    if (ec) {
      if (timed_out_) {
        spdlog::info("timeout from {}", peer_);
        session_.timeout();
        continue;
      }
      if (stopping_ && ec == asio::error::operation_aborted) continue;
      co_return;
    }
    session_.feed(std::string_view(buffer.data(), n));
  }
}

asio::awaitable<bool> Connection::flush() {
  if (sink_.empty()) co_return true;
  const std::string out = sink_.take();
  armDeadline(server_->config_.smtp.idle_timeout);
  error_code ec;
  co_await asio::async_write(socket_, asio::buffer(out),
                             asio::redirect_error(asio::use_awaitable, ec));
  deadline_.cancel();
  co_return !ec;
}

void Connection::armDeadline(std::chrono::seconds timeout) {
  timed_out_ = false;
  deadline_.expires_after(timeout);
  deadline_.async_wait([weak = weak_from_this()](error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    // A handler that was already queued when the deadline was re-armed is stale.
    if (self->deadline_.expiry() > asio::steady_timer::clock_type::now()) return;
    self->timed_out_ = true;
    error_code ignored;
    self->socket_.cancel(ignored);
  });
}

std::optional<smtp::Reply> Connection::onMail(const smtp::Transaction& txn) {
  if (!server_->mayRelayAnonymously(peer_)) {
    spdlog::warn("refused MAIL FROM:<{}> from {}: not in access.anonymous_networks and not "
                 "authenticated",
                 printable(txn.mail.address), peer_);
    return smtp::Reply{530, "5.7.0", "Authentication required"};
  }
  return std::nullopt;
}

std::optional<smtp::Reply> Connection::onRcpt(const smtp::Transaction&, std::string_view) {
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

  smtp::ReceivedInfo received;
  received.helo = txn.helo;
  received.client_address = peer_;
  received.by_host = server_->config_.server.hostname;
  received.protocol = txn.esmtp ? "ESMTP" : "SMTP";
  received.id = message_->id();
  if (txn.recipients.size() == 1) received.for_recipient = txn.recipients.front();
  received.date = smtp::rfc5322Date(unixSeconds(server_->clock_.wallNow()));
  if (Status st = message_->write(smtp::formatReceived(received)); !st) {
    spdlog::error("{}: cannot write to the spool: {}", message_->id(), st.error().message);
    message_.reset();
    return localError();
  }
  return std::nullopt;
}

void Connection::onDataChunk(std::string_view bytes) {
  if (!message_ || write_failed_) return;
  if (Status st = message_->write(bytes); !st) {
    // Keep reading to the final dot, then answer 451: the client must not
    // think a truncated message was accepted.
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
  env.sender = txn.mail.address;
  for (const auto& rcpt : txn.recipients) {
    queue::RecipientEntry entry;
    entry.address = rcpt;
    env.recipients.push_back(std::move(entry));
  }
  env.client_address = peer_;
  env.helo = printable(txn.helo);
  env.listener = listener_.name;
  env.arrival = unixSeconds(server_->clock_.wallNow());

  auto self = shared_from_this();
  server_->spool_.commit(std::move(message_), env, [self, env](Status st) {
    // On the spool's committer thread: hand the message to the queue before
    // the client can hear 250, then answer on the session's own thread.
    if (st) self->server_->on_committed_(env);
    asio::post(self->socket_.get_executor(),
               [self, st, id = env.id]() { self->onCommitted(st, id); });
  });
}

void Connection::onCommitted(const Status& status, const std::string& id) {
  if (status) {
    spdlog::info("{}: queued from {}", id, peer_);
    commit_reply_ = smtp::Reply{250, "2.0.0", "Ok: queued as " + id};
  } else {
    spdlog::error("{}: commit failed: {}", id, status.error().message);
    commit_reply_ = localError();
  }
  commit_wakeup_.cancel();
}

void Connection::onDataAbort(smtp::DataProblem why) {
  if (message_) {
    const char* reason = why == smtp::DataProblem::TooBig   ? "message too big"
                         : why == smtp::DataProblem::BareLf ? "bare LF refused"
                                                            : "aborted";
    spdlog::info("{}: discarded from {}: {}", message_->id(), peer_, reason);
  }
  message_.reset();
}

Status SmtpServer::Impl::start() {
  for (const auto& cfg : config_.listeners) {
    auto socket = std::make_unique<net::TcpListener>(io_);
    if (Status st = socket->bind(cfg.host, cfg.port); !st) {
      for (auto& l : listeners_) l.socket->close();
      listeners_.clear();
      return Error{"listener " + cfg.name + ": " + st.error().message, st.error().sys_errno};
    }
    listeners_.push_back({cfg, std::move(socket)});
  }
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    spdlog::info("listening on {} ({})", listeners_[i].socket->address(), listeners_[i].config.name);
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

void SmtpServer::Impl::stop() {
  stopping_ = true;
  for (auto& l : listeners_) l.socket->close();
  for (Connection* c : connections_) c->stop();
}

SmtpServer::SmtpServer(boost::asio::io_context& io, const config::Config& config,
                       queue::Spool& spool, CommittedCallback on_committed, Clock& clock)
    : impl_(std::make_shared<Impl>(io, config, spool, std::move(on_committed), clock)) {}

SmtpServer::~SmtpServer() = default;

Status SmtpServer::start() { return impl_->start(); }

void SmtpServer::stop() { impl_->stop(); }

std::vector<std::string> SmtpServer::boundAddresses() const {
  std::vector<std::string> out;
  for (const auto& l : impl_->listeners_) out.push_back(l.socket->address());
  return out;
}

std::size_t SmtpServer::activeSessions() const { return impl_->connections_.size(); }

}  // namespace mb::server
