#include "http/curl_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/text.h"
#include "base/worker_pool.h"

namespace mb::http {
namespace {

std::once_flag g_curl_init;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

// One transfer: the easy handle and everything its callbacks write into.
struct Transfer {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  const Request* request = nullptr;  // the caller's (perform) or `owned` (start)
  std::optional<Request> owned;
  std::size_t max_body = 0;
  Response response;
  bool body_too_big = false;
  // Streamed request body (PUT, or POST from a file).
  std::FILE* file = nullptr;
  std::uint64_t remaining = 0;
  std::size_t memory_pos = 0;
  char error[CURL_ERROR_SIZE] = {};
  HttpClient::Completion done;  // called once, on the loop thread

  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (headers != nullptr) curl_slist_free_all(headers);
    if (file != nullptr) std::fclose(file);
  }
};

class CurlClient::Impl {
 public:
  explicit Impl(Options options) : options_(std::move(options)) {
    std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    multi_ = curl_multi_init();
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS,
                      static_cast<long>(std::max<std::size_t>(1, options_.max_connections_per_host)));
    curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    thread_ = std::thread([this] {
      nameThisThread("mb-http");
      loop();
    });
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    curl_multi_wakeup(multi_);
    thread_.join();
    curl_multi_cleanup(multi_);
  }

  Outcome perform(const Request& request) {
    auto t = std::make_unique<Transfer>();
    t->request = &request;
    // Shared with the completion: the waiter may return (and its frame go)
    // while set_value() is still finishing on the loop thread.
    auto promise = std::make_shared<std::promise<Outcome>>();
    auto result = promise->get_future();
    t->done = [promise](Outcome out) { promise->set_value(std::move(out)); };
    submit(std::move(t));
    return result.get();
  }

  void start(Request request, HttpClient::Completion done) {
    auto t = std::make_unique<Transfer>();
    t->owned = std::move(request);
    t->request = &*t->owned;
    t->done = std::move(done);
    submit(std::move(t));
  }

 private:
  // Hands `t` to the loop thread, or fails it at once (a set-up problem,
  // the client stopping) by calling its completion here.
  void submit(std::unique_ptr<Transfer> t) {
    t->max_body = options_.max_response_body;
    if (auto problem = setUp(*t); !problem.empty()) {
      t->done(TransportError{problem, false});
      return;
    }
    bool queued = false;
    {
      std::lock_guard lock(mutex_);
      if (!stopping_) {
        incoming_.push_back(std::move(t));
        queued = true;
      }
    }
    if (!queued) {
      t->done(TransportError{"HTTP client stopped", false});
      return;
    }
    curl_multi_wakeup(multi_);
  }

