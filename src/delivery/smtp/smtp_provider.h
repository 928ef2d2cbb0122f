#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/worker_pool.h"
#include "config/config.h"
#include "delivery/provider.h"
#include "net/client_connection.h"

namespace mb::oauth {
class TokenSource;
}

namespace mb::delivery::smtp {

/// SmtpProvider: delivers to an upstream SMTP server ("smarthost", `type:
/// smtp`) with smtp::ClientSession over net::ClientConnection. The
/// connection is protected as configured: STARTTLS, required by default (a
/// server that does not offer it, or a STARTTLS stripped on the way, fails
/// the attempt; nothing goes in plaintext), implicit TLS, or none for a
/// loopback host; the certificate is verified against the system store or
/// ca_file. It authenticates with AUTH PLAIN or LOGIN (username and
/// password) or XOAUTH2, the bearer token coming from a TokenSource for the
/// XOAUTH2 user (`username`, else the message's sending mailbox).
///
/// The envelope is sent as it is: MAIL FROM the sending mailbox (the null
/// sender stays null), RCPT TO each pending recipient, and the stored
/// content unchanged apart from what SMTP needs (smtp::DataEncoder). Each
/// RCPT reply decides that recipient: 2xx goes on to DATA, 4xx is retried
/// later, 5xx bounced with the server's code; the final reply decides the
/// accepted ones. A connection lost, or a reply not arriving, after the
/// final dot is a temporary failure logged as a possible duplicate.
///
/// Connections are reused for bursts: after a transaction a session stays
/// open for idle_timeout and at most max_messages_per_connection
/// messages, for messages with the same XOAUTH2 user. At most
/// max_connections are open at once, active or idle (one per worker
/// thread; an idle one is closed to make room).
///
/// Threading: deliver() queues the attempt on the provider's worker pool
/// (max_connections threads); done is called on a worker. A reaper thread
/// closes idle connections.
class SmtpProvider final : public Provider {
 public:
  /// The token source for one XOAUTH2 user; nullptr when none can be made.
  using TokenSelector = std::function<std::shared_ptr<oauth::TokenSource>(const std::string& user)>;

  /// `helo_name`: the EHLO name when the configuration gives none.
  SmtpProvider(config::ProviderConfig config, std::string helo_name, TokenSelector tokens);
  ~SmtpProvider() override;

  // Provider
  const std::string& name() const override { return config_.name; }
  void deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) override;

  /// One attempt, on the calling thread (what the pool runs; for tests).
  queue::DeliveryResult attempt(const queue::DeliveryJob& job);

  /// Connections open now, active or idle (for tests and status).
  std::size_t openConnections() const;

  /// For `mailbridge check-provider`: connects, protects and authenticates
  /// as the daemon would (as `user` for XOAUTH2), sends QUIT and describes
  /// what it found ("192.0.2.1:587, TLSv1.3 ..., AUTH PLAIN as relay@x:
  /// ok, SIZE 35882577, PIPELINING"), or why it could not.
  Result<std::string> probe(const std::string& user);

  /// The XOAUTH2 user for a message from `mailbox`: `username` when set,
  /// the signed-in `user` with auth_mode refresh_token, else `mailbox`.
  std::string xoauth2User(const std::string& mailbox) const;

 private:
  struct Connection;
  struct Opened;

  Opened open(const std::string& user);
  std::unique_ptr<Connection> takeIdle(const std::string& user);
  void release(std::unique_ptr<Connection> c);
  void closeConnection(std::unique_ptr<Connection> c, bool polite);
  void reap();

  const config::ProviderConfig config_;
  const std::string helo_name_;
  const TokenSelector tokens_;
  const net::ClientTlsOptions tls_;  // the server's name and ca_file

  mutable std::mutex mutex_;
  std::condition_variable reaper_wake_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;
  bool stopping_ = false;
  std::thread reaper_;
  WorkerPool pool_;
};

}  // namespace mb::delivery::smtp
