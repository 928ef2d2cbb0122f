#include "net/tls_context.h"

#include "net/openssl_ptr.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <ctime>
#include <string_view>
#include <system_error>

#include "base/durable_file.h"

namespace mb::net {
namespace {

namespace chrono = std::chrono;

// TLS 1.2 only; TLS 1.3 suites are set apart and OpenSSL's defaults are all
// AEAD. Forward secrecy (ECDHE) and AEAD only: RFC 7525 §4.2 / BCP 195.
constexpr const char* kTls12Ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!PSK";
constexpr int kSelfSignedValidityDays = 3652;  // ten years, leap days included
constexpr auto kSelfSignedRenewBefore = chrono::days{30};


// OpenSSL's reason for the failure just seen, prefixed with what we were
// doing; the queue is emptied so the next error starts clean. The earliest
// entry is the root cause; later ones are the callers that passed it on.
Error sslError(const std::string& what) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return Error{what + ": unknown OpenSSL error"};
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return Error{what + ": " + buf};
}

// Used wherever OpenSSL would otherwise prompt on the terminal for a PEM
// pass phrase: encrypted PEM keys are refused, not asked about.
int noPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return -1;
}

BioPtr memoryBio(std::string_view data) {
  if (data.size() > static_cast<std::size_t>(INT_MAX)) return nullptr;
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Anything that came from a certificate and goes to a log line.
std::string printable(std::string s) {
  for (char& c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return s;
}

std::string commonName(const X509_NAME* name) {
  if (name == nullptr) return {};
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) {
    ERR_clear_error();
    return {};
  }
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return printable(std::move(out));
}

chrono::system_clock::time_point toTimePoint(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return {};
  }
  const chrono::year_month_day date{chrono::year{tm.tm_year + 1900},
                                    chrono::month{static_cast<unsigned>(tm.tm_mon + 1)},
                                    chrono::day{static_cast<unsigned>(tm.tm_mday)}};
  return chrono::sys_days{date} + chrono::hours{tm.tm_hour} + chrono::minutes{tm.tm_min} +
         chrono::seconds{tm.tm_sec};
}

std::string isoDate(chrono::system_clock::time_point tp) {
  const chrono::year_month_day date{chrono::floor<chrono::days>(tp)};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
  return buf;
}

std::string sha256Fingerprint(const X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) {
    ERR_clear_error();
    return {};
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    if (i != 0) out += ':';
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

struct CertChain {
  X509Ptr leaf;
  std::vector<X509Ptr> chain;
};

// The first certificate in a PEM text is the leaf, the rest its chain, in
// order; other PEM blocks (a private key in the same file) are skipped.
Result<CertChain> parseCertChain(std::string_view pem, const std::string& name) {
  ERR_clear_error();
  BioPtr bio = memoryBio(pem);
  if (!bio) return sslError("TLS certificate " + name);
  CertChain out;
  out.leaf.reset(PEM_read_bio_X509_AUX(bio.get(), nullptr, noPassphrase, nullptr));
  if (!out.leaf) return sslError("no certificate in " + name);
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr));
    if (!cert) {
      const unsigned long err = ERR_peek_last_error();
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // the end of the file
        break;
      }
      return sslError("bad chain certificate in " + name);
    }
    out.chain.push_back(std::move(cert));
  }
  return out;
}

Result<PkeyPtr> parsePrivateKey(std::string_view pem, const std::string& name) {
  ERR_clear_error();
  BioPtr bio = memoryBio(pem);
  if (!bio) return sslError("TLS key " + name);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr));
  if (!key) return sslError("no usable private key in " + name + " (it must be unencrypted PEM)");
  return key;
}

Status applyCommonSettings(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return sslError("TLS context: minimum protocol version");
  }
  SSL_CTX_set_options(
      ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) return sslError("TLS context: cipher list");
  return {};
}

