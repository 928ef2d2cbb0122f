#include "delivery/smtp/smtp_provider.h"

#include <algorithm>
#include <array>
#include <system_error>
#include <utility>

#include "base/durable_file.h"
#include "base/log.h"
#include "base/worker_pool.h"
#include "delivery/results.h"
#include "mime/header_block.h"
#include "mime/recipient_rewrite.h"
#include "net/client_connection.h"
#include "oauth/token_source.h"
#include "smtp/client_session.h"
#include "smtp/sasl.h"

namespace mb::delivery::smtp {
namespace {

using mb::smtp::ClientSession;
using mb::smtp::ServerReply;
using queue::DeliveryResult;
using queue::Outcome;
using queue::RecipientResult;
using Step = ClientSession::Step;
using std::chrono::milliseconds;

// RFC 5321 §4.5.3.2.6: a client should wait 10 minutes for the reply to the
// final dot; the server may be scanning the message. Giving up earlier
// makes duplicates more likely, not fewer.
constexpr auto kDotReplyTimeout = std::chrono::minutes(10);
// How long QUIT may take when an idle connection is closed.
constexpr auto kQuitTimeout = std::chrono::seconds(2);

struct Io {
  milliseconds timeout;
  net::ClientTlsOptions tls;
};

// Does the session's I/O until it needs the caller: Ready, SendBody or
// Closed. Output may hold credentials (AUTH), so it is wiped once written.
Step drive(net::ClientConnection& c, ClientSession& s, const Io& io) {
  std::array<char, 16 * 1024> buf{};
  for (;;) {
    switch (s.step()) {
      case Step::Write: {
        std::string out = s.takeOutput();
        Status st = c.write(out, io.timeout);
        mb::smtp::wipe(out);
        if (!st) s.connectionLost("sending to " + c.peer() + " failed: " + st.error().message);
        break;
      }
      case Step::Read: {
        const milliseconds wait =
            s.awaitingDotReply() ? std::max<milliseconds>(io.timeout, kDotReplyTimeout) : io.timeout;
        auto n = c.readSome(buf.data(), buf.size(), wait);
        if (!n) {
          s.connectionLost("waiting for a reply from " + c.peer() + ": " + n.error().message);
        } else {
          s.receive(std::string_view(buf.data(), *n));
        }
        break;
      }
      case Step::StartTls:
        if (Status st = c.startTls(io.tls, io.timeout); !st) {
          s.connectionLost(st.error().message);
        } else {
          s.tlsStarted();
        }
        break;
      default:
        return s.step();
    }
  }
}

// Streams the stored message (the first `size` bytes of `content`; the
// spool may keep more after them) as DATA content. A read error, or a file
// shorter than `size`, leaves the message unterminated on purpose: the
// caller closes the connection, and a server discards a message whose final
// dot never came.
Status sendBody(net::ClientConnection& c, const std::filesystem::path& content, std::uint64_t size,
                milliseconds timeout) {
  mb::smtp::DataEncoder encoder;
  std::string out;
  Status st = fs::streamFileRange(content, 0, size, [&](std::string_view piece) -> Status {
    out.clear();
    encoder.encode(piece, out);
    if (Status w = c.write(out, timeout); !w) return Error{"sending the message failed: " + w.error().message};
    return {};
  });
  if (!st) return st;  // a read error names the file, a send error says so
  out.clear();
  encoder.finish(out);
  if (Status w = c.write(out, timeout); !w) return Error{"sending the message failed: " + w.error().message};
  return {};
}

// Whether the message (the first `size` bytes of `content`) has octets over
// 127 (BODY=8BITMIME, RFC 6152); reading stops at the first. Fails when the
// file is shorter than `size` (sendBody() would fail on it anyway).
Result<bool> hasEightBit(const std::filesystem::path& content, std::uint64_t size) {
  std::error_code ec;
  const std::uint64_t on_disk = std::filesystem::file_size(content, ec);
  if (ec) return Error{"cannot read " + content.string() + ": " + ec.message()};
  if (on_disk < size) {
    return Error{content.string() + " holds " + std::to_string(on_disk) + " bytes, the message " +
                 std::to_string(size) + " (shorter)"};
  }
  bool eight_bit = false;
  Status st = fs::streamFileRange(content, 0, size, [&eight_bit](std::string_view piece) -> Status {
    eight_bit = std::any_of(piece.begin(), piece.end(), [](char ch) { return static_cast<unsigned char>(ch) > 127; });
    return eight_bit ? Status{Error{"found"}} : Status{};  // stops the reading
  });
  if (!st && !eight_bit) return st.error();
  return eight_bit;
}

bool isAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) { return static_cast<unsigned char>(ch) < 128; });
}

