#include "admin/http_server.h"

#include <time.h>

#include <algorithm>
#include <boost/beast/http.hpp>
#include <charconv>
#include <set>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "admin/api.h"
#include "admin/control_protocol.h"
#include "admin/http_auth.h"
#include "admin/json_support.h"
#include "base/log.h"
#include "base/text.h"
#include "base/worker_pool.h"
#include "net/asio.h"
#include "net/stream.h"
#include "net/tcp_listener.h"
#include "net/tls_context_holder.h"
#include "policy/auth_guard.h"

namespace mb::admin {
namespace {

namespace asio = net::asio;
namespace http = boost::beast::http;
using boost::system::error_code;
constexpr auto kIdleTimeout = std::chrono::seconds(30);  // per request, and between requests
constexpr std::size_t kMaxConnections = 64;
constexpr std::size_t kMaxRequestsPerConnection = 1000;
constexpr std::size_t kMaxHeaderBytes = 16 * 1024;
constexpr std::size_t kMaxBodyBytes = 64 * 1024;
constexpr std::string_view kCookie = "mb_session";
constexpr std::chrono::seconds kSessionMaxAge{12 * 3600};
// The "user" that failed logins and tokens are counted under in the guard.
constexpr std::string_view kGuardUser = "admin";

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Response json(unsigned status, const Json& body) {
  return Response{status, "application/json", dumpJson(body) + "\n", {}};
}

Response problem(unsigned status, std::string_view message) {
  return json(status, Json{{"ok", false}, {"error", std::string(message)}});
}

std::string serialize(const Response& r, bool keep_alive) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " +
                    std::string(http::obsolete_reason(static_cast<http::status>(r.status))) +
                    "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  out += "X-Content-Type-Options: nosniff\r\n";
  out += "X-Frame-Options: DENY\r\n";
  out += "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n";
  out += "Referrer-Policy: no-referrer\r\n";
  for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "\r\n";
  out += r.body;
  return out;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding of one query component; nullopt
// for a broken escape.
std::optional<std::string> percentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      const int hi = hexValue(in[i + 1]);
      const int lo = hexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

using Params = std::vector<std::pair<std::string, std::string>>;

std::optional<Params> parseQuery(std::string_view query) {
  Params out;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    auto key = percentDecode(part.substr(0, eq));
    auto value =
        percentDecode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
    if (!key || !value) return std::nullopt;
    out.emplace_back(std::move(*key), std::move(*value));
  }
  return out;
}

// Unix seconds, or an RFC 3339 time in UTC ("2026-05-01T10:00:00Z"), or a
// date ("2026-05-01", midnight UTC).
std::optional<std::int64_t> parseTime(std::string_view text) {
  std::int64_t n = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec == std::errc() && p == text.data() + text.size())
    return n >= 0 ? std::optional(n) : std::nullopt;
  tm t{};
  const std::string s(text);
  const char* end = ::strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &t);
  if (end != nullptr) {
    if (std::string_view(end) != "Z" && std::string_view(end) != "z" &&
        std::string_view(end) != "+00:00") {
      return std::nullopt;
    }
  } else {
    t = tm{};
    end = ::strptime(s.c_str(), "%Y-%m-%d", &t);
    if (end == nullptr || *end != '\0') return std::nullopt;
  }
  const time_t v = ::timegm(&t);
  if (v < 0) return std::nullopt;
  return static_cast<std::int64_t>(v);
}

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const std::size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
  }
  return out;
}

// The HTTP status for an Api reply line.
unsigned statusFor(const Json& reply) {
  if (reply.value("ok", false)) return 200;
  const std::string error = reply.value("error", std::string());
  if (error.rfind("no message", 0) == 0) return 404;
  if (error.rfind("the mail log is off", 0) == 0) return 503;
  if (error.find("is being delivered") != std::string::npos ||
      error.find("is on hold") != std::string::npos) {
    return 409;
  }
  if (error.rfind("internal error", 0) == 0 || error.rfind("cannot ", 0) == 0) return 500;
  return 400;
}

Response apiReply(const std::string& line) {
  const Json reply = Json::parse(line, nullptr, false);
  if (reply.is_discarded()) return problem(500, "internal error: unreadable reply");
  return Response{statusFor(reply), "application/json", line + "\n", {}};
}

