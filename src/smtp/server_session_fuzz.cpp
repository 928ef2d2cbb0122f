// libFuzzer target: a whole ServerSession fed the input in pieces. The first
// byte picks limits and the commit style; the low three bits of the second
// the number of piece sizes, which follow, and its high bits the listener's
// features (STARTTLS, TLS, AUTH, plaintext AUTH) and small line limits; the
// rest is what the client sends. A handler that accepts every message checks
// that every onDataStart() is closed by exactly one onDataEnd() or
// onDataAbort(), that content stays within the size limit and holds only
// CRLF line ends, and that AUTH requests are well-formed; it answers AUTH
// by the bytes of the credentials, at once or a feed later. The driver
// completes every STARTTLS handshake. A sink checks that every reply is
// well-formed.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/server_session.h"

namespace {

using mb::smtp::AuthRequest;
using mb::smtp::AuthResult;
using mb::smtp::DataProblem;
using mb::smtp::Reply;
using mb::smtp::ServerSession;
using mb::smtp::Transaction;

void check(bool ok) {
  if (!ok) std::abort();
}

class CheckingSink : public mb::smtp::ReplySink {
 public:
  void sendReply(std::string_view wire) override {
    check(wire.size() >= 5);
    check(wire.substr(wire.size() - 2) == "\r\n");
    std::size_t start = 0;
    while (start < wire.size()) {
      const std::size_t end = wire.find("\r\n", start);
      check(end != std::string_view::npos);
      const std::string_view line = wire.substr(start, end - start);
      check(line.size() >= 3);
      for (std::size_t i = 0; i < 3; ++i) check(line[i] >= '0' && line[i] <= '9');
      const bool last = end + 2 == wire.size();
      if (line.size() > 3) check(line[3] == (last ? ' ' : '-'));
      check(last || line.size() > 3);
      for (char c : line) check(c != '\r' && c != '\n' && c != '\0');
      start = end + 2;
    }
    ++count;
  }
  std::size_t count = 0;
};

class AcceptingHandler : public mb::smtp::SessionHandler {
 public:
  std::optional<Reply> onMail(const Transaction&) override { return std::nullopt; }
  std::optional<Reply> onRcpt(const Transaction& txn, std::string_view recipient) override {
    check(!recipient.empty());
    check(txn.recipients.size() < max_recipients);
    return std::nullopt;
  }
  std::optional<Reply> onDataStart(const Transaction& txn) override {
    check(!open);
    check(!txn.recipients.empty());
    open = true;
    size = 0;
    prev_cr = false;
    return std::nullopt;
  }
  void onDataChunk(std::string_view bytes) override {
    check(open);
    size += bytes.size();
    check(size <= max_size);
    for (char c : bytes) {
      if (prev_cr) check(c == '\n');
      if (c == '\n') check(prev_cr);
      prev_cr = c == '\r';
    }
  }
  void onDataEnd(const Transaction&) override {
    check(open);
    check(!prev_cr);
    open = false;
    ++ends;
    if (complete_at_once) session->completeData(Reply{250, "2.0.0", "Queued", {}});
  }
  void onDataAbort(DataProblem) override {
    check(open);
    open = false;
  }
  void onAuth(const AuthRequest& request) override {
    check(session->awaitingAuth());
    check(session->authUser().empty());
    check(request.mechanism == "PLAIN" || request.mechanism == "LOGIN");
    check(!request.user.empty());
    for (char ch : request.user) check(static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f);
    for (char ch : request.authzid) check(static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f);
    if (request.mechanism == "LOGIN") check(request.authzid.empty());
    ++auths;
    // The credentials decide: every answer, now or later, is reachable.
    std::size_t mix = request.user.size() + request.password.size();
    for (char ch : request.password) mix += static_cast<unsigned char>(ch);
    static constexpr AuthResult kResults[] = {AuthResult::Success, AuthResult::Failure, AuthResult::TempFailure,
                                              AuthResult::LockedOut};
    result = kResults[mix % 4];
    if ((mix / 4) % 2 == 0) {
      session->completeAuth(result);
    } else {
      deferred = true;
    }
  }