mb::smtp::ClientAuth clientAuth(config::SmtpAuth a) {
  switch (a) {
    case config::SmtpAuth::Plain:
      return mb::smtp::ClientAuth::Plain;
    case config::SmtpAuth::Login:
      return mb::smtp::ClientAuth::Login;
    case config::SmtpAuth::XOAuth2:
      return mb::smtp::ClientAuth::XOAuth2;
    case config::SmtpAuth::None:
      break;
  }
  return mb::smtp::ClientAuth::None;
}

// What the server's reply means for one recipient. Its text stays in the
// detail (the log, the DSN's diagnostic); an SMTP client waiting for the
// delivery sees only the code and fixed words.
RecipientResult resultOf(const ServerReply& r, const std::string& host) {
  const std::string said = host + " said: " + r.describe();
  RecipientResult out;
  if (r.code >= 200 && r.code < 300) {
    out.outcome = Outcome::Delivered;
    out.smtp_code = 250;
    out.enhanced = "2.0.0";
    out.detail = said;
  } else if (r.code < 500) {
    out = temporaryFailure(said);
    if (r.code >= 400) out.smtp_code = r.code;
    if (const auto e = r.enhanced(); !e.empty()) out.enhanced = e;
  } else {
    const std::string enhanced = r.enhanced();
    out = permanentFailure(r.code, enhanced.empty() ? "5.0.0" : enhanced.c_str(), "refused by the upstream server",
                           said);
  }
  return out;
}

}  // namespace

struct SmtpProvider::Connection {
  std::unique_ptr<net::ClientConnection> conn;
  std::unique_ptr<ClientSession> session;
  std::string user;  // the XOAUTH2 user it authenticated as; "" otherwise
  std::chrono::steady_clock::time_point idle_since;
};

struct SmtpProvider::Opened {
  std::unique_ptr<Connection> connection;
  std::string error;  // why there is none
};

SmtpProvider::SmtpProvider(config::ProviderConfig config, std::string helo_name, TokenSelector tokens)
    : config_(std::move(config)),
      helo_name_(config_.helo_name.empty() ? std::move(helo_name) : config_.helo_name),
      tokens_(std::move(tokens)),
      tls_{config_.host, config_.ca_file},
      pool_(std::max<std::size_t>(1, config_.max_connections), WorkerPool::kUnbounded, "mb-smtp-out") {
  reaper_ = std::thread([this] {
    nameThisThread("mb-smtp-idle");
    reap();
  });
}

SmtpProvider::~SmtpProvider() {
  pool_.stop();
  std::vector<std::unique_ptr<Connection>> idle;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    idle.swap(idle_);
  }
  reaper_wake_.notify_all();
  reaper_.join();
  for (auto& c : idle) closeConnection(std::move(c), true);
}

void SmtpProvider::deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) {
  deliverOnPool(pool_, config_.name, job, std::move(done), [this](const queue::DeliveryJob& j) { return attempt(j); });
}

std::size_t SmtpProvider::openConnections() const {
  std::lock_guard lock(mutex_);
  return open_;
}

SmtpProvider::Opened SmtpProvider::open(const std::string& user) {
  // Make room under max_connections by closing the oldest idle connection
  // (one for another XOAUTH2 user: takeIdle() found none for this one).
  std::unique_ptr<Connection> evict;
  {
    std::lock_guard lock(mutex_);
    if (open_ >= std::max<std::size_t>(1, config_.max_connections) && !idle_.empty()) {
      evict = std::move(idle_.front());
      idle_.erase(idle_.begin());
    }
    ++open_;
  }
  if (evict) closeConnection(std::move(evict), true);
  const auto unreserve = [this] {
    std::lock_guard lock(mutex_);
    --open_;
  };

  const milliseconds timeout = config_.timeout;
  mb::smtp::ClientOptions options;
  options.helo_name = helo_name_;
  options.require_starttls = config_.tls == config::SmtpTls::StartTls;
  options.tls_from_start = config_.tls == config::SmtpTls::Implicit;
  options.auth = clientAuth(config_.auth);
  options.username = config_.auth == config::SmtpAuth::XOAuth2 ? user : config_.username;
  std::shared_ptr<oauth::TokenSource> source;
  std::string token;
  if (config_.auth == config::SmtpAuth::XOAuth2) {
    source = tokens_ ? tokens_(user) : nullptr;
    if (!source) {
      unreserve();
      return {nullptr, "no token source for XOAUTH2 user " + user};
    }
    auto t = source->token();
    if (!t) {
      unreserve();
      return {nullptr, "no access token for XOAUTH2 user " + user + ": " + t.failure().explanation};
    }
    token = t->value;
    options.secret = token;
  } else if (config_.auth != config::SmtpAuth::None) {
    options.secret = config_.password.reveal();
  }

  auto conn = net::ClientConnection::connect(config_.host, config_.port, timeout);
  if (!conn) {
    mb::smtp::wipe(token);
    unreserve();
    return {nullptr, conn.error().message};
  }
  const Io io{timeout, tls_};
  if (config_.tls == config::SmtpTls::Implicit) {
    if (Status st = (*conn)->startTls(io.tls, timeout); !st) {
      mb::smtp::wipe(token);
      unreserve();
      return {nullptr, st.error().message};
    }
  }
  auto c = std::make_unique<Connection>();
  c->conn = std::move(*conn);
  c->session = std::make_unique<ClientSession>(std::move(options));
  c->user = config_.auth == config::SmtpAuth::XOAuth2 ? user : std::string();
  const Step step = drive(*c->conn, *c->session, io);
  if (step != Step::Ready) {
    const auto& failure = c->session->failure();
    std::string why = failure ? failure->detail : "the session ended unexpectedly";
    if (failure && failure->auth_rejected && source) {
      // A token the server refused is not used again: the next attempt
      // fetches a new one (revoked consent, a token issued before a change).
      source->invalidate(token);
    }
    mb::smtp::wipe(token);
    c->conn->close();
    unreserve();
    return {nullptr, std::move(why)};
  }
  mb::smtp::wipe(token);
  spdlog::debug("{}: connected to {} ({}{})", config_.name, c->conn->peer(),
                c->conn->tls() ? c->conn->tlsDescription() : "no TLS",
                c->session->capabilities().pipelining ? ", pipelining" : "");
  return {std::move(c), {}};
}

