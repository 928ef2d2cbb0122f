#include "net/stream.h"

#include <cassert>

namespace mb::net {

Stream::Stream(tcp::socket socket) : socket_(std::move(socket)) {}

asio::awaitable<std::size_t> Stream::readSome(asio::mutable_buffer buf,
                                              boost::system::error_code& ec) {
  ec = {};
  switch (state_) {
    case State::Plain:
      co_return co_await socket_.async_read_some(buf,
                                                 asio::redirect_error(asio::use_awaitable, ec));
    case State::Tls:
      co_return co_await tls_->async_read_some(buf, asio::redirect_error(asio::use_awaitable, ec));
    case State::Handshaking:
    case State::Failed:
      break;
  }
  ec = asio::error::not_connected;
  co_return 0;
}

asio::awaitable<void> Stream::write(std::string_view data, boost::system::error_code& ec) {
  ec = {};
  const asio::const_buffer buf(data.data(), data.size());
  switch (state_) {
    case State::Plain:
      co_await asio::async_write(socket_, buf, asio::redirect_error(asio::use_awaitable, ec));
      co_return;
    case State::Tls:
      co_await asio::async_write(*tls_, buf, asio::redirect_error(asio::use_awaitable, ec));
      co_return;
    case State::Handshaking:
    case State::Failed:
      break;
  }
  ec = asio::error::not_connected;
}

asio::awaitable<void> Stream::startTls(std::shared_ptr<TlsContext> ctx,
                                       boost::system::error_code& ec) {
  ec = {};
  if (state_ != State::Plain) {
    ec = asio::error::already_connected;
    co_return;
  }
  if (!ctx) {
    ec = asio::error::invalid_argument;
    co_return;
  }
  // Stream has no buffer of its own; the TLS engine below starts with an
  // empty one and reads the ClientHello from the socket. Nothing read in the
  // clear can reach the TLS layer through us.
  assert(!tls_);
  ctx_ = std::move(ctx);
  tls_.emplace(socket_, ctx_->native());
  state_ = State::Handshaking;
  co_await tls_->async_handshake(asio::ssl::stream_base::server,
                                 asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    state_ = State::Failed;
    co_return;
  }
  ssl_ = tls_->native_handle();
  state_ = State::Tls;
}

std::string Stream::tlsVersion() const {
  if (state_ != State::Tls) return {};
  return SSL_get_version(ssl_);
}

std::string Stream::tlsCipher() const {
  if (state_ != State::Tls) return {};
  const char* name = SSL_get_cipher_name(ssl_);
  return name != nullptr ? name : "";
}

void Stream::cancel() {
  boost::system::error_code ignored;
  socket_.cancel(ignored);
}

asio::awaitable<void> Stream::shutdown(std::chrono::milliseconds timeout) {
  if (state_ == State::Tls && socket_.is_open()) {
    // SSL_shutdown sends close_notify and then waits for the peer's; a peer
    // that never answers must not hold the connection, so a timer cancels
    // the wait. A timer that expired just as the shutdown finished may still
    // have its handler queued (cancel() cannot recall it), and by then the
    // Stream may be gone: the handler acts only while the wait is on.
    auto waiting = std::make_shared<bool>(true);
    asio::steady_timer timer(socket_.get_executor());
    timer.expires_after(timeout);
    timer.async_wait([this, waiting](const boost::system::error_code& ec) {
      if (!ec && *waiting) cancel();
    });
    boost::system::error_code ec;
    co_await tls_->async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
    *waiting = false;
    timer.cancel();
  }
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
}

void Stream::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

std::size_t Stream::available() const {
  boost::system::error_code ec;
  const std::size_t n = socket_.available(ec);
  return ec ? 0 : n;
}

}  // namespace mb::net
