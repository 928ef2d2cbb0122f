#include "cli/control_client.h"

#include <chrono>
#include <exception>
#include <iostream>

#include "config/loader.h"

namespace mb::cli {

std::optional<std::filesystem::path> controlSocket(const std::string& command,
                                                   const std::string& config_path,
                                                   const std::string& socket_path) {
  if (!socket_path.empty()) return std::filesystem::path(socket_path);
  if (config_path.empty()) {
    std::cerr << command << ": give --config FILE (the daemon's configuration) or --socket PATH\n";
    return std::nullopt;
  }
  try {
    // Only the state directory is needed: secrets that live in the
    // service's systemd credentials or environment are not looked for.
    return config::loadConfigFile(config_path, {.read_secrets = false}).server.state_dir /
           "control.sock";
  } catch (const config::ConfigError& e) {
    for (const auto& issue : e.issues()) std::cerr << issue.format() << '\n';
    std::cerr << e.issues().size() << (e.issues().size() == 1 ? " error" : " errors")
              << " in the configuration (--socket PATH reaches the daemon without it)\n";
  } catch (const std::exception& e) {
    std::cerr << command << ": " << config_path << ": " << e.what() << '\n';
  }
  return std::nullopt;
}

std::int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace mb::cli
