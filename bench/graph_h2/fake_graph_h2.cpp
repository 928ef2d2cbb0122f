// mb-bench-graph: a fast fake of Microsoft Entra ID's token endpoint and
// Graph's sendMail, for the end-to-end benchmark (bench/scenario_graph.py).
//
// The Python fakes in tests/fakes check every detail of the protocol and are
// far too slow for thousands of requests a second. This one answers only
// what a relay sending 4 KB messages needs, the way the real services do:
// over TLS with HTTP/2 (ALPN "h2"; libcurl multiplexes on it as it does with
// graph.microsoft.com), POST .../oauth2/v2.0/token → 200 with a bearer
// token, POST /v1.0/users/{id}/sendMail → 202 with a request-id, after
// --latency-ms. Everything else is 404.
//
// For the latency figures it looks for an "X-Bench-Seq: N" header in the
// base64 MIME body and records when it answered 202 for N (CLOCK_MONOTONIC,
// the clock Python's time.monotonic() reads). On SIGTERM or SIGINT it writes
// those records to --record and a JSON summary to stdout, then exits.
//
// Not part of the relay: a bench-only tool, built as its own target.

#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <time.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>  // before Asio (Boost 1.74 with g++ 12)
#include <vector>

// After <utility>: Boost 1.74's Asio needs it first.
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::ip::tcp;

std::int64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct Totals {
  std::uint64_t connections = 0;
  std::uint64_t requests = 0;
  std::uint64_t tokens = 0;
  std::uint64_t accepted = 0;  // 202s
  std::uint64_t other = 0;     // 4xx
  std::int64_t first_request_ns = 0;
  std::int64_t last_accepted_ns = 0;
  std::vector<std::pair<std::uint64_t, std::int64_t>>
      seq_times;  // (X-Bench-Seq, when answered 202)
};

struct Settings {
  std::chrono::milliseconds latency{0};
};