std::string SmtpProvider::xoauth2User(const std::string& mailbox) const {
  // A refresh token belongs to the account that signed in; otherwise the
  // token (app-only, or a service account acting as anyone) serves the
  // sending mailbox.
  if (!config_.username.empty()) return config_.username;
  if (config_.auth_mode == config::GraphAuthMode::RefreshToken) return config_.user;
  return mailbox;
}

Result<std::string> SmtpProvider::probe(const std::string& user) {
  Opened o = open(user);
  if (!o.connection) return Error{o.error};
  const auto& caps = o.connection->session->capabilities();
  std::string out = o.connection->conn->peer() + ", " +
                    (o.connection->conn->tls() ? o.connection->conn->tlsDescription() + " (certificate verified)"
                                               : std::string("no TLS"));
  switch (config_.auth) {
    case config::SmtpAuth::None:
      out += ", no AUTH";
      break;
    case config::SmtpAuth::Plain:
    case config::SmtpAuth::Login:
      out += std::string(", AUTH ") + (config_.auth == config::SmtpAuth::Plain ? "PLAIN" : "LOGIN") + " as " +
             config_.username + ": ok";
      break;
    case config::SmtpAuth::XOAuth2:
      out += ", AUTH XOAUTH2 as " + user + ": ok";
      break;
  }
  if (caps.size) out += caps.size_limit > 0 ? ", SIZE " + std::to_string(caps.size_limit) : ", SIZE";
  if (caps.pipelining) out += ", PIPELINING";
  if (caps.eight_bit_mime) out += ", 8BITMIME";
  if (caps.smtputf8) out += ", SMTPUTF8";
  closeConnection(std::move(o.connection), true);
  return out;
}

std::unique_ptr<SmtpProvider::Connection> SmtpProvider::takeIdle(const std::string& user) {
  std::lock_guard lock(mutex_);
  // The most recently used first: it is the least likely to have been
  // closed by the server.
  for (auto it = idle_.rbegin(); it != idle_.rend(); ++it) {
    if ((*it)->user == user) {
      auto c = std::move(*it);
      idle_.erase(std::next(it).base());
      return c;
    }
  }
  return nullptr;
}

void SmtpProvider::release(std::unique_ptr<Connection> c) {
  const bool reusable = c->conn->open() && c->session->step() == Step::Ready && !c->session->hasOutcome() &&
                        c->session->transactions() < config_.max_messages_per_connection &&
                        config_.idle_timeout.count() > 0;
  if (reusable) {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      c->idle_since = std::chrono::steady_clock::now();
      idle_.push_back(std::move(c));
      reaper_wake_.notify_all();
      return;
    }
  }
  closeConnection(std::move(c), true);
}

void SmtpProvider::closeConnection(std::unique_ptr<Connection> c, bool polite) {
  if (polite && c->conn->open() && c->session->step() == Step::Ready) {
    c->session->quit();
    drive(*c->conn, *c->session, Io{kQuitTimeout, tls_});
  }
  c->conn->close();
  std::lock_guard lock(mutex_);
  --open_;
}

