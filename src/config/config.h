#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/secret.h"

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
  bool allow_plaintext_auth = false;    // offer AUTH before TLS (loopback, trusted LAN)
};

/// `tls:` — the server certificate for every TLS listener (and later the
/// admin server). With neither cert_file nor pkcs12_file, a self-signed
/// certificate for server.hostname is generated once (10 years) and kept in
/// `<state_dir>/tls/`.
struct TlsConfig {
  std::filesystem::path cert_file;      // PEM: certificate, then the chain
  std::filesystem::path key_file;       // PEM private key (default: cert_file)
  std::filesystem::path pkcs12_file;    // instead of the two above
  Secret pkcs12_password;               // pkcs12_password / _file / _credential / ${ENV}
};

enum class BareLfPolicy { Normalize, Reject };
enum class LongLinePolicy { Reject, Accept };

/// `smtp:` — limits that apply to every listener.
struct SmtpConfig {
  std::uint64_t max_message_size = 25ull * 1024 * 1024;
  std::size_t max_recipients = 500;
  std::size_t max_connections = 100;
  std::chrono::seconds idle_timeout{300};   // RFC 5321 §4.5.3.2: 5 minutes
  std::chrono::seconds data_timeout{600};   // final dot
  BareLfPolicy bare_lf = BareLfPolicy::Normalize;
  std::size_t max_line_length = 1000;       // octets with CRLF, RFC 5321 §4.5.3.1.6
  LongLinePolicy long_lines = LongLinePolicy::Reject;
  std::size_t max_connections_per_ip = 20;  // 421 4.7.0 beyond
  std::uint64_t min_data_rate = 500;        // bytes/s that extend data_timeout; 0 = off
  std::chrono::milliseconds greeting_delay{0};  // input before the greeting → 554 5.5.0
  std::size_t max_errors = 20;              // then 421 4.7.0
  // After the final dot, wait this long for the first delivery attempt and
  // answer with its result (delivered 250, refused 5xx); 0 = answer "queued"
  // at once.
  std::chrono::milliseconds wait_for_delivery{10000};
};

/// `access:` — who may connect and who may relay without AUTH.
struct AccessConfig {
  std::vector<std::string> allowed_networks{"127.0.0.0/8", "::1/128"};   // CIDR
  std::vector<std::string> anonymous_networks{"127.0.0.0/8", "::1/128"};
  bool open_relay = false;
};

/// `queue:` — retries, expiry, per-mailbox pacing and the per-route circuit
/// breaker of the delivery loop.
enum class BounceTo { Sender, Admin, Both, None };

struct QueueConfig {
  std::chrono::seconds retry_delay{60};        // first retry
  std::chrono::seconds max_retry_delay{1800};  // backoff cap
  std::size_t max_in_flight = 8;               // deliveries at once
  std::chrono::seconds max_lifetime{5 * 24 * 3600};  // then pending recipients fail 5.4.7
  std::size_t max_in_flight_per_mailbox = 4;   // per (route, sender); Graph allows 4
  std::size_t max_per_minute_per_mailbox = 30; // started per 62 s window; 0 = unlimited
  std::size_t breaker_failures = 5;            // consecutive transient attempts; 0 = never open
  std::chrono::seconds breaker_cooldown{60};   // open time before a probe
  BounceTo bounce_to = BounceTo::Sender;       // who gets a DSN for a permanent failure
  std::string admin_address;                   // for bounce_to: admin | both
  // The From address of bounces; empty: MAILER-DAEMON@<server.hostname>.
  // Providers that send only as a mailbox (Graph) need a real one here.
  std::string bounce_from;
  // Free space below which MAIL is answered 452 4.3.1. nullopt = automatic:
  // 1.5 × smtp.max_message_size + kFreeSpaceMargin; 0 = never refuse.
  std::optional<std::uint64_t> min_free_space;
  static constexpr std::uint64_t kFreeSpaceMargin = 64ull * 1024 * 1024;
};

/// The free-space floor in effect (see QueueConfig::min_free_space).
inline std::uint64_t freeSpaceFloor(const QueueConfig& queue, const SmtpConfig& smtp) {
  if (queue.min_free_space) return *queue.min_free_space;
  return smtp.max_message_size + smtp.max_message_size / 2 + QueueConfig::kFreeSpaceMargin;
}

/// One entry of `auth.users:` (or of the users file).
struct UserConfig {
  std::string name;                     // the SMTP AUTH user name
  std::string password_hash;            // argon2id, from `mailbridge hash-password`
  std::vector<std::string> allowed_senders;           // addresses or @domain; empty = global rule
  std::vector<std::string> allowed_recipient_domains;  // empty = global rule
  std::string sender_override;          // always send as this address
};

