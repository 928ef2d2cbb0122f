#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/reply.h"

namespace mb::smtp {

/// Where a ServerSession writes its replies. The driver (server/) collects
/// them and writes them to the socket after each feed(), so pipelined replies
/// go out together and in order (RFC 2920).
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  /// `wire` is one complete reply, CRLF-terminated, possibly multi-line.
  virtual void sendReply(std::string_view wire) = 0;
};

enum class BareLf { Normalize, Reject };

struct SessionLimits {
  std::string hostname = "localhost";          // in the greeting and EHLO
  std::uint64_t max_message_size = 25ull * 1024 * 1024;  // SIZE; 552 5.3.4 beyond
  std::size_t max_recipients = 500;            // 452 4.5.3 beyond
  std::size_t max_command_line = 512;          // octets with CRLF; 500 5.5.6 beyond
  std::size_t max_auth_line = 12288;           // RFC 4954 §4; 500 5.5.6 beyond
  std::size_t max_errors = 20;                 // then 421 4.7.0 and close
  BareLf bare_lf = BareLf::Normalize;
  std::size_t max_line_length = 1000;          // content line, octets with CRLF
  bool reject_long_lines = true;               // false: longer lines pass unchanged
};

/// What this connection offers; set by the driver before greet() and again
/// by tlsStarted().
struct SessionFeatures {
  bool starttls = false;         // listener has tls: starttls (advertised until TLS is up)
  bool tls_active = false;       // the connection is encrypted
  bool auth = false;             // listener allows AUTH (auth: optional | required)
  bool auth_without_tls = false; // allow_plaintext_auth: offer AUTH before TLS
};

/// Credentials from AUTH PLAIN or LOGIN (RFC 4616, draft-murchison-sasl-login).
/// The password is only for the verifier; it is wiped when the session drops
/// the request.
struct AuthRequest {
  std::string mechanism;         // "PLAIN" or "LOGIN"
  std::string authzid;           // PLAIN only; usually empty
  std::string user;
  std::string password;
};

enum class AuthResult {
  Success,        // 235 2.7.0
  Failure,        // 535 5.7.8, the session goes on
  TempFailure,    // 454 4.7.0 (verifier unavailable)
  LockedOut,      // 421 4.7.0, close
};

/// What MAIL FROM said.
struct MailFrom {
  std::string address;                         // empty for the null sender <>
  std::optional<std::uint64_t> size;           // SIZE= (RFC 1870)
  bool body_8bitmime = false;                  // BODY=8BITMIME (RFC 6152)
  bool smtputf8 = false;                       // SMTPUTF8 (RFC 6531)
};

/// The transaction so far, as the handler sees it.
struct Transaction {
  std::string helo;                            // EHLO/HELO argument, validated printable
  bool esmtp = false;                          // EHLO rather than HELO
  bool tls = false;                            // the connection is encrypted
  std::string auth_user;                       // authenticated user; empty if none
  MailFrom mail;
  std::vector<std::string> recipients;         // accepted RCPT TO addresses, in order
};

/// Why DATA did not end in a message to commit; the session answers these
/// itself (552 5.3.4, 550 5.5.2, 500 5.5.6) after telling the handler to
/// discard.
enum class DataProblem { None, TooBig, BareLf, LineTooLong };

/// The server side of a session: policy decisions and message storage. The
/// session calls it synchronously, on the thread that calls feed().
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;

  /// MAIL accepted by the protocol; return a reply to refuse it (e.g. 530
  /// 5.7.0, 452 4.3.1), or nullopt for "250 2.1.0".
  virtual std::optional<Reply> onMail(const Transaction& txn) = 0;

  /// A syntactically valid recipient; nullopt for "250 2.1.5".
  virtual std::optional<Reply> onRcpt(const Transaction& txn, std::string_view recipient) = 0;

  /// DATA accepted by the protocol: open storage for the message (and write
  /// the Received: header). A reply refuses it (451 4.3.0 when the spool
  /// cannot be written); nullopt lets the session answer 354.
  virtual std::optional<Reply> onDataStart(const Transaction& txn) = 0;

  /// Message content: dot-unstuffed, every line ending in CRLF. Called with
  /// pieces of any size as they arrive; never with more than
  /// max_message_size in total.
  virtual void onDataChunk(std::string_view bytes) = 0;

  /// The final dot arrived and the content is complete and acceptable. The
  /// handler commits it (asynchronously if it likes) and then the driver
  /// calls ServerSession::completeData() with the reply; until then the
  /// session is waiting and buffers any further input without acting on it.
  virtual void onDataEnd(const Transaction& txn) = 0;

  /// Drop whatever onDataStart opened (too big, bare LF refused, RSET is not
  /// possible mid-DATA, the connection went away, shutdown).
  virtual void onDataAbort(DataProblem why) = 0;

  /// AUTH credentials are complete. The handler verifies them (off the I/O
  /// thread: argon2id is slow on purpose) and the driver then calls
  /// ServerSession::completeAuth(); until then the session waits.
  virtual void onAuth(const AuthRequest& request) = 0;
};

