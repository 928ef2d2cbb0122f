#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "base/result.h"
#include "net/tls_context.h"

namespace mb::net {

/// TlsSource: where a listener's certificate comes from, as configured. The
/// app keeps it so that a reload (SIGHUP) loads the same way start-up did.
/// `password` is a secret (already resolved from its file, env or systemd
/// credential): never log this struct.
struct TlsSource {
  enum class Kind { Pem, Pkcs12, SelfSigned };

  Kind kind = Kind::SelfSigned;
  std::filesystem::path cert_chain;  // Pem: certificate, then its chain
  std::filesystem::path key;         // Pem: private key (may equal cert_chain)
  std::filesystem::path pkcs12;      // Pkcs12: the bundle
  std::string password;              // Pkcs12: its password
  std::filesystem::path dir;         // SelfSigned: where cert.pem and key.pem live
  std::string hostname;              // SelfSigned: the name the certificate is for
};

/// Builds a TlsContext from a TlsSource with the matching TlsContext factory.
Result<std::shared_ptr<TlsContext>> load(const TlsSource& source);

/// TlsContextHolder: the TLS context that new connections use. A reload
/// builds a new TlsContext off to the side and replace()s it here; a
/// connection takes current() once, before its handshake, and its Stream
/// keeps that context alive for as long as the connection lasts, so a
/// reload never disturbs a live session and a failed reload leaves the old
/// context serving.
///
/// Neighbours: filled by app/ (start-up and SIGHUP), read by server/ for
/// each STARTTLS or implicit-TLS connection.
///
/// Threading: current() and replace() may be called from any thread; a
/// mutex guards the pointer (copying a shared_ptr is not atomic).
class TlsContextHolder {
 public:
  TlsContextHolder() = default;
  explicit TlsContextHolder(std::shared_ptr<TlsContext> initial) : current_(std::move(initial)) {}

  TlsContextHolder(const TlsContextHolder&) = delete;
  TlsContextHolder& operator=(const TlsContextHolder&) = delete;

  /// The context for a new connection; null if TLS is not set up.
  std::shared_ptr<TlsContext> current() const;

  /// Installs `next` for connections accepted from now on; returns the one
  /// it replaces (still in use by the connections that took it).
  std::shared_ptr<TlsContext> replace(std::shared_ptr<TlsContext> next);

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<TlsContext> current_;
};

}  // namespace mb::net
