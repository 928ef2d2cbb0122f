#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "net/asio.h"

namespace mb::net {

/// TcpListener: a bound, listening TCP socket on one address. Binding is
/// separate from accepting so that start-up can fail cleanly (address in use,
/// permission) before anything is served, and so that port 0 can be resolved
/// to the real port for tests and logs.
/// Threading: use from the io_context's thread.
class TcpListener {
 public:
  explicit TcpListener(asio::io_context& io) : acceptor_(io) {}

  /// Binds and listens on a literal IPv4/IPv6 address; port 0 = any free port.
  Status bind(const std::string& host, std::uint16_t port);

  /// The port actually bound.
  std::uint16_t port() const { return port_; }

  /// "127.0.0.1:2525" or "[::1]:2525".
  std::string address() const;

  /// Waits for the next connection. An error after close() is expected.
  asio::awaitable<tcp::socket> accept(boost::system::error_code& ec);

  void close();

 private:
  tcp::acceptor acceptor_;
  std::string host_;
  std::uint16_t port_ = 0;
};

/// "192.0.2.1" or "2001:db8::1" for a connected socket's peer, with
/// IPv4-mapped IPv6 addresses shown as IPv4; empty if it cannot be read.
std::string peerAddress(const tcp::socket& socket);

}  // namespace mb::net
