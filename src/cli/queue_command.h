#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "admin/control_protocol.h"

namespace mb::cli {

/// QueueCommand: `mailbridge queue list|show ID|retry ID|retry --all|hold ID|
/// release ID|delete ID|flush [--json] [--config FILE | --socket PATH]`.
///
/// Talks to the running daemon over its control socket
/// (`<server.state_dir>/control.sock`, see admin/control_server.h) and never
/// touches the spool itself. Prints the reply for people (formatting in
/// admin/control_protocol.h) or, with --json, as the daemon sent it.
/// Exit codes: 0 done, 1 the daemon said no (its reason on stderr), 2 usage
/// or configuration error, 3 the daemon cannot be reached.
class QueueCommand {
 public:
  static constexpr int kOk = 0;
  static constexpr int kRefused = 1;
  static constexpr int kUsage = 2;
  static constexpr int kUnreachable = 3;

  /// Adds the `queue` subcommand and its own subcommands to `parent`.
  explicit QueueCommand(CLI::App& parent);
  QueueCommand(const QueueCommand&) = delete;
  QueueCommand& operator=(const QueueCommand&) = delete;

  /// True when the command line named `queue`.
  bool parsed() const { return queue_->parsed(); }

  /// Runs what was parsed; returns the exit code.
  int run();

 private:
  CLI::App* queue_ = nullptr;
  CLI::App* list_ = nullptr;
  CLI::App* show_ = nullptr;
  CLI::App* retry_ = nullptr;
  CLI::App* hold_ = nullptr;
  CLI::App* release_ = nullptr;
  CLI::App* delete_ = nullptr;
  CLI::App* flush_ = nullptr;

  std::string id_;
  bool all_ = false;
  bool json_ = false;
  std::string config_path_;
  std::string socket_path_;
};

}  // namespace mb::cli
