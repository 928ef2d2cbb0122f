#include "delivery/results.h"

#include <memory>

#include "base/worker_pool.h"

namespace mb::delivery {

using queue::Outcome;
using queue::RecipientResult;

RecipientResult temporaryFailure(std::string detail, const char* enhanced) {
  RecipientResult r;
  r.outcome = Outcome::TemporaryFailure;
  r.smtp_code = 451;
  r.enhanced = enhanced;
  r.detail = std::move(detail);
  return r;
}

RecipientResult permanentFailure(int code, const char* enhanced, std::string summary, std::string detail) {
  RecipientResult r;
  r.outcome = Outcome::PermanentFailure;
  r.smtp_code = code;
  r.enhanced = enhanced;
  r.summary = std::move(summary);
  r.detail = std::move(detail);
  return r;
}

queue::DeliveryResult sameForAll(const queue::DeliveryJob& job, const std::string& provider,
                                 const RecipientResult& result) {
  queue::DeliveryResult out;
  out.provider = provider;
  out.results.assign(job.recipients.size(), result);
  return out;
}

void deliverOnPool(WorkerPool& pool, const std::string& provider, const queue::DeliveryJob& job,
                   queue::DeliveryAgent::DoneCallback done,
                   std::function<queue::DeliveryResult(const queue::DeliveryJob&)> attempt) {
  auto shared_done = std::make_shared<queue::DeliveryAgent::DoneCallback>(std::move(done));
  const bool queued = pool.submit([job, shared_done, attempt = std::move(attempt)] { (*shared_done)(attempt(job)); });
  if (!queued) (*shared_done)(sameForAll(job, provider, temporaryFailure("provider " + provider + " is stopping")));
}

}  // namespace mb::delivery