bool isStateChange(http::verb v) {
  return v != http::verb::get && v != http::verb::head;
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(Options options, Api& api, const Clock& clock)
      : options_(std::move(options)),
        api_(api),
        sessions_(clock, SessionStore::Options{options_.session_timeout, kSessionMaxAge, 1000}),
        guard_(policy::AuthGuard::Params{5, 1000000, std::chrono::seconds(900),
                                         std::chrono::seconds(900), 10000},
               clock),
        listener_(io_) {}

  ~Impl() { stop(); }

  Status start() {
    if (Status st = listener_.bind(options_.host, options_.port); !st) {
      return Error{"admin: cannot listen on " + options_.host + ":" +
                   std::to_string(options_.port) + ": " + st.error().message};
    }
    if (options_.tls && !options_.tls->current())
      return Error{"admin: TLS is on but no certificate is loaded"};
    asio::co_spawn(io_, acceptLoop(), asio::detached);
    thread_ = std::thread([this] {
      nameThisThread("mb-admin-http");
      io_.run();
    });
    spdlog::info("admin: listening on {} (admin, {})", listener_.address(),
                 options_.tls ? "https" : "http");
    if (options_.password_hash.empty() && options_.api_token.empty()) {
      spdlog::warn(
          "admin: neither admin.password_hash nor admin.api_token is set; the API refuses every "
          "request (create a hash with `mailbridge hash-password`)");
    }
    return {};
  }

  void stop() {
    if (thread_.joinable()) {
      asio::post(io_, [this] {
        stopping_ = true;
        listener_.close();
        for (Connection* c : connections_) c->stream.close();
        io_.stop();
      });
      thread_.join();
    }
  }

  std::uint16_t port() const { return listener_.port(); }

 private:
  struct Connection {
    Connection(net::tcp::socket s, std::set<Connection*>& registry)
        : stream(std::move(s)), timer(stream.socket().get_executor()), registry_(registry) {
      registry_.insert(this);
    }
    ~Connection() { registry_.erase(this); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    net::Stream stream;
    asio::steady_timer timer;
    std::chrono::steady_clock::time_point deadline;
    bool closed = false;
    std::string peer;

   private:
    std::set<Connection*>& registry_;
  };

  // Who is asking: nobody, a browser session, or an API token.
  struct Caller {
    enum class Kind { None, Session, Token } kind = Kind::None;
    std::string csrf;  // the session's
    std::string session_id;
  };

  asio::awaitable<void> acceptLoop();
  asio::awaitable<void> serve(std::shared_ptr<Connection> conn);
  asio::awaitable<void> watchdog(std::shared_ptr<Connection> conn);

  Response route(const http::request<http::string_body>& req, const std::string& peer);
  Response login(const http::request<http::string_body>& req, const std::string& peer);
  Response api(const http::request<http::string_body>& req, std::string_view path,
               std::string_view query, const Caller& caller);

  Options options_;
  Api& api_;
  SessionStore sessions_;
  policy::AuthGuard guard_;
  // Declared before io_: connections still open when io_ goes unregister
  // themselves while io_ destroys their coroutines.
  std::set<Connection*> connections_;
  asio::io_context io_{1};
  net::TcpListener listener_;
  std::thread thread_;
  bool stopping_ = false;  // io thread only
};

asio::awaitable<void> HttpServer::Impl::acceptLoop() {
  for (;;) {
    error_code ec;
    net::tcp::socket socket = co_await listener_.accept(ec);
    if (stopping_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
      spdlog::warn("admin: accept failed: {}", ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(200));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (connections_.size() >= kMaxConnections) {
      spdlog::warn("admin: {} connections open; refusing another", connections_.size());
      socket.close(ec);
      continue;
    }
    auto conn = std::make_shared<Connection>(std::move(socket), connections_);
    conn->peer = net::peerAddress(conn->stream.socket());
    conn->deadline = std::chrono::steady_clock::now() + kIdleTimeout;
    asio::co_spawn(io_, watchdog(conn), asio::detached);
    asio::co_spawn(io_, serve(conn), asio::detached);
  }
}

asio::awaitable<void> HttpServer::Impl::watchdog(std::shared_ptr<Connection> conn) {
  while (!conn->closed) {
    conn->timer.expires_at(conn->deadline);
    error_code ec;
    co_await conn->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (conn->closed) co_return;
    if (std::chrono::steady_clock::now() >= conn->deadline) {
      conn->stream.close();
      co_return;
    }
  }
}

asio::awaitable<void> HttpServer::Impl::serve(std::shared_ptr<Connection> conn) {
  struct Closer {
    Connection& c;
    ~Closer() {
      c.closed = true;
      c.timer.cancel();
    }
  } closer{*conn};

  error_code ec;
  if (options_.tls) {
    co_await conn->stream.startTls(options_.tls->current(), ec);
    if (ec) {
      spdlog::debug("admin: TLS handshake with {} failed: {}", conn->peer, ec.message());
      conn->stream.close();
      co_return;
    }
  }

  std::string buffer;
  std::array<char, 8192> chunk{};
  for (std::size_t served = 0; served < kMaxRequestsPerConnection && !stopping_; ++served) {
    conn->deadline = std::chrono::steady_clock::now() + kIdleTimeout;
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxBodyBytes);
    parser.eager(true);
    std::optional<Response> refusal;
    bool continued = false;
    while (!parser.is_done()) {
      if (!buffer.empty()) {
        boost::beast::error_code pec;
        const std::size_t used = parser.put(asio::buffer(buffer), pec);
        buffer.erase(0, used);
        if (pec && pec != http::error::need_more) {
          if (pec == http::error::body_limit) {
            refusal = problem(413, "request body too large: at most 64 KB");
          } else if (pec == http::error::header_limit) {
            refusal = problem(431, "request header too large: at most 16 KB");
          } else {
            refusal = problem(400, "malformed HTTP request");
          }
          break;
        }
        if (used > 0 && !parser.is_done()) continue;
        if (parser.is_done()) break;
      }
      if (parser.is_header_done() && !continued) {
        const auto& h = parser.get();
        const auto expect = h[http::field::expect];
        if (!expect.empty() &&
            iequals(std::string_view(expect.data(), expect.size()), "100-continue")) {
          continued = true;
          co_await conn->stream.write("HTTP/1.1 100 Continue\r\n\r\n", ec);
          if (ec) co_return;
        }
      }
      const std::size_t n = co_await conn->stream.readSome(asio::buffer(chunk), ec);
      if (ec) {
        // A client closing between requests is the normal end.
        co_return;
      }
      buffer.append(chunk.data(), n);
    }

    Response response;
    bool keep_alive = false;
    if (refusal) {
      response = std::move(*refusal);
    } else {
      const auto& req = parser.get();
      keep_alive = req.keep_alive();
      response = route(req, conn->peer);
      spdlog::debug("admin: {} {} {} from {}", std::string(req.method_string()),
                    printable(std::string(req.target()), 200), response.status, conn->peer);
    }
    if (stopping_) keep_alive = false;
    std::string out = serialize(response, keep_alive);
    // A HEAD answer has the GET answer's headers (Content-Length included), no body.
    if (!refusal && parser.get().method() == http::verb::head)
      out.resize(out.size() - response.body.size());
    co_await conn->stream.write(out, ec);
    if (ec || !keep_alive) break;
  }
  co_await conn->stream.shutdown();
  conn->stream.close();
}

Response HttpServer::Impl::login(const http::request<http::string_body>& req,
                                 const std::string& peer) {
  if (options_.password_hash.empty()) {
    return problem(403,
                   "password sign-in is off: set admin.password_hash (`mailbridge hash-password`)");
  }
  if (guard_.locked(peer)) {
    Response r = problem(429, "too many failed sign-ins from this address; try again later");
    r.headers.emplace_back("Retry-After", "900");
    return r;
  }
  const Json body = Json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("password") ||
      !body["password"].is_string()) {
    return problem(400, "expected a JSON object {\"password\": \"...\"}");
  }
  const std::string password = body["password"].get<std::string>();
  if (!verifyPassword(options_.password_hash, password)) {
    const auto verdict = guard_.recordFailure(peer, kGuardUser);
    spdlog::warn("admin: failed sign-in from {}{}", peer,
                 verdict == policy::AuthGuard::Verdict::LockOut
                     ? "; address locked out for 15 minutes"
                     : "");
    return problem(401, "wrong password");
  }
  guard_.recordSuccess(peer, kGuardUser);
  const SessionStore::Session s = sessions_.create();
  spdlog::info("admin: signed in from {}", peer);
  Response r = json(200, Json{{"ok", true}, {"csrf_token", s.csrf}});
  r.headers.emplace_back("Set-Cookie",
                         sessionCookie(kCookie, s.id, kSessionMaxAge, options_.tls != nullptr));
  return r;
}

