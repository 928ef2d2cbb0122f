#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/asio.h"
#include "base/testing/temp_dir.h"
#include "net/openssl_ptr.h"
#include "net/stream.h"
#include "net/tcp_listener.h"
#include "net/tls_context.h"
#include "net/tls_context_holder.h"

namespace mb::net {
namespace {

using namespace std::chrono_literals;
using boost::system::error_code;
namespace stdfs = std::filesystem;

// ---------------------------------------------------------------- helpers

using mb::testing::TempDir;

void writeFile(const stdfs::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string readAll(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

unsigned modeOf(const stdfs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}


std::string bioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

struct PemPair {
  std::string cert;
  std::string key;
};

// A certificate made here rather than by TlsContext, with a chosen lifetime,
// to play an old, expiring or foreign certificate.
PemPair makeCertificate(const std::string& host, int days_valid) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  X509Ptr cert(X509_new());
  X509* x = cert.get();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 4711);
  X509_time_adj_ex(X509_getm_notBefore(x), days_valid < 0 ? days_valid - 30 : 0, -3600, nullptr);
  X509_time_adj_ex(X509_getm_notAfter(x), days_valid, 0, nullptr);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  X509_set_pubkey(x, key.get());
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  const std::string san = "DNS:" + host;
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, &v3, NID_subject_alt_name, san.c_str());
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(x, key.get(), EVP_sha256());

  PemPair out;
  BioPtr cbio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(cbio.get(), x);
  out.cert = bioText(cbio.get());
  BioPtr kbio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(kbio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  out.key = bioText(kbio.get());
  return out;
}

X509Ptr parseCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

PkeyPtr parseKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

// A .p12 as an export from Windows or `openssl pkcs12 -export` would make.
std::string makePkcs12(const std::string& cert_pem, const std::string& key_pem,
                       const std::vector<std::string>& ca_pems, const char* password) {
  X509Ptr cert = parseCert(cert_pem);
  PkeyPtr key = parseKey(key_pem);
  STACK_OF(X509)* ca = sk_X509_new_null();
  for (const auto& pem : ca_pems) sk_X509_push(ca, parseCert(pem).release());
  Pkcs12Ptr p12(PKCS12_create(password, "mailbridge", key.get(), cert.get(), ca, 0, 0, 0, 0, 0));
  sk_X509_pop_free(ca, X509_free);
  if (!p12) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  i2d_PKCS12_bio(bio.get(), p12.get());
  return bioText(bio.get());
}

std::string certFingerprint(const std::string& pem) {
  X509Ptr cert = parseCert(pem);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert.get(), EVP_sha256(), md, &len);
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    if (i != 0) out += ':';
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

int chainLength(TlsContext& ctx) {
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx.native().native_handle(), &chain);
  return chain == nullptr ? 0 : sk_X509_num(chain);
}

std::shared_ptr<TlsContext> mustSelfSign(const stdfs::path& dir, const std::string& host) {
  auto ctx = TlsContext::selfSigned(dir, host);
  if (!ctx) ADD_FAILURE() << ctx.error().message;
  return ctx ? *ctx : nullptr;
}

// A client that trusts exactly the given certificate (as its own CA).
asio::ssl::context clientContext(const stdfs::path& ca_pem) {
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(ca_pem.string());
  ctx.set_verify_mode(asio::ssl::verify_peer);
  return ctx;
}

template <typename AsyncStream>
asio::awaitable<std::string> clientReadLine(AsyncStream& s, error_code& ec) {
  std::string buf;
  const std::size_t n = co_await asio::async_read_until(
      s, asio::dynamic_buffer(buf), "\r\n", asio::redirect_error(asio::use_awaitable, ec));
  co_return ec ? buf : buf.substr(0, n);
}

template <typename AsyncStream>
asio::awaitable<void> clientWrite(AsyncStream& s, std::string_view data, error_code& ec) {
  co_await asio::async_write(s, asio::buffer(data.data(), data.size()),
                             asio::redirect_error(asio::use_awaitable, ec));
}

// What the SMTP session does: read until a line is complete. Everything
// read, including bytes after the line, is returned (and later discarded).
asio::awaitable<std::string> serverReadLine(Stream& s, error_code& ec) {
  std::string acc;
  char buf[512];
  while (acc.find("\r\n") == std::string::npos) {
    const std::size_t n = co_await s.readSome(asio::buffer(buf), ec);
    if (ec) co_return acc;
    acc.append(buf, n);
  }
  co_return acc;
}

// ---------------------------------------------------------------- fixture

class NetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const Status st = listener_.bind("127.0.0.1", 0);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }

  tcp::endpoint endpoint() const { return {asio::ip::make_address("127.0.0.1"), listener_.port()}; }

  asio::awaitable<tcp::socket> connect() {
    tcp::socket sock(io_);
    co_await sock.async_connect(endpoint(), asio::use_awaitable);
    co_return sock;
  }

  asio::awaitable<tcp::socket> accept() {
    error_code ec;
    auto sock = co_await listener_.accept(ec);
    EXPECT_FALSE(ec) << ec.message();
    co_return sock;
  }

  void spawn(asio::awaitable<void> task) {
    ++spawned_;
    asio::co_spawn(io_, std::move(task), [this](std::exception_ptr e) {
      ++finished_;
      if (e) errors_.push_back(e);
    });
  }

  // Runs until every spawned task has finished (or a generous deadline).
  void run() {
    io_.run_for(30s);
    EXPECT_EQ(finished_, spawned_) << "a task did not finish";
    for (auto& e : errors_) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        ADD_FAILURE() << "task threw: " << ex.what();
      }
    }
  }

  asio::io_context io_;
  TcpListener listener_{io_};
  TempDir tmp_;
  int spawned_ = 0;
  int finished_ = 0;
  std::vector<std::exception_ptr> errors_;
};

