#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace mb::queue {
class QueueControl;
}

namespace mb::admin {

/// ControlServer: the local control socket behind `mailbridge queue ...`.
///
/// A Unix stream socket (mode 0600; peers whose uid is neither ours nor
/// root are refused via SO_PEERCRED) carrying one request per connection:
/// the client writes one JSON object and a newline, the server answers with
/// one JSON object and a newline and closes. The protocol is in
/// control_protocol.h. Requests are served on the server's own thread with
/// its own io_context, so a long `list` never stalls SMTP sessions.
class ControlServer {
 public:
  /// Answers one request line (without its newline) with one reply line;
  /// called on the server's thread, one request at a time.
  using Handler = std::function<std::string(std::string_view request)>;

  ControlServer(std::filesystem::path path, Handler handler);
  /// Serves the queue commands only (handleRequest with `queue`).
  ControlServer(std::filesystem::path path, queue::QueueControl& queue);
  ~ControlServer();  // stop()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  /// Binds and starts serving. A socket file left by a dead daemon is
  /// replaced; one where another daemon still answers is an error ("another
  /// mailbridge is running with this state directory").
  Status start();

  /// Stops serving, removes the socket file and joins the thread.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// The client side, for the CLI: connects to `path`, sends `request` (one
/// JSON object, without the newline) and returns the reply line. Errors say
/// what an operator should check ("cannot reach mailbridge at PATH: is the
/// service running? (connection refused)").
Result<std::string> controlRequest(const std::filesystem::path& path, const std::string& request,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace mb::admin