Response HttpServer::Impl::route(const http::request<http::string_body>& req,
                                 const std::string& peer) {
  const std::string_view target(req.target().data(), req.target().size());
  const std::size_t qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  const std::string_view query =
      qmark == std::string_view::npos ? std::string_view() : target.substr(qmark + 1);
  const http::verb method = req.method();

  // Who asks.
  Caller caller;
  bool bad_token = false;
  const auto auth_header = req[http::field::authorization];
  if (!auth_header.empty()) {
    const auto token = bearerToken(std::string_view(auth_header.data(), auth_header.size()));
    if (token && !options_.api_token.empty() && constantTimeEqual(*token, options_.api_token)) {
      caller.kind = Caller::Kind::Token;
    } else {
      bad_token = true;
    }
  }
  if (caller.kind == Caller::Kind::None) {
    const auto cookie_header = req[http::field::cookie];
    if (!cookie_header.empty()) {
      if (auto id =
              cookieValue(std::string_view(cookie_header.data(), cookie_header.size()), kCookie)) {
        if (auto s = sessions_.find(*id)) {
          caller.kind = Caller::Kind::Session;
          caller.csrf = s->csrf;
          caller.session_id = s->id;
        }
      }
    }
  }
  auto unauthorized = [&]() {
    Response r =
        problem(401, "authentication required: sign in at /api/login or send an API token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"mailbridge\"");
    return r;
  };
  if (bad_token) {
    if (guard_.locked(peer)) {
      Response r = problem(429, "too many failed attempts from this address; try again later");
      r.headers.emplace_back("Retry-After", "900");
      return r;
    }
    guard_.recordFailure(peer, kGuardUser);
    spdlog::warn("admin: wrong API token from {}", peer);
    return unauthorized();
  }
  const bool authed = caller.kind != Caller::Kind::None;

  if (path == "/healthz" || path == "/healthz/ready" || path == "/metrics") {
    if (method != http::verb::get && method != http::verb::head) {
      Response r = problem(405, "method not allowed");
      r.headers.emplace_back("Allow", "GET");
      return r;
    }
    const bool open = path == "/metrics" ? options_.public_metrics : options_.public_health;
    if (!open && !authed) return unauthorized();
    if (path == "/healthz") return Response{200, "text/plain; charset=utf-8", "ok\n", {}};
    if (path == "/metrics")
      return Response{200, "text/plain; version=0.0.4; charset=utf-8", api_.metrics(), {}};
    const Api::Readiness r = api_.readiness();
    return json(r.ready ? 200 : 503, Json{{"ready", r.ready}, {"problems", r.problems}});
  }

  if (path.rfind("/api/", 0) != 0 && path != "/api") return problem(404, "not found");

  if (isStateChange(method) && !req.body().empty()) {
    const auto type = req[http::field::content_type];
    if (!istartsWith(std::string_view(type.data(), type.size()), "application/json")) {
      return problem(415, "request bodies must be application/json");
    }
  }

  if (path == "/api/login") {
    if (method != http::verb::post) {
      Response r = problem(405, "method not allowed");
      r.headers.emplace_back("Allow", "POST");
      return r;
    }
    return login(req, peer);
  }

  if (!authed) return unauthorized();
  if (caller.kind == Caller::Kind::Session && isStateChange(method)) {
    const auto sent = req["X-CSRF-Token"];
    if (sent.empty() ||
        !constantTimeEqual(std::string_view(sent.data(), sent.size()), caller.csrf)) {
      return problem(403, "missing or wrong X-CSRF-Token header");
    }
  }
  return api(req, path, query, caller);
}

