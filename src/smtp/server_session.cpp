#include "smtp/server_session.h"

#include <utility>

#include "smtp/command.h"
#include "smtp/data_reader.h"

namespace mb::smtp {

namespace {

Reply badSequence(std::string text) { return Reply{503, "5.5.1", std::move(text), {}}; }
Reply notImplemented() { return Reply{502, "5.5.1", "Command not implemented", {}}; }
Reply ok() { return Reply{250, "2.0.0", "OK", {}}; }

}  // namespace

class ServerSession::Impl {
 public:
  Impl(SessionLimits limits, SessionHandler& handler, ReplySink& sink)
      : limits_(std::move(limits)), handler_(handler), sink_(sink) {}

  void greet() { send(Reply{220, "", limits_.hostname + " ESMTP Mailbridge", {}}); }

  void refuse(const Reply& reply) {
    if (phase_ == Phase::Closed) return;
    closeWith(reply);
  }

  void feed(std::string_view bytes) {
    if (phase_ == Phase::Closed) return;
    buf_.append(bytes);
    process();
  }

  bool awaitingCommit() const { return phase_ == Phase::AwaitCommit; }
  bool closed() const { return phase_ == Phase::Closed; }
  bool inData() const { return phase_ == Phase::Data; }
  std::size_t buffered() const { return buf_.size() - pos_; }

  void completeData(const Reply& reply) {
    if (phase_ != Phase::AwaitCommit) return;  // e.g. closed by timeout() meanwhile
    phase_ = Phase::Command;
    resetTransaction();
    respond(reply);
    process();
  }

  void timeout() {
    if (phase_ != Phase::Closed) closeWith(Reply{421, "4.4.2", "Idle timeout, closing connection", {}});
  }

  void shutdown() {
    if (phase_ != Phase::Closed) closeWith(Reply{421, "4.3.2", "Service shutting down", {}});
  }

  void disconnected() {
    if (phase_ == Phase::Data) handler_.onDataAbort(DataProblem::None);
    enterClosed();
  }

 private:
  enum class Phase { Command, Data, AwaitCommit, Closed };

  // Runs commands and data from the buffer until it needs more input, waits
  // for a commit, or closes. Handler callbacks may call back into the
  // session (completeData() from onDataEnd(), shutdown() from anywhere);
  // those calls change the phase and this loop picks the change up, instead
  // of a nested loop working on the same buffer.
  void process() {
    if (processing_) return;
    processing_ = true;
    while (true) {
      if (phase_ == Phase::Command) {
        if (!stepCommand()) break;
      } else if (phase_ == Phase::Data) {
        if (!stepData()) break;
      } else {
        break;
      }
    }
    if (phase_ == Phase::Closed) {
      buf_.clear();
    } else {
      buf_.erase(0, pos_);
    }
    pos_ = 0;
    processing_ = false;
  }

  // One command line, or the wait for one. False when more input is needed.
  bool stepCommand() {
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
      if (rest.size() >= limits_.max_command_line) {
        pos_ = buf_.size();
        discarding_ = true;
        respond(lineTooLong());
      }
      return false;
    }
    const std::size_t octets = lf + 1;
    // Copied: handler callbacks may feed() and so move the buffer.
    std::string line(rest.substr(0, lf));
    pos_ += octets;
    if (octets > limits_.max_command_line) {
      respond(lineTooLong());
      return true;
    }
    // Old clients end commands with a bare LF; that is harmless outside DATA.
    if (!line.empty() && line.back() == '\r') line.pop_back();
    handleLine(line);
    return true;
  }

