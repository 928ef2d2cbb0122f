#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "queue/delivery_agent.h"

namespace mb::cli {

/// ProviderCommands: the administrator's checks of a `type: graph` provider.
///
///   mailbridge check-provider NAME --config FILE [--sender ADDRESS]
///     diagnoses the provider without sending (token, permissions, the
///     sender's mailbox, credential expiry; delivery/graph/graph_diagnostics.h),
///     one "ok:" / "warn:" / "FAIL:" line per finding.
///   mailbridge test-send --provider NAME --from A --to B --config FILE [--subject S]
///     sends one small test message through the provider, printing each step.
///
/// Both build the HTTP client and token source as the daemon does
/// (delivery/graph/graph_setup.h) and never print a secret or a token.
/// Exit codes: 0 all well (no FAIL / delivered), 1 a FAIL or the message was
/// refused or failed, 2 usage or configuration error.
class ProviderCommands {
 public:
  static constexpr int kOk = 0;
  static constexpr int kFailed = 1;
  static constexpr int kUsage = 2;

  explicit ProviderCommands(CLI::App& parent);
  ProviderCommands(const ProviderCommands&) = delete;
  ProviderCommands& operator=(const ProviderCommands&) = delete;

  bool parsed() const { return check_->parsed() || send_->parsed(); }
  int run();

 private:
  int checkProvider();
  int testSend();
  int printResult(const queue::DeliveryResult& result);

  CLI::App* check_ = nullptr;
  CLI::App* send_ = nullptr;
  std::string provider_;
  std::string config_path_;
  std::string sender_;
  std::string from_;
  std::string to_;
  std::string subject_ = "Mailbridge test message";
};

}  // namespace mb::cli
