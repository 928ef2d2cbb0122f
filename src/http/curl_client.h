#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>

#include "http/http_client.h"

namespace mb::http {

/// CurlClient: the HttpClient over libcurl's multi interface. One thread
/// drives every transfer, so connections (and HTTP/2 streams) are shared by
/// all callers and reused between requests; perform() hands the request to
/// that thread and waits. TLS is verified against the system store or
/// `ca_file`; a proxy comes from `proxy` or, when that is empty, from the
/// usual environment variables (https_proxy, no_proxy), as libcurl reads them.
///
/// Threading: perform() and start() from any thread; completions of start()
/// run on the client's thread. The destructor fails requests still waiting
/// (their completions run then) and joins the thread.
class CurlClient final : public HttpClient {
 public:
  struct Options {
    std::filesystem::path ca_file;          // empty: the system's CA store
    std::string proxy;                      // "http://proxy:3128"; empty: environment
    std::chrono::milliseconds connect_timeout{10000};
    std::size_t max_connections_per_host = 8;
    std::size_t max_response_body = 16 * 1024 * 1024;  // beyond: a transport error
    std::string user_agent = "mailbridge/" MB_VERSION;
  };

  explicit CurlClient(Options options);
  ~CurlClient() override;
  CurlClient(const CurlClient&) = delete;
  CurlClient& operator=(const CurlClient&) = delete;

  Outcome perform(const Request& request) override;
  /// `done` runs on the client's thread: it must not block (see HttpClient).
  void start(Request request, Completion done) override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mb::http
