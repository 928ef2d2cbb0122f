#include "admin/control_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "admin/control_protocol.h"
#include "base/testing/temp_dir.h"

namespace mb::admin {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kIdA = "0123456789ABCDEFGHIJ";
constexpr const char* kIdB = "0123456789abcdefghij";

// QueueControl over a map; called on the server's thread.
class FakeQueueControl final : public queue::QueueControl {
 public:
  FakeQueueControl() {
    for (const char* id : {kIdA, kIdB}) {
      queue::QueueItem item;
      item.id = id;
      item.sender = "scanner@example.com";
      item.recipients = {{"alice@example.com", queue::RecipientState::Pending, 451, "4.4.1", "x"}};
      item.arrival = 1700000000;
      item.size = 100;
      items_[id] = item;
    }
  }

  Result<std::vector<queue::QueueItem>> list() override {
    std::lock_guard lock(mutex_);
    calls_.push_back("list");
    std::vector<queue::QueueItem> out;
    for (const auto& [id, item] : items_) out.push_back(item);
    return out;
  }
  Result<queue::QueueItem> show(const std::string& id) override {
    std::lock_guard lock(mutex_);
    calls_.push_back("show " + id);
    auto it = items_.find(id);
    if (it == items_.end()) return unknown(id);
    return it->second;
  }
  Status retry(const std::string& id) override { return simple("retry ", id); }
  Result<std::size_t> retryAll() override {
    std::lock_guard lock(mutex_);
    calls_.push_back("retryAll");
    return items_.size();
  }
  Status hold(const std::string& id) override { return simple("hold ", id); }
  Status release(const std::string& id) override { return simple("release ", id); }
  Status remove(const std::string& id) override {
    Status st = simple("remove ", id);
    std::lock_guard lock(mutex_);
    if (st) items_.erase(id);
    return st;
  }

  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  static Error unknown(const std::string& id) {
    return Error{"no message " + id + " in the queue"};
  }
  Status simple(const char* what, const std::string& id) {
    std::lock_guard lock(mutex_);
    calls_.push_back(what + id);
    if (items_.count(id) == 0) return unknown(id);
    return {};
  }

  mutable std::mutex mutex_;
  std::map<std::string, queue::QueueItem> items_;
  std::vector<std::string> calls_;
};

// A plain client socket, for what controlRequest() would not do: stay
// silent, send too much, come from another uid.
int rawConnect(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Everything the peer (a socket or a pipe) sends until it closes, or what
// came before `timeout` passed.
std::string readAll(int fd, std::chrono::seconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  std::string out;
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// A socket file that nobody listens on any more, as a killed daemon leaves.
void makeStaleSocket(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(fd, 1), 0);
  ::close(fd);
}

class ControlServerTest : public ::testing::Test {
 protected:
  std::filesystem::path socketPath() const { return dir_.path() / "control.sock"; }

  Reply ask(const std::string& request) {
    auto line = controlRequest(socketPath(), request, std::chrono::seconds(5));
    EXPECT_TRUE(line.ok()) << line.error().message;
    if (!line) return {};
    auto reply = parseReply(*line);
    EXPECT_TRUE(reply.ok()) << *line;
    return reply ? std::move(reply).value() : Reply{};
  }

  mb::testing::TempDir dir_;
  FakeQueueControl queue_;
};

TEST_F(ControlServerTest, EveryCommandRoundTrips) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());

  Reply r = ask(makeRequest(Command::List));
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].id, kIdA);
  EXPECT_EQ(r.messages[0].recipients.at(0).address, "alice@example.com");

  r = ask(makeRequest(Command::Show, kIdB));
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_TRUE(r.message.has_value());
  EXPECT_EQ(r.message->id, kIdB);

  r = ask(makeRequest(Command::RetryAll));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.count, 2u);
  r = ask(makeRequest(Command::Flush));
  EXPECT_EQ(r.count, 2u);

  for (Command c : {Command::Retry, Command::Hold, Command::Release, Command::Delete}) {
    r = ask(makeRequest(c, kIdA));
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.id, kIdA);
  }
  EXPECT_EQ(queue_.calls(), (std::vector<std::string>{
                                "list", std::string("show ") + kIdB, "retryAll", "retryAll",
                                std::string("retry ") + kIdA, std::string("hold ") + kIdA,
                                std::string("release ") + kIdA, std::string("remove ") + kIdA}));

  r = ask(makeRequest(Command::Show, kIdA));  // deleted above
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, std::string("no message ") + kIdA + " in the queue");
}

TEST_F(ControlServerTest, BadRequestsGetErrorReplies) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  Reply r = ask("not json");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "request is not valid JSON");
  r = ask(R"({"command":"show","id":"nope"})");
  EXPECT_EQ(r.error, "'nope' is not a queue id (20 letters and digits)");
  // Still serving.
  EXPECT_TRUE(ask(makeRequest(Command::List)).ok);
  EXPECT_EQ(queue_.calls(), std::vector<std::string>{"list"});
}