  ServerSession* session = nullptr;
  bool complete_at_once = false;
  bool open = false;
  bool prev_cr = false;
  std::uint64_t size = 0;
  std::uint64_t max_size = 0;
  std::size_t max_recipients = 0;
  std::size_t ends = 0;
  std::size_t auths = 0;
  bool deferred = false;  // answer the pending AUTH after the next feed
  AuthResult result = AuthResult::Success;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t flags = data[0];
  const std::uint8_t shape = data[1];
  const std::size_t nsplits = (shape % 8) + 1;
  if (size < 2 + nsplits) return 0;
  std::vector<std::size_t> pieces;
  for (std::size_t i = 0; i < nsplits; ++i) pieces.push_back(static_cast<std::size_t>(data[2 + i]) + 1);
  const std::string_view input(reinterpret_cast<const char*>(data + 2 + nsplits), size - 2 - nsplits);

  mb::smtp::SessionLimits limits;
  limits.hostname = "fuzz.example";
  limits.max_message_size = (flags & 0x01) ? 64 : 4096;
  limits.max_recipients = (flags & 0x02) ? 2 : 100;
  limits.max_command_line = (flags & 0x04) ? 32 : 512;
  limits.max_errors = (flags & 0x08) ? 3 : 20;
  limits.bare_lf = (flags & 0x10) ? mb::smtp::BareLf::Reject : mb::smtp::BareLf::Normalize;
  limits.reject_long_lines = (flags & 0x80) == 0;
  if (shape & 0x80) {
    limits.max_line_length = 40;
    limits.max_auth_line = 48;
  }
  mb::smtp::SessionFeatures features;
  features.starttls = (shape & 0x08) != 0;
  features.tls_active = (shape & 0x10) != 0;
  features.auth = (shape & 0x20) != 0;
  features.auth_without_tls = (shape & 0x40) != 0;

  AcceptingHandler handler;
  handler.max_size = limits.max_message_size;
  handler.max_recipients = limits.max_recipients;
  handler.complete_at_once = (flags & 0x20) != 0;
  CheckingSink sink;
  ServerSession session(limits, handler, sink);
  handler.session = &session;
  session.setFeatures(features);
  session.greet();
  const std::size_t line_bound = std::max(limits.max_command_line, limits.max_auth_line);

  std::size_t pos = 0;
  for (std::size_t k = 0; pos < input.size(); ++k) {
    const std::size_t n = std::min(pieces[k % pieces.size()], input.size() - pos);
    session.feed(input.substr(pos, n));
    pos += n;
    while (session.awaitingCommit() || session.awaitingAuth() || session.tlsRequested()) {
      if (session.awaitingCommit()) {
        check(!handler.complete_at_once);
        check(!handler.open);
        session.completeData(Reply{250, "2.0.0", "Queued", {}});
      } else if (session.awaitingAuth()) {
        if (handler.deferred && pos < input.size()) break;  // more input arrives while the verifier works
        handler.deferred = false;
        session.completeAuth(handler.result);
      } else {
        check(!handler.open);
        session.tlsStarted();
        check(!session.tlsRequested());
        check(session.buffered() == 0);
        check(session.authUser().empty());
      }
    }
    handler.deferred = false;
    if (!session.closed() && !session.awaitingAuth()) check(session.buffered() <= line_bound);
    for (char ch : session.authUser()) check(static_cast<unsigned char>(ch) >= 0x20);
  }
  if (flags & 0x40) {
    session.timeout();
    check(session.closed());
  }
  while (session.awaitingAuth()) session.completeAuth(handler.result);
  session.disconnected();
  check(session.closed());
  check(!handler.open);
  check(!session.awaitingAuth() && !session.awaitingCommit() && !session.inData());
  return 0;
}
