#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/result.h"

namespace mb::net {
class TlsContextHolder;
}

namespace mb::admin {

class Api;

/// HttpServer: the admin HTTP server (`admin.address`, default
/// 127.0.0.1:8025; HTTPS with the `tls:` certificate when admin.tls).
///
/// Routes (JSON unless said otherwise; every /api reply is the Api's reply
/// object, {"ok":true,...} or {"ok":false,"error":...}):
///   GET  /healthz                 200 "ok" while the process serves
///   GET  /healthz/ready           200 or 503, {"ready":..,"problems":[..]}
///   GET  /metrics                 Prometheus text
///   POST /api/login               {"password":".."} → session cookie + csrf_token
///   POST /api/logout
///   GET  /api/session             the csrf_token of the current session
///   GET  /api/status              statistics and live state
///   GET  /api/providers           the providers with breaker and token state
///   GET  /api/messages            mail log search: since, until (unix s or
///                                 RFC 3339), sender, recipient, subject,
///                                 status, q (any text), limit, offset
///   GET  /api/messages/ID         one message's history
///   GET  /api/rejections          refused attempts (limit)
///   GET  /api/queue               the queue;  GET /api/queue/ID one message
///   POST /api/queue/ID/retry|hold|release, DELETE /api/queue/ID,
///   POST /api/queue/flush
///
/// Authentication, on every address (loopback included): a session cookie
/// from /api/login (argon2id admin.password_hash) or "Authorization: Bearer"
/// with admin.api_token. /healthz* and /metrics are open when
/// admin.public_health / admin.public_metrics say so. A request that changes
/// state with a session cookie must carry the session's X-CSRF-Token header
/// (403 otherwise); POST bodies must be application/json. Failed logins and
/// wrong tokens count per client address (5 in 15 minutes lock the address
/// out for 15 minutes: 429 with Retry-After). Bodies above 64 KB get 413.
///
/// Requests are served on the server's own thread and io_context; a login
/// (argon2id, about 0.1 s) runs there too, bounded by the lockout.
class HttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8025;
    std::shared_ptr<net::TlsContextHolder> tls;  // null: plain HTTP
    std::string password_hash;                   // empty: no password sign-in
    std::string api_token;                       // empty: no bearer token
    bool public_metrics = false;
    bool public_health = true;
    std::chrono::seconds session_timeout{1800};
  };

  HttpServer(Options options, Api& api, const Clock& clock);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds, logs "admin: listening on HOST:PORT (admin, http|https)" and
  /// starts serving on its own thread.
  Status start();
  /// Stops accepting, closes open connections and joins the thread.
  void stop();
  /// The bound port (after start()).
  std::uint16_t port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mb::admin
