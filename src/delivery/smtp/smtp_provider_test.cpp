#include "delivery/smtp/smtp_provider.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/testing/loopback_listener.h"
#include "base/testing/temp_dir.h"
#include "delivery/testing/stored_job.h"
#include "smtp/client_session.h"

namespace mb::delivery::smtp {
namespace {

using namespace std::chrono_literals;
using queue::Outcome;

// A minimal SMTP server on 127.0.0.1 (no TLS, no AUTH, no PIPELINING; one
// connection at a time) that records each transaction, DATA byte for byte
// as it came over the wire.
class FakeSmtpServer {
 public:
  struct Transaction {
    std::string mail;                 // the MAIL command line
    std::vector<std::string> rcpts;   // the RCPT command lines
    std::string data;                 // after the 354, up to and including the final ".\r\n"
  };

  FakeSmtpServer() : listener_(8) { thread_ = std::thread([this] { acceptLoop(); }); }

  ~FakeSmtpServer() {
    if (const int c = client_.load(); c >= 0) ::shutdown(c, SHUT_RDWR);
    listener_.close();
    thread_.join();
  }

  std::uint16_t port() const { return listener_.port(); }
  std::vector<Transaction> transactions() {
    std::lock_guard lock(mutex_);
    return done_;
  }
  int connections() const { return connections_; }

 private:
  void acceptLoop() {
    for (;;) {
      const int c = ::accept(listener_.fd(), nullptr, nullptr);
      if (c < 0) return;
      ++connections_;
      client_ = c;
      serve(c);
      client_ = -1;
      ::close(c);
    }
  }

  static bool say(int c, std::string_view text) {
    return ::send(c, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
  }

  // Appends what arrives next to `buf`; false when the peer left.
  static bool readMore(int c, std::string& buf) {
    char chunk[65536];
    const ssize_t n = ::recv(c, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  void serve(int c) {
    if (!say(c, "220 fake.test ESMTP\r\n")) return;
    std::string buf;
    Transaction t;
    for (;;) {
      while (buf.find("\r\n") == std::string::npos) {
        if (!readMore(c, buf)) return;
      }
      const std::size_t eol = buf.find("\r\n");
      const std::string line = buf.substr(0, eol);
      buf.erase(0, eol + 2);
      std::string verb = line.substr(0, 4);
      for (char& ch : verb) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (verb == "EHLO") {
        say(c, "250-fake.test\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n");
      } else if (verb == "MAIL") {
        t = Transaction{line, {}, {}};
        say(c, "250 2.1.0 ok\r\n");
      } else if (verb == "RCPT") {
        t.rcpts.push_back(line);
        say(c, "250 2.1.5 ok\r\n");
      } else if (verb == "DATA") {
        say(c, "354 go ahead\r\n");
        // The end is ".\r\n" at the start of a line: right away (an empty
        // message) or after a CRLF.
        for (;;) {
          if (buf.size() >= 3 && buf.rfind(".\r\n", 0) == 0) {
            t.data = ".\r\n";
            buf.erase(0, 3);
            break;
          }
          const std::size_t end = buf.find("\r\n.\r\n");
          if (end != std::string::npos) {
            t.data = buf.substr(0, end + 5);
            buf.erase(0, end + 5);
            break;
          }
          if (!readMore(c, buf)) return;
        }
        {
          std::lock_guard lock(mutex_);
          done_.push_back(t);
        }
        say(c, "250 2.0.0 queued as F1\r\n");
      } else if (verb == "QUIT") {
        say(c, "221 2.0.0 bye\r\n");
        return;
      } else if (verb == "RSET" || verb == "NOOP") {
        say(c, "250 2.0.0 ok\r\n");
      } else {
        say(c, "502 5.5.2 not here\r\n");
      }
    }
  }

  mb::testing::LoopbackListener listener_;
  std::atomic<int> connections_{0};
  std::atomic<int> client_{-1};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<Transaction> done_;
};

// What the spool keeps after the message in the same file (the envelope),
// with an 8-bit octet: read, it would also turn on BODY=8BITMIME.
const std::string kTrailer = "\n{\"trailer\":\"MUST-NOT-LEAK caf\xc3\xa9\"}\nMBENV";

// The message as SMTP DATA carries it (dot-stuffed, CRLF, final dot).
std::string onTheWire(std::string_view message) {
  mb::smtp::DataEncoder encoder;
  std::string out;
  encoder.encode(message, out);
  encoder.finish(out);
  return out;
}

class SmtpProviderTest : public ::testing::Test {
 protected:
  SmtpProviderTest() {
    config_.name = "relay";
    config_.type = config::ProviderType::Smtp;
    config_.host = "127.0.0.1";
    config_.port = server_.port();
    config_.tls = config::SmtpTls::None;
    config_.auth = config::SmtpAuth::None;
    config_.timeout = std::chrono::seconds(10);
    config_.max_connections = 1;
    config_.idle_timeout = std::chrono::seconds(0);  // a connection per message
  }

  queue::DeliveryJob job(const std::string& content, const std::string& trailer = kTrailer) {
    return delivery::testing::storedJob(dir_.path(), ++n_, content, {"alice@example.com"}, "scanner@example.com",
                                        trailer);
  }

  queue::DeliveryResult run(const queue::DeliveryJob& j) {
    SmtpProvider p(config_, "mailbridge.test", nullptr);
    return p.attempt(j);
  }

  FakeSmtpServer server_;
  mb::testing::TempDir dir_;
  int n_ = 0;
  config::ProviderConfig config_;
};

TEST_F(SmtpProviderTest, SendsOnlyTheMessageSizeNotWhatFollowsIt) {
  // Larger than one read, a line starting with a dot, no final line end.
  std::string msg = "From: scanner@example.com\r\nTo: alice@example.com\r\nSubject: scan\r\n\r\n";
  while (msg.size() < 200 * 1024) msg += std::string(70, 'b') + "\r\n";
  msg += ".hidden dot\r\nno line end";
  const auto result = run(job(msg));
  ASSERT_EQ(result.results.size(), 1u);
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered) << result.results[0].detail;
  const auto seen = server_.transactions();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].data == onTheWire(msg)) << "sizes " << seen[0].data.size() << " vs " << onTheWire(msg).size();
  EXPECT_EQ(seen[0].data.find("MUST-NOT-LEAK"), std::string::npos);
  EXPECT_NE(seen[0].mail.find(" SIZE=" + std::to_string(msg.size())), std::string::npos) << seen[0].mail;
  EXPECT_EQ(seen[0].mail.find("BODY=8BITMIME"), std::string::npos) << "the trailer's octets are not the message's";

