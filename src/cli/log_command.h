#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <string>

namespace mb::cli {

/// LogCommand: `mailbridge log search [FILTERS] [TEXT]`, `log show ID`,
/// `log rejected`, and `mailbridge status` — the mail log and the relay's
/// statistics, asked of the running daemon over its control socket (the
/// same requests the admin HTTP API answers; admin/api.h). Human output, or
/// with --json the daemon's reply as it was sent.
/// Exit codes as `queue`: 0 done, 1 the daemon said no, 2 usage or
/// configuration error, 3 the daemon cannot be reached.
class LogCommand {
 public:
  /// Adds `log` and `status` to `parent`.
  explicit LogCommand(CLI::App& parent);
  LogCommand(const LogCommand&) = delete;
  LogCommand& operator=(const LogCommand&) = delete;

  bool parsed() const { return log_->parsed() || status_->parsed(); }
  int run();

 private:
  CLI::App* log_ = nullptr;
  CLI::App* search_ = nullptr;
  CLI::App* show_ = nullptr;
  CLI::App* rejected_ = nullptr;
  CLI::App* status_ = nullptr;

  std::string id_;
  std::string since_, until_, sender_, recipient_, subject_, state_, text_;
  std::size_t limit_ = 0;
  std::size_t offset_ = 0;
  bool json_ = false;
  std::string config_path_;
  std::string socket_path_;
};

}  // namespace mb::cli
