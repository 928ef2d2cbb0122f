#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "base/text.h"

namespace mb::http {

/// One HTTP request. The body comes from `body`, or, when `body_file` is set,
/// from `body_length` bytes of that file starting at `body_offset`, streamed
/// (for upload sessions: memory does not grow with the message).
struct Request {
  std::string method = "GET";  // GET, POST, PATCH (body in memory), PUT, DELETE
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // "Content-Type", "text/plain"
  std::string body;
  std::filesystem::path body_file;
  std::uint64_t body_offset = 0;
  std::uint64_t body_length = 0;
  std::chrono::milliseconds timeout{120000};  // whole request, connect included
};

/// A response that arrived (any status). Header names are kept as received;
/// header() compares case-insensitively.
struct Response {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // capped by the client (Options::max_response_body)

  /// The first header called `name` (case-insensitive), if any. Inline, so
  /// that code using only this header (fakes, oauth/) can call it.
  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (iequals(k, name)) return v;
    }
    return std::nullopt;
  }

  /// The Retry-After header in delta-seconds, capped at a day; nullopt when
  /// absent or not a number (an HTTP date: the caller's own back-off then).
  std::optional<std::chrono::seconds> retryAfter() const {
    const auto v = header("Retry-After");
    if (!v) return std::nullopt;
    std::string_view text = *v;
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    long long seconds = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || seconds < 0) {
      return std::nullopt;
    }
    return std::chrono::seconds(std::min<long long>(seconds, 86400));
  }
};

/// Why no response arrived. `timeout` for the request timeout; otherwise a
/// connection, TLS or proxy problem. The message is for logs.
struct TransportError {
  std::string message;
  bool timeout = false;
  // The connection broke under the request (reset, closed, an HTTP/2
  // framing error or GOAWAY): a new connection may well succeed at once.
  bool connection_lost = false;
};

using Outcome = std::variant<Response, TransportError>;

/// HttpClient: what providers and token sources talk HTTP through. One
/// implementation (CurlClient) over libcurl; tests use fakes.
/// Threading: perform() may be called from any number of threads at once;
/// it blocks its caller until the response or the error.
class HttpClient {
 public:
  using Completion = std::function<void(Outcome)>;

  virtual ~HttpClient() = default;
  virtual Outcome perform(const Request& request) = 0;

  /// Sends `request` without waiting for it: `done` gets the outcome exactly
  /// once, on a thread of the client's (CurlClient: the one that drives
  /// every transfer) or on the caller's before start() returns. `done` must
  /// be quick and must not block — never call perform() from it; hand slow
  /// work to a thread of its own. This default performs the request on the
  /// caller's thread, which is what fakes in tests want.
  virtual void start(Request request, Completion done) { done(perform(request)); }
};

}  // namespace mb::http
