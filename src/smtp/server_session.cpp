#include "smtp/server_session.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "base/text.h"
#include "smtp/chunk_reader.h"
#include "smtp/command.h"
#include "smtp/data_reader.h"
#include "smtp/sasl.h"

namespace mb::smtp {

namespace {

Reply badSequence(std::string text) { return Reply{503, "5.5.1", std::move(text), {}}; }
Reply notImplemented() { return Reply{502, "5.5.1", "Command not implemented", {}}; }
Reply ok() { return Reply{250, "2.0.0", "OK", {}}; }
Reply lineTooLong() { return Reply{500, "5.5.6", "Line too long", {}}; }
Reply badCredentialsSyntax() { return Reply{501, "5.5.2", "Cannot decode authentication response", {}}; }

// draft-murchison-sasl-login: the challenges every LOGIN client expects.
constexpr std::string_view kUsernameChallenge = "VXNlcm5hbWU6";  // "Username:"
constexpr std::string_view kPasswordChallenge = "UGFzc3dvcmQ6";  // "Password:"

// An identity goes to the verifier and, escaped, to logs and maybe a
// Received: header; a control character in one is never legitimate.
bool cleanIdentity(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

class ServerSession::Impl {
 public:
  Impl(SessionLimits limits, SessionHandler& handler, ReplySink& sink)
      : limits_(std::move(limits)), handler_(handler), sink_(sink) {
    const std::size_t line_limit = limits_.reject_long_lines ? limits_.max_line_length : 0;
    reader_.setMaxLineLength(line_limit);
    chunk_reader_.setMaxLineLength(line_limit);
  }

  ~Impl() { dropSasl(); }

  void setFeatures(const SessionFeatures& features) {
    features_ = features;
    txn_.tls = features_.tls_active;
  }

  void greet() { send(Reply{220, "", limits_.hostname + " ESMTP Mailbridge", {}}); }

  void refuse(const Reply& reply) {
    if (phase_ == Phase::Closed) return;
    closeWith(reply);
  }

  void feed(std::string_view bytes) {
    // Before the TLS handshake nothing the client sends may count
    // (CVE-2011-0411): the driver should not read, and if it does, the bytes
    // go nowhere.
    if (phase_ == Phase::Closed || phase_ == Phase::TlsPending) return;
    buf_.append(bytes);
    process();
  }

  bool awaitingCommit() const { return phase_ == Phase::AwaitCommit; }
  bool awaitingAuth() const { return phase_ == Phase::AwaitAuth; }
  bool tlsRequested() const { return phase_ == Phase::TlsPending; }
  bool closed() const { return phase_ == Phase::Closed; }
  bool inData() const { return phase_ == Phase::Data || phase_ == Phase::Chunk; }
  bool inTransaction() const { return have_mail_; }
  std::size_t buffered() const { return buf_.size() - pos_; }
  const std::string& authUser() const { return txn_.auth_user; }

  void completeData(const Reply& reply) {
    if (phase_ != Phase::AwaitCommit) return;  // e.g. closed by timeout() meanwhile
    phase_ = Phase::Command;
    resetTransaction();
    respond(reply);
    process();
  }

  void completeAuth(AuthResult result) {
    if (phase_ != Phase::AwaitAuth) return;
    phase_ = Phase::Command;
    std::string user = std::move(pending_user_);
    pending_user_.clear();
    switch (result) {
      case AuthResult::Success:
        txn_.auth_user = std::move(user);
        respond(Reply{235, "2.7.0", "Authentication successful", {}});
        break;
      case AuthResult::Failure:
        respond(Reply{535, "5.7.8", "Authentication credentials invalid", {}});
        break;
      case AuthResult::TempFailure:
        respond(Reply{454, "4.7.0", "Temporary authentication failure", {}});
        break;
      case AuthResult::LockedOut:
        respond(Reply{421, "4.7.0", "Too many authentication failures", {}});
        break;
    }
    process();
  }

  void tlsStarted() {
    if (phase_ != Phase::TlsPending) return;
    // RFC 3207 §4.2: everything learnt in plaintext is forgotten. Only the
    // error count survives: it is about the client, not what it said.
    features_.tls_active = true;
    buf_.clear();
    pos_ = 0;
    discarding_ = false;
    have_helo_ = false;
    resetTransaction();
    txn_ = Transaction{};
    txn_.tls = true;
    dropSasl();
    phase_ = Phase::Command;
  }

  void timeout() {
    if (phase_ != Phase::Closed) closeWith(Reply{421, "4.4.2", "Idle timeout, closing connection", {}});
  }

  void shutdown() {
    if (phase_ != Phase::Closed) closeWith(Reply{421, "4.3.2", "Service shutting down", {}});
  }

  void disconnected() { abortAndClose(); }

 private:
  enum class Phase {
    Command,      // reading command lines
    AuthLine,     // reading an AUTH continuation line after a 334
    AwaitAuth,    // between onAuth() and completeAuth()
    Data,         // after 354, reading to the final dot
    Chunk,        // reading the octets of a BDAT chunk
    AwaitCommit,  // between onDataEnd() and completeData()
    TlsPending,   // after "220 Ready to start TLS", until tlsStarted()
    Closed,
  };

  enum class SaslStep { PlainResponse, LoginUser, LoginPassword };

  // Runs commands and data from the buffer until it needs more input, waits
  // for a commit, or closes. Handler callbacks may call back into the
  // session (completeData() from onDataEnd(), completeAuth() from onAuth(),
  // shutdown() from anywhere); those calls change the phase and this loop
  // picks the change up, instead of a nested loop working on the same buffer.
  void process() {
    if (processing_) return;
    processing_ = true;
    while (true) {
      bool more = false;
      switch (phase_) {
        case Phase::Command:
        case Phase::AuthLine:
          more = stepLine();
          break;
        case Phase::Data:
          more = stepData();
          break;
        case Phase::Chunk:
          more = stepChunk();
          break;
        case Phase::AwaitAuth:
        case Phase::AwaitCommit:
        case Phase::TlsPending:
        case Phase::Closed:
          break;
      }
      if (!more) break;
    }
    if (phase_ == Phase::Closed || phase_ == Phase::TlsPending) {
      buf_.clear();
    } else {
      buf_.erase(0, pos_);
    }
    pos_ = 0;
    processing_ = false;
  }

  // One command or AUTH continuation line, or the wait for one. False when
  // more input is needed.
  bool stepLine() {
    const bool auth_line = phase_ == Phase::AuthLine;
    const std::size_t limit = auth_line ? limits_.max_auth_line : limits_.max_command_line;
    const std::string_view rest = std::string_view(buf_).substr(pos_);
    if (rest.empty()) return false;
    const std::size_t lf = rest.find('\n');
    if (discarding_) {
      if (lf == std::string_view::npos) {
        pos_ = buf_.size();
        return false;
      }
      pos_ += lf + 1;
      discarding_ = false;
      return true;
    }
    if (lf == std::string_view::npos) {
      // The line end, at least one more octet, would take it past the limit:
      // answer now and drop the rest of the line as it comes, so a client
      // cannot make us hold an endless line.
      if (rest.size() >= limit) {
        pos_ = buf_.size();
        discarding_ = true;
        if (auth_line) cancelSasl();
        respond(lineTooLong());
      }
      return false;
    }
    const std::size_t start = pos_;
    const std::size_t octets = lf + 1;
    // Copied: handler callbacks may feed() and so move the buffer.
    std::string line(rest.substr(0, lf));
    pos_ += octets;
    const bool sensitive = auth_line || istartsWith(line, "AUTH ");
    if (octets > limit) {
      if (auth_line) cancelSasl();
      respond(lineTooLong());
    } else {
      // Old clients end commands with a bare LF; that is harmless outside DATA.
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (auth_line) {
        onAuthLine(line);
      } else {
        handleLine(line);
      }
    }
    if (sensitive) {
      // Credentials, even base64'd, do not stay in memory longer than needed.
      wipe(line);
      for (std::size_t i = start; i < start + octets && i < buf_.size(); ++i) buf_[i] = '\0';
    }
    return true;
  }

  // Message content after DATA. False when more input is needed.
  bool stepData() {
    const std::string_view rest = std::string_view(buf_).substr(pos_);
    if (rest.empty()) return false;
    chunk_.clear();
    pos_ += reader_.feed(rest, chunk_);
    if (!chunk_.empty() && !too_big_) {
      if (reader_.emitted() > limits_.max_message_size) {
        // Keep reading to the final dot (the client will not listen before
        // it), but nothing more goes to storage.
        too_big_ = true;
      } else {
        handler_.onDataChunk(chunk_);
        if (phase_ != Phase::Data) return true;
      }
    }
    if (!reader_.done()) return false;
    phase_ = Phase::Command;
    if (too_big_) {
      rejectMessage(DataProblem::TooBig);
      return true;
    }
    endMessage(reader_.sawBareLf(), reader_.sawLongLine());
    return true;
  }

  // The octets of a BDAT chunk, which are read whatever the answer to the
  // command was: the client sends them without waiting (RFC 3030 §2), and
  // anything else would run chunk bytes as commands. False when more input
  // is needed.
  bool stepChunk() {
    if (chunk_left_ > 0) {
      const std::string_view rest = std::string_view(buf_).substr(pos_);
      if (rest.empty()) return false;
      const std::size_t n = rest.size() < chunk_left_ ? rest.size() : static_cast<std::size_t>(chunk_left_);
      pos_ += n;
      chunk_left_ -= n;
      if (!chunk_refusal_ && !too_big_) {
        chunk_.clear();
        chunk_reader_.feed(rest.substr(0, n), chunk_);
        if (chunk_reader_.emitted() > limits_.max_message_size) {
          too_big_ = true;
        } else if (!chunk_.empty()) {
          handler_.onDataChunk(chunk_);
          if (phase_ != Phase::Chunk) return true;
        }
      }
      if (chunk_left_ > 0) return false;
    }
    finishChunk();
    return true;
  }

  void finishChunk() {
    phase_ = Phase::Command;
    if (chunk_refusal_) {
      const Reply refusal = std::move(*chunk_refusal_);
      chunk_refusal_.reset();
      respond(refusal);
      return;
    }
    if (too_big_) {
      rejectMessage(DataProblem::TooBig);
      return;
    }
    if (!chunk_last_) {
      respond(Reply{250, "2.0.0", std::to_string(chunk_size_) + " octets received", {}});
      return;
    }
    chunk_.clear();
    chunk_reader_.finish(chunk_);
    if (chunk_reader_.emitted() > limits_.max_message_size) {
      rejectMessage(DataProblem::TooBig);
      return;
    }
    if (!chunk_.empty()) {
      handler_.onDataChunk(chunk_);
      if (phase_ != Phase::Command) return;
    }
    endMessage(chunk_reader_.sawBareLf(), chunk_reader_.sawLongLine());
  }

  // The content is complete: refuse it for its problems, or hand it over.
  // Too big is the caller's to check, since it stopped the content early.
  void endMessage(bool bare_lf, bool long_line) {
    if (bare_lf && limits_.bare_lf == BareLf::Reject) {
      rejectMessage(DataProblem::BareLf);
      return;
    }
    if (long_line) {
      rejectMessage(DataProblem::LineTooLong);
      return;
    }
    message_open_ = false;
    phase_ = Phase::AwaitCommit;
    handler_.onDataEnd(txn_);
  }

  void rejectMessage(DataProblem why) {
    // Closed first: a handler that shuts the session down from onDataAbort()
    // must not get a second abort.
    message_open_ = false;
    handler_.onDataAbort(why);
    if (phase_ == Phase::Closed) return;
    resetTransaction();
    switch (why) {
      case DataProblem::TooBig:
        respond(Reply{552, "5.3.4", "Message too big", {}});
        return;
      case DataProblem::BareLf:
        respond(Reply{550, "5.5.2", "Bare LF line endings are not accepted", {}});
        return;
      case DataProblem::LineTooLong:
        respond(lineTooLong());
        return;
      case DataProblem::None:
        return;
    }
  }

  void handleLine(std::string_view line) {
    const bool utf8 = have_mail_ && txn_.mail.smtputf8;
    ParsedCommand parsed = Command::parse(line, utf8);
    const Command& cmd = parsed.command;
    switch (cmd.verb) {
      case Verb::Unknown:
        respond(parsed.error.value_or(Reply{500, "5.5.2", "Command not recognized", {}}));
        return;
      case Verb::Ehlo:
      case Verb::Helo:
        onHello(parsed);
        return;
      case Verb::Mail:
        onMail(parsed);
        return;
      case Verb::Rcpt:
        onRcpt(parsed);
        return;
      case Verb::Data:
        onData(parsed);
        return;
      case Verb::Bdat:
        onBdat(parsed);
        return;
      case Verb::Rset:
        if (parsed.error) return respond(*parsed.error);
        resetTransaction();
        if (phase_ == Phase::Closed) return;
        respond(ok());
        return;
      case Verb::Noop:
        respond(ok());
        return;
      case Verb::Quit:
        send(Reply{221, "2.0.0", "Bye", {}});
        abortAndClose();
        return;
      case Verb::Vrfy:
        if (parsed.error) return respond(*parsed.error);
        // RFC 5321 §3.5.3: 252 when the server will not verify; we cannot
        // know a mailbox at the provider anyway.
        respond(Reply{252, "2.5.2", "Cannot verify user, but will accept message and attempt delivery", {}});
        return;
      case Verb::Help:
        respond(Reply{214, "2.0.0", "Mailbridge SMTP relay; see RFC 5321", {}});
        return;
      case Verb::Starttls:
        onStarttls(parsed);
        return;
      case Verb::Auth:
        onAuth(parsed);
        wipe(parsed.command.argument);
        if (parsed.command.initial_response) wipe(*parsed.command.initial_response);
        return;
      case Verb::Expn:
        respond(notImplemented());
        return;
    }
  }

  bool authOffered() const { return features_.auth && (features_.tls_active || features_.auth_without_tls); }

  void onHello(const ParsedCommand& parsed) {
    if (parsed.error) return respond(*parsed.error);
    const bool esmtp = parsed.command.verb == Verb::Ehlo;
    // RFC 5321 §4.1.4: EHLO/HELO in the middle of a transaction starts over.
    resetTransaction();
    if (phase_ == Phase::Closed) return;
    have_helo_ = true;
    txn_.helo = parsed.command.argument;
    txn_.esmtp = esmtp;
    if (!esmtp) {
      respond(Reply{250, "", limits_.hostname, {}});
      return;
    }
    // RFC 2034 §3: no enhanced codes in the EHLO response.
    std::vector<std::string> extensions{"PIPELINING",          "SIZE " + std::to_string(limits_.max_message_size),
                                        "8BITMIME",            "ENHANCEDSTATUSCODES",
                                        "SMTPUTF8",            "CHUNKING"};
    // RFC 3207 §4.2: not after the handshake.
    if (features_.starttls && !features_.tls_active) extensions.emplace_back("STARTTLS");
    // RFC 4954 §4 lets a server hide AUTH until the connection is encrypted,
    // so a client never sends a password in the clear because we asked.
    if (authOffered()) extensions.emplace_back("AUTH PLAIN LOGIN");
    respond(Reply{250, "", limits_.hostname, std::move(extensions)});
  }

  void onMail(const ParsedCommand& parsed) {
    if (!have_helo_) return respond(badSequence("Send EHLO or HELO first"));
    if (have_mail_) return respond(badSequence("Sender already specified"));
    if (parsed.error) return respond(*parsed.error);
    const Command& cmd = parsed.command;
    if (cmd.size && *cmd.size > limits_.max_message_size) {
      return respond(Reply{552, "5.3.4", "Message size exceeds the limit", {}});
    }
    txn_.mail = MailFrom{cmd.address, cmd.size, cmd.body_8bitmime, cmd.smtputf8};
    std::optional<Reply> verdict = handler_.onMail(txn_);
    if (phase_ != Phase::Command) return;  // the handler closed the session
    // A positive reply from the handler accepts with its own words.
    if (verdict && !verdict->positive()) {
      txn_.mail = MailFrom{};
      return respond(*verdict);
    }
    have_mail_ = true;
    respond(verdict.value_or(Reply{250, "2.1.0", "Sender OK", {}}));
  }

  void onRcpt(const ParsedCommand& parsed) {
    if (!have_mail_) return respond(badSequence("Send MAIL first"));
    rcpt_attempted_ = true;
    if (parsed.error) return respond(*parsed.error);
    // RFC 5321 §4.5.3.1.8: 452 (not 552) so the client sends the rest later.
    if (txn_.recipients.size() >= limits_.max_recipients) {
      return respond(Reply{452, "4.5.3", "Too many recipients", {}});
    }
    std::optional<Reply> verdict = handler_.onRcpt(txn_, parsed.command.address);
    if (phase_ != Phase::Command) return;
    if (verdict && !verdict->positive()) return respond(*verdict);
    txn_.recipients.push_back(parsed.command.address);
    respond(verdict.value_or(Reply{250, "2.1.5", "Recipient OK", {}}));
  }

  // Why neither DATA nor BDAT may start a message now, if they may not.
  std::optional<Reply> contentRefusal() const {
    if (!have_mail_) return badSequence("Send MAIL first");
    if (txn_.recipients.empty()) {
      // RFC 2920 §3.1: with pipelining, DATA may follow RCPTs that all failed.
      return rcpt_attempted_ ? Reply{554, "5.5.1", "No valid recipients", {}} : badSequence("Send RCPT first");
    }
    return std::nullopt;
  }

  void onData(const ParsedCommand& parsed) {
    if (!have_mail_) return respond(badSequence("Send MAIL first"));
    // RFC 3030 §3: DATA and BDAT do not mix in one transaction. (Between
    // commands, only BDAT leaves a message open.)
    if (message_open_) return respond(badSequence("DATA not allowed after BDAT"));
    if (parsed.error) return respond(*parsed.error);
    if (auto refusal = contentRefusal()) return respond(*refusal);
    std::optional<Reply> refusal = handler_.onDataStart(txn_);
    if (phase_ != Phase::Command) return;
    // Any reply refuses, even a positive one: only the session may say 354,
    // because only it knows it is now reading content.
    if (refusal) return respond(*refusal);
    reader_.reset();
    too_big_ = false;
    message_open_ = true;
    phase_ = Phase::Data;
    send(Reply{354, "", "End data with <CR><LF>.<CR><LF>", {}});
  }

  void onBdat(const ParsedCommand& parsed) {
    const Command& cmd = parsed.command;
    if (!cmd.chunk_size) {
      // Without a size nobody knows where the chunk ends; like Postfix, read
      // on as commands. Whatever was sent of this message is incomplete now.
      if (have_mail_) resetTransaction();
      if (phase_ == Phase::Closed) return;
      return respond(parsed.error.value_or(Reply{501, "5.5.4", "Syntax error in parameters or arguments", {}}));
    }
    std::optional<Reply> refusal = parsed.error;
    if (!refusal) refusal = contentRefusal();
    if (!refusal && !message_open_) {
      refusal = handler_.onDataStart(txn_);
      if (phase_ != Phase::Command) return;
      if (!refusal) {
        chunk_reader_.reset();
        too_big_ = false;
        message_input_ = 0;
        message_open_ = true;
      }
    }
    // RFC 3030 §2: after a refused chunk the transaction has failed; a
    // pipelining client has sent the next chunks already, and they must not
    // make a message without this one.
    if (refusal && have_mail_) {
      resetTransaction();
      if (phase_ == Phase::Closed) return;
    }
    const std::uint64_t size = *cmd.chunk_size;
    if (!refusal && !too_big_) {
      // The normalised content is never shorter than what was sent, so a
      // chunk that cannot fit need not reach storage at all.
      if (size > limits_.max_message_size - std::min(message_input_, limits_.max_message_size)) {
        too_big_ = true;
      }
      message_input_ = size > std::numeric_limits<std::uint64_t>::max() - message_input_
                           ? std::numeric_limits<std::uint64_t>::max()
                           : message_input_ + size;
    }
    chunk_left_ = size;
    chunk_size_ = size;
    chunk_last_ = cmd.last;
    chunk_refusal_ = std::move(refusal);
    phase_ = Phase::Chunk;
  }

  void onStarttls(const ParsedCommand& parsed) {
    if (parsed.error) return respond(*parsed.error);
    if (!features_.starttls) return respond(notImplemented());
    if (features_.tls_active) return respond(badSequence("TLS already active"));
    // RFC 3207 §4.2 resets the transaction anyway; refusing says so plainly.
    if (have_mail_) return respond(badSequence("STARTTLS not allowed during a mail transaction"));
    send(Reply{220, "2.0.0", "Ready to start TLS", {}});
    // CVE-2011-0411: whatever the client pipelined after STARTTLS was sent
    // in the clear and must not be read as if it came through TLS.
    pos_ = buf_.size();
    phase_ = Phase::TlsPending;
  }

  void onAuth(const ParsedCommand& parsed) {
    if (!have_helo_) return respond(badSequence("Send EHLO or HELO first"));
    if (!features_.auth) return respond(badSequence("Authentication not enabled"));
    if (!txn_.auth_user.empty()) return respond(badSequence("Already authenticated"));
    if (have_mail_) return respond(badSequence("AUTH not allowed during a mail transaction"));
    if (parsed.error) return respond(*parsed.error);
    if (!authOffered()) {
      return respond(Reply{538, "5.7.11", "Encryption required for requested authentication mechanism", {}});
    }
    // CVE-2011-1720: nothing of an earlier exchange may leak into this one.
    dropSasl();
    const Command& cmd = parsed.command;
    const std::optional<std::string>& initial = cmd.initial_response;
    if (iequals(cmd.mechanism, "PLAIN")) {
      sasl_.mechanism = "PLAIN";
      if (initial) return onPlainResponse(*initial, true);
      return challenge("", SaslStep::PlainResponse);
    }
    if (iequals(cmd.mechanism, "LOGIN")) {
      sasl_.mechanism = "LOGIN";
      // The initial response of LOGIN is the user name (as Postfix and
      // Cyrus SASL take it).
      if (initial) return onLoginUser(*initial, true);
      return challenge(kUsernameChallenge, SaslStep::LoginUser);
    }
    respond(Reply{504, "5.5.4", "Unrecognized authentication mechanism", {}});
  }

  // RFC 4954 §4: "334" SP [base64] CRLF. Written here, not by Reply, which
  // drops the space of an empty text.
  void challenge(std::string_view text, SaslStep next) {
    std::string wire = "334 ";
    wire += text;
    wire += "\r\n";
    sink_.sendReply(wire);
    sasl_step_ = next;
    phase_ = Phase::AuthLine;
  }

  void onAuthLine(std::string_view line) {
    phase_ = Phase::Command;
    if (line == "*") {
      dropSasl();
      return respond(Reply{501, "5.0.0", "Authentication cancelled", {}});
    }
    switch (sasl_step_) {
      case SaslStep::PlainResponse:
        return onPlainResponse(line, false);
      case SaslStep::LoginUser:
        return onLoginUser(line, false);
      case SaslStep::LoginPassword:
        return onLoginPassword(line);
    }
  }

  // RFC 4954 §4: an initial response of "=" is an empty one.
  static bool decodeResponse(std::string_view text, bool initial, std::string& out) {
    if (initial && text == "=") {
      wipe(out);
      return true;
    }
    return decodeBase64(text, out);
  }

  void onPlainResponse(std::string_view text, bool initial) {
    std::string message;
    const bool ok = decodeResponse(text, initial, message) && splitPlainMessage(message, sasl_);
    wipe(message);
    if (!ok || sasl_.user.empty() || !cleanIdentity(sasl_.user) || !cleanIdentity(sasl_.authzid)) {
      dropSasl();
      return respond(badCredentialsSyntax());
    }
    verify();
  }

  void onLoginUser(std::string_view text, bool initial) {
    if (!decodeResponse(text, initial, sasl_.user) || sasl_.user.empty() || !cleanIdentity(sasl_.user)) {
      dropSasl();
      return respond(badCredentialsSyntax());
    }
    challenge(kPasswordChallenge, SaslStep::LoginPassword);
  }

  void onLoginPassword(std::string_view text) {
    if (!decodeBase64(text, sasl_.password)) {
      dropSasl();
      return respond(badCredentialsSyntax());
    }
    verify();
  }

  void verify() {
    phase_ = Phase::AwaitAuth;
    pending_user_ = sasl_.user;
    // A request of its own, so that a handler that answers from inside
    // onAuth() (and so may close the session) still reads what it was given.
    AuthRequest request = sasl_;
    dropSasl();
    // The verifier copies what it needs: the session keeps no password past
    // this call, whether the answer comes now or later.
    handler_.onAuth(request);
    wipe(request.password);
  }

  void cancelSasl() {
    dropSasl();
    phase_ = Phase::Command;
  }

  void dropSasl() {
    wipe(sasl_.password);
    sasl_ = AuthRequest{};
  }

  void send(const Reply& reply) { sink_.sendReply(reply.wire()); }

  // Sends a reply to a command and keeps the error count (Postfix's
  // smtpd_hard_error_limit): a client that keeps failing is probing or
  // broken, and either way gets disconnected.
  void respond(const Reply& reply) {
    send(reply);
    if (reply.code == 421) {
      // RFC 5321 §3.8: after 421 the server closes, whoever chose it.
      abortAndClose();
      return;
    }
    if (reply.code >= 400) {
      ++errors_;
      if (limits_.max_errors > 0 && errors_ >= limits_.max_errors) {
        closeWith(Reply{421, "4.7.0", "Too many errors", {}});
      }
    }
  }

  void closeWith(const Reply& reply) {
    send(reply);
    abortAndClose();
  }

  void abortAndClose() {
    if (phase_ == Phase::Closed) return;
    phase_ = Phase::Closed;
    if (message_open_) {
      message_open_ = false;
      handler_.onDataAbort(DataProblem::None);
    }
    dropSasl();
    pending_user_.clear();
    if (!processing_) {
      buf_.clear();
      pos_ = 0;
    }
  }

  // Forgets the sender and recipients, and drops a message that BDAT left
  // open. Callers check for Closed after it: onDataAbort() may shut down.
  void resetTransaction() {
    txn_.mail = MailFrom{};
    txn_.recipients.clear();
    have_mail_ = false;
    rcpt_attempted_ = false;
    if (message_open_) {
      message_open_ = false;
      handler_.onDataAbort(DataProblem::None);
    }
  }

  SessionLimits limits_;
  SessionHandler& handler_;
  ReplySink& sink_;
  SessionFeatures features_;

  Phase phase_ = Phase::Command;
  std::string buf_;      // bytes fed and not yet processed start at pos_
  std::size_t pos_ = 0;
  bool discarding_ = false;  // dropping the rest of an over-long line
  bool processing_ = false;
  std::size_t errors_ = 0;

  bool have_helo_ = false;
  bool have_mail_ = false;
  bool rcpt_attempted_ = false;  // for 554 rather than 503 at DATA
  Transaction txn_;              // auth_user is kept across transactions

  // onDataStart() accepted and neither onDataEnd() nor onDataAbort() has
  // followed: in Data, or (between commands too) a BDAT transaction.
  bool message_open_ = false;
  bool too_big_ = false;
  std::string chunk_;            // content on its way to the handler
  DataReader reader_;
  ChunkReader chunk_reader_;
  std::uint64_t message_input_ = 0;  // BDAT octets announced for this message
  std::uint64_t chunk_left_ = 0;
  std::uint64_t chunk_size_ = 0;
  bool chunk_last_ = false;
  std::optional<Reply> chunk_refusal_;  // the answer once a refused chunk is read

  SaslStep sasl_step_ = SaslStep::PlainResponse;
  AuthRequest sasl_;             // the exchange in progress; wiped when dropped
  std::string pending_user_;     // between onAuth() and completeAuth()
};

ServerSession::ServerSession(SessionLimits limits, SessionHandler& handler, ReplySink& sink)
    : impl_(std::make_unique<Impl>(std::move(limits), handler, sink)) {}

ServerSession::~ServerSession() = default;

void ServerSession::setFeatures(const SessionFeatures& features) { impl_->setFeatures(features); }
void ServerSession::greet() { impl_->greet(); }
void ServerSession::refuse(const Reply& reply) { impl_->refuse(reply); }
void ServerSession::feed(std::string_view bytes) { impl_->feed(bytes); }
bool ServerSession::awaitingCommit() const { return impl_->awaitingCommit(); }
void ServerSession::completeData(const Reply& reply) { impl_->completeData(reply); }
bool ServerSession::awaitingAuth() const { return impl_->awaitingAuth(); }
void ServerSession::completeAuth(AuthResult result) { impl_->completeAuth(result); }
bool ServerSession::tlsRequested() const { return impl_->tlsRequested(); }
void ServerSession::tlsStarted() { impl_->tlsStarted(); }
const std::string& ServerSession::authUser() const { return impl_->authUser(); }
void ServerSession::timeout() { impl_->timeout(); }
void ServerSession::shutdown() { impl_->shutdown(); }
void ServerSession::disconnected() { impl_->disconnected(); }
bool ServerSession::closed() const { return impl_->closed(); }
bool ServerSession::inData() const { return impl_->inData(); }
bool ServerSession::inTransaction() const { return impl_->inTransaction(); }
std::size_t ServerSession::buffered() const { return impl_->buffered(); }

}  // namespace mb::smtp
