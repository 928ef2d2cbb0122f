#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/asio.h"

namespace mb::net {

/// TlsContext: the server side of TLS for the SMTP listeners (STARTTLS on 25
/// and 587, implicit TLS on 465): one OpenSSL SSL_CTX with its certificate,
/// chain and private key, wrapped in an `asio::ssl::context`. It is built from
/// PEM files, from a PKCS#12 bundle, or from a self-signed certificate that it
/// generates once and keeps in a directory.
///
/// Every context gets the same settings: TLS 1.2 minimum (1.3 allowed), for
/// TLS 1.2 only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (RFC 5289,
/// RFC 7905), the server's cipher preference, no compression (CRIME) and no
/// renegotiation. TLS 1.3 suites are OpenSSL's defaults, all AEAD (RFC 8446).
///
/// Neighbours: `TlsContextHolder` keeps the current one and swaps it on reload;
/// `Stream` keeps a shared_ptr to the context it handshook with, so a reload
/// never pulls a context from under a live connection.
///
/// Threading: immutable after creation; share it freely between threads (an
/// SSL_CTX may be used by many connections at once). The factories do file
/// I/O and key generation: call them at start-up or on reload, not on the
/// io_context's thread in the middle of serving.
///
/// Errors name the file and OpenSSL's reason; they never contain a password.
class TlsContext {
 public:
  /// Certificate followed by its chain in `cert_chain` (PEM), private key in
  /// `key` (PEM, unencrypted; may be the same file). Checks that the key
  /// belongs to the certificate.
  static Result<std::shared_ptr<TlsContext>> fromPem(const std::filesystem::path& cert_chain,
                                                     const std::filesystem::path& key);

  /// A PKCS#12 bundle (.p12/.pfx) with the certificate, its key and
  /// optionally the CA chain.
  static Result<std::shared_ptr<TlsContext>> fromPkcs12(const std::filesystem::path& p12,
                                                        const std::string& password);

  /// Loads `dir/cert.pem` and `dir/key.pem` when they exist, belong together,
  /// name `hostname` (DNS name or IP literal, in subjectAltName) and are valid
  /// for at least another 30 days; otherwise generates a new EC P-256 key and
  /// a self-signed certificate valid for 10 years, and stores both (key 0600,
  /// directory created 0700).
  static Result<std::shared_ptr<TlsContext>> selfSigned(const std::filesystem::path& dir,
                                                        const std::string& hostname);

  /// The name under which `selfSigned` keeps its files.
  static constexpr const char* kSelfSignedCertFile = "cert.pem";
  static constexpr const char* kSelfSignedKeyFile = "key.pem";

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  ~TlsContext() = default;

  /// For logs: "subject CN=mx.example.com, issuer CN=R11, expires 2026-01-31,
  /// SHA-256 AB:CD:...".
  std::string describe() const;

  /// The leaf certificate's expiry.
  std::chrono::system_clock::time_point notAfter() const { return not_after_; }

  /// SHA-256 of the leaf certificate's DER, as upper-case hex pairs with colons.
  const std::string& fingerprint() const { return fingerprint_; }

  asio::ssl::context& native() { return context_; }

 private:
  /// Takes ownership of `ctx`; reads what describe() needs from `leaf`.
  TlsContext(SSL_CTX* ctx, const X509* leaf);

  /// The common part of the factories: settings, certificate, key, chain.
  /// `cert_name` and `key_name` say where they came from, for errors.
  static Result<std::shared_ptr<TlsContext>> assemble(X509* leaf, EVP_PKEY* key,
                                                      const std::vector<X509*>& chain,
                                                      const std::string& cert_name,
                                                      const std::string& key_name);

  asio::ssl::context context_;
  std::string subject_cn_;
  std::string issuer_cn_;
  std::string fingerprint_;
  std::chrono::system_clock::time_point not_after_;
};

}  // namespace mb::net
