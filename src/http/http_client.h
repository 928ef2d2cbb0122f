#pragma once

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

#include "base/result.h"

namespace mb::http {

/// One HTTP request. The body comes from `body`, or, when `body_file` is set,
/// from `body_length` bytes of that file starting at `body_offset`, streamed
/// (for upload sessions: memory does not grow with the message).
struct Request {
  std::string method = "GET";  // GET, POST, PUT, DELETE
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

  /// The first header called `name` (case-insensitive), if any.
  std::optional<std::string> header(std::string_view name) const;
};

/// Why no response arrived. `timeout` for the request timeout; otherwise a
/// connection, TLS or proxy problem. The message is for logs.
struct TransportError {
  std::string message;
  bool timeout = false;
};

using Outcome = std::variant<Response, TransportError>;

/// HttpClient: what providers and token sources talk HTTP through. One
/// implementation (CurlClient) over libcurl; tests use fakes.
/// Threading: perform() may be called from any number of threads at once;
/// it blocks its caller until the response or the error.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual Outcome perform(const Request& request) = 0;
};

}  // namespace mb::http
