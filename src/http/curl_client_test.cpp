#include "http/curl_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/testing/loopback_listener.h"
#include "base/testing/temp_dir.h"

namespace mb::http {
namespace {

using namespace std::chrono_literals;

// What the test server saw of one request.
struct Seen {
  std::string head;  // request line and headers
  std::string body;
};

// A small HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies
// only) whose answers come from a handler: enough to see exactly what the
// client sends.
class TestServer {
 public:
  using Handler = std::function<std::string(const Seen&)>;

  explicit TestServer(Handler handler) : handler_(std::move(handler)), listener_(64) {
    acceptor_ = std::thread([this] { acceptLoop(); });
  }

  ~TestServer() {
    stopping_ = true;
    listener_.close();
    acceptor_.join();
    std::lock_guard lock(mutex_);
    for (int c : clients_) ::shutdown(c, SHUT_RDWR);
    for (auto& t : workers_) t.join();
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(listener_.port()) + path;
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  int accepted() const { return accepted_; }

 private:
  void acceptLoop() {
    for (;;) {
      const int c = ::accept(listener_.fd(), nullptr, nullptr);
      if (c < 0) return;
      ++accepted_;
      std::lock_guard lock(mutex_);
      clients_.push_back(c);
      workers_.emplace_back([this, c] { serve(c); });
    }
  }

  void serve(int c) {
    std::string buf;
    char chunk[65536];
    for (;;) {
      std::size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::recv(c, chunk, sizeof chunk, 0);
        if (n <= 0) return ::close(c), void();
        buf.append(chunk, static_cast<std::size_t>(n));
      }
      Seen s;
      s.head = buf.substr(0, end + 2);
      buf.erase(0, end + 4);
      std::size_t length = 0;
      if (auto p = s.head.find("Content-Length: "); p != std::string::npos) {
        length = std::stoul(s.head.substr(p + 16));
      }
      while (buf.size() < length) {
        const ssize_t n = ::recv(c, chunk, sizeof chunk, 0);
        if (n <= 0) return ::close(c), void();
        buf.append(chunk, static_cast<std::size_t>(n));
      }
      s.body = buf.substr(0, length);
      buf.erase(0, length);
      {
        std::lock_guard lock(mutex_);
        seen_.push_back(s);
      }
      const std::string reply = handler_(s);
      if (reply.empty()) continue;  // never answer
      if (::send(c, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) return ::close(c), void();
    }
  }

  Handler handler_;
  mb::testing::LoopbackListener listener_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<int> clients_;
  std::vector<std::thread> workers_;
  std::vector<Seen> seen_;
};

std::string ok(const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra +
         "\r\n" + body;
}

CurlClient::Options fast() {
  CurlClient::Options o;
  o.connect_timeout = 2s;
  return o;
}

TEST(CurlClient, GetReturnsStatusHeadersAndBody) {
  TestServer server([](const Seen&) {
    return std::string("HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\nRetry-After: 7\r\n"
                       "request-id: abc\r\n\r\nhello");
  });
  CurlClient client(fast());
  Request r;
  r.url = server.url("/v1.0/x?a=b");
  r.headers = {{"Authorization", "Bearer t0ken"}, {"client-request-id", "42"}};
  auto out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<Response>(out)) << std::get<TransportError>(out).message;
  const auto& resp = std::get<Response>(out);
  EXPECT_EQ(resp.status, 202);
  EXPECT_EQ(resp.body, "hello");
  EXPECT_EQ(resp.header("retry-after"), "7");
  EXPECT_EQ(resp.header("Request-Id"), "abc");
  EXPECT_FALSE(resp.header("missing").has_value());
  const auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].head.rfind("GET /v1.0/x?a=b HTTP/1.1\r\n", 0), 0u) << seen[0].head;
  EXPECT_NE(seen[0].head.find("Authorization: Bearer t0ken\r\n"), std::string::npos);
  EXPECT_NE(seen[0].head.find("client-request-id: 42\r\n"), std::string::npos);
  EXPECT_NE(seen[0].head.find("User-Agent: mailbridge/"), std::string::npos);
}

TEST(Response, RetryAfterSeconds) {
  const auto with = [](std::string v) { return Response{429, {{"retry-after", std::move(v)}}, ""}.retryAfter(); };
  EXPECT_EQ(with("120"), 120s);
  EXPECT_EQ(with(" 3 "), 3s);
  EXPECT_EQ(with("999999999"), 86400s);
  EXPECT_FALSE(with("").has_value());
  EXPECT_FALSE(with("-1").has_value());
  EXPECT_FALSE(with("Wed, 21 Oct 2015 07:28:00 GMT").has_value());
  EXPECT_FALSE(with("12abc").has_value());
  EXPECT_FALSE((Response{429, {}, ""}.retryAfter().has_value()));
}