// ---------------------------------------------------------------- Stream

TEST_F(NetTest, PlainExchange) {
  std::string server_got;
  std::string client_got;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    EXPECT_FALSE(stream.tls());
    EXPECT_EQ(stream.tlsVersion(), "");
    error_code ec;
    co_await stream.write("220 hello\r\n", ec);
    EXPECT_FALSE(ec);
    server_got = co_await serverReadLine(stream, ec);
    EXPECT_FALSE(ec);
    co_await stream.write("221 bye\r\n", ec);
    EXPECT_FALSE(ec);
    co_await stream.shutdown();
  };
  auto client = [&]() -> asio::awaitable<void> {
    tcp::socket sock = co_await connect();
    error_code ec;
    client_got = co_await clientReadLine(sock, ec);
    co_await clientWrite(sock, "QUIT\r\n", ec);
    client_got += co_await clientReadLine(sock, ec);
    EXPECT_FALSE(ec);
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_EQ(server_got, "QUIT\r\n");
  EXPECT_EQ(client_got, "220 hello\r\n221 bye\r\n");
}

TEST_F(NetTest, StartTlsUpgradesInPlace) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  std::string server_got;
  std::string client_got;
  std::string version;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    const std::string line = co_await serverReadLine(stream, ec);
    EXPECT_EQ(line, "STARTTLS\r\n");
    co_await stream.write("220 go\r\n", ec);
    co_await stream.startTls(ctx, ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_TRUE(stream.tls());
    version = stream.tlsVersion();
    EXPECT_FALSE(stream.tlsCipher().empty());
    server_got = co_await serverReadLine(stream, ec);
    co_await stream.write("250 secure\r\n", ec);
    EXPECT_FALSE(ec);
    co_await stream.shutdown();
  };
  auto client = [&]() -> asio::awaitable<void> {
    tcp::socket sock = co_await connect();
    error_code ec;
    co_await clientWrite(sock, "STARTTLS\r\n", ec);
    EXPECT_EQ(co_await clientReadLine(sock, ec), "220 go\r\n");
    asio::ssl::stream<tcp::socket> tls(std::move(sock), cctx);
    tls.set_verify_callback(asio::ssl::host_name_verification("localhost"));
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec) << ec.message();
    co_await clientWrite(tls, "EHLO client\r\n", ec);
    client_got = co_await clientReadLine(tls, ec);
    EXPECT_FALSE(ec);
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_EQ(server_got, "EHLO client\r\n");
  EXPECT_EQ(client_got, "250 secure\r\n");
  EXPECT_EQ(version, "TLSv1.3");
}

