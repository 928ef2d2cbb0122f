#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "queue/envelope.h"
#include "queue/first_attempt.h"

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
  /// Called on the spool's own thread for every committed message,
  /// before the client is told 250 (the queue manager's enqueue). With
  /// smtp.wait_for_delivery, the second argument wants the first attempt's
  /// verdict; otherwise it is empty.
  using CommittedCallback = std::function<void(const queue::Envelope&, queue::FirstAttemptCallback)>;

  /// The first From address of a message's header section (as much of it
  /// as arrived, up to 64 KB), "" if none: for senders.use_from_header. The
  /// server does not parse MIME itself; app/ passes mime::headerFromAddress.
  using HeaderFromParser = std::function<std::string(std::string_view header)>;

  /// A verifier for AUTH credentials of users not in auth.users (a graph
  /// provider with auth_mode user_password asks Entra ID). Called on the
  /// verification pool; blocking is fine.
  enum class Verdict { Success, Failure, TempFailure };
  using PasswordVerifier = std::function<Verdict(const std::string& user, const std::string& password)>;

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

  /// Stops accepting; sessions waiting for a command get 421 4.3.2 and are
  /// closed; a session in a transaction (MAIL given, message not yet
  /// answered) may finish it — its commit gets its reply, a session waiting
  /// for the first delivery attempt is answered "queued" at once — and then
  /// gets 421 4.3.2. The caller bounds how long that may take.
  void stop();

  /// A reloaded configuration (SIGHUP): sessions that connect from now on
  /// use its access, auth, sender, recipient and smtp settings and the
  /// lockout and per-IP limits; open sessions keep what they started with.
  /// Listener addresses and TLS modes are not changed here (they need a
  /// restart); a listener's other settings are taken by name. On the
  /// io_context's thread.
  void reconfigure(const config::Config& config);

  /// Sets the parser for use_from_header; before start(). Without one, the
  /// From header is never found and MAIL FROM decides.
  void setHeaderFromParser(HeaderFromParser parser);

  /// Told of every message once it is committed to the spool (for the
  /// statistics and the tracker): its envelope and, with `with_header`, the
  /// start of its header section (up to 64 KB, as much as arrived; else
  /// empty, and no session keeps a copy of it for the observer). Runs on the
  /// spool's own thread before the client hears 250: it must only
  /// hand the data on, never block.
  using AcceptedObserver = std::function<void(const queue::Envelope& env, std::string header)>;
  void setAcceptedObserver(AcceptedObserver observer, bool with_header = true);

  /// A client refused before anything was queued: its address, listener,
  /// what it had said so far, and the reply with a few fixed words of why
  /// ("IP not allowed", "sender not allowed" ...). For the tracker.
  struct Refusal {
    std::string client_ip;
    std::string listener;
    std::string auth_user;
    std::string sender;
    std::vector<std::string> recipients;
    int code = 0;
    std::string enhanced;
    std::string reason;
  };
  /// Told of each refusal on the I/O thread: it must only hand it on.
  using RefusalObserver = std::function<void(Refusal refusal)>;
  void setRefusalObserver(RefusalObserver observer);

  /// Sets the verifier for users auth.users does not have; before start().
  /// With one, listeners that allow AUTH offer it even without auth.users.
  void setPasswordVerifier(PasswordVerifier verifier);

  /// "127.0.0.1:2525" per listener, in configuration order (ports resolved).
  std::vector<std::string> boundAddresses() const;
  std::size_t activeSessions() const;

  class Impl;  // defined in smtp_server.cpp, shared with its connections

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mb::server
