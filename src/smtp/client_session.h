#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mb::smtp {

/// One reply as a server sent it (RFC 5321 §4.2): its code and the text of
/// each line (what follows "CODE-" or "CODE "). Remote text: for logs only,
/// never for our own SMTP clients.
struct ServerReply {
  int code = 0;
  std::vector<std::string> lines;

  /// The RFC 3463 code at the start of the first line ("5.1.1"), if any.
  std::string enhanced() const;
  /// "550 5.1.1 No such user" (lines joined by " "), printable ASCII only,
  /// cut to a length fit for a log line.
  std::string describe() const;
};

/// ReplyReader: splits what a server sends into replies. Lenient where
/// servers differ in harmless ways (a bare LF ends a line), strict where a
/// wrong guess would misread a reply (codes, continuation markers, a code
/// that changes inside a multi-line reply). Bounded: a line over
/// kMaxLineBytes or a reply over kMaxLines is an error, not a buffer.
class ReplyReader {
 public:
  static constexpr std::size_t kMaxLineBytes = 4096;
  static constexpr std::size_t kMaxLines = 200;

  void feed(std::string_view bytes);

  /// The next complete reply, if one has arrived. After an error, none.
  std::optional<ServerReply> next();

  /// Why the input cannot be read as replies; empty while it can.
  const std::string& error() const { return error_; }

  /// Bytes received but not yet part of a complete reply.
  bool pending() const { return !buffer_.empty() || !partial_.lines.empty(); }

  /// Forgets everything held (after STARTTLS, RFC 3207 §4.2).
  void clear();

 private:
  std::string buffer_;
  ServerReply partial_;
  std::string error_;
};

/// What a server's EHLO reply offers (RFC 5321 §4.1.1.1 and the extensions).
struct ServerCapabilities {
  bool starttls = false;           // RFC 3207
  bool pipelining = false;         // RFC 2920
  bool eight_bit_mime = false;     // RFC 6152
  bool smtputf8 = false;           // RFC 6531
  bool size = false;               // RFC 1870
  std::uint64_t size_limit = 0;    // 0: none given
  bool auth_plain = false;         // RFC 4954, RFC 4616
  bool auth_login = false;
  bool auth_xoauth2 = false;

  static ServerCapabilities fromEhlo(const ServerReply& ehlo);
};

/// How the client authenticates after EHLO (and after TLS).
enum class ClientAuth { None, Plain, Login, XOAuth2 };

struct ClientOptions {
  std::string helo_name;           // EHLO argument: a domain or an address literal
  bool require_starttls = true;    // on a plaintext connection: STARTTLS or give up
  bool tls_from_start = false;     // implicit TLS: the connection is already TLS
  ClientAuth auth = ClientAuth::None;
  std::string username;            // PLAIN/LOGIN account; XOAUTH2 user
  std::string secret;              // password, or the XOAUTH2 bearer token; wiped on destruction
};

/// One message to send on an established session.
struct ClientTransaction {
  std::string mail_from;           // without brackets; empty for the null sender
  std::vector<std::string> recipients;
  std::uint64_t size = 0;          // the content's size in octets, for SIZE=
  bool eight_bit = false;          // the content has octets over 127
  bool smtputf8 = false;           // an address is not ASCII
};

/// What became of one transaction: a final reply per recipient, in order.
/// Replies the server did not send are made up here (code 451, 4.4.2 for a
/// lost connection; 552 5.3.4 for SIZE) so that every recipient has one.
struct TransactionOutcome {
  std::vector<ServerReply> recipients;
  /// The connection was lost, or timed out, after the final dot and before
  /// its reply: the server may have taken the message. Retrying may deliver
  /// it twice; the log must say so.
  bool possible_duplicate = false;
  /// Nothing of this transaction reached the server's reply stage: the
  /// connection died before MAIL was answered. On a reused connection this
  /// is usually the server having closed it while idle; trying again on a
  /// new connection is safe.
  bool lost_before_mail_reply = false;
  /// The server's replies to MAIL, DATA and the dot, for the log.
  std::string log;
};

/// Why a session ended before it could carry a transaction, or was closed.
/// Always a reason to try again later: a refusal of the message itself is a
/// recipient's reply in TransactionOutcome, not this.
struct SessionFailure {
  bool auth_rejected = false;      // AUTH answered 535 (for XOAUTH2: drop the token)
  std::string detail;              // for the log; never holds the secret
};

