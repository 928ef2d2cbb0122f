#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "delivery/provider.h"

namespace mb::delivery {

/// OutboxProvider: "delivers" by writing each message into a directory, as
/// `<queue-id>.eml` (the exact bytes received, our Received: header first)
/// with `<queue-id>.json` beside it (envelope sender and recipients). The
/// .json is written first and each file appears atomically (temporary file,
/// fsync, rename, directory fsync), so a watcher that sees an .eml can read
/// both. Delivering the same message again overwrites with identical files.
/// Any error is a temporary failure for every recipient (the directory may be
/// fixed later). Synchronous: done is called before deliver() returns.
class OutboxProvider final : public Provider {
 public:
  /// `refuse` ("user@domain" or "@domain", matched without regard to case):
  /// recipients answered 550 5.1.1 instead of written, so that an
  /// administrator can see how a device shows a refusal.
  OutboxProvider(std::string name, std::filesystem::path directory, std::vector<std::string> refuse = {});

  // Provider
  const std::string& name() const override { return name_; }
  void deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) override;

 private:
  std::string name_;
  std::filesystem::path directory_;
  std::vector<std::string> refuse_;
};

}  // namespace mb::delivery
