#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "base/worker_pool.h"
#include "config/config.h"
#include "delivery/graph/draft_send.h"
#include "delivery/provider.h"

namespace mb::http {
class HttpClient;
}
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
/// Threading: deliver() queues the attempt on the provider's own worker
/// pool (the HTTP calls block) and returns; done is called on a worker.
class GraphProvider final : public Provider {
 public:
  /// Largest message sent with sendMail: base64 of it must fit in 4 MB.
  static constexpr std::uint64_t kMaxSendMailBytes = kMaxMimeRequestBytes;

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

  /// One attempt, on the calling thread (what the pool runs; for tests).
  queue::DeliveryResult attempt(const queue::DeliveryJob& job);

  /// How long to wait before repeating a failed upload chunk (tests: 0).
  void setUploadRetryDelay(std::chrono::milliseconds delay) { upload_retry_delay_ = delay; }

 private:
  const config::ProviderConfig config_;
  http::HttpClient& http_;
  const TokenSelector tokens_;
  const std::filesystem::path scratch_dir_;
  std::chrono::milliseconds upload_retry_delay_{1000};
  WorkerPool pool_;
};

}  // namespace mb::delivery::graph