  // Message content. False when more input is needed.
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
    finishData();
    return true;
  }

  void finishData() {
    phase_ = Phase::Command;
    if (too_big_) {
      handler_.onDataAbort(DataProblem::TooBig);
      resetTransaction();
      respond(Reply{552, "5.3.4", "Message too big", {}});
      return;
    }
    if (reader_.sawBareLf() && limits_.bare_lf == BareLf::Reject) {
      handler_.onDataAbort(DataProblem::BareLf);
      resetTransaction();
      respond(Reply{550, "5.5.2", "Bare LF line endings are not accepted", {}});
      return;
    }
    phase_ = Phase::AwaitCommit;
    handler_.onDataEnd(txn_);
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
      case Verb::Rset:
        if (parsed.error) return respond(*parsed.error);
        resetTransaction();
        respond(ok());
        return;
      case Verb::Noop:
        respond(ok());
        return;
      case Verb::Quit:
        send(Reply{221, "2.0.0", "Bye", {}});
        enterClosed();
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
      case Verb::Expn:
      case Verb::Starttls:
      case Verb::Auth:
      case Verb::Bdat:
        respond(notImplemented());
        return;
    }
  }

  void onHello(const ParsedCommand& parsed) {
    if (parsed.error) return respond(*parsed.error);
    const bool esmtp = parsed.command.verb == Verb::Ehlo;
    // RFC 5321 §4.1.4: EHLO/HELO in the middle of a transaction starts over.
    resetTransaction();
    have_helo_ = true;
    txn_.helo = parsed.command.argument;
    txn_.esmtp = esmtp;
    if (!esmtp) {
      respond(Reply{250, "", limits_.hostname, {}});
      return;
    }
    // RFC 2034 §3: no enhanced codes in the EHLO response.
    respond(Reply{250,
                  "",
                  limits_.hostname,
                  {"PIPELINING", "SIZE " + std::to_string(limits_.max_message_size), "8BITMIME",
                   "ENHANCEDSTATUSCODES", "SMTPUTF8"}});
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

  void onData(const ParsedCommand& parsed) {
    if (!have_mail_) return respond(badSequence("Send MAIL first"));
    if (parsed.error) return respond(*parsed.error);
    if (txn_.recipients.empty()) {
      // RFC 2920 §3.1: with pipelining, DATA may follow RCPTs that all failed.
      return respond(rcpt_attempted_ ? Reply{554, "5.5.1", "No valid recipients", {}}
                                     : badSequence("Send RCPT first"));
    }
    std::optional<Reply> refusal = handler_.onDataStart(txn_);
    if (phase_ != Phase::Command) return;
    // Any reply refuses, even a positive one: only the session may say 354,
    // because only it knows it is now reading content.
    if (refusal) return respond(*refusal);
    reader_.reset();
    too_big_ = false;
    phase_ = Phase::Data;
    send(Reply{354, "", "End data with <CR><LF>.<CR><LF>", {}});
  }

  static Reply lineTooLong() { return Reply{500, "5.5.6", "Line too long", {}}; }

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
    if (phase_ == Phase::Data) handler_.onDataAbort(DataProblem::None);
    enterClosed();
  }

  void enterClosed() {
    phase_ = Phase::Closed;
    if (!processing_) {
      buf_.clear();
      pos_ = 0;
    }
  }

  void resetTransaction() {
    txn_.mail = MailFrom{};
    txn_.recipients.clear();
    have_mail_ = false;
    rcpt_attempted_ = false;
  }

  SessionLimits limits_;
  SessionHandler& handler_;
  ReplySink& sink_;

  Phase phase_ = Phase::Command;
  std::string buf_;      // bytes fed and not yet processed start at pos_
  std::size_t pos_ = 0;
  bool discarding_ = false;  // dropping the rest of an over-long line
  bool processing_ = false;
  std::size_t errors_ = 0;

  bool have_helo_ = false;
  bool have_mail_ = false;
  bool rcpt_attempted_ = false;  // for 554 rather than 503 at DATA
  Transaction txn_;

  DataReader reader_;
  std::string chunk_;
  bool too_big_ = false;
};

ServerSession::ServerSession(SessionLimits limits, SessionHandler& handler, ReplySink& sink)
    : impl_(std::make_unique<Impl>(std::move(limits), handler, sink)) {}

ServerSession::~ServerSession() = default;

void ServerSession::greet() { impl_->greet(); }
void ServerSession::refuse(const Reply& reply) { impl_->refuse(reply); }
void ServerSession::feed(std::string_view bytes) { impl_->feed(bytes); }
bool ServerSession::awaitingCommit() const { return impl_->awaitingCommit(); }
void ServerSession::completeData(const Reply& reply) { impl_->completeData(reply); }
void ServerSession::timeout() { impl_->timeout(); }
void ServerSession::shutdown() { impl_->shutdown(); }
void ServerSession::disconnected() { impl_->disconnected(); }
bool ServerSession::closed() const { return impl_->closed(); }
bool ServerSession::inData() const { return impl_->inData(); }
std::size_t ServerSession::buffered() const { return impl_->buffered(); }

}  // namespace mb::smtp