// CVE-2011-0411: plaintext pipelined after STARTTLS is in the session's
// buffer (which it drops), never in the Stream; what follows the handshake
// is only what the client sent inside TLS.
TEST_F(NetTest, StartTlsKeepsNoPlaintext) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  std::string server_got;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    std::string before;
    while (before.find("INJECTED>\r\n") == std::string::npos && !ec) {
      before += co_await serverReadLine(stream, ec);
    }
    EXPECT_EQ(before, "STARTTLS\r\nRCPT TO:<INJECTED>\r\n");
    before.clear();  // the session's duty
    co_await stream.write("220 go\r\n", ec);
    co_await stream.startTls(ctx, ec);
    EXPECT_FALSE(ec) << ec.message();
    server_got = co_await serverReadLine(stream, ec);
    co_await stream.shutdown(100ms);
  };
  auto client = [&]() -> asio::awaitable<void> {
    tcp::socket sock = co_await connect();
    error_code ec;
    co_await clientWrite(sock, "STARTTLS\r\nRCPT TO:<INJECTED>\r\n", ec);
    EXPECT_EQ(co_await clientReadLine(sock, ec), "220 go\r\n");
    asio::ssl::stream<tcp::socket> tls(std::move(sock), cctx);
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec) << ec.message();
    co_await clientWrite(tls, "EHLO again\r\n", ec);
    co_await clientReadLine(tls, ec);  // until the server closes
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_EQ(server_got, "EHLO again\r\n");
}

// Plaintext where the ClientHello should be: the handshake fails and the
// Stream refuses to go on in the clear.
TEST_F(NetTest, FailedHandshakeNeverFallsBackToPlaintext) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    co_await serverReadLine(stream, ec);
    co_await stream.write("220 go\r\n", ec);
    co_await stream.startTls(ctx, ec);
    EXPECT_TRUE(ec);
    EXPECT_FALSE(stream.tls());
    char buf[64];
    const std::size_t n = co_await stream.readSome(asio::buffer(buf), ec);
    EXPECT_EQ(ec, asio::error::not_connected);
    EXPECT_EQ(n, 0U);
    co_await stream.write("250 plaintext\r\n", ec);
    EXPECT_EQ(ec, asio::error::not_connected);
    co_await stream.startTls(ctx, ec);
    EXPECT_EQ(ec, asio::error::already_connected);
    stream.close();
  };
  auto client = [&]() -> asio::awaitable<void> {
    tcp::socket sock = co_await connect();
    error_code ec;
    co_await clientWrite(sock, "STARTTLS\r\n", ec);
    co_await clientReadLine(sock, ec);
    co_await clientWrite(sock, "EHLO plain text instead of a ClientHello\r\n", ec);
    std::string rest;
    co_await asio::async_read(sock, asio::dynamic_buffer(rest),
                              asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_EQ(rest.find("250"), std::string::npos);
  };
  spawn(server());
  spawn(client());
  run();
}

TEST_F(NetTest, ImplicitTlsAndCleanShutdown) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  std::string client_got;
  error_code client_end;
  std::string version;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    co_await stream.startTls(ctx, ec);
    EXPECT_FALSE(ec) << ec.message();
    version = stream.tlsVersion();
    co_await stream.write("220 tls from the start\r\n", ec);
    EXPECT_FALSE(ec);
    co_await stream.shutdown();
  };
  auto client = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(co_await connect(), cctx);
    tls.set_verify_callback(asio::ssl::host_name_verification("localhost"));
    error_code ec;
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec) << ec.message();
    client_got = co_await clientReadLine(tls, ec);
    char buf[16];
    co_await tls.async_read_some(asio::buffer(buf),
                                 asio::redirect_error(asio::use_awaitable, client_end));
    co_await tls.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_EQ(client_got, "220 tls from the start\r\n");
  EXPECT_EQ(client_end, asio::error::eof) << client_end.message();  // close_notify seen
  EXPECT_EQ(version, "TLSv1.3");
}

// A peer that never answers close_notify must not hold shutdown().
TEST_F(NetTest, ShutdownWaitIsBounded) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  std::chrono::steady_clock::duration took{};
  bool server_done = false;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    co_await stream.startTls(ctx, ec);
    EXPECT_FALSE(ec) << ec.message();
    const auto start = std::chrono::steady_clock::now();
    co_await stream.shutdown(200ms);
    took = std::chrono::steady_clock::now() - start;
    server_done = true;
  };
  auto client = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(co_await connect(), cctx);
    error_code ec;
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
    // Connected but silent for longer than the server is willing to wait.
    asio::steady_timer timer(io_, 1s);
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_TRUE(server_done);
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 900ms);
}

