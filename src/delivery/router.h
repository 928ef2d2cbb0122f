#pragma once

#include <memory>
#include <vector>

#include "delivery/provider.h"
#include "queue/delivery_agent.h"

namespace mb::delivery {

/// Router: chooses the provider for a delivery. The walking skeleton has one
/// route — the first configured provider; rules by sender, user, listener
/// and recipient domain come with multi-provider routing.
/// Threading: deliver() is thread-safe (providers are).
class Router final : public queue::DeliveryAgent {
 public:
  explicit Router(std::vector<std::unique_ptr<Provider>> providers);

  // queue::DeliveryAgent
  void deliver(const queue::DeliveryJob& job, DoneCallback done) override;

 private:
  std::vector<std::unique_ptr<Provider>> providers_;
};

}  // namespace mb::delivery