TEST_F(ControlServerTest, ARequestWithoutNewlineEndedByShutdownIsServed) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  const int fd = rawConnect(socketPath());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(sendAll(fd, makeRequest(Command::List)));
  ::shutdown(fd, SHUT_WR);
  const std::string reply = readAll(fd, std::chrono::seconds(5));
  ::close(fd);
  EXPECT_THAT(reply, StartsWith(R"({"ok":true,"messages":[)"));
  EXPECT_EQ(reply.back(), '\n');
}

TEST_F(ControlServerTest, ManySequentialRequests) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  for (int i = 0; i < 200; ++i) {
    auto line = controlRequest(socketPath(), makeRequest(Command::Show, kIdB));
    ASSERT_TRUE(line.ok()) << i << ": " << line.error().message;
    ASSERT_THAT(*line, StartsWith(R"({"ok":true,"message":{)"));
  }
  EXPECT_EQ(queue_.calls().size(), 200u);
}

TEST_F(ControlServerTest, ClientsThatGoAwayDoNotHurt) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  for (int i = 0; i < 20; ++i) {
    const int fd = rawConnect(socketPath());
    ASSERT_GE(fd, 0);
    if (i % 2 == 0) sendAll(fd, R"({"command":"li)");
    ::close(fd);
  }
  EXPECT_TRUE(ask(makeRequest(Command::List)).ok);
}

TEST_F(ControlServerTest, SocketFileIsPrivateAndRemovedOnStop) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  struct stat st {};
  ASSERT_EQ(::lstat(socketPath().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  server.stop();
  EXPECT_FALSE(std::filesystem::exists(socketPath()));
  server.stop();  // twice is fine
  auto line = controlRequest(socketPath(), makeRequest(Command::List));
  ASSERT_FALSE(line.ok());
  EXPECT_THAT(line.error().message, HasSubstr("is the service running?"));
}

TEST_F(ControlServerTest, DestructorStops) {
  {
    ControlServer server(socketPath(), queue_);
    ASSERT_TRUE(server.start().ok());
  }
  EXPECT_FALSE(std::filesystem::exists(socketPath()));
}

TEST_F(ControlServerTest, StaleSocketIsReplaced) {
  makeStaleSocket(socketPath());
  ASSERT_TRUE(std::filesystem::exists(socketPath()));
  ControlServer server(socketPath(), queue_);
  const Status st = server.start();
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_TRUE(ask(makeRequest(Command::List)).ok);
}

TEST_F(ControlServerTest, LiveSocketIsRefused) {
  ControlServer first(socketPath(), queue_);
  ASSERT_TRUE(first.start().ok());
  {
    FakeQueueControl other_queue;
    ControlServer second(socketPath(), other_queue);
    const Status st = second.start();
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "another mailbridge is running with this state directory (" +
                                      socketPath().string() + ")");
  }
  // The refused one did not take the file away from the first.
  EXPECT_TRUE(std::filesystem::exists(socketPath()));
  EXPECT_TRUE(ask(makeRequest(Command::List)).ok);
  EXPECT_EQ(queue_.calls(), std::vector<std::string>{"list"});
}

TEST_F(ControlServerTest, SomethingElseAtThePathIsNotRemoved) {
  std::ofstream(socketPath()) << "precious";
  ControlServer server(socketPath(), queue_);
  const Status st = server.start();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("exists and is not a socket"));
  EXPECT_TRUE(std::filesystem::is_regular_file(socketPath()));
}

TEST_F(ControlServerTest, MissingDirectoryIsAClearError) {
  ControlServer server(dir_.path() / "nope" / "control.sock", queue_);
  const Status st = server.start();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("cannot listen on the control socket"));
  EXPECT_THAT(st.error().message, HasSubstr("no such file or directory"));
}

TEST_F(ControlServerTest, PathTooLongIsAClearError) {
  const auto path = dir_.path() / (std::string(120, 'x') + ".sock");
  ControlServer server(path, queue_);
  const Status st = server.start();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr(path.string()));
  EXPECT_THAT(st.error().message, HasSubstr("a Unix socket path can have at most 107"));

  auto line = controlRequest(path, makeRequest(Command::List));
  ASSERT_FALSE(line.ok());
  EXPECT_THAT(line.error().message, HasSubstr("at most 107"));

  // 107 bytes is still fine.
  std::string name = (dir_.path() / "").string();
  name += std::string(107 - name.size(), 'y');
  ControlServer longest(name, queue_);
  const Status ok = longest.start();
  EXPECT_TRUE(ok.ok()) << ok.error().message;
}