/// ServerSession: the SMTP server protocol of RFC 5321 (with RFC 1870 SIZE,
/// RFC 2920 PIPELINING, RFC 3030 CHUNKING, RFC 3207 STARTTLS, RFC 3463
/// enhanced codes, RFC 4954 AUTH with PLAIN and LOGIN, RFC 6152 8BITMIME,
/// RFC 6531 SMTPUTF8) as a state machine without I/O. The driver feeds it the client's bytes and
/// writes what it sends to the ReplySink; decisions about senders, recipients
/// and storage go to the SessionHandler.
///
/// Threading: not thread-safe; one driver calls it from one thread.
/// Talks to: ReplySink (out), SessionHandler (policy and storage).
class ServerSession {
 public:
  ServerSession(SessionLimits limits, SessionHandler& handler, ReplySink& sink);
  ~ServerSession();
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  /// What the connection offers (STARTTLS, AUTH); call before greet().
  void setFeatures(const SessionFeatures& features);

  /// Sends the 220 greeting.
  void greet();

  /// Sends `reply` (e.g. 554 5.7.1 for a client that may not connect, or 421
  /// 4.7.0 for too many connections) instead of the greeting and closes.
  void refuse(const Reply& reply);

  /// Bytes from the client, in any split. Processes as many complete
  /// commands / data as it can; stops early when closed() or
  /// awaitingCommit(), keeping the rest buffered.
  void feed(std::string_view bytes);

  /// True between onDataEnd() and completeData().
  bool awaitingCommit() const;

  /// The answer to the final dot (250 2.0.0 queued, 451 4.3.0 ...). Sends it,
  /// resets the transaction and continues with buffered input.
  void completeData(const Reply& reply);

  /// True between onAuth() and completeAuth().
  bool awaitingAuth() const;

  /// The verifier's answer: sends 235 / 535 / 454 / 421 and continues.
  void completeAuth(AuthResult result);

  /// STARTTLS was accepted: "220 2.0.0" is in the sink and every byte the
  /// client sent after the STARTTLS line has been thrown away (CVE-2011-0411).
  /// The driver flushes, runs the TLS handshake, then calls tlsStarted(), or
  /// closes the connection if the handshake fails.
  bool tlsRequested() const;

  /// TLS is up: forget everything learnt before it (HELO, transaction,
  /// authentication, buffered input) as RFC 3207 §4.2 requires, stop
  /// advertising STARTTLS, and wait for a new EHLO. No reply is sent.
  void tlsStarted();

  /// The authenticated user, empty if none.
  const std::string& authUser() const;

  /// The client was idle too long: 421 4.4.2 and close.
  void timeout();

  /// The server is stopping: 421 4.3.2 and close (aborting any DATA).
  void shutdown();

  /// The connection dropped: abort any open message; no reply.
  void disconnected();

  /// QUIT was answered, or a 421 was sent: the driver flushes replies and
  /// closes the connection.
  bool closed() const;

  /// True while reading message content (after 354, before the final dot);
  /// the driver uses the longer data timeout then.
  bool inData() const;

  /// True from an accepted MAIL until the transaction ends (the answer to
  /// the final dot or the last BDAT chunk, RSET, HELO/EHLO). A stopping
  /// server lets such a session finish before it sends 421.
  bool inTransaction() const;

  /// Bytes fed but not yet processed (bounded by the driver not reading
  /// while awaitingCommit()).
  std::size_t buffered() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// The Received: header (RFC 5321 §4.4) the relay prepends, CRLF-terminated
/// and folded. Client-supplied text (the HELO name) is sanitised.
struct ReceivedInfo {
  std::string helo;
  std::string client_address;     // "192.0.2.1" or "2001:db8::1"
  std::string by_host;            // our hostname
  std::string protocol;           // "ESMTP", "SMTP", "ESMTPS", "ESMTPA", "ESMTPSA"
  std::string id;                 // queue id
  std::string for_recipient;      // only when there is exactly one recipient
  std::string date;               // RFC 5322 date-time
};
std::string formatReceived(const ReceivedInfo& info);


}  // namespace mb::smtp