TEST_F(NetTest, Tls11ClientRefused) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  // Let the client really offer TLS 1.1 (OpenSSL 3 would refuse locally at
  // the default security level), so that it is the server that says no.
  SSL_CTX_set_security_level(cctx.native_handle(), 0);
  SSL_CTX_set_min_proto_version(cctx.native_handle(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(cctx.native_handle(), TLS1_1_VERSION);
  error_code server_ec;
  error_code client_ec;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    co_await stream.startTls(ctx, server_ec);
    EXPECT_FALSE(stream.tls());
    stream.close();
  };
  auto client = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(co_await connect(), cctx);
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, client_ec));
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_TRUE(server_ec);
  EXPECT_NE(server_ec.message().find("unsupported protocol"), std::string::npos)
      << server_ec.message();
  EXPECT_TRUE(client_ec);
}

TEST_F(NetTest, Tls12UsesOnlyEcdheAead) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  SSL_CTX_set_max_proto_version(cctx.native_handle(), TLS1_2_VERSION);
  std::string version;
  std::string cipher;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    co_await stream.startTls(ctx, ec);
    EXPECT_FALSE(ec) << ec.message();
    version = stream.tlsVersion();
    cipher = stream.tlsCipher();
    stream.close();
  };
  auto client = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(co_await connect(), cctx);
    error_code ec;
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec) << ec.message();
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_EQ(version, "TLSv1.2");
  EXPECT_EQ(cipher.rfind("ECDHE-ECDSA-", 0), 0U) << cipher;
  EXPECT_TRUE(cipher.find("GCM") != std::string::npos ||
              cipher.find("CHACHA20-POLY1305") != std::string::npos)
      << cipher;
}

TEST_F(NetTest, Tls12CbcOnlyClientRefused) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  SSL_CTX_set_max_proto_version(cctx.native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(cctx.native_handle(), "ECDHE-ECDSA-AES128-SHA256");
  error_code server_ec;
  error_code client_ec;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    co_await stream.startTls(ctx, server_ec);
    stream.close();
  };
  auto client = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(co_await connect(), cctx);
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, client_ec));
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_TRUE(server_ec);
  EXPECT_NE(server_ec.message().find("no shared cipher"), std::string::npos) << server_ec.message();
  EXPECT_TRUE(client_ec);
}

TEST_F(NetTest, ClientRejectsWrongHostname) {
  auto ctx = mustSelfSign(tmp_.path(), "localhost");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  error_code client_ec;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    co_await stream.startTls(ctx, ec);
    stream.close();
  };
  auto client = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(co_await connect(), cctx);
    tls.set_verify_callback(asio::ssl::host_name_verification("other.example"));
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, client_ec));
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_TRUE(client_ec);
}

TEST_F(NetTest, IpAddressCertificateVerifies) {
  auto ctx = mustSelfSign(tmp_.path(), "127.0.0.1");
  ASSERT_TRUE(ctx);
  auto cctx = clientContext(tmp_.path() / "cert.pem");
  error_code client_ec;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    co_await stream.startTls(ctx, ec);
    EXPECT_FALSE(ec) << ec.message();
    stream.close();
  };
  auto client = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(co_await connect(), cctx);
    tls.set_verify_callback(asio::ssl::host_name_verification("127.0.0.1"));
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, client_ec));
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_FALSE(client_ec) << client_ec.message();
}

TEST_F(NetTest, AvailableSeesEarlyTalker) {
  std::size_t early = 0;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    asio::steady_timer timer(io_, 200ms);
    co_await timer.async_wait(asio::use_awaitable);
    early = stream.available();
    stream.close();
  };
  auto client = [&]() -> asio::awaitable<void> {
    tcp::socket sock = co_await connect();
    error_code ec;
    co_await clientWrite(sock, "EHLO eager\r\n", ec);
    std::string rest;
    co_await asio::async_read(sock, asio::dynamic_buffer(rest),
                              asio::redirect_error(asio::use_awaitable, ec));
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_EQ(early, 12U);
}

TEST_F(NetTest, CancelAbortsPendingRead) {
  error_code read_ec;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    asio::steady_timer timer(io_, 100ms);
    timer.async_wait([&](const error_code& ec) {
      if (!ec) stream.cancel();
    });
    char buf[16];
    co_await stream.readSome(asio::buffer(buf), read_ec);
    stream.close();
  };
  auto client = [&]() -> asio::awaitable<void> {
    tcp::socket sock = co_await connect();
    std::string rest;
    error_code ec;
    co_await asio::async_read(sock, asio::dynamic_buffer(rest),
                              asio::redirect_error(asio::use_awaitable, ec));
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_EQ(read_ec, asio::error::operation_aborted);
}