TEST_F(ControlServerTest, SilentClientTimesOutWithoutBlockingTheNext) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  const int silent = rawConnect(socketPath());
  ASSERT_GE(silent, 0);

  const auto started = SteadyClock::now();
  EXPECT_TRUE(ask(makeRequest(Command::List)).ok);
  EXPECT_LT(SteadyClock::now() - started, std::chrono::seconds(3));

  const std::string reply = readAll(silent, std::chrono::seconds(20));
  ::close(silent);
  const auto waited = SteadyClock::now() - started;
  EXPECT_EQ(reply, R"({"ok":false,"error":"no request within 10 s"})"
                   "\n");
  EXPECT_GE(waited, std::chrono::seconds(9));
  EXPECT_LT(waited, std::chrono::seconds(15));
  EXPECT_TRUE(ask(makeRequest(Command::List)).ok);
}

TEST_F(ControlServerTest, OverlongRequestIsRefused) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  const int fd = rawConnect(socketPath());
  ASSERT_GE(fd, 0);
  // The server answers once its limit is reached and closes; the rest of
  // what we send may then fail, which is fine.
  sendAll(fd, std::string(kMaxRequestBytes + 100, ' '));
  const std::string reply = readAll(fd, std::chrono::seconds(5));
  ::close(fd);
  EXPECT_EQ(reply,
            R"({"ok":false,"error":"request too long: more than 65536 bytes without a newline"})"
            "\n");
  EXPECT_TRUE(queue_.calls().empty());
}

TEST_F(ControlServerTest, StopWithAClientConnected) {
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  const int fd = rawConnect(socketPath());
  ASSERT_GE(fd, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto started = SteadyClock::now();
  server.stop();
  EXPECT_LT(SteadyClock::now() - started, std::chrono::seconds(2));
  EXPECT_EQ(readAll(fd, std::chrono::seconds(2)), "");  // closed, no answer
  ::close(fd);
}

TEST_F(ControlServerTest, PeerWithAnotherUidIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  ControlServer server(socketPath(), queue_);
  ASSERT_TRUE(server.start().ok());
  // Let the other uid reach the socket, so that only SO_PEERCRED stands in
  // its way (the directory too: TempDir is 0700).
  ASSERT_EQ(::chmod(socketPath().c_str(), 0666), 0);
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  const std::string path = socketPath().native();
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Only async-signal-safe calls in the child of a threaded process.
    ::close(pipe_fds[0]);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    for (std::size_t i = 0; i < path.size(); ++i) addr.sun_path[i] = path[i];
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ::_exit(3);
    const char request[] = "{\"command\":\"list\"}\n";
    // The server may answer and close before reading: no SIGPIPE for that.
    (void)::send(fd, request, sizeof request - 1, MSG_NOSIGNAL);
    char buf[512];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
      if (::write(pipe_fds[1], buf, static_cast<std::size_t>(n)) != n) ::_exit(5);
    }
    // The server closed without reading our request: ECONNRESET after the reply.
    ::_exit(n < 0 && errno != ECONNRESET ? 6 : 0);
  }
  ::close(pipe_fds[1]);
  const std::string reply = readAll(pipe_fds[0], std::chrono::seconds(10));
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status) << ", got: " << reply;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(reply,
            R"({"ok":false,"error":"permission denied: uid 65534 may not control this mailbridge"})"
            "\n");
  EXPECT_TRUE(queue_.calls().empty());
  EXPECT_TRUE(ask(makeRequest(Command::List)).ok);  // root may
}

TEST(ControlRequest, NoDaemon) {
  mb::testing::TempDir dir;
  auto line = controlRequest(dir.path() / "control.sock", makeRequest(Command::List));
  ASSERT_FALSE(line.ok());
  EXPECT_EQ(line.error().message, "cannot reach mailbridge at " +
                                      (dir.path() / "control.sock").string() +
                                      ": is the service running? (no such file or directory)");
  makeStaleSocket(dir.path() / "control.sock");
  line = controlRequest(dir.path() / "control.sock", makeRequest(Command::List));
  ASSERT_FALSE(line.ok());
  EXPECT_THAT(line.error().message, HasSubstr("is the service running? (connection refused)"));
}

TEST(ControlRequest, DaemonThatDoesNotAnswerTimesOut) {
  mb::testing::TempDir dir;
  const auto path = dir.path() / "control.sock";
  // Listening, but nobody accepts: the connection completes in the backlog.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  const auto started = SteadyClock::now();
  auto line = controlRequest(path, makeRequest(Command::List), std::chrono::milliseconds(300));
  const auto waited = SteadyClock::now() - started;
  ::close(fd);
  ASSERT_FALSE(line.ok());
  EXPECT_EQ(line.error().message,
            "mailbridge at " + path.string() + " did not answer within 300 ms");
  EXPECT_GE(waited, std::chrono::milliseconds(250));
  EXPECT_LT(waited, std::chrono::seconds(3));
}

TEST(ControlRequest, RequestMustBeOneLine) {
  mb::testing::TempDir dir;
  auto line = controlRequest(dir.path() / "control.sock", "{\n}");
  ASSERT_FALSE(line.ok());
  EXPECT_EQ(line.error().message, "a control request is one line");
}

}  // namespace
}  // namespace mb::admin
