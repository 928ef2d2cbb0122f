#pragma once

#include <string>

#include "queue/delivery_agent.h"

namespace mb::delivery {

/// Provider: one way out (outbox, Graph, Gmail, upstream SMTP). Gets a stored
/// message and the recipients still pending and returns a result per
/// recipient. Failures are temporary unless the provider knows better.
/// deliver() calls done exactly once, from any thread.
class Provider {
 public:
  virtual ~Provider() = default;
  virtual const std::string& name() const = 0;
  virtual void deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) = 0;
};

}  // namespace mb::delivery
