#include "delivery/router.h"

#include <utility>

namespace mb::delivery {

Router::Router(std::vector<std::unique_ptr<Provider>> providers) : providers_(std::move(providers)) {}

void Router::deliver(const queue::DeliveryJob& job, DoneCallback done) {
  if (providers_.empty()) {
    // Temporary, not permanent: configuring a provider and restarting should
    // let the queued mail go out rather than bounce it.
    queue::DeliveryResult result;
    queue::RecipientResult r;
    r.outcome = queue::Outcome::TemporaryFailure;
    r.smtp_code = 451;
    r.enhanced = "4.3.0";
    r.detail = "no provider configured";
    result.results.assign(job.recipients.size(), r);
    done(std::move(result));
    return;
  }
  Provider& provider = *providers_.front();
  // The queue logs which provider handled an attempt; providers need not
  // remember to say so themselves.
  provider.deliver(job, [name = provider.name(), done = std::move(done)](queue::DeliveryResult result) {
    if (result.provider.empty()) result.provider = name;
    done(std::move(result));
  });
}

}  // namespace mb::delivery