  // Configures the easy handle; a non-empty return is why it cannot be sent.
  std::string setUp(Transfer& t) {
    const Request& r = *t.request;
    t.easy = curl_easy_init();
    if (t.easy == nullptr) return "cannot create a libcurl handle";
    CURL* e = t.easy;
    curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    // Wait for a connection that is being set up to multiplex on it rather
    // than open one more per request of a burst: one HTTP/2 connection
    // carries all of them.
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout.count()));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(e, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  // whatever libcurl can decode
    if (!options_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (!options_.proxy.empty()) curl_easy_setopt(e, CURLOPT_PROXY, options_.proxy.c_str());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::onBody);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::onHeader);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &t);

    bool streamed = false;
    std::uint64_t length = r.body.size();
    if (!r.body_file.empty()) {
      t.file = std::fopen(r.body_file.c_str(), "rb");
      if (t.file == nullptr) return "open " + r.body_file.string() + ": " + std::strerror(errno);
      if (::fseeko(t.file, static_cast<off_t>(r.body_offset), SEEK_SET) != 0) {
        return "seek " + r.body_file.string() + ": " + std::strerror(errno);
      }
      streamed = true;
      length = r.body_length;
    }
    t.remaining = length;

    if (r.method == "GET") {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if ((r.method == "POST" || r.method == "PATCH") && !streamed) {
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      if (r.method == "PATCH") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PATCH");
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    } else if (r.method == "POST") {
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(length));
      curl_easy_setopt(e, CURLOPT_READFUNCTION, &Impl::onRead);
      curl_easy_setopt(e, CURLOPT_READDATA, &t);
    } else if (r.method == "PUT") {
      curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(length));
      curl_easy_setopt(e, CURLOPT_READFUNCTION, &Impl::onRead);
      curl_easy_setopt(e, CURLOPT_READDATA, &t);
    } else if (r.method == "DELETE") {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
      return "unsupported HTTP method " + r.method;
    }

    for (const auto& [name, value] : r.headers) {
      const std::string line = name + ": " + value;
      t.headers = curl_slist_append(t.headers, line.c_str());
    }
    // No "Expect: 100-continue" round trip before a body.
    t.headers = curl_slist_append(t.headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers);
    return {};
  }

  static std::size_t onBody(char* data, std::size_t size, std::size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const std::size_t bytes = size * n;
    if (t.response.body.size() + bytes > t.max_body) {
      t.body_too_big = true;
      return 0;  // aborts the transfer
    }
    t.response.body.append(data, bytes);
    return bytes;
  }

  static std::size_t onHeader(char* data, std::size_t size, std::size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const std::size_t bytes = size * n;
    const std::string_view line(data, bytes);
    if (line.rfind("HTTP/", 0) == 0) {
      // A new status line (after 100 Continue, say): only the last
      // response's headers count.
      t.response.headers.clear();
    } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
      t.response.headers.emplace_back(std::string(trim(line.substr(0, colon))),
                                      std::string(trim(line.substr(colon + 1))));
    }
    return bytes;
  }

  static std::size_t onRead(char* buffer, std::size_t size, std::size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(size * n, t.remaining));
    if (want == 0) return 0;
    std::size_t got = 0;
    if (t.file != nullptr) {
      got = std::fread(buffer, 1, want, t.file);
      if (got == 0) return CURL_READFUNC_ABORT;  // the file shrank or failed
    } else {
      const std::string& body = t.request->body;
      got = std::min(want, body.size() - t.memory_pos);
      std::memcpy(buffer, body.data() + t.memory_pos, got);
      t.memory_pos += got;
    }
    t.remaining -= got;
    return got;
  }

  void finish(Transfer* t, CURLcode code) {
    std::unique_ptr<Transfer> owned = std::move(running_.at(t));
    running_.erase(t);
    curl_multi_remove_handle(multi_, t->easy);
    if (code == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
      t->response.status = status;
      t->done(std::move(t->response));
      return;
    }
    TransportError err;
    err.timeout = code == CURLE_OPERATION_TIMEDOUT;
    err.connection_lost = code == CURLE_HTTP2 || code == CURLE_HTTP2_STREAM || code == CURLE_SEND_ERROR ||
                          code == CURLE_RECV_ERROR || code == CURLE_GOT_NOTHING;
    if (t->body_too_big) {
      err.message = "response body larger than " + std::to_string(t->max_body) + " bytes";
    } else {
      err.message = t->error[0] != '\0' ? std::string(t->error) : std::string(curl_easy_strerror(code));
    }
    t->done(std::move(err));
  }

  void loop() {
    for (;;) {
      std::deque<std::unique_ptr<Transfer>> incoming;
      bool stopping = false;
      {
        std::lock_guard lock(mutex_);
        incoming.swap(incoming_);
        stopping = stopping_;
      }
      for (auto& t : incoming) {
        Transfer* raw = t.get();
        if (CURLMcode mc = curl_multi_add_handle(multi_, raw->easy); mc != CURLM_OK) {
          raw->done(TransportError{curl_multi_strerror(mc), false});
          continue;
        }
        running_.emplace(raw, std::move(t));
      }
      if (stopping) break;
      int still = 0;
      curl_multi_perform(multi_, &still);
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
        if (msg->msg != CURLMSG_DONE) continue;
        void* priv = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        finish(static_cast<Transfer*>(priv), msg->data.result);
      }
      curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
    for (auto& [raw, t] : running_) {
      curl_multi_remove_handle(multi_, raw->easy);
      t->done(TransportError{"HTTP client stopped", false});
    }
    running_.clear();
    std::deque<std::unique_ptr<Transfer>> left;
    {
      std::lock_guard lock(mutex_);
      left.swap(incoming_);
    }
    for (auto& t : left) t->done(TransportError{"HTTP client stopped", false});
  }

  const Options options_;
  CURLM* multi_ = nullptr;
  std::mutex mutex_;
  std::deque<std::unique_ptr<Transfer>> incoming_;  // mutex_
  bool stopping_ = false;                            // mutex_
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> running_;  // loop thread only
  std::thread thread_;
};

CurlClient::CurlClient(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
CurlClient::~CurlClient() = default;

Outcome CurlClient::perform(const Request& request) { return impl_->perform(request); }

void CurlClient::start(Request request, Completion done) { impl_->start(std::move(request), std::move(done)); }

}  // namespace mb::http