bool isIpLiteral(const std::string& host) {
  boost::system::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

// A DNS name as it may stand in a subjectAltName: letters, digits, '-', '.',
// and '_' (seen in internal names). An IP literal is accepted as it is.
Status checkHostname(const std::string& host) {
  if (host.empty()) return Error{"self-signed certificate: empty hostname"};
  if (isIpLiteral(host)) return {};
  if (host.size() > 253) return Error{"self-signed certificate: hostname too long"};
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) return Error{"self-signed certificate: invalid hostname " + printable(host)};
  }
  return {};
}

bool certificateNames(X509* cert, const std::string& host) {
  const int rc = isIpLiteral(host) ? X509_check_ip_asc(cert, host.c_str(), 0)
                                   : X509_check_host(cert, host.data(), host.size(),
                                                     X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, nullptr);
  ERR_clear_error();
  return rc == 1;
}

Status addExtension(X509* cert, X509V3_CTX* v3, int nid, const char* value) {
  ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, v3, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return sslError("self-signed certificate: extension");
  return {};
}

Status addSubjectAltName(X509* cert, const std::string& host) {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  GENERAL_NAME* name = GENERAL_NAME_new();
  if (!names || name == nullptr) {
    GENERAL_NAME_free(name);
    return sslError("self-signed certificate: subjectAltName");
  }
  if (isIpLiteral(host)) {
    ASN1_OCTET_STRING* ip = a2i_IPADDRESS(host.c_str());
    if (ip == nullptr) {
      GENERAL_NAME_free(name);
      return sslError("self-signed certificate: IP address " + host);
    }
    GENERAL_NAME_set0_value(name, GEN_IPADD, ip);
  } else {
    ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
    if (dns == nullptr || ASN1_STRING_set(dns, host.data(), static_cast<int>(host.size())) != 1) {
      ASN1_IA5STRING_free(dns);
      GENERAL_NAME_free(name);
      return sslError("self-signed certificate: DNS name");
    }
    GENERAL_NAME_set0_value(name, GEN_DNS, dns);
  }
  if (sk_GENERAL_NAME_push(names.get(), name) <= 0) {
    GENERAL_NAME_free(name);
    return sslError("self-signed certificate: subjectAltName");
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return sslError("self-signed certificate: subjectAltName");
  }
  return {};
}

struct Generated {
  X509Ptr cert;
  PkeyPtr key;
};

Result<Generated> generateSelfSigned(const std::string& host) {
  ERR_clear_error();
  Generated out;
  out.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!out.key) return sslError("self-signed certificate: EC key generation");
  out.cert.reset(X509_new());
  X509* cert = out.cert.get();
  if (cert == nullptr || X509_set_version(cert, X509_VERSION_3) != 1) {
    return sslError("self-signed certificate");
  }

  // RFC 5280 §4.1.2.2: positive, at most 20 octets; CA/B rules want 64+
  // random bits. The top bit is cleared to stay positive and the next one set
  // so the encoding is always 16 octets.
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return sslError("self-signed certificate: serial");
  serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x40);
  BignumPtr bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return sslError("self-signed certificate: serial");
  }

  // An hour back, for clients whose clocks run a little behind ours.
  if (X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert), kSelfSignedValidityDays, 0, nullptr) == nullptr) {
    return sslError("self-signed certificate: validity");
  }

  // ub-common-name is 64 characters; a longer name still goes in the SAN,
  // which is what clients check (RFC 6125 §6.4.4).
  const std::string cn = host.size() <= 64 ? host : "Mailbridge";
  X509_NAME* name = X509_get_subject_name(cert);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1 ||
      X509_set_issuer_name(cert, name) != 1 || X509_set_pubkey(cert, out.key.get()) != 1) {
    return sslError("self-signed certificate: names");
  }

  X509V3_CTX v3;
  X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
  if (Status st = addSubjectAltName(cert, host); !st) return st.error();
  if (Status st = addExtension(cert, &v3, NID_basic_constraints, "critical,CA:FALSE"); !st) {
    return st.error();
  }
  if (Status st = addExtension(cert, &v3, NID_key_usage, "critical,digitalSignature"); !st) {
    return st.error();
  }
  if (Status st = addExtension(cert, &v3, NID_ext_key_usage, "serverAuth"); !st) return st.error();
  if (Status st = addExtension(cert, &v3, NID_subject_key_identifier, "hash"); !st) {
    return st.error();
  }
  if (X509_sign(cert, out.key.get(), EVP_sha256()) <= 0) {
    return sslError("self-signed certificate: signature");
  }
  return out;
}