TEST(CurlClient, PostSendsTheBodyAsIsWithoutExpect) {
  TestServer server([](const Seen&) { return ok("{}"); });
  CurlClient client(fast());
  Request r;
  r.method = "POST";
  r.url = server.url("/token");
  r.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  r.body = std::string(200000, 'x') + "&end=1";
  auto out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<Response>(out));
  const auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, r.body);
  EXPECT_EQ(seen[0].head.find("Expect:"), std::string::npos);
  EXPECT_NE(seen[0].head.find("Content-Type: application/x-www-form-urlencoded"), std::string::npos);
}

TEST(CurlClient, EmptyPostSaysContentLengthZero) {
  TestServer server([](const Seen&) { return std::string("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"); });
  CurlClient client(fast());
  Request r;
  r.method = "POST";
  r.url = server.url("/send");
  auto out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<Response>(out));
  EXPECT_EQ(std::get<Response>(out).status, 202);
  EXPECT_NE(server.seen().at(0).head.find("Content-Length: 0\r\n"), std::string::npos);
}

TEST(CurlClient, PatchSendsItsBody) {
  TestServer server([](const Seen&) { return ok("{}"); });
  CurlClient client(fast());
  Request r;
  r.method = "PATCH";
  r.url = server.url("/v1.0/users/a/messages/m");
  r.headers = {{"Content-Type", "application/json"}};
  r.body = R"({"singleValueExtendedProperties":[]})";
  auto out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<Response>(out));
  const auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].head.rfind("PATCH /v1.0/users/a/messages/m HTTP/1.1\r\n", 0), 0u) << seen[0].head;
  EXPECT_EQ(seen[0].body, r.body);
}

TEST(CurlClient, PutStreamsASliceOfAFile) {
  mb::testing::TempDir dir;
  const auto file = dir.path() / "content";
  std::string data;
  for (int i = 0; i < 300000; ++i) data.push_back(static_cast<char>('a' + i % 26));
  std::ofstream(file, std::ios::binary) << data;
  TestServer server([](const Seen&) { return ok(""); });
  CurlClient client(fast());
  Request r;
  r.method = "PUT";
  r.url = server.url("/upload");
  r.headers = {{"Content-Type", "application/octet-stream"}, {"Content-Range", "bytes 1000-200999/300000"}};
  r.body_file = file;
  r.body_offset = 1000;
  r.body_length = 200000;
  auto out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<Response>(out)) << std::get<TransportError>(out).message;
  const auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].head.rfind("PUT /upload", 0), 0u);
  EXPECT_EQ(seen[0].body, data.substr(1000, 200000));
  EXPECT_NE(seen[0].head.find("Content-Length: 200000\r\n"), std::string::npos);
}

TEST(CurlClient, MissingBodyFileIsATransportError) {
  CurlClient client(fast());
  Request r;
  r.method = "PUT";
  r.url = "http://127.0.0.1:9/";
  r.body_file = "/nonexistent/file";
  r.body_length = 10;
  auto out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<TransportError>(out));
  EXPECT_NE(std::get<TransportError>(out).message.find("/nonexistent/file"), std::string::npos);
}

TEST(CurlClient, TimeoutAndRefusedAreTransportErrors) {
  TestServer silent([](const Seen&) { return std::string(); });
  CurlClient client(fast());
  Request r;
  r.url = silent.url("/slow");
  r.timeout = 300ms;
  auto out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<TransportError>(out));
  EXPECT_TRUE(std::get<TransportError>(out).timeout);

  // A port nobody listens on: take one, note it, close it.
  std::uint16_t closed_port = 0;
  {
    mb::testing::LoopbackListener gone(1);
    closed_port = gone.port();
  }
  r.url = "http://127.0.0.1:" + std::to_string(closed_port) + "/";
  out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<TransportError>(out));
  EXPECT_FALSE(std::get<TransportError>(out).timeout);
  EXPECT_FALSE(std::get<TransportError>(out).message.empty());
}

TEST(CurlClient, ResponseBodyIsCapped) {
  TestServer server([](const Seen&) { return ok(std::string(5000, 'b')); });
  auto options = fast();
  options.max_response_body = 1000;
  CurlClient client(options);
  Request r;
  r.url = server.url("/big");
  auto out = client.perform(r);
  ASSERT_TRUE(std::holds_alternative<TransportError>(out));
  EXPECT_NE(std::get<TransportError>(out).message.find("larger than 1000 bytes"), std::string::npos);
}