// A reload swaps the holder's context; a connection that took the old one
// keeps it alive and goes on working (ASan would see a use after free).
TEST_F(NetTest, HolderReplaceLeavesLiveConnectionsAlone) {
  auto first = mustSelfSign(tmp_.path() / "a", "localhost");
  auto second = mustSelfSign(tmp_.path() / "b", "localhost");
  ASSERT_TRUE(first && second);
  ASSERT_NE(first->fingerprint(), second->fingerprint());
  TlsContextHolder holder;
  EXPECT_EQ(holder.current(), nullptr);
  EXPECT_EQ(holder.replace(first), nullptr);
  const auto first_fp = first->fingerprint();
  first.reset();  // only the holder has it now

  auto cctx = clientContext(tmp_.path() / "a" / "cert.pem");
  std::string server_got;
  auto server = [&]() -> asio::awaitable<void> {
    Stream stream(co_await accept());
    error_code ec;
    co_await stream.startTls(holder.current(), ec);
    EXPECT_FALSE(ec) << ec.message();
    auto old = holder.replace(second);
    EXPECT_EQ(old->fingerprint(), first_fp);
    old.reset();  // now only the Stream has it
    server_got = co_await serverReadLine(stream, ec);
    co_await stream.write("250 still here\r\n", ec);
    EXPECT_FALSE(ec);
    co_await stream.shutdown(100ms);
  };
  auto client = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(co_await connect(), cctx);
    error_code ec;
    co_await tls.async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec) << ec.message();
    asio::steady_timer timer(io_, 50ms);  // let the reload happen first
    co_await timer.async_wait(asio::use_awaitable);
    co_await clientWrite(tls, "NOOP\r\n", ec);
    EXPECT_EQ(co_await clientReadLine(tls, ec), "250 still here\r\n");
  };
  spawn(server());
  spawn(client());
  run();
  EXPECT_EQ(server_got, "NOOP\r\n");
  EXPECT_EQ(holder.current()->fingerprint(), second->fingerprint());
}

// ---------------------------------------------------------------- TlsContext

TEST_F(NetTest, SelfSignedCreatesPrivateFilesAndReusesThem) {
  const auto dir = tmp_.path() / "state" / "tls";
  auto first = mustSelfSign(dir, "mail.example.com");
  ASSERT_TRUE(first);
  EXPECT_EQ(modeOf(dir / "key.pem"), 0600U);
  EXPECT_EQ(modeOf(dir), 0700U);
  EXPECT_TRUE(stdfs::exists(dir / "cert.pem"));
  EXPECT_FALSE(stdfs::exists(dir / "key.pem.tmp"));
  EXPECT_EQ(first->fingerprint(), certFingerprint(readAll(dir / "cert.pem")));

  const auto years = std::chrono::duration_cast<std::chrono::days>(
      first->notAfter() - std::chrono::system_clock::now());
  EXPECT_GE(years.count(), 3650);
  EXPECT_LE(years.count(), 3653);

  const std::string text = first->describe();
  EXPECT_NE(text.find("subject CN=mail.example.com"), std::string::npos) << text;
  EXPECT_NE(text.find("issuer CN=mail.example.com"), std::string::npos) << text;
  EXPECT_NE(text.find("SHA-256 " + first->fingerprint()), std::string::npos) << text;
  EXPECT_EQ(first->fingerprint().size(), 32U * 3 - 1);

  auto again = mustSelfSign(dir, "mail.example.com");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->fingerprint(), first->fingerprint());
}

