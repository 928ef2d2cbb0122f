#include "admin/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "admin/control_protocol.h"
#include "base/log.h"
#include "base/worker_pool.h"
#include "net/asio.h"

namespace mb::admin {
namespace {

namespace asio = net::asio;
using Local = asio::local::stream_protocol;
using boost::system::error_code;

// How long a client has to send its request, and then to take the reply.
constexpr auto kIoTimeout = std::chrono::seconds(10);
// Connections served at once; the socket is ours and root's only, so this
// only guards against a runaway script.
constexpr std::size_t kMaxConnections = 32;
// A `list` of a very large queue is large; this bounds what the CLI holds.
constexpr std::size_t kMaxReplyBytes = 256 * 1024 * 1024;

Result<Local::endpoint> endpointFor(const std::filesystem::path& path) {
  const std::string& s = path.native();
  constexpr std::size_t kMax = sizeof(sockaddr_un::sun_path) - 1;  // room for the NUL
  if (s.empty()) return Error{"control socket path is empty"};
  if (s.find('\0') != std::string::npos) return Error{"control socket path contains a NUL byte"};
  if (s.size() > kMax) {
    return Error{"control socket path " + s + " is " + std::to_string(s.size()) +
                 " bytes long; a Unix socket path can have at most " + std::to_string(kMax) +
                 " (choose a shorter server.state_dir)"};
  }
  return Local::endpoint(s);
}

// "Connection refused" → "connection refused", to sit inside a sentence.
std::string lowerFirst(std::string text) {
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z')
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

}  // namespace

class ControlServer::Impl {
 public:
  Impl(std::filesystem::path path, Handler handler)
      : path_(std::move(path)), handler_(std::move(handler)), acceptor_(io_) {}

  ~Impl() { stop(); }

  Status start();
  void stop();

 private:
  // One client; shared between its coroutine and its deadline's handler.
  struct Connection {
    Connection(Local::socket s, std::set<Connection*>& registry)
        : socket(std::move(s)), timer(socket.get_executor()), registry_(registry) {
      registry_.insert(this);
    }
    ~Connection() { registry_.erase(this); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    Local::socket socket;
    asio::steady_timer timer;
    unsigned generation = 0;  // which arming of the timer is current
    bool timed_out = false;

   private:
    std::set<Connection*>& registry_;
  };

  asio::awaitable<void> acceptLoop();
  asio::awaitable<void> serve(std::shared_ptr<Connection> conn);
  static void arm(const std::shared_ptr<Connection>& conn);

  std::filesystem::path path_;
  Handler handler_;
  // Declared before io_: connections that are still open when io_ goes
  // unregister themselves from it while io_ destroys their coroutines.
  std::set<Connection*> connections_;
  asio::io_context io_{1};
  Local::acceptor acceptor_;
  std::thread thread_;
  bool stopping_ = false;  // io thread only
  bool bound_ = false;
  struct stat bound_stat_ {};  // the socket file we made, so stop() removes only that
};

Status ControlServer::Impl::start() {
  auto endpoint = endpointFor(path_);
  if (!endpoint) return endpoint.error();
  const std::string& path = path_.native();
  error_code ec;

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error{"control socket path " + path + " exists and is not a socket; remove it"};
    }
    // A socket file stays behind when a daemon dies; only a refused
    // connection proves nobody serves it any more.
    Local::socket probe(io_);
    probe.connect(*endpoint, ec);
    if (!ec) {
      return Error{"another mailbridge is running with this state directory (" + path + ")"};
    }
    if (ec == boost::system::errc::connection_refused) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        return Error::fromErrno("cannot remove the stale control socket " + path, errno);
      }
      spdlog::info("control socket {}: removed the one left by an earlier run", path);
    } else if (ec != boost::system::errc::no_such_file_or_directory) {
      return Error{"cannot check the control socket " + path + ": " + lowerFirst(ec.message()),
                   ec.value()};
    }
  }

  acceptor_.open(Local(), ec);
  // Linux gives the socket file the mode of the socket inode, so the file
  // is 0600 from the moment it exists; the chmod below covers the rest.
  if (!ec && ::fchmod(acceptor_.native_handle(), S_IRUSR | S_IWUSR) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (!ec) acceptor_.bind(*endpoint, ec);
  if (!ec && ::chmod(path.c_str(), S_IRUSR | S_IWUSR) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec && ::lstat(path.c_str(), &bound_stat_) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (ec) {
    error_code ignored;
    const bool created = acceptor_.is_open() && ec != boost::system::errc::address_in_use;
    acceptor_.close(ignored);
    if (created) ::unlink(path.c_str());
    if (ec == boost::system::errc::address_in_use) {
      return Error{"another mailbridge is running with this state directory (" + path + ")",
                   ec.value()};
    }
    return Error{"cannot listen on the control socket " + path + ": " + lowerFirst(ec.message()),
                 ec.value()};
  }
  bound_ = true;

  asio::co_spawn(io_, acceptLoop(), asio::detached);
  thread_ = std::thread([this] {
    nameThisThread("mb-control");
    io_.run();
  });
  spdlog::info("control socket listening on {}", path);
  return {};
}

void ControlServer::Impl::stop() {
  if (thread_.joinable()) {
    asio::post(io_, [this] {
      stopping_ = true;
      error_code ignored;
      acceptor_.close(ignored);
      // A client in the middle of its request sees the connection close.
      for (Connection* c : connections_) c->socket.close(ignored);
      io_.stop();
    });
    thread_.join();
  }
  if (bound_) {
    bound_ = false;
    // Another daemon may have replaced the file since (after deciding ours
    // was stale); its socket is not ours to remove.
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == bound_stat_.st_dev &&
        st.st_ino == bound_stat_.st_ino) {
      ::unlink(path_.c_str());
    }
  }
  error_code ignored;
  acceptor_.close(ignored);
}