Response HttpServer::Impl::api(const http::request<http::string_body>& req, std::string_view path,
                               std::string_view query, const Caller& caller) {
  const http::verb method = req.method();
  const std::vector<std::string_view> seg = splitPath(path);  // seg[0] == "api"
  auto notAllowed = [](const char* allow) {
    Response r = problem(405, "method not allowed");
    r.headers.emplace_back("Allow", allow);
    return r;
  };
  auto call = [this](const Json& request) { return apiReply(api_.handle(dumpJson(request))); };
  const auto params = parseQuery(query);
  if (!params) return problem(400, "malformed query string");

  const std::string_view what = seg.size() > 1 ? seg[1] : std::string_view();
  if (what == "logout" && seg.size() == 2) {
    if (method != http::verb::post) return notAllowed("POST");
    if (!caller.session_id.empty()) sessions_.remove(caller.session_id);
    Response r = json(200, Json{{"ok", true}});
    r.headers.emplace_back("Set-Cookie",
                           sessionCookie(kCookie, "", kSessionMaxAge, options_.tls != nullptr));
    return r;
  }
  if (what == "session" && seg.size() == 2) {
    if (method != http::verb::get) return notAllowed("GET");
    return json(200, Json{{"ok", true},
                          {"kind", caller.kind == Caller::Kind::Session ? "session" : "token"},
                          {"csrf_token", caller.csrf}});
  }
  if ((what == "status" || what == "providers") && seg.size() == 2) {
    if (method != http::verb::get) return notAllowed("GET");
    const std::string line = api_.handle(dumpJson(Json{{"command", "status"}}));
    if (what == "status") return apiReply(line);
    const Json reply = Json::parse(line, nullptr, false);
    if (reply.is_discarded() || !reply.value("ok", false)) return apiReply(line);
    return json(200, Json{{"ok", true}, {"providers", reply["status"]["providers"]}});
  }
  if (what == "messages" && seg.size() <= 3) {
    if (method != http::verb::get) return notAllowed("GET");
    if (seg.size() == 3) return call(Json{{"command", "log.show"}, {"id", std::string(seg[2])}});
    Json request{{"command", "log.search"}};
    for (const auto& [key, value] : *params) {
      if (key == "since" || key == "until") {
        const auto t = parseTime(value);
        if (!t)
          return problem(400,
                         "parameter '" + key +
                             "': expected unix seconds or a time such as 2026-05-01T09:00:00Z");
        request[key] = *t;
      } else if (key == "limit" || key == "offset") {
        std::int64_t n = 0;
        const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec != std::errc() || p != value.data() + value.size()) {
          return problem(400, "parameter '" + key + "': expected a whole number");
        }
        request[key] = n;
      } else if (key == "sender" || key == "recipient" || key == "subject" || key == "status") {
        request[key] = value;
      } else if (key == "q") {
        request["text"] = value;
      } else {
        return problem(
            400,
            "unknown parameter '" + printable(key, 64) +
                "'; expected since, until, sender, recipient, subject, status, q, limit, offset");
      }
    }
    return call(request);
  }
  if (what == "rejections" && seg.size() == 2) {
    if (method != http::verb::get) return notAllowed("GET");
    Json request{{"command", "log.rejected"}};
    for (const auto& [key, value] : *params) {
      if (key != "limit")
        return problem(400, "unknown parameter '" + printable(key, 64) + "'; expected limit");
      std::int64_t n = 0;
      const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || p != value.data() + value.size()) {
        return problem(400, "parameter 'limit': expected a whole number");
      }
      request["limit"] = n;
    }
    return call(request);
  }
  if (what == "queue") {
    if (seg.size() == 2) {
      if (method != http::verb::get) return notAllowed("GET");
      return call(Json{{"command", "list"}});
    }
    if (seg.size() == 3 && seg[2] == "flush") {
      if (method != http::verb::post) return notAllowed("POST");
      return call(Json{{"command", "flush"}});
    }
    const std::string id(seg.size() >= 3 ? seg[2] : std::string_view());
    if (seg.size() == 3) {
      if (method == http::verb::get) return call(Json{{"command", "show"}, {"id", id}});
      if (method == http::verb::delete_) return call(Json{{"command", "delete"}, {"id", id}});
      return notAllowed("GET, DELETE");
    }
    if (seg.size() == 4 && (seg[3] == "retry" || seg[3] == "hold" || seg[3] == "release")) {
      if (method != http::verb::post) return notAllowed("POST");
      return call(Json{{"command", std::string(seg[3])}, {"id", id}});
    }
  }
  return problem(404, "not found");
}

HttpServer::HttpServer(Options options, Api& api, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), api, clock)) {}

HttpServer::~HttpServer() {
  stop();
}

Status HttpServer::start() {
  return impl_->start();
}

void HttpServer::stop() {
  impl_->stop();
}

std::uint16_t HttpServer::port() const {
  return impl_->port();
}

}  // namespace mb::admin
