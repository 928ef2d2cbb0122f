#pragma once

#include <openssl/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "config/secret.h"

namespace mb::oauth {

struct ClientCertificateBuilder;

/// ClientCertificate: an application's certificate credential for the
/// Microsoft identity platform — an X.509 certificate whose public part is
/// uploaded to the app registration, and its RSA private key, which signs
/// client assertions (see client_assertion.h). Loaded from PEM files or a
/// PKCS#12 bundle; the key never leaves the object.
///
/// Talks to OpenSSL 3 only. Loading returns errors as Result, never throws;
/// error texts name files, never key material or passwords.
///
/// Threading: immutable once loaded; signPs256() may be called from any
/// number of threads at once (each call uses its own EVP_MD_CTX; the key is
/// only read).
class ClientCertificate {
 public:
  ~ClientCertificate();
  ClientCertificate(const ClientCertificate&) = delete;
  ClientCertificate& operator=(const ClientCertificate&) = delete;

  /// The certificate (the first one in `cert_file`) and its unencrypted PEM
  /// private key; `key_file` empty means the key is in `cert_file` too.
  static Result<std::shared_ptr<const ClientCertificate>> fromPemFiles(
      const std::filesystem::path& cert_file, const std::filesystem::path& key_file = {});

  /// The same from PEM text; `name` stands for the source in error texts.
  static Result<std::shared_ptr<const ClientCertificate>> fromPem(std::string_view cert_pem,
                                                                  std::string_view key_pem,
                                                                  const std::string& name);

  /// A PKCS#12 (.pfx/.p12) file holding the certificate and its key.
  static Result<std::shared_ptr<const ClientCertificate>> fromPkcs12File(
      const std::filesystem::path& file, const config::Secret& password);

  /// base64url(SHA-256(certificate DER)): the JWT header's "x5t#S256".
  const std::string& x5tS256() const { return x5t_s256_; }

  /// Upper-case hex SHA-1 of the DER: what the Entra portal shows as the
  /// certificate's thumbprint, for messages.
  const std::string& thumbprint() const { return thumbprint_; }

  std::chrono::system_clock::time_point notAfter() const { return not_after_; }

  /// "subject CN=…, thumbprint …, expires YYYY-MM-DD" for logs.
  std::string describe() const;

  /// RSASSA-PSS over SHA-256 of `data`, MGF1-SHA-256, salt as long as the
  /// digest (RFC 7518 §3.5, "PS256"). Returns the raw signature octets.
  Result<std::string> signPs256(std::string_view data) const;

 private:
  friend struct ClientCertificateBuilder;
  ClientCertificate() = default;

  EVP_PKEY* key_ = nullptr;  // owned
  std::string x5t_s256_;
  std::string thumbprint_;
  std::string subject_cn_;
  std::chrono::system_clock::time_point not_after_{};
};

}  // namespace mb::oauth
