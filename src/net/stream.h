#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "net/asio.h"
#include "net/tls_context.h"

namespace mb::net {

/// Stream: one accepted client connection, plain TCP that may turn into TLS
/// in place (STARTTLS, RFC 3207) or that starts with TLS (implicit TLS on
/// port 465, RFC 8314 §3.3). The SMTP server reads and writes through it
/// without caring which it is.
///
/// Stream keeps no read-ahead: readSome() reads into the caller's buffer
/// only, so when startTls() begins, every plaintext byte this Stream ever
/// read is in the caller's hands — the session must discard what it holds
/// after STARTTLS (RFC 3207 §4.2 and CVE-2011-0411, command injection).
/// Bytes still in the kernel at that point go to the TLS handshake, where
/// pipelined plaintext makes the handshake fail.
///
/// Once startTls() has been called, the plain socket is never read or
/// written in the clear again: if the handshake fails, readSome() and write()
/// fail too, so there is no fallback to plaintext.
///
/// Neighbours: TcpListener accepts the socket; server/ drives a session over
/// it; the TlsContext it handshook with (from TlsContextHolder::current())
/// is kept alive by the Stream, so a reload never frees it underneath.
///
/// Threading: use from the io_context's thread only. At most one readSome()
/// and one write() may be outstanding at a time; startTls() and shutdown()
/// must not overlap anything else. cancel() and close() may be called any
/// time (on that thread), e.g. from a timeout timer.
class Stream {
 public:
  /// How long shutdown() waits for the peer's close_notify.
  static constexpr std::chrono::milliseconds kShutdownTimeout{2000};

  explicit Stream(tcp::socket socket);
  ~Stream() = default;

  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  /// Reads at least one byte into `buf`. At the end of the stream `ec` is
  /// asio::error::eof (clean TCP close or TLS close_notify) or
  /// asio::ssl::error::stream_truncated (TCP closed without close_notify).
  asio::awaitable<std::size_t> readSome(asio::mutable_buffer buf, boost::system::error_code& ec);

  /// Writes all of `data` (which must stay valid until this completes).
  asio::awaitable<void> write(std::string_view data, boost::system::error_code& ec);

  /// The server side of the TLS handshake on this connection, with `ctx`,
  /// which the Stream keeps. Call it right after accept for implicit TLS, or
  /// after answering "220" to STARTTLS. Calling it twice fails with
  /// asio::error::already_connected.
  asio::awaitable<void> startTls(std::shared_ptr<TlsContext> ctx, boost::system::error_code& ec);

  /// True once a handshake has completed.
  bool tls() const { return state_ == State::Tls; }
  /// "TLSv1.3", "TLSv1.2"; empty without TLS.
  std::string tlsVersion() const;
  /// OpenSSL's name for the cipher suite, e.g. "TLS_AES_256_GCM_SHA384".
  std::string tlsCipher() const;

  /// Cancels pending operations; they complete with operation_aborted.
  void cancel();

  /// Ends the connection politely: TLS close_notify (waiting at most
  /// `timeout` for the peer's), then TCP shutdown of both directions. Errors
  /// are ignored: the connection is going away either way.
  asio::awaitable<void> shutdown(std::chrono::milliseconds timeout = kShutdownTimeout);

  /// Closes the socket at once; pending operations complete with errors.
  void close();

  /// For the peer address and socket options. Reading or writing it directly
  /// bypasses TLS: don't.
  tcp::socket& socket() { return socket_; }

  /// Bytes that can be read now from the plain socket without blocking (for
  /// "client spoke before the greeting"); 0 on error. Encrypted bytes, once
  /// TLS runs, not plaintext.
  std::size_t available() const;

 private:
  enum class State { Plain, Handshaking, Tls, Failed };

  // Declared in this order so that the TLS stream, which refers to both,
  // is destroyed before the socket and the context.
  tcp::socket socket_;
  std::shared_ptr<TlsContext> ctx_;
  std::optional<asio::ssl::stream<tcp::socket&>> tls_;
  SSL* ssl_ = nullptr;  // tls_'s handle once the handshake is done, for queries
  State state_ = State::Plain;
};

}  // namespace mb::net
