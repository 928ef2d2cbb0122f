#include "oauth/client_certificate.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <climits>
#include <cstdio>
#include <ctime>

#include "base/durable_file.h"
#include "oauth/encoding.h"
#include "oauth/openssl_support.h"

namespace mb::oauth {
namespace {

// Entra ID refuses shorter RSA keys for certificate credentials.
constexpr int kMinRsaBits = 2048;

std::string hex(const unsigned char* data, unsigned int len) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[data[i] >> 4];
    out += kHex[data[i] & 0xf];
  }
  return out;
}

std::chrono::system_clock::time_point toTimePoint(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return {};
  }
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

std::string commonName(X509* cert) {
  const X509_NAME* name = X509_get_subject_name(cert);
  const int index = name == nullptr ? -1 : X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  unsigned char* utf8 = nullptr;
  const int n =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index)));
  if (n < 0) {
    ERR_clear_error();
    return {};
  }
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

}  // namespace

// Defined outside the anonymous namespace so that it may use the private
// constructor: the checks every loader shares, then the derived facts.
struct ClientCertificateBuilder {
  static Result<std::shared_ptr<const ClientCertificate>> build(X509* cert, PkeyPtr key,
                                                                const std::string& name) {
    if (!EVP_PKEY_is_a(key.get(), "RSA")) {
      return Error{"the private key in " + name +
                   " is not an RSA key; Entra ID certificate credentials (PS256) need RSA"};
    }
    if (EVP_PKEY_get_bits(key.get()) < kMinRsaBits) {
      return Error{"the RSA key in " + name + " is shorter than 2048 bits"};
    }
    ERR_clear_error();
    if (X509_check_private_key(cert, key.get()) != 1) {
      ERR_clear_error();
      return Error{"the private key in " + name + " does not belong to its certificate"};
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (X509_digest(cert, EVP_sha256(), md, &len) != 1) {
      return opensslError("certificate digest of " + name);
    }
    std::shared_ptr<ClientCertificate> out(new ClientCertificate());
    out->x5t_s256_ = base64UrlEncode(
        std::string_view(reinterpret_cast<const char*>(md), static_cast<std::size_t>(len)));
    if (X509_digest(cert, EVP_sha1(), md, &len) != 1) {
      return opensslError("certificate digest of " + name);
    }
    out->thumbprint_ = hex(md, len);
    out->subject_cn_ = commonName(cert);
    out->not_after_ = toTimePoint(X509_get0_notAfter(cert));
    out->key_ = key.release();
    return std::shared_ptr<const ClientCertificate>(std::move(out));
  }
};

ClientCertificate::~ClientCertificate() {
  EVP_PKEY_free(key_);
}

Result<std::shared_ptr<const ClientCertificate>> ClientCertificate::fromPem(
    std::string_view cert_pem, std::string_view key_pem, const std::string& name) {
  ERR_clear_error();
  BioPtr cert_bio = readOnlyBio(cert_pem);
  if (!cert_bio) return opensslError("certificate " + name);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, refusePassphrase, nullptr));
  if (!cert) return opensslError("no certificate in " + name);

  BioPtr key_bio = readOnlyBio(key_pem);
  if (!key_bio) return opensslError("private key " + name);
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, refusePassphrase, nullptr));
  if (!key) {
    ERR_clear_error();
    return Error{"no usable private key in " + name +
                 " (it must be an unencrypted PEM key; use a PKCS#12 file for a protected one)"};
  }
  return ClientCertificateBuilder::build(cert.get(), std::move(key), name);
}

Result<std::shared_ptr<const ClientCertificate>> ClientCertificate::fromPemFiles(
    const std::filesystem::path& cert_file, const std::filesystem::path& key_file) {
  auto cert_pem = fs::readFile(cert_file);
  if (!cert_pem) return cert_pem.error();
  if (key_file.empty()) {
    auto out = fromPem(*cert_pem, *cert_pem, cert_file.string());
    OPENSSL_cleanse(cert_pem->data(), cert_pem->size());
    return out;
  }
  auto key_pem = fs::readFile(key_file);
  if (!key_pem) return key_pem.error();
  auto out = fromPem(*cert_pem, *key_pem, cert_file.string() + " and " + key_file.string());
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  return out;
}

Result<std::shared_ptr<const ClientCertificate>> ClientCertificate::fromPkcs12File(
    const std::filesystem::path& file, const config::Secret& password) {
  const std::string name = file.string();
  auto der = fs::readFile(file);
  if (!der) return der.error();
  ERR_clear_error();
  BioPtr bio = readOnlyBio(*der);
  if (!bio) return opensslError("PKCS#12 " + name);
  Pkcs12Ptr bundle(d2i_PKCS12_bio(bio.get(), nullptr));
  OPENSSL_cleanse(der->data(), der->size());
  if (!bundle) return opensslError("PKCS#12 " + name + " cannot be parsed");

  EVP_PKEY* raw_key = nullptr;
  X509* raw_cert = nullptr;
  STACK_OF(X509)* raw_ca = nullptr;
  if (PKCS12_parse(bundle.get(), password.reveal().c_str(), &raw_key, &raw_cert, &raw_ca) != 1) {
    ERR_clear_error();
    // Exports from old Windows use RC2-40, which OpenSSL 3 keeps in its
    // legacy provider; re-exporting with AES fixes that.
    return Error{"PKCS#12 " + name +
                 " cannot be opened: wrong password, or legacy (RC2/3DES) encryption"};
  }
  PkeyPtr key(raw_key);
  X509Ptr cert(raw_cert);
  sk_X509_pop_free(raw_ca, X509_free);  // the chain is not sent in a client assertion
  if (!cert) return Error{"PKCS#12 " + name + " holds no certificate"};
  if (!key) return Error{"PKCS#12 " + name + " holds no private key"};
  return ClientCertificateBuilder::build(cert.get(), std::move(key), name);
}

std::string ClientCertificate::describe() const {
  std::string expires = "unknown";
  if (not_after_ != std::chrono::system_clock::time_point{}) {
    const std::chrono::year_month_day date{std::chrono::floor<std::chrono::days>(not_after_)};
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(date.year()),
                  static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
    expires = buf;
  }
  return "subject CN=" + subject_cn_ + ", thumbprint " + thumbprint_ + ", expires " + expires;
}

Result<std::string> ClientCertificate::signPs256(std::string_view data) const {
  ERR_clear_error();
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key_) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0) {
    return opensslError("PS256 signature setup");
  }
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) != 1) {
    return opensslError("PS256 signature");
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len, in,
                     data.size()) != 1) {
    return opensslError("PS256 signature");
  }
  signature.resize(len);
  return signature;
}

}  // namespace mb::oauth