TEST_F(NetTest, SelfSignedCertificateContents) {
  auto ctx = mustSelfSign(tmp_.path(), "mx.example.org");
  ASSERT_TRUE(ctx);
  X509Ptr cert = parseCert(readAll(tmp_.path() / "cert.pem"));
  ASSERT_TRUE(cert);
  EXPECT_EQ(X509_get_version(cert.get()), X509_VERSION_3);
  EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);
  EXPECT_EQ(X509_check_host(cert.get(), "mx.example.org", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                            nullptr),
            1);
  EXPECT_EQ(X509_check_ca(cert.get()), 0);
  EXPECT_TRUE(X509_get_key_usage(cert.get()) & KU_DIGITAL_SIGNATURE);
  EXPECT_TRUE(X509_get_extended_key_usage(cert.get()) & XKU_SSL_SERVER);
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
  EXPECT_EQ(ASN1_STRING_length(serial), 16);
  // Valid from an hour ago.
  int days = 0;
  int secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert.get()), nullptr), 1);
  EXPECT_EQ(days, 0);
  EXPECT_GE(secs, 3590);
  EXPECT_LE(secs, 3700);
  PkeyPtr key = parseKey(readAll(tmp_.path() / "key.pem"));
  ASSERT_TRUE(key);
  EXPECT_TRUE(EVP_PKEY_is_a(key.get(), "EC"));
  EXPECT_EQ(EVP_PKEY_get_bits(key.get()), 256);
}

TEST_F(NetTest, SelfSignedRegeneratesForOtherHostOrNearExpiry) {
  const auto dir = tmp_.path();
  auto first = mustSelfSign(dir, "one.example");
  ASSERT_TRUE(first);
  auto other = mustSelfSign(dir, "two.example");
  ASSERT_TRUE(other);
  EXPECT_NE(other->fingerprint(), first->fingerprint());
  EXPECT_NE(other->describe().find("CN=two.example"), std::string::npos);

  std::string last = other->fingerprint();
  for (const int days : {10, -1}) {
    const PemPair old = makeCertificate("two.example", days);
    writeFile(dir / "cert.pem", old.cert);
    writeFile(dir / "key.pem", old.key);
    auto renewed = mustSelfSign(dir, "two.example");
    ASSERT_TRUE(renewed);
    EXPECT_NE(renewed->fingerprint(), certFingerprint(old.cert)) << days;
    EXPECT_GT(renewed->notAfter(), std::chrono::system_clock::now() + std::chrono::days{3000});
    last = renewed->fingerprint();
  }

  // A still-valid pair whose key does not match is replaced too.
  const PemPair stray = makeCertificate("two.example", 400);
  writeFile(dir / "key.pem", stray.key);
  auto repaired = mustSelfSign(dir, "two.example");
  ASSERT_TRUE(repaired);
  EXPECT_NE(repaired->fingerprint(), last);
  EXPECT_NE(repaired->fingerprint(), certFingerprint(stray.cert));

  // An operator's certificate with 400 days left is kept.
  writeFile(dir / "cert.pem", stray.cert);
  writeFile(dir / "key.pem", stray.key);
  auto kept = mustSelfSign(dir, "two.example");
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->fingerprint(), certFingerprint(stray.cert));
}

TEST_F(NetTest, SelfSignedRejectsBadHostname) {
  auto ctx = TlsContext::selfSigned(tmp_.path(), "evil.example,DNS:bank.example");
  ASSERT_FALSE(ctx);
  EXPECT_NE(ctx.error().message.find("invalid hostname"), std::string::npos);
  EXPECT_FALSE(TlsContext::selfSigned(tmp_.path(), ""));
  EXPECT_FALSE(stdfs::exists(tmp_.path() / "cert.pem"));
}

TEST_F(NetTest, PemLoading) {
  const auto dir = tmp_.path();
  const PemPair pair = makeCertificate("pem.example", 365);
  const PemPair intermediate = makeCertificate("Example CA", 365);
  writeFile(dir / "cert.pem", pair.cert);
  writeFile(dir / "key.pem", pair.key);
  writeFile(dir / "fullchain.pem", pair.cert + intermediate.cert);
  writeFile(dir / "combined.pem", pair.key + pair.cert + intermediate.cert);

  auto plain = TlsContext::fromPem(dir / "cert.pem", dir / "key.pem");
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ((*plain)->fingerprint(), certFingerprint(pair.cert));
  EXPECT_EQ(chainLength(**plain), 0);

  auto chained = TlsContext::fromPem(dir / "fullchain.pem", dir / "key.pem");
  ASSERT_TRUE(chained) << chained.error().message;
  EXPECT_EQ((*chained)->fingerprint(), certFingerprint(pair.cert));
  EXPECT_EQ(chainLength(**chained), 1);

  auto combined = TlsContext::fromPem(dir / "combined.pem", dir / "combined.pem");
  ASSERT_TRUE(combined) << combined.error().message;
  EXPECT_EQ((*combined)->fingerprint(), certFingerprint(pair.cert));
  EXPECT_EQ(chainLength(**combined), 1);
}