asio::awaitable<void> ControlServer::Impl::acceptLoop() {
  for (;;) {
    error_code ec;
    Local::socket socket =
        co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_ || !acceptor_.is_open()) co_return;
    if (ec) {
      // Out of file descriptors and the like: wait rather than spin.
      spdlog::warn("control socket {}: accept failed: {}", path_.string(), ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(200));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (connections_.size() >= kMaxConnections) {
      spdlog::warn("control socket {}: {} connections open; refusing another", path_.string(),
                   connections_.size());
      socket.close(ec);
      continue;
    }
    asio::co_spawn(io_, serve(std::make_shared<Connection>(std::move(socket), connections_)),
                   asio::detached);
  }
}

void ControlServer::Impl::arm(const std::shared_ptr<Connection>& conn) {
  const unsigned generation = ++conn->generation;
  conn->timer.expires_after(kIoTimeout);
  conn->timer.async_wait([weak = std::weak_ptr<Connection>(conn), generation](error_code ec) {
    auto c = weak.lock();
    // A handler queued before the timer was armed again is stale.
    if (ec || !c || c->generation != generation) return;
    c->timed_out = true;
    error_code ignored;
    c->socket.cancel(ignored);
  });
}

asio::awaitable<void> ControlServer::Impl::serve(std::shared_ptr<Connection> conn) {
  error_code ec;
  std::string reply;

  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(conn->socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
    spdlog::warn("control socket: cannot read the peer's credentials: {}",
                 std::error_code(errno, std::generic_category()).message());
    reply = errorReply("cannot verify who is asking");
  } else if (peer.uid != ::geteuid() && peer.uid != 0) {
    spdlog::warn("control socket: refused a request from uid {} (pid {})", peer.uid, peer.pid);
    reply = errorReply("permission denied: uid " + std::to_string(peer.uid) +
                       " may not control this mailbridge");
  }

  if (reply.empty()) {
    std::string request;
    arm(conn);
    const std::size_t n = co_await asio::async_read_until(
        conn->socket, asio::dynamic_buffer(request, kMaxRequestBytes + 2), '\n',
        asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      reply = handler_(std::string_view(request).substr(0, n));
    } else if (ec == asio::error::eof && !request.empty()) {
      reply = handler_(request);  // the client shut down instead of a newline
    } else if (ec == asio::error::not_found) {
      reply = errorReply("request too long: more than " + std::to_string(kMaxRequestBytes) +
                         " bytes without a newline");
    } else if (conn->timed_out && !stopping_) {
      spdlog::debug("control socket: no request within {}s; closing", kIoTimeout.count());
      reply = errorReply("no request within " + std::to_string(kIoTimeout.count()) + " s");
    } else {
      co_return;  // the client went away, or we are stopping
    }
  }

  if (stopping_) co_return;
  reply += '\n';
  conn->timed_out = false;
  arm(conn);
  co_await asio::async_write(conn->socket, asio::buffer(reply),
                             asio::redirect_error(asio::use_awaitable, ec));
  conn->timer.cancel();
  if (ec && !stopping_) spdlog::debug("control socket: reply not sent: {}", ec.message());
  conn->socket.shutdown(Local::socket::shutdown_both, ec);
  conn->socket.close(ec);
}

