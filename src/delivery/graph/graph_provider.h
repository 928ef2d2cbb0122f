#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/worker_pool.h"
#include "config/config.h"
#include "delivery/provider.h"

namespace mb::http {
class HttpClient;
}
namespace mb::oauth {
class TokenSource;
}

namespace mb::delivery::graph {

/// GraphProvider: delivers through Microsoft Graph (`type: graph`), app-only:
/// POST {graph}/v1.0/users/{sender}/sendMail with the message as base64 MIME
/// (Content-Type: text/plain), so its bytes travel as they are — after the
/// header is made to name exactly the envelope's recipients
/// (mime::rewriteRecipients: Graph takes recipients from To/Cc/Bcc and has
/// no envelope). 202 is success for every recipient; errors are classified
/// by classify() (graph_error.h). A 401 drops the cached token, fetches a new
/// one and retries once. The sender mailbox is the envelope sender (after
/// the SMTP sender rules), else the From header's address.
///
/// sendMail takes at most 4 MB of request, so about 3 MB of MIME; larger
/// messages need Graph's draft and upload-session path, which this provider
/// does not have yet: they fail with 552 5.3.4 and a log line that says so.
///
/// Threading: deliver() queues the attempt on the provider's own worker
/// pool (the HTTP calls block) and returns; done is called on a worker.
class GraphProvider final : public Provider {
 public:
  /// Largest message sent with sendMail: base64 of it must fit in 4 MB.
  static constexpr std::uint64_t kMaxSendMailBytes = 4ull * 1024 * 1024 / 4 * 3;

  GraphProvider(config::ProviderConfig config, http::HttpClient& http,
                std::shared_ptr<oauth::TokenSource> tokens, std::size_t threads);
  ~GraphProvider() override;  // finishes the attempts already started

  // Provider
  const std::string& name() const override { return config_.name; }
  void deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) override;

  /// One attempt, on the calling thread (what the pool runs; for tests).
  queue::DeliveryResult attempt(const queue::DeliveryJob& job);

 private:
  const config::ProviderConfig config_;
  http::HttpClient& http_;
  std::shared_ptr<oauth::TokenSource> tokens_;
  WorkerPool pool_;
};

}  // namespace mb::delivery::graph