/// ClientSession: the client side of SMTP for the upstream provider, as a
/// state machine without I/O (the driver in delivery/smtp owns the socket).
/// It reads the greeting, sends EHLO, STARTTLS when required (and stops
/// rather than go on in plaintext if the server does not offer it), EHLO
/// again, AUTH PLAIN / LOGIN / XOAUTH2, then carries transactions: MAIL with
/// SIZE, BODY=8BITMIME and SMTPUTF8 when offered, the RCPTs and DATA pipelined
/// when the server offers PIPELINING (RFC 2920) and one at a time otherwise,
/// a result per recipient from its RCPT reply, the final reply for those
/// accepted, RSET after a transaction that did not finish, QUIT.
///
/// The driver loops on step(): Write → send takeOutput(); Read → feed bytes
/// with receive(), or connectionLost(); StartTls → handshake, then
/// tlsStarted() or connectionLost(); Ready → begin() a transaction (or
/// quit()); SendBody → stream the content through DataEncoder, then
/// bodySent(); Closed → close the socket. takeOutcome() after a transaction
/// returns to Ready, or ends in Closed.
///
/// RFCs: 5321 (§3.3, §4.1, §4.5.3.2 for the timeouts the driver keeps),
/// 3207, 4954, 4616, 2920, 1870, 6152, 6531, 2034; XOAUTH2 as Google and
/// Microsoft document it (shared/reference).
///
/// Threading: a value; one thread at a time.
class ClientSession {
 public:
  enum class Step { Write, Read, StartTls, Ready, SendBody, Closed };

  explicit ClientSession(ClientOptions options);
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  Step step() const;

  /// The bytes to write now (clears them).
  std::string takeOutput();
  /// Bytes read from the server.
  void receive(std::string_view bytes);
  /// The connection ended or failed (EOF, reset, timeout, TLS failure).
  void connectionLost(std::string why);
  /// The TLS handshake after STARTTLS succeeded.
  void tlsStarted();

  /// Starts a transaction; only at Step::Ready. A message over the server's
  /// SIZE limit, or needing SMTPUTF8 that is not offered, ends at once (no
  /// command sent) with a permanent reply for every recipient.
  void begin(ClientTransaction tx);
  /// The content has been written through a DataEncoder (its finish()
  /// included): now the final reply is awaited.
  void bodySent();
  /// Whether a transaction has finished and its outcome waits.
  bool hasOutcome() const { return outcome_.has_value(); }
  TransactionOutcome takeOutcome();

  /// Sends QUIT (at Ready); the session then closes.
  void quit();

  /// Whether the final dot was sent and its reply is awaited (the driver
  /// waits longer here: RFC 5321 §4.5.3.2.6).
  bool awaitingDotReply() const;
  /// Set when the session closed without the driver asking (failure or 421).
  const std::optional<SessionFailure>& failure() const { return failure_; }
  const ServerCapabilities& capabilities() const { return caps_; }
  bool tls() const { return tls_; }
  /// Transactions completed on this session (for reuse limits).
  std::size_t transactions() const { return transactions_; }

 private:
  enum class Expect { Greeting, Ehlo, StartTls, Auth, AuthStep, Mail, Rcpt, Data, Dot, Rset, Quit };
  enum class Phase { Greeting, Ehlo, StartTlsReply, Handshake, Auth, Ready, Transaction, Body, Closing, Closed };

  void handle(const ServerReply& reply);
  void onGreeting(const ServerReply& reply);
  void onEhlo(const ServerReply& reply);
  void afterEhlo();
  void startAuth();
  void onAuth(const ServerReply& reply);
  void onMail(const ServerReply& reply);
  void onRcpt(const ServerReply& reply);
  void onData(const ServerReply& reply);
  void onDot(const ServerReply& reply);
  void finishTransaction(bool needs_rset);
  void fail(std::string detail, bool auth_rejected = false);
  std::string plainResponse() const;
  void send(std::string line);
  void sendRcpt(std::size_t index);
  void failPending(const ServerReply& reply);
  static ServerReply made(int code, std::string text);

  ClientOptions options_;
  ReplyReader reader_;
  ServerCapabilities caps_;
  Phase phase_ = Phase::Greeting;
  std::deque<Expect> expected_;
  std::string out_;
  bool tls_ = false;
  std::optional<SessionFailure> failure_;

  // AUTH LOGIN / XOAUTH2 progress: how many 334 challenges were answered.
  int auth_step_ = 0;
  // The JSON of an XOAUTH2 error challenge, for the log.
  std::string auth_error_;

  // The transaction in progress.
  ClientTransaction tx_;
  std::vector<std::optional<ServerReply>> rcpt_replies_;
  std::size_t next_rcpt_reply_ = 0;
  std::size_t accepted_ = 0;
  bool mail_accepted_ = false;
  bool mail_answered_ = false;
  bool dot_sent_ = false;
  std::string tx_log_;
  std::optional<TransactionOutcome> outcome_;
  std::size_t transactions_ = 0;
};

/// DataEncoder: turns stored message content into DATA content (RFC 5321
/// §4.5.2, §2.3.8): every line end CRLF (a bare LF or CR becomes one, so no
/// bare CR or LF is ever sent), a leading "." doubled, a line over 998
/// octets broken by inserting CRLF and a space (what Postfix does: it keeps
/// header fields folded and harms MIME least). finish() closes the last
/// line and adds the terminating ".". Feed it in pieces of any size.
class DataEncoder {
 public:
  static constexpr std::size_t kMaxLine = 998;

  /// Appends the encoding of `in` to `out`.
  void encode(std::string_view in, std::string& out);
  /// Appends the end: CRLF if a line is open, then ".\r\n".
  void finish(std::string& out);

 private:
  std::size_t column_ = 0;
  bool pending_cr_ = false;
};

}  // namespace mb::smtp
