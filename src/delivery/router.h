#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "delivery/provider.h"
#include "queue/delivery_agent.h"

namespace mb::delivery {

/// Router: chooses the provider for each delivery attempt. `choose` (app/
/// passes policy::RouteRules over `routes:`) names a provider, or nothing
/// for the default: the first configured provider.
/// Threading: deliver() is thread-safe (providers are, and `choose` must be).
class Router final : public queue::DeliveryAgent {
 public:
  using Chooser = std::function<std::string(const queue::DeliveryJob&)>;

  explicit Router(std::vector<std::unique_ptr<Provider>> providers, Chooser choose = {});

  // queue::DeliveryAgent
  void deliver(const queue::DeliveryJob& job, DoneCallback done) override;

 private:
  std::vector<std::unique_ptr<Provider>> providers_;
  Chooser choose_;
};

}  // namespace mb::delivery
