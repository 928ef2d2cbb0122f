#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace mb::net {

/// How an outgoing connection checks the server's certificate.
struct ClientTlsOptions {
  std::string server_name;              // SNI, and the name (or IP) the certificate must hold
  std::filesystem::path ca_file;        // PEM; empty: the system's trust store
};

/// ClientConnection: one outgoing TCP connection that may turn into TLS
/// (STARTTLS) or start with it (implicit TLS), for the upstream SMTP
/// provider. Every call blocks its thread for at most its timeout; a call
/// that times out or fails closes the connection, so a half-done operation
/// never leaves bytes in flight for the next one.
///
/// TLS is client-side TLS 1.2 or later with the certificate verified against
/// `ca_file` or the system store and the host name checked (RFC 6125 as
/// OpenSSL implements it); there is no way to turn verification off. Once
/// startTls() has been called, nothing is ever read or written in the clear
/// again.
///
/// Keeps Asio out of its header (delivery/ includes it). Each connection
/// runs its own small io_context on the calling thread.
///
/// Threading: one thread at a time; close() from that thread too.
class ClientConnection {
 public:
  /// Resolves `host` and connects to the first address that answers.
  static Result<std::unique_ptr<ClientConnection>> connect(const std::string& host, std::uint16_t port,
                                                          std::chrono::milliseconds timeout);
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  /// The client side of the TLS handshake, verifying the server.
  Status startTls(const ClientTlsOptions& options, std::chrono::milliseconds timeout);

  /// Reads at least one byte into `buf`; the end of the stream is an error
  /// ("closed by the server").
  Result<std::size_t> readSome(char* buf, std::size_t size, std::chrono::milliseconds timeout);

  /// Writes all of `data`.
  Status write(std::string_view data, std::chrono::milliseconds timeout);

  /// Closes the socket (no TLS close_notify: call after QUIT or on failure).
  void close();
  bool open() const;

  bool tls() const;
  /// "TLSv1.3 TLS_AES_256_GCM_SHA384"; empty without TLS.
  std::string tlsDescription() const;
  /// "192.0.2.1:587", the address connected to.
  std::string peer() const;

 private:
  struct Impl;
  explicit ClientConnection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mb::net
