#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mb::config {

/// The plain configuration structs, one per module. The YAML loader
/// (config/loader.h) fills them and validates every value, so that modules can
/// trust what they get. Documented key by key in docs/configuration.md; the
/// defaults here are the documented defaults.

/// `server:`
struct ServerConfig {
  std::string hostname;                 // default: the machine's host name
  std::filesystem::path state_dir = "/var/lib/mailbridge";
};

enum class TlsMode { None, StartTls, Implicit };
enum class AuthPolicy { None, Optional, Required };

/// One entry of `listeners:`.
struct ListenerConfig {
  std::string name;                     // default: the address text
  std::string host = "127.0.0.1";       // literal IPv4 / IPv6 address
  std::uint16_t port = 2525;            // 0 = any free port (tests)
  TlsMode tls = TlsMode::None;
  AuthPolicy auth = AuthPolicy::Optional;
};

enum class BareLfPolicy { Normalize, Reject };

/// `smtp:` — limits that apply to every listener.
struct SmtpConfig {
  std::uint64_t max_message_size = 25ull * 1024 * 1024;
  std::size_t max_recipients = 500;
  std::size_t max_connections = 100;
  std::chrono::seconds idle_timeout{300};   // RFC 5321 §4.5.3.2: 5 minutes
  std::chrono::seconds data_timeout{600};   // final dot
  BareLfPolicy bare_lf = BareLfPolicy::Normalize;
};

/// `access:` — who may connect and who may relay without AUTH.
struct AccessConfig {
  std::vector<std::string> allowed_networks{"127.0.0.0/8", "::1/128"};   // CIDR
  std::vector<std::string> anonymous_networks{"127.0.0.0/8", "::1/128"};
  bool open_relay = false;
};

/// `queue:` — retries of the simple delivery loop.
struct QueueConfig {
  std::chrono::seconds retry_delay{60};        // first retry
  std::chrono::seconds max_retry_delay{1800};  // backoff cap
  std::size_t max_in_flight = 8;               // deliveries at once
};

enum class ProviderType { Outbox };

/// One entry of `providers:`.
struct ProviderConfig {
  std::string name;
  ProviderType type = ProviderType::Outbox;
  std::filesystem::path directory;      // outbox: where .eml files go
};

enum class LogFormat { Text, Json };

/// `logging:`
struct LoggingConfig {
  std::string level = "info";           // trace debug info warn error critical off
  LogFormat format = LogFormat::Text;
};

/// The whole file. Relative paths are already resolved against the directory
/// of the configuration file (or the working directory for an embedded one).
struct Config {
  std::string source;                   // file name, for messages
  ServerConfig server;
  std::vector<ListenerConfig> listeners;
  SmtpConfig smtp;
  AccessConfig access;
  QueueConfig queue;
  std::vector<ProviderConfig> providers;
  LoggingConfig logging;
};

}  // namespace mb::config
