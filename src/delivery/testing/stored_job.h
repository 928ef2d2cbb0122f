#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "queue/delivery_agent.h"

namespace mb::delivery::testing {

/// Bytes that stand for what the spool keeps after a message in the same
/// file (its envelope), for storedJob()'s `trailer`: a provider that sends
/// any of them read past envelope.size.
inline const std::string kTrailer = "\n{\"trailer\":\"MUST-NOT-LEAK\"}\nMBENV";

/// A delivery job for provider unit tests: `content` stored as
/// `<dir>/m<n>`, followed by `trailer` (what the spool keeps after the
/// message, such as the serialized envelope), envelope.size set to the
/// size of `content`; queue id "Q<n>", every recipient pending.
inline queue::DeliveryJob storedJob(const std::filesystem::path& dir, int n, const std::string& content,
                                    const std::vector<std::string>& recipients, const std::string& sender,
                                    const std::string& trailer = "") {
  const auto path = dir / ("m" + std::to_string(n));
  std::ofstream(path, std::ios::binary) << content << trailer;
  queue::DeliveryJob job;
  job.envelope.id = "Q" + std::to_string(n);
  job.envelope.sender = sender;
  job.envelope.size = content.size();
  for (const auto& r : recipients) {
    queue::RecipientEntry e;
    e.address = r;
    job.envelope.recipients.push_back(e);
    job.recipients.push_back(job.recipients.size());
  }
  job.content = path;
  return job;
}

}  // namespace mb::delivery::testing
