#pragma once

#include <functional>
#include <string>

#include "queue/delivery_agent.h"

namespace mb {
class WorkerPool;
}

namespace mb::delivery {

/// A temporary failure (451 and `enhanced`) with `detail` for the log.
queue::RecipientResult temporaryFailure(std::string detail, const char* enhanced = "4.3.0");

/// A permanent failure with its SMTP code, enhanced code, the few fixed
/// words an SMTP client may see (`summary`) and `detail` for the log.
queue::RecipientResult permanentFailure(int code, const char* enhanced, std::string summary, std::string detail);

/// The same result for every recipient of the attempt.
queue::DeliveryResult sameForAll(const queue::DeliveryJob& job, const std::string& provider,
                                 const queue::RecipientResult& result);

/// What providers whose attempts block (HTTP APIs) do in deliver(): run
/// `attempt` on `pool` and hand its result to `done`; when the pool no
/// longer takes work (shutting down), `done` gets a temporary failure at
/// once.
void deliverOnPool(WorkerPool& pool, const std::string& provider, const queue::DeliveryJob& job,
                   queue::DeliveryAgent::DoneCallback done,
                   std::function<queue::DeliveryResult(const queue::DeliveryJob&)> attempt);

}  // namespace mb::delivery
