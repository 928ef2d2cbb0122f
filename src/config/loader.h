#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace mb::config {

/// One problem found in a configuration file: where, which key, what was
/// expected. Never holds a secret's value.
struct ConfigIssue {
  std::string file;
  int line = 0;        // 1-based; 0 when the file as a whole is at fault
  int column = 0;      // 1-based
  std::string key;     // dotted path, e.g. "listeners[0].address"
  std::string message; // e.g. "unknown key; did you mean 'max_message_size'?"

  /// "FILE:LINE:COLUMN: KEY: MESSAGE"; without ":LINE:COLUMN" when line is
  /// 0 and without "KEY: " when key is empty (a YAML syntax error).
  std::string format() const;
};

/// Thrown by the loader (start-up only) with every issue found, not just the
/// first. what() is all of them, one per line.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  const std::vector<ConfigIssue>& issues() const { return issues_; }

 private:
  std::vector<ConfigIssue> issues_;
};

/// How much a load reads besides the file itself.
struct LoadOptions {
  /// false: secret references (inline, _file, ${ENV}, _credential) and
  /// auth.users_file are checked for their form but not read, and secrets
  /// come back empty. For commands that need only paths from the file
  /// (`mailbridge queue`), run by someone who cannot read the service's
  /// secrets or outside its systemd credentials.
  bool read_secrets = true;
};

/// Reads, parses and validates a configuration file. Relative paths inside
/// it are resolved against the file's directory.
Config loadConfigFile(const std::filesystem::path& path, LoadOptions options = {});

/// Same for text already in memory; `name` is used in messages and
/// `base_dir` resolves relative paths.
Config loadConfigText(std::string_view yaml, std::string_view name,
                      const std::filesystem::path& base_dir, LoadOptions options = {});

}  // namespace mb::config