void SmtpProvider::reap() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::unique_ptr<Connection>> expired;
    auto next = now + std::chrono::hours(1);
    for (auto it = idle_.begin(); it != idle_.end();) {
      const auto due = (*it)->idle_since + config_.idle_timeout;
      if (due <= now) {
        expired.push_back(std::move(*it));
        it = idle_.erase(it);
      } else {
        next = std::min(next, due);
        ++it;
      }
    }
    if (!expired.empty()) {
      lock.unlock();
      for (auto& c : expired) closeConnection(std::move(c), true);
      lock.lock();
      continue;
    }
    reaper_wake_.wait_until(lock, next);
  }
}

DeliveryResult SmtpProvider::attempt(const queue::DeliveryJob& job) {
  const std::string& id = job.envelope.id;
  mb::smtp::ClientTransaction tx;
  tx.mail_from = job.envelope.sender.empty() ? std::string() : job.envelope.sendingMailbox();
  for (std::size_t i : job.recipients) tx.recipients.push_back(job.envelope.recipients.at(i).address);
  tx.smtputf8 = !isAscii(tx.mail_from) ||
                std::any_of(tx.recipients.begin(), tx.recipients.end(), [](const std::string& r) { return !isAscii(r); });
  // The message is the first envelope.size bytes of the content file; the
  // spool may keep more after them, which must never be sent.
  tx.size = job.envelope.size;
  auto eight_bit = hasEightBit(job.content, tx.size);
  if (!eight_bit) {
    spdlog::error("{}: {}", id, eight_bit.error().message);
    return sameForAll(job, config_.name, temporaryFailure("cannot read the stored message: " + eight_bit.error().message));
  }
  tx.eight_bit = *eight_bit;

  std::string user;
  if (config_.auth == config::SmtpAuth::XOAuth2) {
    user = xoauth2User(tx.mail_from);
    if (user.empty()) {
      // The null sender (a bounce): the From header names the mailbox.
      if (auto block = mime::readHeaderBlock(mime::ContentFile{job.content, tx.size})) {
        user = mime::headerFromAddress(block->bytes);
      }
    }
    if (user.empty()) {
      spdlog::error("{}: {}: no mailbox to authenticate as for XOAUTH2 (null sender, no From); set username", id,
                    config_.name);
      return sameForAll(job, config_.name,
                        temporaryFailure("no mailbox to authenticate as for XOAUTH2; set the provider's username"));
    }
  }

  const Io io{config_.timeout, tls_};
  for (int round = 0; round < 2; ++round) {
    std::unique_ptr<Connection> c = round == 0 ? takeIdle(user) : nullptr;
    const bool reused = c != nullptr;
    if (!c) {
      Opened o = open(user);
      if (!o.connection) {
        spdlog::warn("{}: {} ({}:{}): {}", id, config_.name, config_.host, config_.port, o.error);
        return sameForAll(job, config_.name, temporaryFailure(config_.host + ": " + o.error, "4.4.2"));
      }
      c = std::move(o.connection);
    }
    ClientSession& s = *c->session;
    s.begin(tx);
    Step step = drive(*c->conn, s, io);
    if (step == Step::SendBody) {
      if (Status st = sendBody(*c->conn, job.content, tx.size, io.timeout); !st) {
        // Without the final dot the server drops what it got.
        spdlog::warn("{}: {}: {}", id, config_.name, st.error().message);
        c->conn->close();
        s.connectionLost(st.error().message);
      } else {
        s.bodySent();
        step = drive(*c->conn, s, io);
      }
    }
    if (!s.hasOutcome()) {
      const std::string why = s.failure() ? s.failure()->detail : "the session ended without an outcome";
      closeConnection(std::move(c), false);
      return sameForAll(job, config_.name, temporaryFailure(config_.host + ": " + why, "4.4.2"));
    }
    mb::smtp::TransactionOutcome outcome = s.takeOutcome();
    if (outcome.lost_before_mail_reply && reused) {
      // Most likely the server closed the idle connection; nothing of this
      // message reached it, so a new connection is safe.
      spdlog::debug("{}: {}: reused connection was gone ({}); opening a new one", id, config_.name,
                    s.failure() ? s.failure()->detail : "closed");
      closeConnection(std::move(c), false);
      continue;
    }
    if (outcome.possible_duplicate) {
      spdlog::warn("{}: {}: no reply to the end of the message from {} ({}); it will be sent again and may arrive "
                   "twice",
                   id, config_.name, config_.host, s.failure() ? s.failure()->detail : "connection lost");
    }
    DeliveryResult result;
    result.provider = config_.name;
    for (const auto& r : outcome.recipients) result.results.push_back(resultOf(r, config_.host));
    spdlog::info("{}: {} via {}: {}", id, config_.name, config_.host, outcome.log);
    release(std::move(c));
    return result;
  }
  return sameForAll(job, config_.name, temporaryFailure(config_.host + ": connection lost twice before MAIL", "4.4.2"));
}

}  // namespace mb::delivery::smtp
