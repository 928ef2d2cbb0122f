#include "smtp/client_session.h"

#include <algorithm>
#include <utility>

#include "smtp/sasl.h"

namespace mb::smtp {
namespace {

// RFC 5321 §4.5.3.1.4: a command line, CRLF included.
constexpr std::size_t kCommandLineLimit = 512;
constexpr std::size_t kDescribeLimit = 500;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

char upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

std::string upperCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = upper(c);
  return out;
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

bool positive(const ServerReply& r) { return r.code >= 200 && r.code < 300; }

}  // namespace

std::string ServerReply::enhanced() const {
  if (lines.empty()) return {};
  const std::string& l = lines.front();
  // class "." subject "." detail, 1-3 digits each (RFC 3463 §2), then a space or the end.
  std::size_t i = 0;
  if (l.empty() || l[0] != static_cast<char>('0' + code / 100)) return {};
  i = 1;
  for (int part = 0; part < 2; ++part) {
    if (i >= l.size() || l[i] != '.') return {};
    ++i;
    const std::size_t start = i;
    while (i < l.size() && isDigit(l[i]) && i - start < 4) ++i;
    if (i == start || i - start > 3) return {};
  }
  if (i < l.size() && l[i] != ' ') return {};
  return l.substr(0, i);
}

std::string ServerReply::describe() const {
  std::string out = std::to_string(code);
  for (const auto& line : lines) {
    out += ' ';
    for (char c : line) {
      if (out.size() >= kDescribeLimit) break;
      const auto u = static_cast<unsigned char>(c);
      out += (u >= 0x20 && u < 0x7f) ? c : '?';
    }
    if (out.size() >= kDescribeLimit) {
      out += "...";
      break;
    }
  }
  return out;
}

void ReplyReader::feed(std::string_view bytes) {
  if (!error_.empty()) return;
  buffer_.append(bytes);
}

std::optional<ServerReply> ReplyReader::next() {
  while (error_.empty()) {
    const std::size_t nl = buffer_.find('\n');
    if (nl == std::string::npos) {
      if (buffer_.size() > kMaxLineBytes) error_ = "a reply line longer than " + std::to_string(kMaxLineBytes) + " octets";
      return std::nullopt;
    }
    if (nl > kMaxLineBytes) {
      error_ = "a reply line longer than " + std::to_string(kMaxLineBytes) + " octets";
      return std::nullopt;
    }
    std::string line = buffer_.substr(0, nl);
    buffer_.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const bool code_ok = line.size() >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '5' &&
                         isDigit(line[2]) && (line.size() == 3 || line[3] == ' ' || line[3] == '-');
    if (!code_ok) {
      error_ = "not an SMTP reply line: \"" + ServerReply{0, {line}}.describe().substr(2) + "\"";
      return std::nullopt;
    }
    const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (!partial_.lines.empty() && code != partial_.code) {
      error_ = "reply code changed from " + std::to_string(partial_.code) + " to " + std::to_string(code) +
               " within one reply";
      return std::nullopt;
    }
    partial_.code = code;
    partial_.lines.push_back(line.size() > 4 ? line.substr(4) : std::string());
    if (partial_.lines.size() > kMaxLines) {
      error_ = "a reply of more than " + std::to_string(kMaxLines) + " lines";
      return std::nullopt;
    }
    if (line.size() > 3 && line[3] == '-') continue;
    ServerReply done = std::move(partial_);
    partial_ = ServerReply{};
    return done;
  }
  return std::nullopt;
}

void ReplyReader::clear() {
  buffer_.clear();
  partial_ = ServerReply{};
}

ServerCapabilities ServerCapabilities::fromEhlo(const ServerReply& ehlo) {
  ServerCapabilities caps;
  for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {
    auto w = words(ehlo.lines[i]);
    if (w.empty()) continue;
    std::string keyword = upperCase(w.front());
    // "AUTH=PLAIN LOGIN", an old spelling some servers still send.
    if (keyword.rfind("AUTH=", 0) == 0) {
      w.front() = std::string_view(w.front()).substr(5);
      keyword = "AUTH";
    } else {
      w.erase(w.begin());
    }
    if (keyword == "STARTTLS") {
      caps.starttls = true;
    } else if (keyword == "PIPELINING") {
      caps.pipelining = true;
    } else if (keyword == "8BITMIME") {
      caps.eight_bit_mime = true;
    } else if (keyword == "SMTPUTF8") {
      caps.smtputf8 = true;
    } else if (keyword == "SIZE") {
      caps.size = true;
      if (!w.empty()) {
        std::uint64_t n = 0;
        bool ok = !w.front().empty() && w.front().size() <= 18;
        for (char c : w.front()) {
          if (!isDigit(c)) ok = false;
          n = n * 10 + static_cast<std::uint64_t>(c - '0');
        }
        if (ok) caps.size_limit = n;
      }
    } else if (keyword == "AUTH") {
      for (auto m : w) {
        const std::string mech = upperCase(m);
        if (mech == "PLAIN") caps.auth_plain = true;
        if (mech == "LOGIN") caps.auth_login = true;
        if (mech == "XOAUTH2") caps.auth_xoauth2 = true;
      }
    }
  }
  return caps;
}

ClientSession::ClientSession(ClientOptions options) : options_(std::move(options)) {
  tls_ = options_.tls_from_start;
  expected_.push_back(Expect::Greeting);
}

ClientSession::~ClientSession() { wipe(options_.secret); }

ClientSession::Step ClientSession::step() const {
  if (phase_ == Phase::Closed) return Step::Closed;
  if (!out_.empty()) return Step::Write;
  if (phase_ == Phase::Handshake) return Step::StartTls;
  if (!expected_.empty()) return Step::Read;
  if (phase_ == Phase::Body) return Step::SendBody;
  if (phase_ == Phase::Ready) return Step::Ready;
  return Step::Closed;
}

std::string ClientSession::takeOutput() { return std::exchange(out_, std::string()); }

void ClientSession::send(std::string line) {
  out_ += line;
  out_ += "\r\n";
}

ServerReply ClientSession::made(int code, std::string text) { return ServerReply{code, {std::move(text)}}; }

void ClientSession::receive(std::string_view bytes) {
  if (phase_ == Phase::Closed) return;
  reader_.feed(bytes);
  while (phase_ != Phase::Closed && phase_ != Phase::Handshake) {
    auto reply = reader_.next();
    if (!reply) break;
    handle(*reply);
  }
  if (phase_ != Phase::Closed && !reader_.error().empty()) {
    fail("the server's reply cannot be read: " + reader_.error());
  }
}

void ClientSession::handle(const ServerReply& reply) {
  if (expected_.empty()) {
    fail("the server sent a reply nobody asked for: " + reply.describe());
    return;
  }
  const Expect what = expected_.front();
  expected_.pop_front();
  // 421: the server is closing the channel, whatever it was asked
  // (RFC 5321 §3.8); nothing after it counts.
  if (reply.code == 421 && what != Expect::Quit) {
    fail("the server is closing the connection: " + reply.describe());
    return;
  }
  switch (what) {
    case Expect::Greeting:
      onGreeting(reply);
      break;
    case Expect::Ehlo:
      onEhlo(reply);
      break;
    case Expect::StartTls:
      if (reply.code != 220) {
        fail("STARTTLS refused: " + reply.describe() + "; not going on in plaintext");
      } else if (reader_.pending()) {
        // Anything after the 220 arrived in plaintext and could have been
        // injected (RFC 3207 §4.2, CVE-2011-0411's mirror image).
        fail("the server sent more after its 220 to STARTTLS; not going on");
      } else {
        phase_ = Phase::Handshake;
      }
      break;
    case Expect::Auth:
    case Expect::AuthStep:
      onAuth(reply);
      break;
    case Expect::Mail:
      onMail(reply);
      break;
    case Expect::Rcpt:
      onRcpt(reply);
      break;
    case Expect::Data:
      onData(reply);
      break;
    case Expect::Dot:
      onDot(reply);
      break;
    case Expect::Rset:
      if (!positive(reply)) fail("RSET refused: " + reply.describe());
      break;
    case Expect::Quit:
      phase_ = Phase::Closed;
      break;
  }
}

void ClientSession::onGreeting(const ServerReply& reply) {
  if (reply.code != 220) {
    fail("the server greeted with " + reply.describe());
    return;
  }
  send("EHLO " + options_.helo_name);
  expected_.push_back(Expect::Ehlo);
  phase_ = Phase::Ehlo;
}

void ClientSession::onEhlo(const ServerReply& reply) {
  if (!positive(reply)) {
    fail("EHLO refused: " + reply.describe());
    return;
  }
  caps_ = ServerCapabilities::fromEhlo(reply);
  afterEhlo();
}

void ClientSession::afterEhlo() {
  if (!tls_ && options_.require_starttls) {
    if (!caps_.starttls) {
      fail(
           "the server does not offer STARTTLS (stripped on the way?); not sending credentials or mail in "
           "plaintext");
      return;
    }
    send("STARTTLS");
    expected_.push_back(Expect::StartTls);
    phase_ = Phase::StartTlsReply;
    return;
  }
  startAuth();
}

void ClientSession::tlsStarted() {
  if (phase_ != Phase::Handshake) return;
  tls_ = true;
  reader_.clear();
  caps_ = ServerCapabilities{};
  // RFC 3207 §4.2: forget what the server said in plaintext, ask again.
  send("EHLO " + options_.helo_name);
  expected_.push_back(Expect::Ehlo);
  phase_ = Phase::Ehlo;
}

void ClientSession::startAuth() {
  const char* mech = nullptr;
  bool offered = false;
  switch (options_.auth) {
    case ClientAuth::None:
      phase_ = Phase::Ready;
      return;
    case ClientAuth::Plain:
      mech = "PLAIN";
      offered = caps_.auth_plain;
      break;
    case ClientAuth::Login:
      mech = "LOGIN";
      offered = caps_.auth_login;
      break;
    case ClientAuth::XOAuth2:
      mech = "XOAUTH2";
      offered = caps_.auth_xoauth2;
      break;
  }
  if (!offered) {
    std::string offers;
    for (auto [name, on] : {std::pair{"PLAIN", caps_.auth_plain}, std::pair{"LOGIN", caps_.auth_login},
                            std::pair{"XOAUTH2", caps_.auth_xoauth2}}) {
      if (on) offers += std::string(offers.empty() ? "" : " ") + name;
    }
    fail(std::string("the server does not offer AUTH ") + mech +
                    (offers.empty() ? " (it offers no mechanism this relay speaks)" : " (it offers " + offers + ")"));
    return;
  }
  auth_step_ = 0;
  phase_ = Phase::Auth;
  if (options_.auth == ClientAuth::Plain) {
    std::string encoded = plainResponse();
    std::string line = "AUTH PLAIN " + encoded;
    wipe(encoded);
    // RFC 4954 §4: an initial response that would make the line too long
    // goes after an empty challenge instead.
    if (line.size() + 2 <= kCommandLineLimit) {
      auth_step_ = 1;
      send(std::move(line));
    } else {
      send("AUTH PLAIN");
    }
    wipe(line);
  } else {
    // LOGIN and XOAUTH2 answer challenges; a bearer token is far too long
    // for an AUTH line.
    send(std::string("AUTH ") + mech);
  }
  expected_.push_back(Expect::Auth);
}

std::string ClientSession::plainResponse() const {
  // RFC 4616 §2: [authzid] NUL authcid NUL passwd, without an authzid.
  std::string message;
  message += '\0';
  message += options_.username;
  message += '\0';
  message += options_.secret;
  std::string encoded = encodeBase64(message);
  wipe(message);
  return encoded;
}

void ClientSession::onAuth(const ServerReply& reply) {
  const char* mech = options_.auth == ClientAuth::Plain   ? "PLAIN"
                     : options_.auth == ClientAuth::Login ? "LOGIN"
                                                          : "XOAUTH2";
  if (reply.code == 334) {
    std::string answer;
    bool cancel = false;
    switch (options_.auth) {
      case ClientAuth::Plain: {
        if (auth_step_ == 0) {
          answer = plainResponse();
        } else {
          cancel = true;
        }
        break;
      }
      case ClientAuth::Login:
        if (auth_step_ == 0) {
          answer = encodeBase64(options_.username);
        } else if (auth_step_ == 1) {
          answer = encodeBase64(options_.secret);
        } else {
          cancel = true;
        }
        break;
      case ClientAuth::XOAuth2:
        if (auth_step_ == 0) {
          std::string message = "user=" + options_.username + "\x01" + "auth=Bearer " + options_.secret + "\x01\x01";
          answer = encodeBase64(message);
          wipe(message);
        } else if (auth_step_ == 1) {
          // The token was refused; the challenge holds the error as JSON,
          // and the client must answer it with an empty line to get the
          // final 535 (Google's and Microsoft's XOAUTH2 documentation).
          std::string json;
          std::string text = reply.lines.empty() ? std::string() : reply.lines.front();
          if (decodeBase64(text, json)) {
            for (char& c : json) {
              if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
            }
            if (json.size() > 300) json.resize(300);
            auth_error_ = json;
          }
          answer.clear();
        } else {
          cancel = true;
        }
        break;
      case ClientAuth::None:
        cancel = true;
        break;
    }
    ++auth_step_;
    // "*" cancels an exchange that goes on longer than the mechanism does.
    send(cancel ? std::string("*") : answer);
    wipe(answer);
    expected_.push_back(Expect::AuthStep);
    return;
  }
  if (positive(reply)) {
    wipe(options_.secret);
    auth_error_.clear();
    phase_ = Phase::Ready;
    return;
  }
  std::string detail = std::string("AUTH ") + mech + " as " + options_.username + " refused: " + reply.describe();
  if (!auth_error_.empty()) detail += " (the server said: " + auth_error_ + ")";
  auth_error_.clear();
  fail(std::move(detail), reply.code == 535 || reply.code == 534 || reply.code == 530);
}

void ClientSession::begin(ClientTransaction tx) {
  if (phase_ != Phase::Ready || outcome_ || !expected_.empty() || !out_.empty()) return;
  tx_ = std::move(tx);
  rcpt_replies_.assign(tx_.recipients.size(), std::nullopt);
  next_rcpt_reply_ = 0;
  accepted_ = 0;
  mail_accepted_ = false;
  mail_answered_ = false;
  dot_sent_ = false;
  tx_log_.clear();
  const auto refuseAll = [this](ServerReply reply) {
    for (auto& r : rcpt_replies_) r = reply;
    mail_answered_ = true;
    tx_log_ = "not sent: " + reply.describe();
    finishTransaction(false);
  };
  if (tx_.recipients.empty()) {
    finishTransaction(false);
    return;
  }
  if (caps_.size && caps_.size_limit > 0 && tx_.size > caps_.size_limit) {
    refuseAll(made(552, "5.3.4 message size " + std::to_string(tx_.size) + " exceeds the upstream server's limit of " +
                            std::to_string(caps_.size_limit)));
    return;
  }
  if (tx_.smtputf8 && !caps_.smtputf8) {
    refuseAll(made(553, "5.6.7 the upstream server does not offer SMTPUTF8, which these addresses need"));
    return;
  }
  std::string mail = "MAIL FROM:<" + tx_.mail_from + ">";
  if (caps_.size) mail += " SIZE=" + std::to_string(tx_.size);
  if (tx_.eight_bit && caps_.eight_bit_mime) mail += " BODY=8BITMIME";
  if (tx_.smtputf8) mail += " SMTPUTF8";
  send(std::move(mail));
  expected_.push_back(Expect::Mail);
  phase_ = Phase::Transaction;
  if (caps_.pipelining) {
    // RFC 2920 §3.1: MAIL, every RCPT and DATA in one group; DATA ends it.
    for (std::size_t i = 0; i < tx_.recipients.size(); ++i) sendRcpt(i);
    send("DATA");
    expected_.push_back(Expect::Data);
  }
}

void ClientSession::sendRcpt(std::size_t index) {
  send("RCPT TO:<" + tx_.recipients[index] + ">");
  expected_.push_back(Expect::Rcpt);
}

void ClientSession::onMail(const ServerReply& reply) {
  mail_answered_ = true;
  tx_log_ = "MAIL: " + reply.describe();
  if (positive(reply)) {
    mail_accepted_ = true;
    if (!caps_.pipelining) sendRcpt(0);
    return;
  }
  // The sender was refused: every recipient shares that fate. With
  // pipelining the RCPT and DATA replies are still on their way.
  for (auto& r : rcpt_replies_) r = reply;
  if (!caps_.pipelining) finishTransaction(false);
}

void ClientSession::onRcpt(const ServerReply& reply) {
  const std::size_t i = next_rcpt_reply_++;
  if (!mail_accepted_ || i >= rcpt_replies_.size()) return;
  rcpt_replies_[i] = reply;
  if (positive(reply)) ++accepted_;
  if (caps_.pipelining) return;
  if (i + 1 < tx_.recipients.size()) {
    sendRcpt(i + 1);
  } else if (accepted_ == 0) {
    finishTransaction(true);
  } else {
    send("DATA");
    expected_.push_back(Expect::Data);
  }
}

void ClientSession::onData(const ServerReply& reply) {
  tx_log_ += "; DATA: " + reply.describe();
  if (reply.code == 354) {
    if (!mail_accepted_ || accepted_ == 0) {
      // Pipelined DATA accepted with no recipient to send to (RFC 2920
      // §3.1): end it at once with an empty message.
      send(".");
      expected_.push_back(Expect::Dot);
      return;
    }
    phase_ = Phase::Body;
    return;
  }
  if (!mail_accepted_) {
    finishTransaction(false);
    return;
  }
  for (auto& r : rcpt_replies_) {
    if (r && positive(*r)) r = reply;
  }
  finishTransaction(true);
}

void ClientSession::bodySent() {
  if (phase_ != Phase::Body) return;
  dot_sent_ = true;
  phase_ = Phase::Transaction;
  expected_.push_back(Expect::Dot);
}

bool ClientSession::awaitingDotReply() const {
  return dot_sent_ && phase_ == Phase::Transaction && !expected_.empty() && expected_.front() == Expect::Dot;
}

void ClientSession::onDot(const ServerReply& reply) {
  if (!dot_sent_) {
    // The empty message after a pipelined DATA without recipients.
    finishTransaction(true);
    return;
  }
  tx_log_ += "; end of data: " + reply.describe();
  for (auto& r : rcpt_replies_) {
    if (r && positive(*r)) r = reply;
  }
  finishTransaction(false);
}

void ClientSession::finishTransaction(bool needs_rset) {
  TransactionOutcome outcome;
  outcome.recipients.reserve(rcpt_replies_.size());
  for (auto& r : rcpt_replies_) {
    outcome.recipients.push_back(r ? std::move(*r) : made(451, "4.4.2 no reply from the upstream server"));
  }
  outcome.log = std::move(tx_log_);
  tx_log_.clear();
  outcome_ = std::move(outcome);
  rcpt_replies_.clear();
  ++transactions_;
  phase_ = Phase::Ready;
  if (needs_rset) {
    send("RSET");
    expected_.push_back(Expect::Rset);
  }
}

void ClientSession::failPending(const ServerReply& reply) {
  TransactionOutcome outcome;
  for (auto& r : rcpt_replies_) {
    // Refused recipients keep their refusal; accepted or unanswered ones
    // have not been delivered (as far as anyone knows).
    outcome.recipients.push_back(r && !positive(*r) ? std::move(*r) : reply);
  }
  outcome.possible_duplicate = dot_sent_;
  outcome.lost_before_mail_reply = !mail_answered_;
  outcome.log = std::move(tx_log_);
  tx_log_.clear();
  outcome_ = std::move(outcome);
  rcpt_replies_.clear();
}

void ClientSession::connectionLost(std::string why) {
  if (phase_ == Phase::Closed) return;
  if (phase_ == Phase::Closing) {
    phase_ = Phase::Closed;
    return;
  }
  fail(std::move(why));
}

void ClientSession::fail(std::string detail, bool auth_rejected) {
  if (phase_ == Phase::Transaction || phase_ == Phase::Body) {
    failPending(made(451, "4.4.2 " + detail));
  }
  failure_ = SessionFailure{auth_rejected, std::move(detail)};
  phase_ = Phase::Closed;
  expected_.clear();
  out_.clear();
  wipe(options_.secret);
}

TransactionOutcome ClientSession::takeOutcome() {
  TransactionOutcome out = outcome_ ? std::move(*outcome_) : TransactionOutcome{};
  outcome_.reset();
  return out;
}

void ClientSession::quit() {
  if (phase_ != Phase::Ready || !expected_.empty()) return;
  send("QUIT");
  expected_.push_back(Expect::Quit);
  phase_ = Phase::Closing;
}

void DataEncoder::encode(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + in.size() / 64 + 8);
  const auto endLine = [&] {
    out += "\r\n";
    column_ = 0;
  };
  for (char c : in) {
    if (pending_cr_) {
      pending_cr_ = false;
      endLine();
      if (c == '\n') continue;  // CRLF: the line end already written
    }
    if (c == '\r') {
      pending_cr_ = true;
      continue;
    }
    if (c == '\n') {
      endLine();
      continue;
    }
    if (column_ == kMaxLine) {
      // A continuation that starts with a space, so never with a dot.
      out += "\r\n ";
      column_ = 1;
    }
    if (column_ == 0 && c == '.') {
      out += '.';
      ++column_;
    }
    out += c;
    ++column_;
  }
}

void DataEncoder::finish(std::string& out) {
  if (pending_cr_ || column_ > 0) out += "\r\n";
  pending_cr_ = false;
  column_ = 0;
  out += ".\r\n";
}

}  // namespace mb::smtp
