#pragma once

// Internal to src/config: included only by the config module's .cpp files, so
// that yaml-cpp stays out of the headers other modules include.

#include <yaml-cpp/yaml.h>

#include <array>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"
#include "config/secret.h"

namespace mb::config {

/// LoadContext: the state of one configuration load — the file name for
/// messages, the directory that relative paths are resolved against, and the
/// issues found so far. The loader and resolveSecret() both report through it,
/// so that every problem is collected before ConfigError is thrown.
/// Single-threaded; lives for one load.
class LoadContext {
 public:
  LoadContext(std::string file, std::filesystem::path base_dir);

  /// Records an issue at a yaml-cpp position (0-based; stored 1-based). A
  /// null mark gives line 0.
  void add(const YAML::Mark& at, std::string key, std::string message);
  void add(const YAML::Node& at, std::string key, std::string message) {
    add(at.Mark(), std::move(key), std::move(message));
  }
  /// An issue with the file as a whole (line 0), e.g. a missing section.
  void addFileIssue(std::string key, std::string message);
  /// Issues found in another file this one refers to (auth.users_file),
  /// read with a LoadContext of its own; they keep their file name.
  void addIssues(std::vector<ConfigIssue> issues);

  /// `p` if absolute, else base_dir/p; lexically normal, without a trailing
  /// separator.
  std::filesystem::path resolvePath(const std::filesystem::path& p) const;

  /// See LoadOptions::read_secrets.
  bool readSecrets() const { return read_secrets_; }
  void setReadSecrets(bool read) { read_secrets_ = read; }

  const std::string& file() const { return file_; }
  const std::filesystem::path& baseDir() const { return base_dir_; }
  bool hasIssues() const { return !issues_.empty(); }
  const std::vector<ConfigIssue>& issues() const { return issues_; }

  /// The issues in file order (line, then column; line 0 first), this
  /// file's first, then those of each file added with addIssues().
  std::vector<ConfigIssue> takeIssues();

 private:
  std::string file_;
  std::filesystem::path base_dir_;
  bool read_secrets_ = true;
  std::vector<ConfigIssue> issues_;
};

/// "smtp" + "max_message_size" -> "smtp.max_message_size"; "" + "smtp" -> "smtp".
std::string joinKey(std::string_view path, std::string_view key);

/// Where to point an issue about a map entry: the value, unless it is an
/// implicit null (whose mark yaml-cpp puts at the next token), then the key.
YAML::Mark entryMark(const YAML::Node& key, const YAML::Node& value);

/// The keys under which a secret called `key` may be given: key, key_file,
/// key_credential. A map that holds a secret must accept all three.
std::array<std::string, 3> secretKeyNames(std::string_view key);

/// Reads the secret `key` from `map` (whose dotted path is `path`), in
/// exactly one of these spellings:
///   key: value              inline
///   key: ${ENV_NAME}        the whole value names an environment variable
///   key_file: /path         file contents, one trailing newline removed;
///                           relative paths against ctx.baseDir()
///   key_credential: NAME    $CREDENTIALS_DIRECTORY/NAME (systemd
///                           LoadCredential=), one trailing newline removed
/// Problems (none given while `required`, two given, a missing variable,
/// file or credential directory, an empty value) become issues in `ctx` and
/// the result is empty. No issue ever contains the value. Does not check for
/// unknown keys: the caller's key check does that, with secretKeyNames().
std::optional<Secret> resolveSecret(LoadContext& ctx, const YAML::Node& map, std::string_view path,
                                    std::string_view key, bool required = true);

}  // namespace mb::config