ControlServer::ControlServer(std::filesystem::path path, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(path), std::move(handler))) {}

ControlServer::ControlServer(std::filesystem::path path, queue::QueueControl& queue)
    : ControlServer(std::move(path), [&queue](std::string_view request) { return handleRequest(request, queue); }) {}

ControlServer::~ControlServer() {
  stop();
}

Status ControlServer::start() {
  return impl_->start();
}

void ControlServer::stop() {
  impl_->stop();
}

// ---- client -------------------------------------------------------------------

namespace {

struct Exchange {
  enum class Stage { Connecting, Sending, Receiving, Done };
  Stage stage = Stage::Connecting;
  error_code ec;
  std::size_t reply_length = 0;
};

asio::awaitable<void> exchange(Local::socket& socket, Local::endpoint endpoint,
                               const std::string& out, std::string& in, Exchange& x) {
  co_await socket.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, x.ec));
  if (x.ec) co_return;
  x.stage = Exchange::Stage::Sending;
  co_await asio::async_write(socket, asio::buffer(out),
                             asio::redirect_error(asio::use_awaitable, x.ec));
  if (x.ec) co_return;
  x.stage = Exchange::Stage::Receiving;
  x.reply_length =
      co_await asio::async_read_until(socket, asio::dynamic_buffer(in, kMaxReplyBytes), '\n',
                                      asio::redirect_error(asio::use_awaitable, x.ec));
  if (x.ec) co_return;
  x.stage = Exchange::Stage::Done;
}

}  // namespace

Result<std::string> controlRequest(const std::filesystem::path& path, const std::string& request,
                                   std::chrono::milliseconds timeout) {
  auto endpoint = endpointFor(path);
  if (!endpoint) return endpoint.error();
  if (request.find('\n') != std::string::npos) return Error{"a control request is one line"};
  const std::string where = "mailbridge at " + path.string();
  const std::string waited = timeout.count() % 1000 == 0
                                 ? std::to_string(timeout.count() / 1000) + " s"
                                 : std::to_string(timeout.count()) + " ms";

  // Declared before io so that they outlive a coroutine that io destroys
  // unfinished after a timeout.
  const std::string out = request + "\n";
  std::string in;
  Exchange x;
  asio::io_context io(1);
  Local::socket socket(io);
  asio::co_spawn(io, exchange(socket, *endpoint, out, in, x), asio::detached);
  io.run_for(timeout);

  if (x.stage == Exchange::Stage::Done) {
    in.resize(x.reply_length - 1);  // without the newline
    return in;
  }
  error_code ignored;
  socket.close(ignored);
  const std::string why = lowerFirst(x.ec.message());
  if (!x.ec) {
    return Error{where + " did not answer within " + waited};
  }
  switch (x.stage) {
    case Exchange::Stage::Connecting:
      if (x.ec == boost::system::errc::permission_denied) {
        return Error{"cannot reach " + where +
                         ": permission denied (run this as the user mailbridge runs as, or as "
                         "root)",
                     x.ec.value()};
      }
      return Error{"cannot reach " + where + ": is the service running? (" + why + ")",
                   x.ec.value()};
    case Exchange::Stage::Sending:
      return Error{"cannot send the request to " + where + " (" + why + ")", x.ec.value()};
    case Exchange::Stage::Receiving:
      if (x.ec == asio::error::eof) {
        return Error{where + " closed the connection without a complete answer"};
      }
      if (x.ec == asio::error::not_found) {
        return Error{"the answer from " + where + " is longer than " +
                     std::to_string(kMaxReplyBytes) + " bytes"};
      }
      return Error{"no answer from " + where + " (" + why + ")", x.ec.value()};
    case Exchange::Stage::Done:
      break;
  }
  return Error{"no answer from " + where};
}

}  // namespace mb::admin