// The sequence number in "X-Bench-Seq: N" within the first bytes of the
// decoded message, or -1.
std::int64_t benchSeq(const std::string& base64) {
  // The header sits at the start; decoding 2,048 characters (1,536 bytes)
  // is enough and keeps the fake cheap.
  std::size_t n = std::min<std::size_t>(base64.size(), 2048);
  n -= n % 4;
  if (n == 0) return -1;
  std::string raw(n / 4 * 3 + 1, '\0');
  const int got =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(raw.data()),
                      reinterpret_cast<const unsigned char*>(base64.data()), static_cast<int>(n));
  if (got <= 0) return -1;
  raw.resize(static_cast<std::size_t>(got));
  constexpr std::string_view kName = "X-Bench-Seq: ";
  const std::size_t at = raw.find(kName);
  if (at == std::string::npos) return -1;
  const char* p = raw.data() + at + kName.size();
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(p, raw.data() + raw.size(), value);
  if (ec != std::errc() || end == p) return -1;
  return static_cast<std::int64_t>(value);
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, ssl::context& tls, const Settings& settings, Totals& totals)
      : stream_(std::move(socket), tls),
        timer_executor_(stream_.get_executor()),
        settings_(settings),
        totals_(totals) {}

  ~Connection() {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }

  void start() {
    ++totals_.connections;
    stream_.next_layer().set_option(tcp::no_delay(true));
    stream_.async_handshake(
        ssl::stream_base::server, [self = shared_from_this()](const boost::system::error_code& ec) {
          if (ec) {
            std::cerr << "mb-bench-graph: TLS handshake: " << ec.message() << "\n";
            return;
          }
          self->onHandshake();
        });
  }

 private:
  struct Stream {
    std::string method, path, body;
    std::string response_body;
    std::size_t sent = 0;
    std::string status, request_id;
  };

  void onHandshake() {
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(stream_.native_handle(), &alpn, &alpn_len);
    if (alpn == nullptr ||
        std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != "h2") {
      std::cerr << "mb-bench-graph: a client without HTTP/2 (ALPN h2); closing\n";
      return;
    }
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &Connection::onBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, &Connection::onHeader);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Connection::onData);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Connection::onFrame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Connection::onStreamClose);
    nghttp2_session_callbacks_set_error_callback2(cb, &Connection::onError);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, &Connection::onInvalidFrame);
    nghttp2_session_server_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
                                               {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
    // A connection-level window as large as the streams' together.
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 64 << 20);
    flush();
    read();
  }

  void read() {
    stream_.async_read_some(
        asio::buffer(in_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
          if (ec) {
            if (ec != asio::error::eof && ec != ssl::error::stream_truncated) {
              std::cerr << "mb-bench-graph: read: " << ec.message() << "\n";
            }
            return;
          }
          const auto used = nghttp2_session_mem_recv(
              self->session_, reinterpret_cast<const uint8_t*>(self->in_.data()), n);
          if (used < 0) {
            std::cerr << "mb-bench-graph: closing a connection: "
                      << nghttp2_strerror(static_cast<int>(used)) << "\n";
            return;
          }
          self->flush();
          if (nghttp2_session_want_read(self->session_) == 0 &&
              nghttp2_session_want_write(self->session_) == 0 && !self->ended_) {
            // nghttp2 ends a session whose client resets streams faster
            // than its rapid-reset guard allows (libcurl 7.88 resets
            // every stream it is done with), as servers on the
            // Internet do: the relay must cope.
            self->ended_ = true;
            std::cerr << "mb-bench-graph: session ended by nghttp2 after stream "
                      << nghttp2_session_get_last_proc_stream_id(self->session_) << " ("
                      << self->resets_ << " RST_STREAM from the client)\n";
          }
          self->read();
        });
  }

  // Sends what nghttp2 has queued, one write at a time.
  void flush() {
    if (writing_) return;
    out_.clear();
    for (;;) {
      const uint8_t* data = nullptr;
      const auto n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
      if (out_.size() > 256 * 1024) break;
    }
    if (out_.empty()) return;
    writing_ = true;
    asio::async_write(
        stream_, asio::buffer(out_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
          self->writing_ = false;
          if (ec) {
            std::cerr << "mb-bench-graph: write: " << ec.message() << "\n";
            return;
          }
          self->flush();
        });
  }

  // From a timer, `send` is true; inside nghttp2's callbacks it must be
  // false (nghttp2 may not be re-entered: read() flushes after them).
  void respond(std::int32_t id, bool send) {
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    Stream& s = it->second;
    std::vector<nghttp2_nv> nva;
    const auto add = [&nva](const std::string& name, const std::string& value) {
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                     value.size(), NGHTTP2_NV_FLAG_NONE});
    };
    static const std::string kStatus = ":status", kRequestId = "request-id", kType = "content-type",
                             kJson = "application/json", kLength = "content-length";
    const std::string length = std::to_string(s.response_body.size());
    add(kStatus, s.status);
    add(kRequestId, s.request_id);
    if (!s.response_body.empty()) add(kLength, length);
    if (!s.response_body.empty()) add(kType, kJson);
    // No body: HEADERS alone ends the stream, as Graph's 202 does. (An
    // empty DATA frame after them makes libcurl reset every stream, and
    // nghttp2's rapid-reset guard then ends the connection.)
    nghttp2_data_provider provider{};
    provider.source.ptr = &s;
    provider.read_callback = &Connection::readBody;
    nghttp2_submit_response(session_, id, nva.data(), nva.size(),
                            s.response_body.empty() ? nullptr : &provider);
    if (s.status == "202") {
      const std::int64_t now = monotonicNs();
      ++totals_.accepted;
      totals_.last_accepted_ns = now;
      if (const std::int64_t seq = benchSeq(s.body); seq >= 0) {
        totals_.seq_times.emplace_back(static_cast<std::uint64_t>(seq), now);
      } else {
        std::cerr << "mb-bench-graph: no X-Bench-Seq in a sendMail of " << s.body.size()
                  << " bytes: " << s.body.substr(0, 120) << "\n";
      }
    }
    if (send) flush();
  }

  void handle(std::int32_t id) {
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    Stream& s = it->second;
    ++totals_.requests;
    if (totals_.first_request_ns == 0) totals_.first_request_ns = monotonicNs();
    s.request_id = "bench-" + std::to_string(totals_.requests);
    const std::string_view path = s.path;
    if (s.method == "POST" && path.find("/oauth2/v2.0/token") != std::string_view::npos) {
      ++totals_.tokens;
      s.status = "200";
      s.response_body =
          R"({"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"bench-token-)" +
          std::to_string(totals_.tokens) + R"("})";
      respond(id, false);
      return;
    }
    if (s.method == "POST" && path.starts_with("/v1.0/users/") && path.ends_with("/sendMail")) {
      s.status = "202";
      if (settings_.latency.count() == 0) {
        respond(id, false);
        return;
      }
      auto timer = std::make_shared<asio::steady_timer>(timer_executor_, settings_.latency);
      timer->async_wait([self = shared_from_this(), timer, id](const boost::system::error_code&) {
        self->respond(id, true);
      });
      return;
    }
    ++totals_.other;
    s.status = "404";
    s.response_body = R"({"error":{"code":"NotFound","message":"not in this fake"}})";
    respond(id, false);
  }

  static Connection& self(void* user) { return *static_cast<Connection*>(user); }

  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      self(user).streams_[frame->hd.stream_id];
    }
    return 0;
  }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto it = self(user).streams_.find(frame->hd.stream_id);
    if (it == self(user).streams_.end()) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":method") it->second.method = v;
    if (n == ":path") it->second.path = v;
    return 0;
  }

  static int onData(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                    void* user) {
    auto it = self(user).streams_.find(stream_id);
    if (it != self(user).streams_.end() && it->second.body.size() < (8 << 20)) {
      it->second.body.append(reinterpret_cast<const char*>(data), len);
    }
    return 0;
  }

  static int onInvalidFrame(nghttp2_session*, const nghttp2_frame* frame, int error, void*) {
    std::cerr << "mb-bench-graph: invalid frame of type " << int{frame->hd.type} << " on stream "
              << frame->hd.stream_id << ": " << nghttp2_strerror(error) << "\n";
    return 0;
  }

  static int onFrame(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_RST_STREAM) ++self(user).resets_;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      std::cerr << "mb-bench-graph: GOAWAY from the client, error " << frame->goaway.error_code
                << ": "
                << std::string_view(reinterpret_cast<const char*>(frame->goaway.opaque_data),
                                    frame->goaway.opaque_data_len)
                << "\n";
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
      self(user).handle(frame->hd.stream_id);
    }
    return 0;
  }

  static int onError(nghttp2_session*, int code, const char* msg, size_t len, void*) {
    std::cerr << "mb-bench-graph: HTTP/2 error " << code << ": " << std::string_view(msg, len)
              << "\n";
    return 0;
  }

  static int onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
    self(user).streams_.erase(stream_id);
    return 0;
  }

  static ssize_t readBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    auto& s = *static_cast<Stream*>(source->ptr);
    const std::size_t n = std::min(length, s.response_body.size() - s.sent);
    std::memcpy(buf, s.response_body.data() + s.sent, n);
    s.sent += n;
    if (s.sent == s.response_body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  ssl::stream<tcp::socket> stream_;
  asio::any_io_executor timer_executor_;
  const Settings& settings_;
  Totals& totals_;
  nghttp2_session* session_ = nullptr;
  std::map<std::int32_t, Stream> streams_;
  std::array<char, 64 * 1024> in_{};
  std::string out_;
  bool writing_ = false;
  bool ended_ = false;
  std::uint64_t resets_ = 0;
};

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (nghttp2_select_next_protocol(&selected, outlen, in, inlen) != 1) return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