  // The same without a trailer.
  EXPECT_EQ(run(job(msg, "")).results.at(0).outcome, Outcome::Delivered);
  const auto again = server_.transactions();
  ASSERT_EQ(again.size(), 2u);
  EXPECT_TRUE(again[1].data == again[0].data);
  EXPECT_EQ(again[1].mail, again[0].mail);
}

TEST_F(SmtpProviderTest, EightBitIsJudgedOnTheMessageOnly) {
  const std::string msg = "From: scanner@example.com\r\nSubject: caf\xc3\xa9\r\n\r\nbody\r\n";
  EXPECT_EQ(run(job(msg, "\nascii trailer")).results.at(0).outcome, Outcome::Delivered);
  const auto seen = server_.transactions();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(seen[0].mail.find("BODY=8BITMIME"), std::string::npos) << seen[0].mail;
  EXPECT_EQ(seen[0].data, onTheWire(msg));
}

TEST_F(SmtpProviderTest, AContentFileShorterThanTheSizeIsATemporaryFailure) {
  auto j = job("Subject: x\r\n\r\nbody\r\n", "");
  j.envelope.size += 1;
  const auto result = run(j);
  ASSERT_EQ(result.results.size(), 1u);
  EXPECT_EQ(result.results[0].outcome, Outcome::TemporaryFailure);
  EXPECT_NE(result.results[0].detail.find("cannot read the stored message"), std::string::npos)
      << result.results[0].detail;
  EXPECT_TRUE(server_.transactions().empty());
  EXPECT_EQ(server_.connections(), 0) << "found before connecting";
}

}  // namespace
}  // namespace mb::delivery::smtp