TEST_F(NetTest, PemLoadingErrors) {
  const auto dir = tmp_.path();
  const PemPair pair = makeCertificate("pem.example", 365);
  const PemPair stranger = makeCertificate("pem.example", 365);
  writeFile(dir / "cert.pem", pair.cert);
  writeFile(dir / "other-key.pem", stranger.key);
  writeFile(dir / "garbage.pem", "not a certificate\n");

  auto mismatch = TlsContext::fromPem(dir / "cert.pem", dir / "other-key.pem");
  ASSERT_FALSE(mismatch);
  const std::string& msg = mismatch.error().message;
  EXPECT_NE(msg.find((dir / "other-key.pem").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not belong"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key values mismatch"), std::string::npos) << msg;

  auto missing = TlsContext::fromPem(dir / "nope.pem", dir / "other-key.pem");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.pem"), std::string::npos);

  auto garbage = TlsContext::fromPem(dir / "garbage.pem", dir / "other-key.pem");
  ASSERT_FALSE(garbage);
  EXPECT_NE(garbage.error().message.find("garbage.pem"), std::string::npos);
  EXPECT_NE(garbage.error().message.find("no start line"), std::string::npos)
      << garbage.error().message;

  auto no_key = TlsContext::fromPem(dir / "cert.pem", dir / "cert.pem");
  ASSERT_FALSE(no_key);
  EXPECT_NE(no_key.error().message.find("private key"), std::string::npos);

  EXPECT_EQ(ERR_peek_error(), 0UL) << "error queue left dirty";
}

TEST_F(NetTest, Pkcs12RoundTrip) {
  const auto dir = tmp_.path();
  const PemPair pair = makeCertificate("p12.example", 365);
  const PemPair ca = makeCertificate("Example CA", 365);
  writeFile(dir / "server.p12", makePkcs12(pair.cert, pair.key, {ca.cert}, "secret"));

  auto ctx = TlsContext::fromPkcs12(dir / "server.p12", "secret");
  ASSERT_TRUE(ctx) << ctx.error().message;
  EXPECT_EQ((*ctx)->fingerprint(), certFingerprint(pair.cert));
  EXPECT_EQ(chainLength(**ctx), 1);

  auto wrong = TlsContext::fromPkcs12(dir / "server.p12", "secreT");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("server.p12"), std::string::npos);
  EXPECT_EQ(wrong.error().message.find("secre"), std::string::npos) << wrong.error().message;
  EXPECT_NE(wrong.error().message.find("mac verify failure"), std::string::npos)
      << wrong.error().message;

  writeFile(dir / "broken.p12", "definitely not DER");
  auto broken = TlsContext::fromPkcs12(dir / "broken.p12", "secret");
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message.find("broken.p12"), std::string::npos);
  EXPECT_EQ(broken.error().message.find("secret"), std::string::npos);
  EXPECT_EQ(ERR_peek_error(), 0UL) << "error queue left dirty";
}

TEST_F(NetTest, LoadFromSource) {
  const auto dir = tmp_.path();
  const PemPair pair = makeCertificate("src.example", 365);
  writeFile(dir / "cert.pem", pair.cert);
  writeFile(dir / "key.pem", pair.key);
  writeFile(dir / "bundle.p12", makePkcs12(pair.cert, pair.key, {}, "pw"));

  TlsSource pem;
  pem.kind = TlsSource::Kind::Pem;
  pem.cert_chain = dir / "cert.pem";
  pem.key = dir / "key.pem";
  auto a = load(pem);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ((*a)->fingerprint(), certFingerprint(pair.cert));

  TlsSource p12;
  p12.kind = TlsSource::Kind::Pkcs12;
  p12.pkcs12 = dir / "bundle.p12";
  p12.password = "pw";
  auto b = load(p12);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ((*b)->fingerprint(), certFingerprint(pair.cert));

  TlsSource self;
  self.kind = TlsSource::Kind::SelfSigned;
  self.dir = dir / "self";
  self.hostname = "src.example";
  auto c = load(self);
  ASSERT_TRUE(c) << c.error().message;
  auto d = load(self);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ((*c)->fingerprint(), (*d)->fingerprint());
  EXPECT_NE((*c)->fingerprint(), certFingerprint(pair.cert));
}

}  // namespace
}  // namespace mb::net