template <typename Write>
Result<std::string> toPem(Write write, const char* what) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) return sslError(std::string("PEM encoding of ") + what);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  if (n <= 0 || data == nullptr) return sslError(std::string("PEM encoding of ") + what);
  std::string out(data, static_cast<std::size_t>(n));
  OPENSSL_cleanse(data, static_cast<std::size_t>(n));
  return out;
}

bool fileExists(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

// The stored pair, if it is still the right one to serve; any problem with
// it (missing, unreadable, other name, expiring, key mismatch) means "no".
std::shared_ptr<TlsContext> loadStoredSelfSigned(const std::filesystem::path& cert_path,
                                                 const std::filesystem::path& key_path,
                                                 const std::string& host) {
  if (!fileExists(cert_path) || !fileExists(key_path)) return nullptr;
  auto pem = fs::readFile(cert_path);
  if (!pem) return nullptr;
  auto chain = parseCertChain(*pem, cert_path.string());
  if (!chain) return nullptr;
  if (!certificateNames(chain->leaf.get(), host)) return nullptr;
  const auto not_after = toTimePoint(X509_get0_notAfter(chain->leaf.get()));
  if (not_after < chrono::system_clock::now() + kSelfSignedRenewBefore) return nullptr;
  auto ctx = TlsContext::fromPem(cert_path, key_path);
  if (!ctx) return nullptr;
  return std::move(ctx).value();
}

}  // namespace

TlsContext::TlsContext(SSL_CTX* ctx, const X509* leaf)
    : context_(ctx),
      subject_cn_(commonName(X509_get_subject_name(leaf))),
      issuer_cn_(commonName(X509_get_issuer_name(leaf))),
      fingerprint_(sha256Fingerprint(leaf)),
      not_after_(toTimePoint(X509_get0_notAfter(leaf))) {}

Result<std::shared_ptr<TlsContext>> TlsContext::assemble(X509* leaf, EVP_PKEY* key,
                                                         const std::vector<X509*>& chain,
                                                         const std::string& cert_name,
                                                         const std::string& key_name) {
  ERR_clear_error();
  if (X509_check_private_key(leaf, key) != 1) {
    return sslError("TLS key " + key_name + " does not belong to the certificate in " + cert_name);
  }
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return sslError("TLS context for " + cert_name);
  if (Status st = applyCommonSettings(ctx.get()); !st) return st.error();
  if (SSL_CTX_use_certificate(ctx.get(), leaf) != 1)
    return sslError("TLS certificate " + cert_name);
  if (SSL_CTX_use_PrivateKey(ctx.get(), key) != 1) return sslError("TLS key " + key_name);
  for (X509* cert : chain) {
    if (SSL_CTX_add1_chain_cert(ctx.get(), cert) != 1) {
      return sslError("TLS chain certificate in " + cert_name);
    }
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return sslError("TLS key " + key_name + " does not belong to the certificate in " + cert_name);
  }
  return std::shared_ptr<TlsContext>(new TlsContext(ctx.release(), leaf));
}

Result<std::shared_ptr<TlsContext>> TlsContext::fromPem(const std::filesystem::path& cert_chain,
                                                        const std::filesystem::path& key) {
  auto cert_pem = fs::readFile(cert_chain);
  if (!cert_pem) return cert_pem.error();
  auto parsed = parseCertChain(*cert_pem, cert_chain.string());
  if (!parsed) return parsed.error();

  auto key_pem = fs::readFile(key);
  if (!key_pem) return key_pem.error();
  auto pkey = parsePrivateKey(*key_pem, key.string());
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!pkey) return pkey.error();

  std::vector<X509*> chain;
  for (auto& cert : parsed->chain) chain.push_back(cert.get());
  return assemble(parsed->leaf.get(), pkey->get(), chain, cert_chain.string(), key.string());
}

