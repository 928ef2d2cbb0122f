#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "queue/envelope.h"

namespace boost::asio {
class io_context;
}

namespace mb::queue {
class Spool;
}

namespace mb::net {
class TlsContextHolder;
}

namespace mb::server {

/// SmtpServer: accepts connections on every configured listener and runs one
/// smtp::ServerSession per connection on the io_context, feeding it the
/// client's bytes and writing its replies. Carries TLS (implicit or
/// STARTTLS) through net::Stream, verifies AUTH credentials on a small
/// worker pool (argon2id is slow and large on purpose) with brute-force
/// lockouts, applies the access policy (allowed networks at connect,
/// anonymous networks or AUTH at MAIL, sender and recipient rules),
/// connection limits, timeouts and a minimum data rate, and stores messages
/// through the Spool: content is streamed to disk during DATA/BDAT and "250"
/// is sent only after the spool's durable commit succeeded and
/// `on_committed` was called.
///
/// Threading: everything runs on the io_context's thread; the spool's commit
/// callbacks are posted back to it. stop() must be called on that thread (or
/// posted to it).
class SmtpServer {
 public:
  /// Called on the spool's committer thread for every committed message,
  /// before the client is told 250 (the queue manager's enqueue).
  using CommittedCallback = std::function<void(const queue::Envelope&)>;

  /// `tls` holds the certificate for TLS listeners; it may be null when no
  /// listener uses TLS.
  SmtpServer(boost::asio::io_context& io, const config::Config& config, queue::Spool& spool,
             CommittedCallback on_committed, Clock& clock,
             std::shared_ptr<net::TlsContextHolder> tls);
  ~SmtpServer();
  SmtpServer(const SmtpServer&) = delete;
  SmtpServer& operator=(const SmtpServer&) = delete;

  /// Binds every listener (all or nothing) and starts accepting. Logs
  /// "listening on ADDRESS" for each.
  Status start();

  /// Stops accepting; idle sessions get 421 4.3.2 and are closed, sessions in
  /// a transaction finish the command they are in (a commit under way still
  /// gets its reply) and are then closed.
  void stop();

  /// "127.0.0.1:2525" per listener, in configuration order (ports resolved).
  std::vector<std::string> boundAddresses() const;
  std::size_t activeSessions() const;

  class Impl;  // defined in smtp_server.cpp, shared with its connections

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mb::server