/// `auth:` — SMTP AUTH users and brute-force protection.
struct AuthConfig {
  std::vector<UserConfig> users;
  std::filesystem::path users_file;     // YAML: a list of users, same keys as above
  std::size_t max_failures_per_ip = 5;  // within failure_window, then lockout
  std::size_t max_failures_per_user = 10;
  std::chrono::seconds failure_window{900};
  std::chrono::seconds lockout{900};
  std::size_t max_parallel_verifications = 2;  // argon2id takes 64 MiB each
};

/// `senders:` — MAIL FROM rules for everyone (users may narrow them).
struct SenderConfig {
  std::vector<std::string> allowed;     // addresses or @domain; empty = any
  std::string override_address;         // `override`: always send as this
  std::string default_address;          // `default`: for <> and addresses without a domain
  // `use_from_header`: the From header's address, not MAIL FROM, names the
  // mailbox to send from (unless an override applies); checked against the
  // same lists as MAIL FROM.
  bool use_from_header = false;
};

/// `recipients:`
struct RecipientConfig {
  std::vector<std::string> allowed_domains;  // empty = any
};

enum class ProviderType { Outbox, Graph, Gmail, Smtp };

/// "outbox", "graph", "gmail", "smtp": the `type:` spelling.
inline const char* providerTypeName(ProviderType type) {
  switch (type) {
    case ProviderType::Outbox:
      return "outbox";
    case ProviderType::Graph:
      return "graph";
    case ProviderType::Gmail:
      return "gmail";
    case ProviderType::Smtp:
      return "smtp";
  }
  return "outbox";
}
enum class Cloud { Global, UsGov, UsGovDod, China };

/// How a graph provider signs in (`auth_mode`).
enum class GraphAuthMode {
  App,           // client credentials: the app's own permissions, any mailbox
  RefreshToken,  // delegated: one user signed in once (`mailbridge oauth login`)
  UserPassword,  // delegated: each SMTP AUTH user's own Entra ID password
};

/// How an smtp provider protects its connection (`tls`).
enum class SmtpTls {
  StartTls,  // plaintext, then STARTTLS; never goes on without TLS (port 587)
  Implicit,  // TLS from the first byte (port 465)
  None,      // no TLS at all: loopback hosts only
};

/// How an smtp provider authenticates (`auth`).
enum class SmtpAuth { None, Plain, Login, XOAuth2 };

/// Where an smtp provider's XOAUTH2 tokens come from (`oauth`).
enum class SmtpOAuth {
  Entra,   // Entra ID: client credentials (tenant_id, client_id, secret or
           // certificate) or auth_mode refresh_token; smtp.office365.com
  Google,  // a service account acting as the user (service_account_file); smtp.gmail.com
};

/// One entry of `providers:`.
struct ProviderConfig {
  std::string name;
  ProviderType type = ProviderType::Outbox;
  std::filesystem::path directory;      // outbox: where .eml files go
  // outbox: recipients ("user@domain" or "@domain") answered 550 5.1.1
  // instead of written, to try out how devices show a refusal.
  std::vector<std::string> refuse_recipients;

  // graph: Microsoft 365 through Microsoft Graph, app-only (client
  // credentials) with a client secret or a certificate.
  GraphAuthMode auth_mode = GraphAuthMode::App;
  std::string user;                     // refresh_token: the account that signs in
  std::string tenant_id;                // GUID or domain (contoso.onmicrosoft.com)
  std::string client_id;                // the app registration's application id
  Secret client_secret;                 // client_secret / _file / _credential / ${ENV}
  std::int64_t client_secret_expires = 0;  // unix s of the given date (UTC midnight); 0: not given
  std::filesystem::path cert_file;      // instead of the secret: PEM certificate ...
  std::filesystem::path key_file;       // ... and key (default: cert_file)
  std::filesystem::path pkcs12_file;    // or a PKCS#12 file
  Secret pkcs12_password;
  Cloud cloud = Cloud::Global;
  std::string login_endpoint;           // "https://login.microsoftonline.com"; from cloud unless set
  std::string graph_endpoint;           // "https://graph.microsoft.com"; from cloud unless set
  // The token's scope: the cloud's Graph resource + "/.default" (app), or
  // its Mail.Send and Mail.ReadWrite + offline_access (refresh_token),
  // whatever graph_endpoint says (a proxy in front of Graph is not the
  // resource). smtp with oauth entra: the cloud's Exchange Online resource
  // + "/.default" (app) or + "/SMTP.Send offline_access" (refresh_token);
  // oauth google: https://mail.google.com/. Empty for smtp without xoauth2.
  std::string scope;
  std::filesystem::path ca_file;        // a private CA (TLS-inspecting proxy, tests)
  std::string proxy;                    // outbound HTTP proxy; default: https_proxy
  std::chrono::seconds timeout{120};    // per HTTP request; smtp: connect and each
                                        // server reply (the loader's default: 60 s)
  // gmail: Google Workspace through the Gmail API, as a service account
  // with domain-wide delegation that acts as each sending user.
  std::filesystem::path service_account_file;  // the service account's JSON key
  std::string token_uri;                // default: the key file's token_uri
  std::string api_endpoint;             // "https://gmail.googleapis.com"

