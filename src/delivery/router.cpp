#include "delivery/router.h"

#include <algorithm>
#include <utility>

#include "base/log.h"
#include "base/text.h"

namespace mb::delivery {

Router::Router(std::vector<std::unique_ptr<Provider>> providers, Chooser choose)
    : providers_(std::move(providers)), choose_(std::move(choose)) {}

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
  Provider* chosen = providers_.front().get();
  if (choose_) {
    const std::string name = choose_(job);
    if (!name.empty()) {
      const auto it = std::find_if(providers_.begin(), providers_.end(), [&](const auto& p) { return p->name() == name; });
      if (it != providers_.end()) {
        chosen = it->get();
      } else {
        spdlog::warn("{}: route names provider {}, which does not exist; using {}", job.envelope.id, printable(name),
                     chosen->name());
      }
    }
  }
  Provider& provider = *chosen;
  // The queue logs which provider handled an attempt; providers need not
  // remember to say so themselves.
  provider.deliver(job, [name = provider.name(), done = std::move(done)](queue::DeliveryResult result) {
    if (result.provider.empty()) result.provider = name;
    done(std::move(result));
  });
}

}  // namespace mb::delivery
