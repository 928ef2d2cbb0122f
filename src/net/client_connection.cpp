#include "net/client_connection.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <optional>

#include "net/asio.h"

namespace mb::net {

struct ClientConnection::Impl {
  asio::io_context io{1};
  tcp::socket socket{io};
  std::optional<asio::ssl::context> context;
  std::optional<asio::ssl::stream<tcp::socket&>> tls;
  std::string peer;

  // Runs one asynchronous operation started by `start` (which must store its
  // outcome in the error code it is given) for at most `timeout`. On timeout
  // the socket is closed, the operation completes as aborted, and the result
  // is timed_out.
  template <typename Start>
  boost::system::error_code run(Start start, std::chrono::milliseconds timeout) {
    boost::system::error_code result = asio::error::would_block;
    start(result);
    io.restart();
    io.run_for(timeout);
    if (result == asio::error::would_block) {
      boost::system::error_code ignored;
      socket.close(ignored);
      io.restart();
      io.run();
      return asio::error::timed_out;
    }
    return result;
  }

  void closeSocket() {
    boost::system::error_code ignored;
    socket.close(ignored);
  }
};

namespace {

std::string describe(const boost::system::error_code& ec) {
  if (ec == asio::error::timed_out) return "timed out";
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return "closed by the server";
  return ec.message();
}

}  // namespace

ClientConnection::ClientConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClientConnection::~ClientConnection() = default;

Result<std::unique_ptr<ClientConnection>> ClientConnection::connect(const std::string& host, std::uint16_t port,
                                                                   std::chrono::milliseconds timeout) {
  auto impl = std::make_unique<Impl>();
  tcp::resolver resolver(impl->io);
  tcp::resolver::results_type endpoints;
  auto ec = impl->run(
      [&](boost::system::error_code& out) {
        resolver.async_resolve(host, std::to_string(port),
                               [&out, &endpoints](const boost::system::error_code& e, tcp::resolver::results_type r) {
                                 out = e;
                                 endpoints = std::move(r);
                               });
      },
      timeout);
  if (ec) {
    resolver.cancel();
    return Error{"cannot resolve " + host + ": " + describe(ec)};
  }
  tcp::endpoint connected;
  ec = impl->run(
      [&](boost::system::error_code& out) {
        asio::async_connect(impl->socket, endpoints,
                            [&out, &connected](const boost::system::error_code& e, const tcp::endpoint& ep) {
                              out = e;
                              connected = ep;
                            });
      },
      timeout);
  if (ec) return Error{"cannot connect to " + host + ":" + std::to_string(port) + ": " + describe(ec)};
  boost::system::error_code ignored;
  impl->socket.set_option(tcp::no_delay(true), ignored);
  impl->peer = connected.address().to_string() + ":" + std::to_string(connected.port());
  return std::unique_ptr<ClientConnection>(new ClientConnection(std::move(impl)));
}

Status ClientConnection::startTls(const ClientTlsOptions& options, std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  if (d.tls) return Error{"TLS already started"};
  d.context.emplace(asio::ssl::context::tls_client);
  SSL_CTX* ctx = d.context->native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  boost::system::error_code ec;
  if (options.ca_file.empty()) {
    d.context->set_default_verify_paths(ec);
  } else {
    d.context->load_verify_file(options.ca_file.string(), ec);
  }
  if (ec) {
    d.closeSocket();
    return Error{"cannot load the trusted certificates" +
                 (options.ca_file.empty() ? std::string() : " from " + options.ca_file.string()) + ": " + ec.message()};
  }
  d.context->set_verify_mode(asio::ssl::verify_peer);
  d.tls.emplace(d.socket, *d.context);
  SSL* ssl = d.tls->native_handle();
  boost::system::error_code ip_ec;
  (void)asio::ip::make_address(options.server_name, ip_ec);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (!ip_ec) {
    X509_VERIFY_PARAM_set1_ip_asc(param, options.server_name.c_str());
  } else {
    // SSL_set_tlsext_host_name() is a macro with a C cast.
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(options.server_name.c_str()));
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_set1_host(ssl, options.server_name.c_str());
  }
  ec = d.run(
      [&](boost::system::error_code& out) {
        d.tls->async_handshake(asio::ssl::stream_base::client,
                               [&out](const boost::system::error_code& e) { out = e; });
      },
      timeout);
  if (ec) {
    std::string why = describe(ec);
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      why = std::string("the server's certificate is not trusted for ") + options.server_name + ": " +
            X509_verify_cert_error_string(verify);
    }
    d.closeSocket();
    return Error{"TLS handshake with " + d.peer + " failed: " + why};
  }
  return {};
}

Result<std::size_t> ClientConnection::readSome(char* buf, std::size_t size, std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  std::size_t got = 0;
  auto handler = [&got](boost::system::error_code& out) {
    return [&out, &got](const boost::system::error_code& e, std::size_t n) {
      out = e;
      got = n;
    };
  };
  const auto ec = d.run(
      [&](boost::system::error_code& out) {
        if (d.tls) {
          d.tls->async_read_some(asio::buffer(buf, size), handler(out));
        } else {
          d.socket.async_read_some(asio::buffer(buf, size), handler(out));
        }
      },
      timeout);
  if (ec) {
    d.closeSocket();
    return Error{describe(ec)};
  }
  return got;
}

Status ClientConnection::write(std::string_view data, std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  auto handler = [](boost::system::error_code& out) {
    return [&out](const boost::system::error_code& e, std::size_t) { out = e; };
  };
  const auto ec = d.run(
      [&](boost::system::error_code& out) {
        if (d.tls) {
          asio::async_write(*d.tls, asio::buffer(data.data(), data.size()), handler(out));
        } else {
          asio::async_write(d.socket, asio::buffer(data.data(), data.size()), handler(out));
        }
      },
      timeout);
  if (ec) {
    d.closeSocket();
    return Error{describe(ec)};
  }
  return {};
}

void ClientConnection::close() { impl_->closeSocket(); }

bool ClientConnection::open() const { return impl_->socket.is_open(); }

bool ClientConnection::tls() const { return impl_->tls.has_value(); }

std::string ClientConnection::tlsDescription() const {
  if (!impl_->tls) return {};
  SSL* ssl = impl_->tls->native_handle();
  return std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
}

std::string ClientConnection::peer() const { return impl_->peer; }

}  // namespace mb::net