  // smtp: an upstream SMTP server ("smarthost").
  std::string host;                     // name or IP literal (IPv6 without brackets)
  std::uint16_t port = 0;               // default: 587 (starttls), 465 (implicit), 25 (none);
                                        // the loader always sets it
  SmtpTls tls = SmtpTls::StartTls;
  std::string helo_name;                // EHLO name; default: server.hostname
  SmtpAuth auth = SmtpAuth::None;
  std::string username;                 // plain/login: the account; xoauth2: the mailbox
                                        // (default: each message's sending mailbox)
  Secret password;                      // plain/login
  SmtpOAuth oauth = SmtpOAuth::Entra;   // xoauth2 only; scope: see `scope` above
  std::size_t max_connections = 4;      // parallel connections to this host
  std::size_t max_messages_per_connection = 100;
  std::chrono::seconds idle_timeout{5}; // an unused connection is closed after this;
                                        // 0: never reuse a connection

  // Keep a copy in the sender's Sent Items (Graph's default). false sends
  // every message through a draft marked delete-after-submit: two more
  // requests per message, and Mail.ReadWrite.
  bool save_to_sent = true;

  bool operator==(const ProviderConfig&) const = default;
};

/// How the tracker stores addresses and subjects (`tracker.masking`): masked
/// before they are written, so the full text is never kept.
enum class Masking {
  None,     // as they are
  Partial,  // m**l@e*****e.com; subjects cut to 15 characters and "…"
};

/// `tracker:` — the mail log (metadata only, never content) in
/// `<state_dir>/tracker.db`.
struct TrackerConfig {
  // Days to keep rows: -1 stores nothing (the tracker is off), 0 keeps
  // them forever, N purges rows older than N days (daily and at start).
  int retention_days = 30;
  bool store_subject = true;            // false: "***"
  bool store_addresses = true;          // false: "***" for every address
  Masking masking = Masking::None;
  bool log_rejected = true;             // also record refused attempts

  bool enabled() const { return retention_days != -1; }
  bool operator==(const TrackerConfig&) const = default;
};

/// `admin:` — the admin HTTP server: JSON API, /metrics, /healthz.
struct AdminConfig {
  bool enabled = true;                  // address: off → false
  std::string host = "127.0.0.1";
  std::uint16_t port = 8025;            // 0 = any free port (tests)
  bool tls = false;                     // HTTPS with the `tls:` certificate
  std::string password_hash;            // argon2id; empty: no password sign-in
  Secret api_token;                     // api_token / _file / _credential; empty: none
  bool public_metrics = false;          // /metrics without authentication
  bool public_health = true;            // /healthz and /healthz/ready without authentication
  std::chrono::seconds session_timeout{1800};  // idle; a session lasts 12 h at most

  bool operator==(const AdminConfig&) const = default;
};

enum class LogFormat { Text, Json };

/// `logging:`
struct LoggingConfig {
  std::string level = "info";           // trace debug info warn error critical off
  LogFormat format = LogFormat::Text;
  // A daily log file besides stderr (the date goes before the extension);
  // empty: none.
  std::filesystem::path file;
  // Days to keep log files: -1 writes none, 0 keeps them forever, N deletes
  // those older than N days (at start and hourly).
  int retention_days = 30;

  bool writesFile() const { return !file.empty() && retention_days != -1; }
};

/// The whole file. Relative paths are already resolved against the directory
/// of the configuration file (or the working directory for an embedded one).
/// One entry of `routes:`: the conditions (all that are given must hold;
/// within a list, any entry) and the provider that then delivers.
struct RouteConfig {
  std::vector<std::string> from;        // sending mailbox: addresses or @domains
  std::vector<std::string> users;       // SMTP AUTH user names
  std::vector<std::string> listeners;   // listener names
  std::vector<std::string> to_domains;  // every recipient in one of these domains
  std::string provider;                 // a providers[].name

  bool operator==(const RouteConfig&) const = default;
};

struct Config {
  std::string source;                   // file name, for messages
  ServerConfig server;
  std::vector<ListenerConfig> listeners;
  TlsConfig tls;
  SmtpConfig smtp;
  AccessConfig access;
  AuthConfig auth;
  SenderConfig senders;
  RecipientConfig recipients;
  QueueConfig queue;
  std::vector<ProviderConfig> providers;
  std::vector<RouteConfig> routes;      // in order; none matching: the first provider
  TrackerConfig tracker;
  AdminConfig admin;
  LoggingConfig logging;
};

}  // namespace mb::config
