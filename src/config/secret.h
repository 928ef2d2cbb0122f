#pragma once

#include <iosfwd>
#include <string>
#include <utility>

namespace mb::config {

/// Secret: a credential taken from the configuration (an OAuth client secret,
/// an admin password) that must never reach a log line, an error message or an
/// SMTP client. It has no stream operator and no conversion to string: the one
/// place that needs the value calls reveal(), and everything else uses
/// describe(), which says where the value came from but not what it is.
///
/// Built by the configuration loader (see config/yaml_support.h,
/// resolveSecret()) from one of four spellings, documented in
/// docs/configuration.md: inline, ${ENV_NAME}, KEY_file, KEY_credential.
/// An immutable value type: safe to read from any thread once built.
class Secret {
 public:
  /// Where the value came from; `origin` below names the file, variable or
  /// credential.
  enum class Source { Inline, File, Environment, Credential };

  Secret() = default;
  Secret(Source source, std::string origin, std::string value)
      : source_(source), origin_(std::move(origin)), value_(std::move(value)) {}

  /// The value itself. Pass it straight to the code that sends it (an HTTP
  /// form, a hash comparison); never format it.
  const std::string& reveal() const { return value_; }

  /// "inline", "file /run/x", "environment variable X",
  /// "systemd credential X" — safe for messages.
  std::string describe() const;

  Source source() const { return source_; }
  bool empty() const { return value_.empty(); }

  /// Deleted so that `log << secret` fails to compile with a clear message
  /// instead of finding some conversion.
  friend std::ostream& operator<<(std::ostream&, const Secret&) = delete;

  /// Same source and value: a reload can tell a changed secret.
  bool operator==(const Secret&) const = default;

 private:
  Source source_ = Source::Inline;
  std::string origin_;  // file path, variable or credential name; empty for inline
  std::string value_;
};

}  // namespace mb::config
