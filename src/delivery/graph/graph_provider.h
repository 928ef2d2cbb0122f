#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/worker_pool.h"
#include "config/config.h"
#include "delivery/graph/draft_send.h"
#include "delivery/provider.h"
#include "http/http_client.h"

namespace mb::oauth {
class TokenSource;
}

namespace mb::delivery::graph {

/// GraphProvider: delivers through Microsoft Graph (`type: graph`), app-only.
/// Messages up to about 3 MB: POST {graph}/v1.0/users/{sender}/sendMail with
/// the message as base64 MIME (Content-Type: text/plain), so its bytes
/// travel as they are — after the header is made to name exactly the
/// envelope's recipients (mime::rewriteRecipients: Graph takes recipients
/// from To/Cc/Bcc and has no envelope). Larger messages, up to 150 MB, and
/// every message with `save_to_sent: false` go through a draft, attachments
/// and upload sessions (draft_send.h). 202 is success for every recipient;
/// errors are classified by classify() (graph_error.h). A 401 drops the
/// cached token, fetches a new one and retries once (graph_call.h). The
/// sender mailbox is the envelope sender (after the SMTP sender rules),
/// else the From header's address.
///
/// Threading: a message of up to kMaxStartedBytes sent with sendMail while
/// the token source holds a fresh token is prepared on the caller's thread
/// and sent without blocking (HttpClient::start); done is then called on the
/// provider's completion thread when every recipient was delivered and on a
/// worker otherwise. Everything else — a token to fetch, a draft, a 401 or
/// a broken connection to answer with a second request — runs as one
/// blocking attempt on the provider's own worker pool, and done is called
/// there. deliver() returns at once either way.
class GraphProvider final : public Provider {
 public:
  /// Largest message sent with sendMail: base64 of it must fit in 4 MB.
  static constexpr std::uint64_t kMaxSendMailBytes = kMaxMimeRequestBytes;
  /// Largest message prepared on deliver()'s caller (the queue's thread):
  /// reading and encoding it takes well under a millisecond. Larger ones
  /// are prepared on a worker.
  static constexpr std::uint64_t kMaxStartedBytes = 256 * 1024;

  /// `scratch_dir` holds decoded attachments while they are uploaded (one
  /// at a time per attempt, deleted after); it must exist.
  GraphProvider(config::ProviderConfig config, http::HttpClient& http,
                std::shared_ptr<oauth::TokenSource> tokens, std::filesystem::path scratch_dir,
                std::size_t threads);

  /// The token source for one message: per SMTP AUTH user with
  /// `auth_mode: user_password`. nullptr fails the message permanently (no
  /// user to send for).
  using TokenSelector = std::function<std::shared_ptr<oauth::TokenSource>(const queue::Envelope&)>;
  GraphProvider(config::ProviderConfig config, http::HttpClient& http, TokenSelector tokens,
                std::filesystem::path scratch_dir, std::size_t threads);
  ~GraphProvider() override;  // finishes the attempts already started

  // Provider
  const std::string& name() const override { return config_.name; }
  void deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) override;

  /// One blocking attempt, on the calling thread (what the pool runs; for
  /// tests).
  queue::DeliveryResult attempt(const queue::DeliveryJob& job);

  /// How long to wait before repeating a failed upload chunk (tests: 0).
  void setUploadRetryDelay(std::chrono::milliseconds delay) { upload_retry_delay_ = delay; }

 private:
  // A message made ready to send: with the sendMail request (no
  // Authorization yet) when it goes that way, else for a draft.
  struct Prepared {
    std::vector<std::string> recipients;
    mime::ContentFile content;
    std::string sender;
    std::shared_ptr<oauth::TokenSource> tokens;
    std::optional<http::Request> send_mail;
  };
  // Prepared, or what the attempt came to without a request.
  using Plan = std::variant<queue::DeliveryResult, Prepared>;

  Plan prepare(const queue::DeliveryJob& job, const std::shared_ptr<oauth::TokenSource>& tokens);
  queue::DeliveryResult sendMailResult(const queue::DeliveryJob& job, const http::Response& resp,
                                       const std::string& sender) const;
  // The attempt on a worker; the flags: a request sent without blocking
  // already took the retry for a 401 or a broken connection.
  void toPool(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done, bool token_refused = false,
              bool connection_lost = false);
  queue::DeliveryResult attempt(const queue::DeliveryJob& job, bool token_refused, bool connection_lost);
  void finishOn(WorkerPool& pool, queue::DeliveryAgent::DoneCallback done, queue::DeliveryResult result);
  void startSendMail(const queue::DeliveryJob& job, Prepared ready, const std::string& token,
                     queue::DeliveryAgent::DoneCallback done);
  void onSendMailDone(const queue::DeliveryJob& job, const Prepared& ready, const std::string& token,
                      http::Outcome out, queue::DeliveryAgent::DoneCallback done);

  const config::ProviderConfig config_;
  http::HttpClient& http_;
  const TokenSelector tokens_;
  const std::filesystem::path scratch_dir_;
  std::chrono::milliseconds upload_retry_delay_{1000};
  std::mutex started_mutex_;
  std::condition_variable started_done_;
  std::size_t started_ = 0;  // requests sent with start() whose completion has not finished
  WorkerPool pool_;
  // Reports the deliveries of requests sent with start(); see onSendMailDone.
  WorkerPool completions_{1, WorkerPool::kUnbounded, "mb-graph-done"};
};

}  // namespace mb::delivery::graph
