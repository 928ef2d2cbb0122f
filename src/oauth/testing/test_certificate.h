#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

namespace mb::oauth::testing {

/// A key pair and self-signed certificate made with OpenSSL for the tests,
/// as PEM text and as a PKCS#12 bundle. Key generation is slow under the
/// sanitizers, so rsa2048() makes one per process. For unit tests only.
struct TestCertificate {
  std::string cert_pem;
  std::string key_pem;
  std::string pkcs12_der;  // password kPkcs12Password
  static constexpr const char* kPkcs12Password = "p12-Pa55word";

  static const TestCertificate& rsa2048() {
    static const TestCertificate cert = make("RSA", 2048);
    return cert;
  }
  static const TestCertificate& rsa1024() {
    static const TestCertificate cert = make("RSA", 1024);
    return cert;
  }
  static const TestCertificate& ecP256() {
    static const TestCertificate cert = make("EC", 0);
    return cert;
  }

  /// Checks a PS256 signature (RSASSA-PSS, SHA-256, MGF1-SHA-256, salt of
  /// exactly 32 octets) with the public key of `cert_pem`, independently of
  /// the code under test.
  static bool verifyPs256(const std::string& cert_pem, const std::string& input,
                          const std::string& signature) {
    auto cert = parse(cert_pem);
    EVP_PKEY* pub = X509_get0_pubkey(cert.get());
    std::unique_ptr<EVP_MD_CTX, Free<EVP_MD_CTX_free>> ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, pub) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0) {
      throw std::runtime_error("test certificate: verify setup");
    }
    const int rc = EVP_DigestVerify(
        ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
        reinterpret_cast<const unsigned char*>(input.data()), input.size());
    ERR_clear_error();
    return rc == 1;
  }

  /// SHA-256 over the certificate's DER encoding, as raw octets.
  static std::string sha256OfDer(const std::string& cert_pem) {
    auto cert = parse(cert_pem);
    unsigned char* der = nullptr;
    const int len = i2d_X509(cert.get(), &der);
    if (len <= 0) throw std::runtime_error("test certificate: DER");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_Digest(der, static_cast<size_t>(len), md, &md_len, EVP_sha256(), nullptr);
    OPENSSL_free(der);
    return std::string(reinterpret_cast<const char*>(md), md_len);
  }

  static void writeFile(const std::filesystem::path& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary);
    out << data;
    if (!out) throw std::runtime_error("cannot write " + path.string());
  }

 private:
  template <auto Fn>
  struct Free {
    template <typename T>
    void operator()(T* p) const {
      Fn(p);
    }
  };

  static std::unique_ptr<X509, Free<X509_free>> parse(const std::string& pem) {
    std::unique_ptr<BIO, Free<BIO_free_all>> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    std::unique_ptr<X509, Free<X509_free>> cert(
        PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) throw std::runtime_error("test certificate: parse");
    return cert;
  }

  template <typename Write>
  static std::string toText(Write write) {
    std::unique_ptr<BIO, Free<BIO_free_all>> bio(BIO_new(BIO_s_mem()));
    if (!bio || write(bio.get()) != 1) throw std::runtime_error("test certificate: encoding");
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
  }

  static TestCertificate make(const char* type, unsigned bits) {
    std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>> key(
        bits != 0 ? EVP_PKEY_Q_keygen(nullptr, nullptr, type, static_cast<size_t>(bits))
                  : EVP_PKEY_Q_keygen(nullptr, nullptr, type, "P-256"));
    std::unique_ptr<X509, Free<X509_free>> cert(X509_new());
    if (!key || !cert) throw std::runtime_error("test certificate: generation");
    X509_set_version(cert.get(), X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 42);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 365L * 24 * 3600);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("mailbridge-test"), -1, -1,
                               0);
    X509_set_issuer_name(cert.get(), name);
    X509_set_pubkey(cert.get(), key.get());
    if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) {
      throw std::runtime_error("test certificate: signature");
    }

    TestCertificate out;
    out.cert_pem = toText([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
    out.key_pem = toText([&](BIO* b) {
      return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    });
    std::unique_ptr<PKCS12, Free<PKCS12_free>> p12(
        PKCS12_create(kPkcs12Password, "test", key.get(), cert.get(), nullptr, 0, 0, 0, 0, 0));
    if (!p12) throw std::runtime_error("test certificate: PKCS#12");
    out.pkcs12_der = toText([&](BIO* b) { return i2d_PKCS12_bio(b, p12.get()); });
    return out;
  }
};

}  // namespace mb::oauth::testing