Result<std::shared_ptr<TlsContext>> TlsContext::fromPkcs12(const std::filesystem::path& p12,
                                                           const std::string& password) {
  const std::string name = p12.string();
  auto der = fs::readFile(p12);
  if (!der) return der.error();
  ERR_clear_error();
  BioPtr bio = memoryBio(*der);
  if (!bio) return sslError("PKCS#12 " + name);
  Pkcs12Ptr bundle(d2i_PKCS12_bio(bio.get(), nullptr));
  if (!bundle) return sslError("PKCS#12 " + name + " cannot be parsed");

  EVP_PKEY* raw_key = nullptr;
  X509* raw_cert = nullptr;
  STACK_OF(X509)* raw_ca = nullptr;
  if (PKCS12_parse(bundle.get(), password.c_str(), &raw_key, &raw_cert, &raw_ca) != 1) {
    // Old exports use RC2-40, which OpenSSL 3 keeps in its legacy provider.
    return sslError("PKCS#12 " + name + " cannot be opened (wrong password, or legacy encryption)");
  }
  PkeyPtr key(raw_key);
  X509Ptr cert(raw_cert);
  std::vector<X509Ptr> owned;
  std::vector<X509*> chain;
  if (raw_ca != nullptr) {
    // Kept in the order in which the bundle stores them, which is the order
    // they are sent in (RFC 8446 §4.4.2: each certifies the one before).
    for (int i = 0; i < sk_X509_num(raw_ca); ++i) {
      owned.emplace_back(sk_X509_value(raw_ca, i));
      chain.push_back(owned.back().get());
    }
    sk_X509_free(raw_ca);  // the certificates now belong to `owned`
  }
  if (!cert) return Error{"PKCS#12 " + name + " holds no certificate"};
  if (!key) return Error{"PKCS#12 " + name + " holds no private key"};
  return assemble(cert.get(), key.get(), chain, name, name);
}

Result<std::shared_ptr<TlsContext>> TlsContext::selfSigned(const std::filesystem::path& dir,
                                                           const std::string& hostname) {
  if (Status st = checkHostname(hostname); !st) return st.error();
  const auto cert_path = dir / kSelfSignedCertFile;
  const auto key_path = dir / kSelfSignedKeyFile;
  if (auto stored = loadStoredSelfSigned(cert_path, key_path, hostname)) return stored;

  auto generated = generateSelfSigned(hostname);
  if (!generated) return generated.error();
  auto cert_pem = toPem([&](BIO* bio) { return PEM_write_bio_X509(bio, generated->cert.get()); },
                        "certificate");
  if (!cert_pem) return cert_pem.error();
  auto key_pem = toPem(
      [&](BIO* bio) {
        return PEM_write_bio_PrivateKey(bio, generated->key.get(), nullptr, nullptr, 0, nullptr,
                                        nullptr);
      },
      "private key");
  if (!key_pem) return key_pem.error();

  if (Status st = fs::makeDirectories(dir, 0700); !st) return st.error();
  // Key first: a crash between the two leaves a pair that does not match,
  // which the next start replaces, never a new certificate with an old key.
  // 0600 from creation: the key is never readable by the group, not even
  // for the moment before a chmod.
  Status st = fs::writeFileAtomicNoDirSync(key_path, *key_pem, 0600);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!st) return st.error();
  if (st = fs::writeFileAtomic(cert_path, *cert_pem); !st) return st.error();

  return assemble(generated->cert.get(), generated->key.get(), {}, cert_path.string(),
                  key_path.string());
}

std::string TlsContext::describe() const {
  return "subject CN=" + subject_cn_ + ", issuer CN=" + issuer_cn_ + ", expires " +
         isoDate(not_after_) + ", SHA-256 " + fingerprint_;
}

}  // namespace mb::net