TEST(CurlClient, ConcurrentCallersShareAndReuseConnections) {
  TestServer server([](const Seen& s) { return ok(s.body); });
  auto options = fast();
  options.max_connections_per_host = 4;
  CurlClient client(options);
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 10; ++k) {
        Request r;
        r.method = "POST";
        r.url = server.url("/echo");
        r.body = "caller " + std::to_string(i) + " request " + std::to_string(k);
        auto out = client.perform(r);
        if (std::holds_alternative<Response>(out) && std::get<Response>(out).body == r.body) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good, 80);
  EXPECT_EQ(server.seen().size(), 80u);
  EXPECT_LE(server.accepted(), 4) << "connections are kept and reused";
}

// Outcomes of start() gathered from whichever thread completes them.
class Completions {
 public:
  HttpClient::Completion add(std::string key) {
    return [this, key = std::move(key)](Outcome out) {
      std::lock_guard lock(mutex_);
      outcomes_.emplace_back(key, std::move(out));
      threads_.push_back(std::this_thread::get_id());
      changed_.notify_all();
    };
  }
  bool waitFor(std::size_t n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 20s, [&] { return outcomes_.size() >= n; });
  }
  std::vector<std::pair<std::string, Outcome>> outcomes() {
    std::lock_guard lock(mutex_);
    return outcomes_;
  }
  std::vector<std::thread::id> threads() {
    std::lock_guard lock(mutex_);
    return threads_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::pair<std::string, Outcome>> outcomes_;
  std::vector<std::thread::id> threads_;
};

TEST(CurlClient, StartedRequestsCompleteOnTheClientThread) {
  TestServer server([](const Seen& s) { return ok(s.body); });
  CurlClient client(fast());
  Completions done;
  constexpr int kRequests = 20;
  for (int i = 0; i < kRequests; ++i) {
    Request r;
    r.method = "POST";
    r.url = server.url("/echo");
    r.body = "request " + std::to_string(i);  // owned by the client once started
    const std::string key = r.body;
    client.start(std::move(r), done.add(key));
  }
  ASSERT_TRUE(done.waitFor(kRequests));
  for (const auto& [key, out] : done.outcomes()) {
    ASSERT_TRUE(std::holds_alternative<Response>(out)) << std::get<TransportError>(out).message;
    EXPECT_EQ(std::get<Response>(out).status, 200);
    EXPECT_EQ(std::get<Response>(out).body, key);
  }
  for (const auto id : done.threads()) EXPECT_NE(id, std::this_thread::get_id());
  EXPECT_EQ(server.seen().size(), static_cast<std::size_t>(kRequests));
}

TEST(CurlClient, StartFailsAtOnceWhenTheRequestCannotBeSetUp) {
  CurlClient client(fast());
  Completions done;
  Request r;
  r.method = "PUT";
  r.url = "http://127.0.0.1:9/";
  r.body_file = "/nonexistent/file";
  r.body_length = 10;
  client.start(std::move(r), done.add("put"));
  const auto outcomes = done.outcomes();  // no waiting: reported before start() returned
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<TransportError>(outcomes[0].second));
  EXPECT_NE(std::get<TransportError>(outcomes[0].second).message.find("/nonexistent/file"), std::string::npos);
  EXPECT_EQ(done.threads().at(0), std::this_thread::get_id());
}

TEST(CurlClient, DestructionFailsStartedRequestsStillRunning) {
  TestServer silent([](const Seen&) { return std::string(); });
  auto client = std::make_unique<CurlClient>(fast());
  Completions done;
  Request r;
  r.url = silent.url("/never");
  r.timeout = 60s;
  client->start(std::move(r), done.add("never"));
  for (int i = 0; i < 1000 && silent.seen().empty(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(silent.seen().size(), 1u) << "the request went out";
  client.reset();
  const auto outcomes = done.outcomes();
  ASSERT_EQ(outcomes.size(), 1u) << "the completion ran before the client was gone";
  ASSERT_TRUE(std::holds_alternative<TransportError>(outcomes[0].second));
  EXPECT_EQ(std::get<TransportError>(outcomes[0].second).message, "HTTP client stopped");
}

TEST(CurlClient, DestructionFailsNothingThatFinished) {
  TestServer server([](const Seen&) { return ok("x"); });
  auto client = std::make_unique<CurlClient>(fast());
  Request r;
  r.url = server.url("/");
  EXPECT_TRUE(std::holds_alternative<Response>(client->perform(r)));
  client.reset();  // joins its thread without hanging
}

}  // namespace
}  // namespace mb::http
