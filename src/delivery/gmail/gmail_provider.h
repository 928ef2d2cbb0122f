#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/worker_pool.h"
#include "config/config.h"
#include "delivery/provider.h"

namespace mb::http {
class HttpClient;
}
namespace mb::oauth {
class TokenSource;
}

namespace mb::delivery::gmail {

/// GmailProvider: delivers through the Gmail API (`type: gmail`) as a
/// service account with domain-wide delegation that acts as the sending
/// user (the sending mailbox, as for Graph: envelope.sendingMailbox(), else
/// the From header's address for the null sender). The header is first made
/// to name exactly the envelope's recipients (mime::rewriteRecipients): Gmail
/// sends to To, Cc and Bcc. Messages up to kMaxRawBytes go as JSON
/// {"raw": base64url} to users/{user}/messages/send; larger ones, up to
/// kMaxMessageBytes (35 MB), as a media upload (message/rfc822) streamed
/// from the spool, or from a scratch copy when the header changed; beyond it
/// a permanent 552 5.3.4 before any upload. Errors are classified by
/// gmail_error.h; a 401 refreshes the token once (BearerCaller); a token
/// that cannot be had for this user (not in the domain, delegation missing)
/// fails the message.
///
/// Threading: deliver() queues the attempt on the provider's worker pool;
/// done is called on a worker.
class GmailProvider final : public Provider {
 public:
  /// The Gmail API's limit for a message (35 MB).
  static constexpr std::uint64_t kMaxMessageBytes = 36'700'160;
  /// Up to this, the message goes base64url inside JSON; above, as a media
  /// upload (Google suggests simple uploads up to 5 MB).
  static constexpr std::uint64_t kMaxRawBytes = 5ull * 1024 * 1024;

  /// The token source for one sending user (the service account acting as
  /// that user); nullptr when none can be made.
  using TokenSelector = std::function<std::shared_ptr<oauth::TokenSource>(const std::string& user)>;

  GmailProvider(config::ProviderConfig config, http::HttpClient& http, TokenSelector tokens,
                std::filesystem::path scratch_dir, const Clock& clock, std::size_t threads);
  ~GmailProvider() override;

  // Provider
  const std::string& name() const override { return config_.name; }
  void deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) override;

  /// One attempt, on the calling thread (what the pool runs; for tests).
  queue::DeliveryResult attempt(const queue::DeliveryJob& job);

 private:
  const config::ProviderConfig config_;
  http::HttpClient& http_;
  const TokenSelector tokens_;
  const std::filesystem::path scratch_dir_;
  const Clock& clock_;
  WorkerPool pool_;
};

}  // namespace mb::delivery::gmail
