#include "net/tcp_listener.h"

namespace mb::net {

Status TcpListener::bind(const std::string& host, std::uint16_t port) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) return Error{"invalid listen address " + host + ": " + ec.message()};
  const tcp::endpoint endpoint(addr, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec && addr.is_v6()) acceptor_.set_option(asio::ip::v6_only(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.close();
    return Error{"cannot listen on " + (addr.is_v6() ? "[" + host + "]" : host) + ":" +
                     std::to_string(port) + ": " + ec.message(),
                 ec.value()};
  }
  host_ = host;
  port_ = acceptor_.local_endpoint().port();
  return {};
}

std::string TcpListener::address() const {
  const bool v6 = host_.find(':') != std::string::npos;
  return (v6 ? "[" + host_ + "]" : host_) + ":" + std::to_string(port_);
}

asio::awaitable<tcp::socket> TcpListener::accept(boost::system::error_code& ec) {
  co_return co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
}

void TcpListener::close() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

std::string peerAddress(const tcp::socket& socket) {
  boost::system::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return {};
  auto addr = endpoint.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  }
  return addr.to_string();
}

}  // namespace mb::net