void accept(tcp::acceptor& acceptor, ssl::context& tls, const Settings& settings, Totals& totals) {
  acceptor.async_accept([&](const boost::system::error_code& ec, tcp::socket socket) {
    if (!ec) std::make_shared<Connection>(std::move(socket), tls, settings, totals)->start();
    if (acceptor.is_open()) accept(acceptor, tls, settings, totals);
  });
}

int usage() {
  std::cerr
      << "usage: mb-bench-graph --cert PEM --key PEM [--port N] [--latency-ms N] [--record FILE]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cert, key, record;
  unsigned short port = 0;
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string v = argv[++i];
    if (a == "--cert") {
      cert = v;
    } else if (a == "--key") {
      key = v;
    } else if (a == "--record") {
      record = v;
    } else if (a == "--port") {
      port = static_cast<unsigned short>(std::stoul(v));
    } else if (a == "--latency-ms") {
      settings.latency = std::chrono::milliseconds(std::stol(v));
    } else {
      return usage();
    }
  }
  if (cert.empty() || key.empty()) return usage();

  asio::io_context io(1);
  ssl::context tls(ssl::context::tls_server);
  tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  tls.use_certificate_chain_file(cert, ec);
  if (!ec) tls.use_private_key_file(key, ssl::context::pem, ec);
  if (ec) {
    std::cerr << "mb-bench-graph: " << cert << " / " << key << ": " << ec.message() << "\n";
    return 1;
  }
  SSL_CTX_set_alpn_select_cb(tls.native_handle(), &selectAlpn, nullptr);

  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  Totals totals;
  accept(acceptor, tls, settings, totals);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    acceptor.close();
    io.stop();
  });
  std::cout << "listening on 127.0.0.1:" << acceptor.local_endpoint().port() << std::endl;
  // Progress for the benchmark, at most every 50 ms: "accepted N".
  asio::steady_timer ticker(io);
  std::uint64_t reported = 0;
  std::function<void()> tick = [&] {
    ticker.expires_after(std::chrono::milliseconds(50));
    ticker.async_wait([&](const boost::system::error_code& error) {
      if (error) return;
      if (totals.accepted != reported) {
        reported = totals.accepted;
        std::cout << "accepted " << reported << std::endl;
      }
      tick();
    });
  };
  tick();
  io.run();

  if (!record.empty()) {
    std::ofstream out(record);
    for (const auto& [seq, ns] : totals.seq_times) out << seq << ' ' << ns << '\n';
  }
  std::cout << "{\"connections\": " << totals.connections << ", \"requests\": " << totals.requests
            << ", \"tokens\": " << totals.tokens << ", \"accepted\": " << totals.accepted
            << ", \"other\": " << totals.other
            << ", \"first_request_ns\": " << totals.first_request_ns
            << ", \"last_accepted_ns\": " << totals.last_accepted_ns << "}" << std::endl;
  return 0;
}
