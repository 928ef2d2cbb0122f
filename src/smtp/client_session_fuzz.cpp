// libFuzzer target: a hostile or broken upstream server. The input is what
// the server sends, cut into pieces at 0xFF bytes (so that replies arrive
// split and merged every way); the first byte chooses the options (AUTH
// mechanism, STARTTLS required or implicit TLS) and whether a transaction
// is begun. Checks that the client never writes a bare CR or LF, never
// writes a command before TLS when STARTTLS is required (beyond EHLO and
// STARTTLS: so no credentials and no mail in the clear), and gives every
// recipient exactly one reply.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp/client_session.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void checkLines(const std::string& out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\n') check(i > 0 && out[i - 1] == '\r');
    if (out[i] == '\r') check(i + 1 < out.size() && out[i + 1] == '\n');
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  using mb::smtp::ClientSession;
  const std::uint8_t mode = data[0];
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  mb::smtp::ClientOptions options;
  options.helo_name = "relay.example";
  options.auth = static_cast<mb::smtp::ClientAuth>(mode & 3);
  options.require_starttls = (mode & 4) != 0;
  options.tls_from_start = (mode & 8) != 0;
  options.username = "user@example.com";
  options.secret = "SECRET-VALUE";
  const bool cleartext_guarded = options.require_starttls && !options.tls_from_start;
  ClientSession session(options);
  const bool transact = (mode & 16) != 0;
  bool began = false;
  bool outcome_seen = false;
  std::string written_before_tls;

  for (int rounds = 0; rounds < 10000; ++rounds) {
    const auto step = session.step();
    if (step == ClientSession::Step::Write) {
      std::string out = session.takeOutput();
      checkLines(out);
      if (!session.tls() && cleartext_guarded) written_before_tls += out;
      continue;
    }
    if (step == ClientSession::Step::StartTls) {
      check(cleartext_guarded);
      session.tlsStarted();
      continue;
    }
    if (step == ClientSession::Step::SendBody) {
      session.bodySent();
      continue;
    }
    if (session.hasOutcome()) {
      const auto outcome = session.takeOutcome();
      check(outcome.recipients.size() == 2);
      for (const auto& r : outcome.recipients) check(r.code >= 200 && r.code <= 599);
      outcome_seen = true;
    }
    if (step == ClientSession::Step::Ready && transact && !began) {
      began = true;
      session.begin(mb::smtp::ClientTransaction{"a@example.com", {"b@example.com", "c@example.com"}, 10, true, false});
      continue;
    }
    if (step != ClientSession::Step::Read || input.empty()) break;
    const std::size_t cut = input.find('\xff');
    const std::string_view piece = input.substr(0, cut);
    input = cut == std::string_view::npos ? std::string_view() : input.substr(cut + 1);
    session.receive(piece);
  }
  if (session.hasOutcome()) check(session.takeOutcome().recipients.size() == 2);
  (void)outcome_seen;
  if (cleartext_guarded) {
    // Only EHLO and STARTTLS ever go out before TLS.
    std::size_t pos = 0;
    while (pos < written_before_tls.size()) {
      const std::size_t end = written_before_tls.find("\r\n", pos);
      const std::string_view line(written_before_tls.data() + pos, end - pos);
      check(line.rfind("EHLO ", 0) == 0 || line == "STARTTLS" || line == "QUIT");
      pos = end + 2;
    }
  }
  return 0;
}
