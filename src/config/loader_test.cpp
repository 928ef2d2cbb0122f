#include "config/loader.h"

#include "base/testing/temp_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace mb::config {
namespace {

namespace stdfs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kName = "test.yaml";
// A real argon2id hash (of "test-password"); the loader only parses it.
constexpr const char* kHash =
    "$argon2id$v=19$m=65536,t=2,p=1$1zKVJ4mhin3VpaO5FCwfHQ$6CF3TiRMGwFtbbOVo4kkUZ8ivxHOgJLL2V+"
    "mJfegkVs";
constexpr const char* kProviders =
    "providers:\n"
    "  - {name: out, type: outbox, directory: /srv/out}\n";

Config load(const std::string& yaml, const stdfs::path& base = "/etc/mailbridge") {
  return loadConfigText(yaml, kName, base);
}

// The issues of a configuration that must not load.
std::vector<ConfigIssue> issuesOf(const std::string& yaml) {
  try {
    load(yaml);
  } catch (const ConfigError& e) {
    return e.issues();
  }
  ADD_FAILURE() << "loaded without issues:\n" << yaml;
  return {};
}

// The one issue of a configuration with exactly one mistake.
ConfigIssue issueOf(const std::string& yaml) {
  auto issues = issuesOf(yaml);
  EXPECT_EQ(issues.size(), 1u) << [&] {
    std::string all;
    for (const auto& i : issues) all += i.format() + "\n";
    return all;
  }();
  return issues.empty() ? ConfigIssue{} : issues.front();
}

void expectIssue(const std::string& yaml, int line, int column, const std::string& key,
                 const std::string& message_part) {
  const ConfigIssue i = issueOf(yaml);
  EXPECT_EQ(i.file, kName);
  EXPECT_EQ(i.line, line) << i.format();
  EXPECT_EQ(i.column, column) << i.format();
  EXPECT_EQ(i.key, key) << i.format();
  EXPECT_NE(i.message.find(message_part), std::string::npos)
      << "'" << message_part << "' not in: " << i.format();
}

std::string localHostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

TEST(ConfigLoader, FullFileFillsEveryField) {
  const Config c = load(R"(
server:
  hostname: relay.example.com
  state_dir: /var/lib/mb
listeners:
  - name: inside
    address: 0.0.0.0:25
    tls: none
    auth: required
    allow_plaintext_auth: true
  - address: "[::1]:2526"
    auth: none
  - address: 127.0.0.1:465
    tls: implicit
    auth: required
smtp:
  max_message_size: 1.5MB
  max_recipients: 1000
  max_connections: 20
  idle_timeout: 2m
  data_timeout: 1h30m
  bare_lf: reject
  max_line_length: 2000
  long_lines: accept
  max_connections_per_ip: 7
  min_data_rate: 1KB
  greeting_delay: 1s500ms
  max_errors: 5
access:
  allowed_networks: [10.0.0.0/8, "2001:db8::/32"]
  anonymous_networks: [10.1.0.0/16]
  open_relay: yes
auth:
  users:
    - name: scanner
      password_hash: $argon2id$v=19$m=65536,t=2,p=1$1zKVJ4mhin3VpaO5FCwfHQ$6CF3TiRMGwFtbbOVo4kkUZ8ivxHOgJLL2V+mJfegkVs
      allowed_senders: [scanner@example.com, "@scans.example.com"]
      allowed_recipient_domains: [example.com, partner.test]
      sender_override: scanner@example.com
    - name: erp@example.com
      password_hash: '$argon2id$v=19$m=65536,t=2,p=1$1zKVJ4mhin3VpaO5FCwfHQ$6CF3TiRMGwFtbbOVo4kkUZ8ivxHOgJLL2V+mJfegkVs'
  max_failures_per_ip: 3
  max_failures_per_user: 4
  failure_window: 10m
  lockout: 1h
  max_parallel_verifications: 4
senders:
  allowed: ["@example.com", boss@partner.test]
  override: relay@example.com
  default: noreply@example.com
recipients:
  allowed_domains: [example.com, Example.ORG]
queue:
  retry_delay: 30s
  max_retry_delay: 2h
  max_in_flight: 16
  max_lifetime: 3d
  max_in_flight_per_mailbox: 2
  max_per_minute_per_mailbox: 0
  breaker_failures: 7
  breaker_cooldown: 2m
  bounce_to: both
  admin_address: postmaster@example.com
providers:
  - name: box-1
    type: outbox
    directory: /srv/outbox
  - name: box_2
    type: outbox
    directory: spool/second
tracker:
  retention_days: 90
  store_subject: false
  store_addresses: no
  masking: partial
  log_rejected: false
logging:
  level: debug
  format: json
)");
  EXPECT_EQ(c.source, kName);
  EXPECT_EQ(c.server.hostname, "relay.example.com");
  EXPECT_EQ(c.server.state_dir, "/var/lib/mb");

  ASSERT_EQ(c.listeners.size(), 3u);
  EXPECT_EQ(c.listeners[0].name, "inside");
  EXPECT_EQ(c.listeners[0].host, "0.0.0.0");
  EXPECT_EQ(c.listeners[0].port, 25);
  EXPECT_EQ(c.listeners[0].tls, TlsMode::None);
  EXPECT_EQ(c.listeners[0].auth, AuthPolicy::Required);
  EXPECT_TRUE(c.listeners[0].allow_plaintext_auth);
  EXPECT_EQ(c.listeners[1].name, "[::1]:2526");
  EXPECT_EQ(c.listeners[1].host, "::1");
  EXPECT_EQ(c.listeners[1].port, 2526);
  EXPECT_EQ(c.listeners[1].auth, AuthPolicy::None);
  EXPECT_FALSE(c.listeners[1].allow_plaintext_auth);
  EXPECT_EQ(c.listeners[2].tls, TlsMode::Implicit);
  EXPECT_EQ(c.listeners[2].auth, AuthPolicy::Required);

  EXPECT_EQ(c.smtp.max_message_size, 1572864u);
  EXPECT_EQ(c.smtp.max_recipients, 1000u);
  EXPECT_EQ(c.smtp.max_connections, 20u);
  EXPECT_EQ(c.smtp.idle_timeout, seconds(120));
  EXPECT_EQ(c.smtp.data_timeout, seconds(5400));
  EXPECT_EQ(c.smtp.bare_lf, BareLfPolicy::Reject);
  EXPECT_EQ(c.smtp.max_line_length, 2000u);
  EXPECT_EQ(c.smtp.long_lines, LongLinePolicy::Accept);
  EXPECT_EQ(c.smtp.max_connections_per_ip, 7u);
  EXPECT_EQ(c.smtp.min_data_rate, 1024u);
  EXPECT_EQ(c.smtp.greeting_delay, std::chrono::milliseconds(1500));
  EXPECT_EQ(c.smtp.max_errors, 5u);

  EXPECT_EQ(c.access.allowed_networks, (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32"}));
  EXPECT_EQ(c.access.anonymous_networks, (std::vector<std::string>{"10.1.0.0/16"}));
  EXPECT_TRUE(c.access.open_relay);

  ASSERT_EQ(c.auth.users.size(), 2u);
  EXPECT_EQ(c.auth.users[0].name, "scanner");
  EXPECT_EQ(c.auth.users[0].password_hash, kHash);
  EXPECT_EQ(c.auth.users[0].allowed_senders,
            (std::vector<std::string>{"scanner@example.com", "@scans.example.com"}));
  EXPECT_EQ(c.auth.users[0].allowed_recipient_domains,
            (std::vector<std::string>{"example.com", "partner.test"}));
  EXPECT_EQ(c.auth.users[0].sender_override, "scanner@example.com");
  EXPECT_EQ(c.auth.users[1].name, "erp@example.com");
  EXPECT_EQ(c.auth.users[1].password_hash, kHash);
  EXPECT_TRUE(c.auth.users[1].allowed_senders.empty());
  EXPECT_TRUE(c.auth.users[1].allowed_recipient_domains.empty());
  EXPECT_EQ(c.auth.users[1].sender_override, "");
  EXPECT_TRUE(c.auth.users_file.empty());
  EXPECT_EQ(c.auth.max_failures_per_ip, 3u);
  EXPECT_EQ(c.auth.max_failures_per_user, 4u);
  EXPECT_EQ(c.auth.failure_window, seconds(600));
  EXPECT_EQ(c.auth.lockout, seconds(3600));
  EXPECT_EQ(c.auth.max_parallel_verifications, 4u);

  EXPECT_EQ(c.senders.allowed, (std::vector<std::string>{"@example.com", "boss@partner.test"}));
  EXPECT_EQ(c.senders.override_address, "relay@example.com");
  EXPECT_EQ(c.senders.default_address, "noreply@example.com");
  EXPECT_EQ(c.recipients.allowed_domains, (std::vector<std::string>{"example.com", "Example.ORG"}));

  EXPECT_EQ(c.queue.retry_delay, seconds(30));
  EXPECT_EQ(c.queue.max_retry_delay, seconds(7200));
  EXPECT_EQ(c.queue.max_in_flight, 16u);
  EXPECT_EQ(c.queue.max_lifetime, seconds(3 * 24 * 3600));
  EXPECT_EQ(c.queue.max_in_flight_per_mailbox, 2u);
  EXPECT_EQ(c.queue.max_per_minute_per_mailbox, 0u);
  EXPECT_EQ(c.queue.breaker_failures, 7u);
  EXPECT_EQ(c.queue.breaker_cooldown, seconds(120));
  EXPECT_EQ(c.queue.bounce_to, BounceTo::Both);
  EXPECT_EQ(c.queue.admin_address, "postmaster@example.com");

  ASSERT_EQ(c.providers.size(), 2u);
  EXPECT_EQ(c.providers[0].name, "box-1");
  EXPECT_EQ(c.providers[0].type, ProviderType::Outbox);
  EXPECT_EQ(c.providers[0].directory, "/srv/outbox");
  EXPECT_EQ(c.providers[1].name, "box_2");
  EXPECT_EQ(c.providers[1].directory, "/etc/mailbridge/spool/second");

  EXPECT_EQ(c.tracker.retention_days, 90);
  EXPECT_FALSE(c.tracker.store_subject);
  EXPECT_FALSE(c.tracker.store_addresses);
  EXPECT_EQ(c.tracker.masking, Masking::Partial);
  EXPECT_FALSE(c.tracker.log_rejected);

  EXPECT_EQ(c.logging.level, "debug");
  EXPECT_EQ(c.logging.format, LogFormat::Json);
}

TEST(ConfigLoader, DefaultsWhenOnlyProvidersAreGiven) {
  const Config c = load(kProviders);
  const Config defaults;
  EXPECT_EQ(c.server.hostname, localHostname());
  EXPECT_EQ(c.server.state_dir, "/var/lib/mailbridge");
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].name, "127.0.0.1:2525");
  EXPECT_EQ(c.listeners[0].host, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].port, 2525);
  EXPECT_EQ(c.listeners[0].tls, TlsMode::None);
  EXPECT_EQ(c.listeners[0].auth, AuthPolicy::Optional);
  EXPECT_EQ(c.smtp.max_message_size, 25u * 1024 * 1024);
  EXPECT_EQ(c.smtp.max_recipients, 500u);
  EXPECT_EQ(c.smtp.max_connections, 100u);
  EXPECT_EQ(c.smtp.idle_timeout, seconds(300));
  EXPECT_EQ(c.smtp.data_timeout, seconds(600));
  EXPECT_EQ(c.smtp.bare_lf, BareLfPolicy::Normalize);
  EXPECT_EQ(c.smtp.max_line_length, 1000u);
  EXPECT_EQ(c.smtp.long_lines, LongLinePolicy::Reject);
  EXPECT_EQ(c.smtp.max_connections_per_ip, 20u);
  EXPECT_EQ(c.smtp.min_data_rate, 500u);
  EXPECT_EQ(c.smtp.greeting_delay, std::chrono::milliseconds(0));
  EXPECT_EQ(c.smtp.max_errors, 20u);
  EXPECT_FALSE(c.listeners[0].allow_plaintext_auth);
  EXPECT_TRUE(c.tls.cert_file.empty());
  EXPECT_TRUE(c.tls.key_file.empty());
  EXPECT_TRUE(c.tls.pkcs12_file.empty());
  EXPECT_TRUE(c.tls.pkcs12_password.empty());
  EXPECT_TRUE(c.auth.users.empty());
  EXPECT_TRUE(c.auth.users_file.empty());
  EXPECT_EQ(c.auth.max_failures_per_ip, 5u);
  EXPECT_EQ(c.auth.max_failures_per_user, 10u);
  EXPECT_EQ(c.auth.failure_window, seconds(900));
  EXPECT_EQ(c.auth.lockout, seconds(900));
  EXPECT_EQ(c.auth.max_parallel_verifications, 2u);
  EXPECT_TRUE(c.senders.allowed.empty());
  EXPECT_TRUE(c.senders.override_address.empty());
  EXPECT_TRUE(c.senders.default_address.empty());
  EXPECT_TRUE(c.recipients.allowed_domains.empty());
  EXPECT_EQ(c.access.allowed_networks, defaults.access.allowed_networks);
  EXPECT_EQ(c.access.anonymous_networks, defaults.access.anonymous_networks);
  EXPECT_FALSE(c.access.open_relay);
  EXPECT_EQ(c.queue.retry_delay, seconds(60));
  EXPECT_EQ(c.queue.max_retry_delay, seconds(1800));
  EXPECT_EQ(c.queue.max_in_flight, 8u);
  EXPECT_EQ(c.queue.max_lifetime, seconds(5 * 24 * 3600));
  EXPECT_EQ(c.queue.max_in_flight_per_mailbox, 4u);
  EXPECT_EQ(c.queue.max_per_minute_per_mailbox, 30u);
  EXPECT_EQ(c.queue.breaker_failures, 5u);
  EXPECT_EQ(c.queue.breaker_cooldown, seconds(60));
  EXPECT_EQ(c.queue.bounce_to, BounceTo::Sender);
  EXPECT_TRUE(c.queue.admin_address.empty());
  EXPECT_EQ(c.tracker.retention_days, 30);
  EXPECT_TRUE(c.tracker.enabled());
  EXPECT_TRUE(c.tracker.store_subject);
  EXPECT_TRUE(c.tracker.store_addresses);
  EXPECT_EQ(c.tracker.masking, Masking::None);
  EXPECT_TRUE(c.tracker.log_rejected);
  EXPECT_EQ(c.tracker, defaults.tracker);
  EXPECT_EQ(c.logging.level, "info");
  EXPECT_EQ(c.logging.format, LogFormat::Text);
}

TEST(ConfigLoader, EmptySectionsKeepDefaults) {
  const Config c =
      load(std::string(
               "server:\ntls:\nsmtp:\naccess:\nauth:\nsenders:\nrecipients:\nqueue:\ntracker:\n"
                       "logging:\n") +
           kProviders);
  EXPECT_EQ(c.smtp.max_recipients, 500u);
  EXPECT_EQ(c.tracker, TrackerConfig{});
  EXPECT_EQ(c.server.state_dir, "/var/lib/mailbridge");
}

TEST(ConfigLoader, EmptyAccessListsAreAllowed) {
  const Config c = load(std::string("access:\n  allowed_networks: []\n") + kProviders);
  EXPECT_TRUE(c.access.allowed_networks.empty());
}

TEST(ConfigLoader, ListenerAddressForms) {
  const Config c = load(std::string(R"(listeners:
  - address: localhost:25
  - address: "[0:0::1]:26"
  - address: "[::]:0"
  - address: 192.0.2.1:65535
)") + kProviders);
  ASSERT_EQ(c.listeners.size(), 4u);
  EXPECT_EQ(c.listeners[0].host, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].name, "localhost:25");
  EXPECT_EQ(c.listeners[1].host, "::1");
  EXPECT_EQ(c.listeners[2].host, "::");
  EXPECT_EQ(c.listeners[2].port, 0);
  EXPECT_EQ(c.listeners[3].port, 65535);
}

TEST(ConfigLoader, TwoListenersOnPortZeroDoNotClash) {
  const Config c = load(std::string(R"(listeners:
  - {name: a, address: 127.0.0.1:0}
  - {name: b, address: 127.0.0.1:0}
)") + kProviders);
  EXPECT_EQ(c.listeners.size(), 2u);
}

TEST(ConfigLoader, IssueFormat) {
  const ConfigIssue i = issueOf(std::string("smtp:\n  max_message_size: 25XB\n") + kProviders);
  EXPECT_EQ(i.format(),
            "test.yaml:2:21: smtp.max_message_size: expected a size such as 25MB, got '25XB' "
            "(unknown unit 'XB'; use B, KB, MB or GB)");
  ConfigIssue whole{"f.yaml", 0, 0, "providers", "required"};
  EXPECT_EQ(whole.format(), "f.yaml: providers: required");
  ConfigIssue syntax{"f.yaml", 3, 2, "", "YAML syntax error: end of map not found"};
  EXPECT_EQ(syntax.format(), "f.yaml:3:2: YAML syntax error: end of map not found");
}

TEST(ConfigLoader, ValueErrorsPointAtTheValue) {
  const std::string p = kProviders;
  expectIssue("smtp:\n  max_message_size: 2GB\n" + p, 2, 21, "smtp.max_message_size",
              "expected a size from 1KB to 1GB, got 2GB");
  expectIssue("smtp:\n  max_message_size: 512\n" + p, 2, 21, "smtp.max_message_size",
              "from 1KB to 1GB, got 512B");
  expectIssue("smtp:\n  max_message_size: -1MB\n" + p, 2, 21, "smtp.max_message_size", "negative");
  expectIssue("smtp:\n  max_recipients: 0\n" + p, 2, 19, "smtp.max_recipients",
              "expected an integer from 1 to 100000, got 0");
  expectIssue("smtp:\n  max_recipients: ten\n" + p, 2, 19, "smtp.max_recipients",
              "expected an integer from 1 to 100000, got 'ten'");
  expectIssue("smtp:\n  max_connections: 99999999999999999999\n" + p, 2, 20, "smtp.max_connections",
              "too large");
  expectIssue("smtp:\n  max_connections: 1.5\n" + p, 2, 20, "smtp.max_connections",
              "expected an integer");
  expectIssue("smtp:\n  idle_timeout: 500ms\n" + p, 2, 17, "smtp.idle_timeout",
              "expected a duration from 1s to 52w1d, got 500ms");
  expectIssue("smtp:\n  idle_timeout: 1500ms\n" + p, 2, 17, "smtp.idle_timeout",
              "expected whole seconds, got 1s500ms");
  expectIssue("smtp:\n  data_timeout: 10 minutes\n" + p, 2, 17, "smtp.data_timeout",
              "expected a duration such as 90s, 5m or 1h30m, got '10 minutes'");
  expectIssue("smtp:\n  data_timeout: 1000w\n" + p, 2, 17, "smtp.data_timeout", "to 52w1d");
  expectIssue("smtp:\n  bare_lf: keep\n" + p, 2, 12, "smtp.bare_lf",
              "expected one of: normalize, reject; got 'keep'");
  expectIssue("access:\n  open_relay: sometimes\n" + p, 2, 15, "access.open_relay",
              "expected true or false, got 'sometimes'");
  expectIssue("queue:\n  max_in_flight: 1001\n" + p, 2, 18, "queue.max_in_flight",
              "expected an integer from 1 to 1000, got 1001");
  expectIssue("logging:\n  level: verbose\n" + p, 2, 10, "logging.level",
              "expected one of: trace, debug, info, warn, error, critical, off; got 'verbose'");
  expectIssue("logging:\n  format: xml\n" + p, 2, 11, "logging.format", "one of: text, json");
  expectIssue("server:\n  hostname: 'bad host'\n" + p, 2, 13, "server.hostname",
              "expected a host name such as mail.example.com, got 'bad host'");
  expectIssue("server:\n  state_dir: ''\n" + p, 2, 14, "server.state_dir",
              "expected a path, got an empty string");
}

TEST(ConfigLoader, ChoicesAndBooleansAcceptYamlSpellings) {
  const Config c = load(std::string("access:\n  open_relay: no\nsmtp:\n  bare_lf: Reject\n"
                                    "logging:\n  level: WARN\n") +
                        kProviders);
  EXPECT_FALSE(c.access.open_relay);
  EXPECT_EQ(c.smtp.bare_lf, BareLfPolicy::Reject);
  EXPECT_EQ(c.logging.level, "warn");
  EXPECT_TRUE(load(std::string("access:\n  open_relay: true\n") + kProviders).access.open_relay);
}

TEST(ConfigLoader, BareNumbersAreBytesAndSeconds) {
  const Config c =
      load(std::string("smtp:\n  max_message_size: 1048576\n  idle_timeout: 90\n") + kProviders);
  EXPECT_EQ(c.smtp.max_message_size, 1048576u);
  EXPECT_EQ(c.smtp.idle_timeout, seconds(90));
}

TEST(ConfigLoader, ListenerErrors) {
  const std::string p = kProviders;
  expectIssue("listeners:\n  - address: 127.0.0.1:2525\n    tls: ssl\n" + p, 3, 10,
              "listeners[0].tls", "one of: none, starttls, implicit");
  expectIssue("listeners:\n  - address: 127.0.0.1:2525\n    auth: maybe\n" + p, 3, 11,
              "listeners[0].auth", "one of: none, optional, required");
  expectIssue("listeners:\n  - address: mail.example.com:25\n" + p, 2, 14, "listeners[0].address",
              "'mail.example.com' is not an IPv4 address or localhost");
  expectIssue("listeners:\n  - address: ::1:25\n" + p, 2, 14, "listeners[0].address",
              "an IPv6 address needs brackets");
  expectIssue("listeners:\n  - address: '[::1:25'\n" + p, 2, 14, "listeners[0].address",
              "missing ']'");
  expectIssue("listeners:\n  - address: '[::1]'\n" + p, 2, 14, "listeners[0].address",
              "missing ':PORT'");
  expectIssue("listeners:\n  - address: '[fe80::zz]:25'\n" + p, 2, 14, "listeners[0].address",
              "not an IPv6 address");
  expectIssue("listeners:\n  - address: 127.0.0.1\n" + p, 2, 14, "listeners[0].address",
              "missing ':PORT'; expected HOST:PORT");
  expectIssue("listeners:\n  - address: 127.0.0.1:65536\n" + p, 2, 14, "listeners[0].address",
              "the port must be a number from 0 to 65535");
  expectIssue("listeners:\n  - address: '127.0.0.1:'\n" + p, 2, 14, "listeners[0].address",
              "the port must be a number");
  expectIssue("listeners:\n  - name: x\n" + p, 2, 5, "listeners[0].address",
              "required; expected HOST:PORT");
  expectIssue("listeners: []\n" + p, 1, 12, "listeners", "at least one listener is required");
  expectIssue("listeners:\n  - 127.0.0.1:25\n" + p, 2, 5, "listeners[0]",
              "expected a mapping with address, name, tls and auth, got a scalar");
}

TEST(ConfigLoader, TlsListenersAndPlaintextAuth) {
  const std::string p = kProviders;
  const Config c = load(R"(listeners:
  - {name: a, address: 127.0.0.1:25, tls: starttls, auth: required}
  - {name: b, address: 127.0.0.1:465, tls: Implicit}
  - {name: c, address: 127.0.0.1:26, auth: required, allow_plaintext_auth: yes}
  - {name: d, address: 127.0.0.1:27, allow_plaintext_auth: false}
)" + p);
  ASSERT_EQ(c.listeners.size(), 4u);
  EXPECT_EQ(c.listeners[0].tls, TlsMode::StartTls);
  EXPECT_EQ(c.listeners[0].auth, AuthPolicy::Required);
  EXPECT_FALSE(c.listeners[0].allow_plaintext_auth);
  EXPECT_EQ(c.listeners[1].tls, TlsMode::Implicit);
  EXPECT_EQ(c.listeners[2].tls, TlsMode::None);
  EXPECT_TRUE(c.listeners[2].allow_plaintext_auth);
  EXPECT_FALSE(c.listeners[3].allow_plaintext_auth);
}

TEST(ConfigLoader, AuthRequiredWithoutTlsNeedsPlaintextAuth) {
  const std::string p = kProviders;
  expectIssue("listeners:\n  - address: 127.0.0.1:2525\n    auth: required\n" + p, 3, 11,
              "listeners[0].auth",
              "clients could never authenticate: AUTH is only offered under TLS; use tls: "
              "starttls, or allow_plaintext_auth: true on a trusted network");
  expectIssue(
      "listeners:\n  - address: 127.0.0.1:2525\n    tls: none\n    auth: REQUIRED\n"
      "    allow_plaintext_auth: false\n" +
          p,
      4, 11, "listeners[0].auth", "clients could never authenticate");
  // A bad or misspelt tls / allow_plaintext_auth is reported alone.
  expectIssue("listeners:\n  - address: 127.0.0.1:2525\n    auth: required\n    tls: ssl\n" + p, 4,
              10, "listeners[0].tls", "one of: none, starttls, implicit");
  expectIssue(
      "listeners:\n  - address: 127.0.0.1:2525\n    auth: required\n    tsl: starttls\n" + p, 4, 5,
      "listeners[0].tsl", "did you mean 'tls'?");
  expectIssue(
      "listeners:\n  - address: 127.0.0.1:2525\n    auth: required\n"
      "    allow_plaintext_auth: maybe\n" +
          p,
      4, 27, "listeners[0].allow_plaintext_auth", "expected true or false, got 'maybe'");
  expectIssue(
      "listeners:\n  - address: 127.0.0.1:2525\n    auth: required\n"
      "    allow_plaintxt_auth: true\n" +
          p,
      4, 5, "listeners[0].allow_plaintxt_auth", "did you mean 'allow_plaintext_auth'?");
}

TEST(ConfigLoader, SmtpLimits) {
  const std::string p = kProviders;
  Config c =
      load("smtp:\n  min_data_rate: 0\n  greeting_delay: 250ms\n  max_line_length: 78\n" + p);
  EXPECT_EQ(c.smtp.min_data_rate, 0u);
  EXPECT_EQ(c.smtp.greeting_delay, std::chrono::milliseconds(250));
  EXPECT_EQ(c.smtp.max_line_length, 78u);
  c = load("smtp:\n  min_data_rate: 2KB/s\n  greeting_delay: 30s\n  max_line_length: 100000\n" + p);
  EXPECT_EQ(c.smtp.min_data_rate, 2048u);
  EXPECT_EQ(c.smtp.greeting_delay, std::chrono::milliseconds(30000));
  EXPECT_EQ(c.smtp.max_line_length, 100000u);
  c = load("smtp:\n  min_data_rate: 500\n  greeting_delay: 0\n  long_lines: Reject\n" + p);
  EXPECT_EQ(c.smtp.min_data_rate, 500u);
  EXPECT_EQ(c.smtp.greeting_delay, std::chrono::milliseconds(0));
  EXPECT_EQ(c.smtp.long_lines, LongLinePolicy::Reject);

  expectIssue("smtp:\n  max_line_length: 77\n" + p, 2, 20, "smtp.max_line_length",
              "expected an integer from 78 to 100000, got 77");
  expectIssue("smtp:\n  max_line_length: 100001\n" + p, 2, 20, "smtp.max_line_length",
              "got 100001");
  expectIssue("smtp:\n  long_lines: wrap\n" + p, 2, 15, "smtp.long_lines",
              "expected one of: reject, accept; got 'wrap'");
  expectIssue("smtp:\n  max_connections_per_ip: 0\n" + p, 2, 27, "smtp.max_connections_per_ip",
              "expected an integer from 1 to 100000, got 0");
  expectIssue("smtp:\n  min_data_rate: fast\n" + p, 2, 18, "smtp.min_data_rate",
              "expected a rate in bytes per second such as 500B or 1KB, or 0 (off), got 'fast'");
  expectIssue("smtp:\n  min_data_rate: 2GB\n" + p, 2, 18, "smtp.min_data_rate",
              "expected a size from 0B to 1GB, got 2GB");
  expectIssue("smtp:\n  min_data_rate: 1KB/m\n" + p, 2, 18, "smtp.min_data_rate",
              "got '1KB/m' (unknown unit 'KB/m'");
  expectIssue("smtp:\n  greeting_delay: 31s\n" + p, 2, 19, "smtp.greeting_delay",
              "expected a duration from 0s to 30s, got 31s");
  expectIssue("smtp:\n  greeting_delay: soon\n" + p, 2, 19, "smtp.greeting_delay",
              "expected a duration such as 90s, 5m or 1h30m, got 'soon'");
  expectIssue("smtp:\n  max_errors: 0\n" + p, 2, 15, "smtp.max_errors",
              "expected an integer from 1 to 1000, got 0");
  expectIssue("smtp:\n  max_errors: 1001\n" + p, 2, 15, "smtp.max_errors", "got 1001");
  expectIssue("smtp:\n  greting_delay: 1s\n" + p, 2, 3, "smtp.greting_delay",
              "did you mean 'greeting_delay'?");
}

std::string userYaml(const std::string& extra) {
  return std::string("auth:\n  users:\n    - name: scanner\n      password_hash: '") + kHash +
         "'\n" + extra + kProviders;
}

TEST(ConfigLoader, AuthSettings) {
  const std::string p = kProviders;
  const Config c = load(
      "auth:\n  users: []\n  max_failures_per_ip: 1000\n"
      "  max_failures_per_user: 1\n  failure_window: 1s\n  lockout: 1w\n"
      "  max_parallel_verifications: 64\n" +
      p);
  EXPECT_TRUE(c.auth.users.empty());
  EXPECT_EQ(c.auth.max_failures_per_ip, 1000u);
  EXPECT_EQ(c.auth.max_failures_per_user, 1u);
  EXPECT_EQ(c.auth.failure_window, seconds(1));
  EXPECT_EQ(c.auth.lockout, seconds(7 * 24 * 3600));
  EXPECT_EQ(c.auth.max_parallel_verifications, 64u);

  expectIssue("auth:\n  max_failures_per_ip: 0\n" + p, 2, 24, "auth.max_failures_per_ip",
              "expected an integer from 1 to 1000, got 0");
  expectIssue("auth:\n  max_failures_per_user: 1001\n" + p, 2, 26, "auth.max_failures_per_user",
              "expected an integer from 1 to 1000, got 1001");
  expectIssue("auth:\n  failure_window: 0\n" + p, 2, 19, "auth.failure_window",
              "expected a duration from 1s to 52w1d, got 0s");
  expectIssue("auth:\n  lockout: 1500ms\n" + p, 2, 12, "auth.lockout",
              "expected whole seconds, got 1s500ms");
  expectIssue("auth:\n  max_parallel_verifications: 65\n" + p, 2, 31,
              "auth.max_parallel_verifications", "expected an integer from 1 to 64, got 65");
  expectIssue("auth:\n  max_parallel_verifications: 0\n" + p, 2, 31,
              "auth.max_parallel_verifications", "got 0");
  expectIssue("auth:\n  users: {name: a}\n" + p, 2, 10, "auth.users",
              "expected a list of users ('- name: ...'), got a mapping");
  expectIssue("auth:\n  users:\n" + p, 2, 3, "auth.users", "got nothing");
  expectIssue("auth:\n  user: []\n" + p, 2, 3, "auth.user", "did you mean 'users'?");
  expectIssue("auth:\n  users_file: ''\n" + p, 2, 15, "auth.users_file",
              "expected a path, got an empty string");
  expectIssue("auth:\n  users_file: /nonexistent/mb-users.yaml\n" + p, 2, 15, "auth.users_file",
              "cannot read the users file: open /nonexistent/mb-users.yaml: No such file or "
              "directory");
}

TEST(ConfigLoader, UserErrors) {
  const std::string p = kProviders;
  // The value is never quoted: it may be a password pasted by mistake.
  const ConfigIssue plain =
      issueOf("auth:\n  users:\n    - name: scanner\n      password_hash: hunter2\n" + p);
  EXPECT_EQ(plain.format(),
            "test.yaml:4:22: auth.users[0].password_hash: not an argon2id hash; create one with "
            "`mailbridge hash-password`");
  expectIssue(
      "auth:\n  users:\n    - name: scanner\n      password_hash: '$argon2id$v=19$junk'\n" + p, 4,
      22, "auth.users[0].password_hash",
      "not a valid argon2id hash (it does not parse); create one with `mailbridge "
      "hash-password`");
  expectIssue("auth:\n  users:\n    - name: scanner\n      password_hash: ''\n" + p, 4, 22,
              "auth.users[0].password_hash", "expected an argon2id hash, got an empty string");
  expectIssue("auth:\n  users:\n    - name: scanner\n" + p, 3, 7, "auth.users[0].password_hash",
              "required; create one with `mailbridge hash-password`");
  expectIssue("auth:\n  users:\n    - name: scanner\n      pasword_hash: x\n" + p, 4, 7,
              "auth.users[0].pasword_hash", "did you mean 'password_hash'?");
  expectIssue(std::string("auth:\n  users:\n    - password_hash: '") + kHash + "'\n" + p, 3, 7,
              "auth.users[0].name", "required; the user name that clients give to AUTH");
  expectIssue(std::string("auth:\n  users:\n    - name: 'my scanner'\n      password_hash: '") +
                  kHash + "'\n" + p,
              3, 13, "auth.users[0].name",
              "expected a user name of printable ASCII characters without spaces, at most 256, "
              "got 'my scanner'");
  expectIssue(std::string("auth:\n  users:\n    - name: '") + std::string(257, 'a') +
                  "'\n      password_hash: '" + kHash + "'\n" + p,
              3, 13, "auth.users[0].name", "at most 256");
  expectIssue(std::string("auth:\n  users:\n    - name: \"a\\tb\"\n      password_hash: '") +
                  kHash + "'\n" + p,
              3, 13, "auth.users[0].name", "got 'a\\x09b'");
  expectIssue(std::string("auth:\n  users:\n    - name: a\n      password_hash: '") + kHash +
                  "'\n    - name: a\n      password_hash: '" + kHash + "'\n" + p,
              5, 13, "auth.users[1].name", "duplicate user name 'a'; auth.users[0] has it too");
  expectIssue("auth:\n  users:\n    - scanner\n" + p, 3, 7, "auth.users[0]",
              "expected a mapping with name and password_hash, got a scalar");
  expectIssue(userYaml("      allowed_senders: ['@example.com', 'bad pattern']\n"), 5, 41,
              "auth.users[0].allowed_senders[1]",
              "invalid sender pattern 'bad pattern': expected an address such as "
              "scanner@example.com");
  expectIssue(userYaml("      allowed_senders: '@example.com'\n"), 5, 24,
              "auth.users[0].allowed_senders",
              "expected a list of sender addresses or @domains such as scanner@example.com, got "
              "a scalar");
  expectIssue(userYaml("      allowed_recipient_domains: [example.com, 'ex ample.com']\n"), 5, 48,
              "auth.users[0].allowed_recipient_domains[1]",
              "invalid domain 'ex ample.com': only letters, digits, '-' and '.' are allowed");
  expectIssue(userYaml("      sender_override: '@example.com'\n"), 5, 24,
              "auth.users[0].sender_override",
              "invalid address '@example.com': the part before '@' is empty");
  expectIssue(userYaml("      sender_override: scanner\n"), 5, 24, "auth.users[0].sender_override",
              "invalid address 'scanner': expected an address such as scanner@example.com");
}

TEST(ConfigLoader, SendersAndRecipients) {
  const std::string p = kProviders;
  const Config c = load("senders:\n  allowed: []\nrecipients:\n  allowed_domains: []\n" + p);
  EXPECT_TRUE(c.senders.allowed.empty());
  EXPECT_TRUE(c.recipients.allowed_domains.empty());

  expectIssue("senders:\n  allowed: [x]\n" + p, 2, 13, "senders.allowed[0]",
              "invalid sender pattern 'x': expected an address such as scanner@example.com");
  expectIssue("senders:\n  allowed:\n    - '@exa_mple.com'\n" + p, 3, 7, "senders.allowed[0]",
              "invalid sender pattern '@exa_mple.com': invalid domain 'exa_mple.com'");
  expectIssue("senders:\n  allowed: [{a: b}]\n" + p, 2, 13, "senders.allowed[0]",
              "expected an address or @domain such as scanner@example.com, got a mapping");
  expectIssue("senders:\n  override: nobody\n" + p, 2, 13, "senders.override",
              "invalid address 'nobody': expected an address such as scanner@example.com");
  expectIssue("senders:\n  default: '@example.com'\n" + p, 2, 12, "senders.default",
              "invalid address '@example.com'");
  expectIssue("senders:\n  default: ''\n" + p, 2, 12, "senders.default",
              "expected an address such as noreply@example.com, got an empty string");
  expectIssue("senders:\n  overide: a@example.com\n" + p, 2, 3, "senders.overide",
              "did you mean 'override'?");
  expectIssue("recipients:\n  allowed_domains: ['@example.com']\n" + p, 2, 21,
              "recipients.allowed_domains[0]",
              "invalid domain '@example.com': write the domain without '@'");
  expectIssue("recipients:\n  allowed_domains: example.com\n" + p, 2, 20,
              "recipients.allowed_domains",
              "expected a list of domains such as example.com, got a scalar");
  expectIssue("recipients:\n  domains: [example.com]\n" + p, 2, 3, "recipients.domains",
              "unknown key; valid keys are: allowed_domains");
}

TEST(ConfigLoader, DuplicateListeners) {
  const std::string p = kProviders;
  expectIssue(
      "listeners:\n  - {name: a, address: 127.0.0.1:25}\n  - {name: a, address: "
      "127.0.0.1:26}\n" +
          p,
      3, 12, "listeners[1].name", "duplicate listener name 'a'; listeners[0] uses it too");
  expectIssue(
      "listeners:\n  - {name: a, address: 127.0.0.1:25}\n  - {name: b, address: "
      "localhost:25}\n" +
          p,
      3, 24, "listeners[1].address", "duplicate listener address; listeners[0]");
  // Same address and a name taken from it: reported once.
  expectIssue("listeners:\n  - address: '[::1]:25'\n  - address: '[::1]:25'\n" + p, 3, 14,
              "listeners[1].address", "duplicate listener address");
  // Port 0 twice without names: the names clash, not the addresses.
  expectIssue("listeners:\n  - address: 127.0.0.1:0\n  - address: 127.0.0.1:0\n" + p, 3, 14,
              "listeners[1].address", "give each listener a name");
}

TEST(ConfigLoader, NetworkErrorsNameTheEntry) {
  expectIssue(std::string("access:\n  allowed_networks:\n    - 127.0.0.0/8\n    - 10.0.0.0/33\n") +
                  kProviders,
              4, 7, "access.allowed_networks[1]",
              "invalid network '10.0.0.0/33': prefix length 33 is larger than 32");
  expectIssue(std::string("access:\n  anonymous_networks: [localhost]\n") + kProviders, 2, 24,
              "access.anonymous_networks[0]", "invalid network 'localhost'");
  expectIssue(std::string("access:\n  allowed_networks: 10.0.0.0/8\n") + kProviders, 2, 21,
              "access.allowed_networks",
              "expected a list of networks such as 192.0.2.0/24, got a scalar");
  expectIssue(std::string("access:\n  allowed_networks:\n    - {a: b}\n") + kProviders, 3, 7,
              "access.allowed_networks[0]", "got a mapping");
}

TEST(ConfigLoader, QueueRetryDelays) {
  const std::string p = kProviders;
  expectIssue("queue:\n  retry_delay: 10m\n  max_retry_delay: 5m\n" + p, 3, 20,
              "queue.max_retry_delay", "must be at least retry_delay (10m), got 5m");
  expectIssue("queue:\n  retry_delay: 1h\n" + p, 2, 16, "queue.retry_delay",
              "must not exceed max_retry_delay (30m by default)");
  const Config c = load("queue:\n  retry_delay: 1h\n  max_retry_delay: 1h\n" + p);
  EXPECT_EQ(c.queue.max_retry_delay, seconds(3600));
  const Config d = load("queue:\n  max_retry_delay: 2m\n" + p);
  EXPECT_EQ(d.queue.retry_delay, seconds(60));
}

TEST(ConfigLoader, QueuePacingAndBreakerErrors) {
  const std::string p = kProviders;
  expectIssue("queue:\n  max_lifetime: 30s\n" + p, 2, 17, "queue.max_lifetime",
              "expected a duration from 1m to 52w1d, got 30s");
  expectIssue("queue:\n  max_in_flight_per_mailbox: 0\n" + p, 2, 30,
              "queue.max_in_flight_per_mailbox",
              "expected an integer from 1 to 1000, got 0");
  expectIssue("queue:\n  max_per_minute_per_mailbox: -1\n" + p, 2, 31,
              "queue.max_per_minute_per_mailbox",
              "expected an integer from 0 to 100000, got -1");
  expectIssue("queue:\n  breaker_failures: 1001\n" + p, 2, 21, "queue.breaker_failures",
              "expected an integer from 0 to 1000, got 1001");
  expectIssue("queue:\n  breaker_cooldown: 0s\n" + p, 2, 21, "queue.breaker_cooldown",
              "expected a duration from 1s to 52w1d, got 0s");
  expectIssue("queue:\n  bounce_to: admin\n" + p, 2, 14, "queue.bounce_to",
              "admin and both need queue.admin_address");
  expectIssue("queue:\n  bounce_to: postmaster\n" + p, 2, 14, "queue.bounce_to", "sender");
  expectIssue("queue:\n  admin_address: not-an-address\n" + p, 2, 18, "queue.admin_address", "");
  const Config c = load("queue:\n  max_lifetime: 1d12h\n  breaker_failures: 0\n" + p);
  EXPECT_EQ(c.queue.max_lifetime, seconds(36 * 3600));
  EXPECT_EQ(c.queue.breaker_failures, 0u);
}

TEST(ConfigLoader, TrackerSettings) {
  const std::string p = kProviders;
  const Config c = load(
      "tracker:\n  retention_days: 7\n  store_subject: false\n  store_addresses: false\n"
      "  masking: partial\n  log_rejected: false\n" +
      p);
  EXPECT_EQ(c.tracker.retention_days, 7);
  EXPECT_TRUE(c.tracker.enabled());
  EXPECT_FALSE(c.tracker.store_subject);
  EXPECT_FALSE(c.tracker.store_addresses);
  EXPECT_EQ(c.tracker.masking, Masking::Partial);
  EXPECT_FALSE(c.tracker.log_rejected);

  // Keys not given keep their defaults; choices and booleans take the
  // usual YAML spellings.
  const Config d = load("tracker:\n  masking: PARTIAL\n  store_subject: off\n" + p);
  EXPECT_EQ(d.tracker.masking, Masking::Partial);
  EXPECT_FALSE(d.tracker.store_subject);
  EXPECT_EQ(d.tracker.retention_days, 30);
  EXPECT_TRUE(d.tracker.store_addresses);
  EXPECT_TRUE(d.tracker.log_rejected);
  EXPECT_EQ(load("tracker:\n  masking: none\n  store_subject: true\n" + p).tracker, TrackerConfig{});
}

TEST(ConfigLoader, TrackerRetention) {
  const std::string p = kProviders;
  const Config off = load("tracker:\n  retention_days: -1\n" + p);
  EXPECT_EQ(off.tracker.retention_days, -1);
  EXPECT_FALSE(off.tracker.enabled());
  const Config forever = load("tracker:\n  retention_days: 0\n" + p);
  EXPECT_EQ(forever.tracker.retention_days, 0);
  EXPECT_TRUE(forever.tracker.enabled());
  EXPECT_EQ(load("tracker:\n  retention_days: 1\n" + p).tracker.retention_days, 1);
  EXPECT_EQ(load("tracker:\n  retention_days: 365\n" + p).tracker.retention_days, 365);
  EXPECT_EQ(load("tracker:\n  retention_days: 36500\n" + p).tracker.retention_days, 36500);

  const std::string forms =
      "expected -1 (store nothing: the tracker is off), 0 (keep forever) or a number of days "
      "from 1 to 36500, got ";
  expectIssue("tracker:\n  retention_days: -2\n" + p, 2, 19, "tracker.retention_days",
              forms + "-2");
  expectIssue("tracker:\n  store_subject: true\n  retention_days: 40000\n" + p, 3, 19,
              "tracker.retention_days", forms + "40000");
  expectIssue("tracker:\n  retention_days: 36501\n" + p, 2, 19, "tracker.retention_days",
              forms + "36501");
  expectIssue("tracker:\n  retention_days: 30d\n" + p, 2, 19, "tracker.retention_days",
              forms + "'30d'");
  expectIssue("tracker:\n  retention_days: 99999999999999999999\n" + p, 2, 19,
              "tracker.retention_days", "(too large)");
  expectIssue("tracker:\n  retention_days:\n" + p, 2, 3, "tracker.retention_days",
              "got nothing");
}

TEST(ConfigLoader, AdminSettings) {
  const std::string p = kProviders;
  const Config d = load(p);
  EXPECT_TRUE(d.admin.enabled);
  EXPECT_EQ(d.admin.host, "127.0.0.1");
  EXPECT_EQ(d.admin.port, 8025);
  EXPECT_FALSE(d.admin.tls);
  EXPECT_TRUE(d.admin.password_hash.empty());
  EXPECT_TRUE(d.admin.api_token.empty());
  EXPECT_FALSE(d.admin.public_metrics);
  EXPECT_TRUE(d.admin.public_health);
  EXPECT_EQ(d.admin.session_timeout, seconds(1800));

  const Config c = load(std::string("admin:\n  address: '[::1]:9090'\n  tls: true\n  password_hash: '") + kHash +
                        "'\n  api_token: 0123456789abcdef0123\n  public_metrics: yes\n  public_health: no\n"
                        "  session_timeout: 2h\n" + p);
  EXPECT_TRUE(c.admin.enabled);
  EXPECT_EQ(c.admin.host, "::1");
  EXPECT_EQ(c.admin.port, 9090);
  EXPECT_TRUE(c.admin.tls);
  EXPECT_EQ(c.admin.password_hash, kHash);
  EXPECT_EQ(c.admin.api_token.reveal(), "0123456789abcdef0123");
  EXPECT_TRUE(c.admin.public_metrics);
  EXPECT_FALSE(c.admin.public_health);
  EXPECT_EQ(c.admin.session_timeout, seconds(7200));

  EXPECT_FALSE(load("admin:\n  address: off\n" + p).admin.enabled);
  EXPECT_EQ(load("admin:\n  address: localhost:0\n" + p).admin.port, 0);
}

TEST(ConfigLoader, ClientSecretExpiry) {
  const std::string graph =
      "providers:\n  - name: m365\n    type: graph\n    tenant_id: contoso.onmicrosoft.com\n"
      "    client_id: 00000000-0000-0000-0000-000000000001\n";
  const Config c = load(graph + "    client_secret: s3cret\n    client_secret_expires: 2027-06-30\n");
  EXPECT_EQ(c.providers[0].client_secret_expires, 1814313600);  // 2027-06-30T00:00:00Z
  EXPECT_EQ(load(graph + "    client_secret: s3cret\n").providers[0].client_secret_expires, 0);
  expectIssue(graph + "    client_secret: s3cret\n    client_secret_expires: 30.6.2027\n", 7, 28,
              "providers[0].client_secret_expires", "expected a date such as 2027-06-30");
  expectIssue(graph + "    client_secret: s3cret\n    client_secret_expires: 2027-02-30x\n", 7, 28,
              "providers[0].client_secret_expires", "expected a date");
}

TEST(ConfigLoader, LogFileAndItsRetention) {
  const std::string p = kProviders;
  const Config d = load(p);
  EXPECT_TRUE(d.logging.file.empty());
  EXPECT_EQ(d.logging.retention_days, 30);
  EXPECT_FALSE(d.logging.writesFile());
  const Config c = load("logging:\n  file: log/mailbridge.log\n  retention_days: 14\n" + p);
  EXPECT_EQ(c.logging.file, "/etc/mailbridge/log/mailbridge.log");
  EXPECT_EQ(c.logging.retention_days, 14);
  EXPECT_TRUE(c.logging.writesFile());
  EXPECT_FALSE(load("logging:\n  file: /var/log/mb.log\n  retention_days: -1\n" + p).logging.writesFile());
  EXPECT_TRUE(load("logging:\n  file: /var/log/mb.log\n  retention_days: 0\n" + p).logging.writesFile());
  expectIssue("logging:\n  retention_days: -3\n" + p, 2, 19, "logging.retention_days",
              "-1 (write no log file), 0 (keep log files forever) or a number of days");
}

TEST(ConfigLoader, AdminErrors) {
  const std::string p = kProviders;
  expectIssue("admin:\n  address: 8025\n" + p, 2, 12, "admin.address", "missing ':PORT'");
  expectIssue("admin:\n  address: admin.example:8025\n" + p, 2, 12, "admin.address",
              "host names are not resolved");
  expectIssue("admin:\n  password_hash: secret123\n" + p, 2, 18, "admin.password_hash",
              "create one with `mailbridge hash-password`");
  // The value itself is never repeated.
  for (const auto& issue : issuesOf("admin:\n  password_hash: secret123\n" + p)) {
    EXPECT_EQ(issue.message.find("secret123"), std::string::npos) << issue.message;
  }
  expectIssue("admin:\n  api_token: short\n" + p, 2, 14, "admin.api_token", "too short");
  expectIssue("admin:\n  session_timeout: 10s\n" + p, 2, 20, "admin.session_timeout",
              "expected a duration from 1m to 12h");
  expectIssue("admin:\n  public_metric: true\n" + p, 2, 3, "admin.public_metric",
              "unknown key; did you mean 'public_metrics'?");
}

TEST(ConfigLoader, TrackerErrors) {
  const std::string p = kProviders;
  expectIssue("tracker:\n  masking: bogus\n" + p, 2, 12, "tracker.masking",
              "expected one of: none, partial; got 'bogus'");
  expectIssue("tracker:\n  store_subjects: false\n" + p, 2, 3, "tracker.store_subjects",
              "unknown key; did you mean 'store_subject'?");
  expectIssue("tracker:\n  store_addresses: maybe\n" + p, 2, 20, "tracker.store_addresses",
              "expected true or false, got 'maybe'");
  expectIssue("tracker:\n  log_rejected: [yes]\n" + p, 2, 17, "tracker.log_rejected",
              "expected true or false, got a list");
  expectIssue("tracker: 30\n" + p, 1, 10, "tracker",
              "expected a mapping with the keys retention_days, store_subject, store_addresses, "
              "masking, log_rejected");
  expectIssue("traker:\n  retention_days: 7\n" + p, 1, 1, "traker",
              "unknown key; did you mean 'tracker'?");
  // A bad value keeps the default for that key only; the error is reported.
  const auto issues = issuesOf("tracker:\n  retention_days: -5\n  masking: bogus\n" + p);
  ASSERT_EQ(issues.size(), 2u);
  EXPECT_EQ(issues[0].line, 2);
  EXPECT_EQ(issues[1].line, 3);
}

TEST(ConfigLoader, ProviderErrors) {
  expectIssue("server: {}\n", 0, 0, "providers", "required; add at least one provider");
  expectIssue("", 0, 0, "providers", "required");
  expectIssue("providers: []\n", 1, 12, "providers", "at least one provider is required");
  expectIssue("providers:\n  - name: x\n    type: ses\n", 3, 11, "providers[0].type",
              "unknown provider type 'ses'; supported types: outbox, graph, gmail, smtp");
  expectIssue("providers:\n  - name: x\n    directory: /d\n", 2, 5, "providers[0].type",
              "required; supported types: outbox, graph, gmail, smtp");
  expectIssue("providers:\n  - name: x\n    type: outbox\n", 2, 5, "providers[0].directory",
              "required for type outbox");
  expectIssue("providers:\n  - type: outbox\n    directory: /d\n", 2, 5, "providers[0].name",
              "required");
  expectIssue("providers:\n  - name: 'my box'\n    type: outbox\n    directory: /d\n", 2, 11,
              "providers[0].name", "expected a name of letters, digits, '_' and '-', got 'my box'");
  expectIssue(
      "providers:\n  - {name: a, type: outbox, directory: /d}\n  - {name: a, type: outbox, "
      "directory: /e}\n",
      3, 12, "providers[1].name", "duplicate provider name 'a'; providers[0] uses it too");
  expectIssue("providers:\n  name: a\n", 2, 3, "providers",
              "expected a list of providers ('- name: ...'), got a mapping");
}

TEST(ConfigLoader, GraphProvider) {
  const Config c = load(
      "providers:\n"
      "  - name: m365\n"
      "    type: graph\n"
      "    tenant_id: contoso.onmicrosoft.com\n"
      "    client_id: 00000000-0000-0000-0000-000000000001\n"
      "    client_secret: s3cr3t-value\n");
  ASSERT_EQ(c.providers.size(), 1u);
  const ProviderConfig& p = c.providers[0];
  EXPECT_EQ(p.type, ProviderType::Graph);
  EXPECT_EQ(p.tenant_id, "contoso.onmicrosoft.com");
  EXPECT_EQ(p.client_secret.reveal(), "s3cr3t-value");
  EXPECT_EQ(p.login_endpoint, "https://login.microsoftonline.com");
  EXPECT_EQ(p.graph_endpoint, "https://graph.microsoft.com");
  EXPECT_EQ(p.scope, "https://graph.microsoft.com/.default");
  EXPECT_EQ(p.timeout, std::chrono::seconds(120));
  EXPECT_TRUE(p.save_to_sent);

  const Config china = load(
      "providers:\n"
      "  - {name: cn, type: graph, tenant_id: t, client_id: c, client_secret: s, cloud: china,\n"
      "     graph_endpoint: 'https://127.0.0.1:8443/', timeout: 30s, save_to_sent: false}\n");
  EXPECT_FALSE(china.providers[0].save_to_sent);
  EXPECT_EQ(china.providers[0].login_endpoint, "https://login.chinacloudapi.cn");
  EXPECT_EQ(china.providers[0].graph_endpoint, "https://127.0.0.1:8443");
  // A reload compares providers whole: a new secret is a change.
  const std::string graph = "providers:\n  - {name: m, type: graph, tenant_id: t, client_id: c, client_secret: ";
  EXPECT_EQ(load(graph + "one}\n").providers, load(graph + "one}\n").providers);
  EXPECT_NE(load(graph + "one}\n").providers, load(graph + "two}\n").providers);
  // The resource stays the cloud's Graph, wherever the requests go.
  EXPECT_EQ(china.providers[0].scope, "https://microsoftgraph.chinacloudapi.cn/.default");
  EXPECT_EQ(china.providers[0].timeout, std::chrono::seconds(30));
}

TEST(ConfigLoader, SendersUseFromHeader) {
  EXPECT_FALSE(load(kProviders).senders.use_from_header);
  EXPECT_TRUE(load(std::string("senders:\n  use_from_header: true\n") + kProviders).senders.use_from_header);
}

TEST(ConfigLoader, GraphProviderSigningInAsAUser) {
  const Config c = load(
      "providers:\n"
      "  - {name: m, type: graph, auth_mode: refresh_token, user: relay@contoso.example, tenant_id: t,\n"
      "     client_id: c}\n");
  const ProviderConfig& p = c.providers[0];
  EXPECT_EQ(p.auth_mode, GraphAuthMode::RefreshToken);
  EXPECT_EQ(p.user, "relay@contoso.example");
  EXPECT_TRUE(p.client_secret.empty()) << "a public client needs no secret";
  EXPECT_EQ(p.scope, "https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.ReadWrite offline_access");
  EXPECT_EQ(load("providers:\n  - {name: m, type: graph, tenant_id: t, client_id: c, client_secret: s}\n")
                .providers[0]
                .auth_mode,
            GraphAuthMode::App);

  const std::string head = "providers:\n  - name: m\n    type: graph\n    tenant_id: t\n    client_id: c\n";
  expectIssue(head + "    auth_mode: refresh_token\n", 2, 5, "providers[0].user", "required for auth_mode refresh_token");
  expectIssue(head + "    auth_mode: refresh_token\n    user: not-an-address\n", 7, 11, "providers[0].user", "");
  expectIssue(head + "    client_secret: s\n    user: a@b.example\n", 7, 11, "providers[0].user",
              "only for auth_mode refresh_token");
  expectIssue(head + "    auth_mode: refresh_token\n    user: a@b.example\n    cert_file: /c.pem\n", 8, 16,
              "providers[0].cert_file", "not a certificate");
  expectIssue(head + "    auth_mode: delegated\n    client_secret: s\n", 6, 16, "providers[0].auth_mode",
              "app, refresh_token, user_password");
  expectIssue(head + "    auth_mode: user_password\n    user: a@b.example\n", 7, 11, "providers[0].user",
              "the SMTP AUTH user signs in");
  EXPECT_EQ(load(head + "    auth_mode: user_password\n").providers[0].auth_mode, GraphAuthMode::UserPassword);
  const std::string two =
      "providers:\n  - {name: a, type: graph, tenant_id: t, client_id: c, auth_mode: user_password}\n"
      "  - {name: b, type: graph, tenant_id: t, client_id: c, auth_mode: user_password}\n";
  expectIssue(two, 3, 67, "providers[1].auth_mode", "only one provider may use auth_mode user_password");
}

TEST(ConfigLoader, Routes) {
  const std::string two =
      "listeners:\n  - {name: lan, address: 127.0.0.1:25}\n"
      "providers:\n  - {name: a, type: outbox, directory: /a}\n  - {name: b, type: outbox, directory: /b}\n";
  const Config c = load(two +
                        "routes:\n  - {from: ['@sub.example'], user: [erp], listener: [lan], to_domain: [x.example], "
                        "provider: b}\n  - {provider: a}\n");
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].from, std::vector<std::string>{"@sub.example"});
  EXPECT_EQ(c.routes[0].users, std::vector<std::string>{"erp"});
  EXPECT_EQ(c.routes[0].listeners, std::vector<std::string>{"lan"});
  EXPECT_EQ(c.routes[0].to_domains, std::vector<std::string>{"x.example"});
  EXPECT_EQ(c.routes[0].provider, "b");
  EXPECT_TRUE(c.routes[1].from.empty());
  expectIssue(two + "routes:\n  - {from: ['@x.example'], provider: c}\n", 7, 38, "routes[0].provider",
              "no provider named 'c'");
  expectIssue(two + "routes:\n  - {listener: [wan], provider: a}\n", 7, 16, "routes[0].listener",
              "no listener named 'wan'");
  expectIssue(two + "routes:\n  - {from: ['@x.example']}\n", 7, 5, "routes[0].provider", "required");
  expectIssue(two + "routes:\n  - {form: ['@x.example'], provider: a}\n", 7, 6, "routes[0].form",
              "did you mean 'from'?");
}

TEST(ConfigLoader, GmailProvider) {
  mb::testing::TempDir dir;
  const auto key = (dir.path() / "sa.json").string();
  std::ofstream(key) << "{}";
  const Config c = load("providers:\n  - {name: gws, type: gmail, service_account_file: " + key + "}\n");
  const ProviderConfig& p = c.providers[0];
  EXPECT_EQ(p.type, ProviderType::Gmail);
  EXPECT_EQ(p.service_account_file, key);
  EXPECT_EQ(p.api_endpoint, "https://gmail.googleapis.com");
  EXPECT_EQ(p.scope, "https://www.googleapis.com/auth/gmail.send");
  EXPECT_TRUE(p.token_uri.empty()) << "the key file's";
  const std::string head = "providers:\n  - name: g\n    type: gmail\n";
  expectIssue(head, 2, 5, "providers[0].service_account_file", "required for type gmail");
  expectIssue(head + "    service_account_file: /nonexistent/sa.json\n", 4, 27, "providers[0].service_account_file",
              "cannot read the file");
  expectIssue(head + "    service_account_file: " + key + "\n    tenant_id: t\n", 5, 16, "providers[0].tenant_id",
              "not a setting of type gmail");
  expectIssue(head + "    service_account_file: " + key + "\n    token_uri: http://x/token\n", 5, 16,
              "providers[0].token_uri", "expected an https URL");
  expectIssue("providers:\n  - {name: g, type: graph, tenant_id: t, client_id: c, client_secret: s,\n"
              "     service_account_file: /x}\n",
              3, 28, "providers[0].service_account_file", "not a setting of type graph");
}

TEST(ConfigLoader, GraphProviderErrors) {
  const std::string head = "providers:\n  - name: m\n    type: graph\n";
  expectIssue(head + "    client_id: c\n    client_secret: s\n", 2, 5, "providers[0].tenant_id",
              "required for type graph");
  expectIssue(head + "    tenant_id: t\n    client_id: c\n", 2, 5, "providers[0].client_secret",
              "or a certificate");
  expectIssue(head + "    tenant_id: t\n    client_id: c\n    client_secret: s\n    directory: /d\n",
              7, 16, "providers[0].directory", "not a setting of type graph");
  expectIssue(head + "    tenant_id: t\n    client_id: c\n    client_secret: s\n"
                     "    graph_endpoint: http://graph.example\n",
              7, 21, "providers[0].graph_endpoint", "expected an https URL");
  expectIssue(head + "    tenant_id: t\n    client_id: c\n    client_secret: s\n"
                     "    login_endpoint: https://login.example/tenant\n",
              7, 21, "providers[0].login_endpoint", "without a path");
  expectIssue(head + "    tenant_id: t\n    client_id: c\n    client_secret: s\n    cloud: mars\n", 7,
              12, "providers[0].cloud", "one of: global, usgov, usgov-dod, china");
  expectIssue(head + "    tenant_id: 'a b'\n    client_id: c\n    client_secret: s\n", 4, 16,
              "providers[0].tenant_id", "GUID or a domain");
  expectIssue(head + "    tenant_id: t\n    client_id: c\n    client_secret: s\n"
                     "    cert_file: /nonexistent.pem\n",
              7, 16, "providers[0].cert_file", "not both");
  expectIssue(head + "    tenant_id: t\n    client_id: c\n    client_secret: s\n    key_file: /k.pem\n", 7,
              15, "providers[0].key_file", "key_file needs cert_file");
  expectIssue(head + "    tenant_id: t\n    client_id: c\n    client_secret: s\n    save_to_sent: maybe\n", 7,
              19, "providers[0].save_to_sent", "true or false");
  expectIssue("providers:\n  - {name: o, type: outbox, directory: /d, tenant_id: t}\n", 2, 55,
              "providers[0].tenant_id", "not a setting of type outbox");
}

TEST(ConfigLoader, SmtpProvider) {
  const Config c = load(
      "providers:\n"
      "  - name: relay\n"
      "    type: smtp\n"
      "    host: smtp.example.com\n"
      "    auth: plain\n"
      "    username: scanner@example.com\n"
      "    password: s3cr3t-value\n");
  ASSERT_EQ(c.providers.size(), 1u);
  const ProviderConfig& p = c.providers[0];
  EXPECT_EQ(p.type, ProviderType::Smtp);
  EXPECT_EQ(p.host, "smtp.example.com");
  EXPECT_EQ(p.tls, SmtpTls::StartTls);
  EXPECT_EQ(p.port, 587);
  EXPECT_EQ(p.auth, SmtpAuth::Plain);
  EXPECT_EQ(p.username, "scanner@example.com");
  EXPECT_EQ(p.password.reveal(), "s3cr3t-value");
  EXPECT_TRUE(p.helo_name.empty()) << "server.hostname is used";
  EXPECT_TRUE(p.ca_file.empty());
  EXPECT_TRUE(p.scope.empty());
  EXPECT_EQ(p.timeout, seconds(60));
  EXPECT_EQ(p.max_connections, 4u);
  EXPECT_EQ(p.max_messages_per_connection, 100u);
  EXPECT_EQ(p.idle_timeout, seconds(5));

  const std::string smtp = "providers:\n  - {name: s, type: smtp, ";
  EXPECT_EQ(load(smtp + "host: mx.example.com}\n").providers[0].auth, SmtpAuth::None);
  EXPECT_EQ(load(smtp + "host: mx.example.com, tls: implicit}\n").providers[0].port, 465);
  EXPECT_EQ(load(smtp + "host: 127.0.0.1, tls: none}\n").providers[0].port, 25);
  EXPECT_EQ(load(smtp + "host: localhost, tls: None}\n").providers[0].tls, SmtpTls::None);
  EXPECT_EQ(load(smtp + "host: 127.0.0.53, tls: none}\n").providers[0].host, "127.0.0.53");
  EXPECT_EQ(load(smtp + "host: '::1', tls: none}\n").providers[0].host, "::1");
  EXPECT_EQ(load(smtp + "host: '[2001:db8::25]'}\n").providers[0].host, "2001:db8::25") << "kept without brackets";
  EXPECT_EQ(load(smtp + "host: mx.example.com, tls: implicit, port: 2465}\n").providers[0].port, 2465);

  const Config all = load(
      "providers:\n"
      "  - {name: s, type: smtp, host: 192.0.2.25, port: 25, helo_name: relay.example.com, auth: login,\n"
      "     username: 'DOMAIN\\scanner', password: pw, timeout: 2m, max_connections: 100,\n"
      "     max_messages_per_connection: 100000, idle_timeout: 0}\n");
  const ProviderConfig& q = all.providers[0];
  EXPECT_EQ(q.port, 25);
  EXPECT_EQ(q.tls, SmtpTls::StartTls);
  EXPECT_EQ(q.helo_name, "relay.example.com");
  EXPECT_EQ(q.auth, SmtpAuth::Login);
  EXPECT_EQ(q.username, "DOMAIN\\scanner");
  EXPECT_EQ(q.timeout, seconds(120));
  EXPECT_EQ(q.max_connections, 100u);
  EXPECT_EQ(q.max_messages_per_connection, 100000u);
  EXPECT_EQ(q.idle_timeout, seconds(0)) << "0: never reuse a connection";
  EXPECT_EQ(load(smtp + "host: h.example, helo_name: '[192.0.2.1]'}\n").providers[0].helo_name, "[192.0.2.1]");
  EXPECT_EQ(load(smtp + "host: h.example, helo_name: '[IPv6:2001:db8::1]'}\n").providers[0].helo_name,
            "[IPv6:2001:db8::1]");
}

TEST(ConfigLoader, SmtpProviderErrors) {
  const std::string head = "providers:\n  - name: s\n    type: smtp\n";
  const std::string host = head + "    host: smtp.example.com\n";
  expectIssue(head + "    tls: starttls\n", 2, 5, "providers[0].host",
              "required for type smtp: the upstream server's host name, e.g. smtp.office365.com");
  expectIssue(head + "    host: smtp.example.com:587\n", 4, 11, "providers[0].host", "without a port");
  expectIssue(head + "    host: smtp://smtp.example.com\n", 4, 11, "providers[0].host", "without a scheme");
  expectIssue(head + "    host: 'smtp example.com'\n", 4, 11, "providers[0].host",
              "expected a host name such as smtp.office365.com or an IP address, got 'smtp example.com'");
  expectIssue(host + "    tls: none\n", 5, 10, "providers[0].tls",
              "credentials and mail across the network in plaintext");
  expectIssue(head + "    host: 10.0.0.25\n    tls: none\n", 5, 10, "providers[0].tls", "use starttls or implicit");
  expectIssue(head + "    host: localhost.example.com\n    tls: none\n", 5, 10, "providers[0].tls", "loopback");
  expectIssue(host + "    tls: ssl\n", 5, 10, "providers[0].tls", "one of: starttls, implicit, none");
  expectIssue(host + "    port: 0\n", 5, 11, "providers[0].port", "an integer from 1 to 65535");
  expectIssue(host + "    helo_name: 'relay example'\n", 5, 16, "providers[0].helo_name", "a domain name");
  expectIssue(host + "    timeout: 1s\n", 5, 14, "providers[0].timeout", "from 5s");
  expectIssue(host + "    max_connections: 101\n", 5, 22, "providers[0].max_connections", "from 1 to 100");
  expectIssue(host + "    max_messages_per_connection: 0\n", 5, 34, "providers[0].max_messages_per_connection",
              "from 1 to 100000");
  expectIssue(host + "    idle_timeout: 6m\n", 5, 19, "providers[0].idle_timeout", "from 0s to 5m");

  expectIssue(host + "    auth: plain\n    username: u\n", 2, 5, "providers[0].password",
              "required for auth plain and login");
  expectIssue(host + "    auth: login\n    password: p\n", 2, 5, "providers[0].username",
              "required for auth plain and login");
  expectIssue(host + "    auth: cram-md5\n", 5, 11, "providers[0].auth", "one of: none, plain, login, xoauth2");
  expectIssue(host + "    username: u\n", 5, 15, "providers[0].username",
              "username needs auth: plain, login or xoauth2");
  expectIssue(host + "    auth: none\n    password_file: /p\n", 6, 20, "providers[0].password_file",
              "password_file needs auth: plain or login");
  expectIssue(host + "    auth: plain\n    username: u\n    password: p\n    password_file: /p\n", 8, 5,
              "providers[0].password_file", "set only one of password, password_file or password_credential");
  expectIssue(host + "    auth: xoauth2\n", 2, 5, "providers[0].oauth",
              "required for auth xoauth2: entra (Microsoft 365) or google (Google Workspace)");
  expectIssue(host + "    auth: xoauth2\n    oauth: yahoo\n", 6, 12, "providers[0].oauth", "one of: entra, google");
  expectIssue(host + "    auth: plain\n    username: u\n    password: p\n    oauth: entra\n", 8, 12,
              "providers[0].oauth", "only for auth: xoauth2");
  expectIssue(host + "    auth: xoauth2\n    oauth: entra\n    tenant_id: t\n    client_id: c\n"
                     "    client_secret: s\n    password: p\n",
              10, 15, "providers[0].password", "not used with auth xoauth2");
  expectIssue(host + "    auth: xoauth2\n    oauth: entra\n    tenant_id: t\n    client_id: c\n"
                     "    client_secret: s\n    username: not-an-address\n",
              10, 15, "providers[0].username", "");
  expectIssue(host + "    auth: plain\n    username: u\n    password: p\n    tenant_id: t\n", 8, 16,
              "providers[0].tenant_id", "tenant_id is for auth: xoauth2 with oauth: entra");

  // Settings of the other provider types.
  expectIssue(host + "    save_to_sent: false\n", 5, 19, "providers[0].save_to_sent", "not a setting of type smtp");
  expectIssue(host + "    proxy: http://proxy.example:3128\n", 5, 12, "providers[0].proxy",
              "not a setting of type smtp");
  expectIssue(host + "    directory: /d\n", 5, 16, "providers[0].directory", "not a setting of type smtp");
  expectIssue(host + "    api_endpoint: https://gmail.googleapis.com\n", 5, 19, "providers[0].api_endpoint",
              "not a setting of type smtp");
  expectIssue("providers:\n  - {name: g, type: graph, tenant_id: t, client_id: c, client_secret: s, host: h}\n", 2,
              80, "providers[0].host", "not a setting of type graph");
  expectIssue("providers:\n  - {name: o, type: outbox, directory: /d, max_connections: 2}\n", 2, 61,
              "providers[0].max_connections", "not a setting of type outbox");
  // A misspelt key is one issue.
  expectIssue(host + "    auth: plain\n    username: u\n    pasword: p\n", 7, 5, "providers[0].pasword",
              "did you mean 'password'?");
}

TEST(ConfigLoader, SmtpProviderWithEntraTokens) {
  const std::string entra =
      "providers:\n"
      "  - name: m365\n"
      "    type: smtp\n"
      "    host: smtp.office365.com\n"
      "    auth: xoauth2\n"
      "    oauth: entra\n"
      "    tenant_id: contoso.onmicrosoft.com\n"
      "    client_id: 00000000-0000-0000-0000-000000000001\n";
  const Config c = load(entra + "    client_secret: s3cr3t-value\n");
  const ProviderConfig& p = c.providers[0];
  EXPECT_EQ(p.auth, SmtpAuth::XOAuth2);
  EXPECT_EQ(p.oauth, SmtpOAuth::Entra);
  EXPECT_EQ(p.auth_mode, GraphAuthMode::App);
  EXPECT_EQ(p.tenant_id, "contoso.onmicrosoft.com");
  EXPECT_EQ(p.client_secret.reveal(), "s3cr3t-value");
  EXPECT_EQ(p.login_endpoint, "https://login.microsoftonline.com");
  EXPECT_EQ(p.scope, "https://outlook.office365.com/.default");
  EXPECT_TRUE(p.username.empty()) << "each message's sending mailbox";
  EXPECT_TRUE(p.graph_endpoint.empty());
  EXPECT_EQ(p.port, 587);

  const std::string secret = "    client_secret: s\n";
  EXPECT_EQ(load(entra + secret + "    username: relay@contoso.example\n").providers[0].username,
            "relay@contoso.example");
  const Config gov = load(entra + secret + "    cloud: usgov\n");
  EXPECT_EQ(gov.providers[0].scope, "https://outlook.office365.us/.default");
  EXPECT_EQ(gov.providers[0].login_endpoint, "https://login.microsoftonline.us");
  EXPECT_EQ(load(entra + secret + "    cloud: usgov-dod\n").providers[0].scope,
            "https://outlook.office365.us/.default");
  const Config china = load(entra + secret + "    cloud: china\n    login_endpoint: https://127.0.0.1:8443\n");
  EXPECT_EQ(china.providers[0].scope, "https://partner.outlook.cn/.default");
  EXPECT_EQ(china.providers[0].login_endpoint, "https://127.0.0.1:8443");

  const Config delegated = load(entra + "    auth_mode: refresh_token\n    user: relay@contoso.example\n");
  EXPECT_EQ(delegated.providers[0].auth_mode, GraphAuthMode::RefreshToken);
  EXPECT_EQ(delegated.providers[0].user, "relay@contoso.example");
  EXPECT_TRUE(delegated.providers[0].client_secret.empty()) << "a public client needs no secret";
  EXPECT_EQ(delegated.providers[0].scope, "https://outlook.office.com/SMTP.Send offline_access");
  EXPECT_EQ(load(entra + "    auth_mode: refresh_token\n    user: a@b.example\n    cloud: usgov\n")
                .providers[0]
                .scope,
            "https://outlook.office365.us/SMTP.Send offline_access");
  EXPECT_EQ(load(entra + "    auth_mode: refresh_token\n    user: a@b.example\n    cloud: china\n")
                .providers[0]
                .scope,
            "https://partner.outlook.cn/SMTP.Send offline_access");

  const std::string head = "providers:\n  - name: m365\n    type: smtp\n    host: smtp.office365.com\n"
                           "    auth: xoauth2\n    oauth: entra\n";
  expectIssue(head + "    client_id: c\n    client_secret: s\n", 2, 5, "providers[0].tenant_id",
              "required for type smtp: the app registration's directory (tenant) ID");
  expectIssue(entra, 2, 5, "providers[0].client_secret", "required for type smtp: client_secret");
  expectIssue(entra + "    auth_mode: user_password\n", 9, 16, "providers[0].auth_mode",
              "user_password is only for type graph");
  expectIssue(entra + "    auth_mode: refresh_token\n", 2, 5, "providers[0].user",
              "required for auth_mode refresh_token");
  expectIssue(entra + "    auth_mode: refresh_token\n    user: a@b.example\n    cert_file: /c.pem\n", 11, 16,
              "providers[0].cert_file", "delegated sign-in (auth_mode refresh_token) uses a client secret");
  expectIssue(entra + secret + "    service_account_file: /sa.json\n", 10, 27,
              "providers[0].service_account_file", "service_account_file is for oauth: google");
  expectIssue(entra + secret + "    graph_endpoint: https://graph.microsoft.com\n", 10, 21,
              "providers[0].graph_endpoint", "not a setting of type smtp");

  // Only graph has user_password: an smtp provider beside such a graph
  // provider does not count as a second one.
  const Config mixed = load(
      "providers:\n  - {name: g, type: graph, tenant_id: t, client_id: c, auth_mode: user_password}\n"
      "  - {name: s, type: smtp, host: smtp.office365.com, auth: xoauth2, oauth: entra, tenant_id: t,\n"
      "     client_id: c, client_secret: s}\n");
  EXPECT_EQ(mixed.providers.size(), 2u);
}

TEST(ConfigLoader, SmtpProviderWithGoogleTokens) {
  mb::testing::TempDir dir;
  const auto key = (dir.path() / "sa.json").string();
  std::ofstream(key) << "{}";
  const std::string head =
      "providers:\n  - name: gws\n    type: smtp\n    host: smtp.gmail.com\n    tls: implicit\n"
      "    auth: xoauth2\n    oauth: google\n";
  const Config c = load(head + "    service_account_file: " + key + "\n");
  const ProviderConfig& p = c.providers[0];
  EXPECT_EQ(p.oauth, SmtpOAuth::Google);
  EXPECT_EQ(p.service_account_file, key);
  EXPECT_EQ(p.scope, "https://mail.google.com/");
  EXPECT_TRUE(p.token_uri.empty()) << "the key file's";
  EXPECT_EQ(p.port, 465);
  EXPECT_TRUE(p.api_endpoint.empty());

  const Config d = load(head + "    service_account_file: " + key +
                        "\n    token_uri: https://oauth2.googleapis.com/token\n    username: relay@example.com\n");
  EXPECT_EQ(d.providers[0].token_uri, "https://oauth2.googleapis.com/token");
  EXPECT_EQ(d.providers[0].username, "relay@example.com");

  expectIssue(head, 2, 5, "providers[0].service_account_file", "required for type smtp with oauth: google");
  expectIssue(head + "    service_account_file: /nonexistent/sa.json\n", 8, 27, "providers[0].service_account_file",
              "cannot read the file");
  expectIssue(head + "    service_account_file: " + key + "\n    token_uri: http://x/token\n", 9, 16,
              "providers[0].token_uri", "expected an https URL");
  expectIssue(head + "    service_account_file: " + key + "\n    tenant_id: t\n", 9, 16, "providers[0].tenant_id",
              "tenant_id is for oauth: entra");
  expectIssue(head + "    service_account_file: " + key + "\n    password: p\n", 9, 15, "providers[0].password",
              "not used with auth xoauth2");
}

TEST(ConfigLoader, UnknownKeysSuggestTheNearestKnownOne) {
  const std::string p = kProviders;
  expectIssue("smtp:\n  max_mesage_size: 10MB\n" + p, 2, 3, "smtp.max_mesage_size",
              "unknown key; did you mean 'max_message_size'?");
  expectIssue("smtp:\n  max_recipeints: 10\n" + p, 2, 3, "smtp.max_recipeints",
              "did you mean 'max_recipients'?");
  expectIssue("server:\n  HostName: x\n" + p, 2, 3, "server.HostName", "did you mean 'hostname'?");
  expectIssue("listener:\n  - address: 127.0.0.1:25\n" + p, 1, 1, "listener",
              "did you mean 'listeners'?");
  // A misspelt required key is one issue, not also "required".
  expectIssue("providers:\n  - {name: a, type: outbox, directroy: /d}\n", 2, 29,
              "providers[0].directroy", "did you mean 'directory'?");
  expectIssue("provider:\n  - {name: a, type: outbox, directory: /d}\n", 1, 1, "provider",
              "did you mean 'providers'?");
  expectIssue("providers:\n  - {name: a, type: outbox, directory: /d}\nLOGGING: {}\n", 3, 1,
              "LOGGING", "did you mean 'logging'?");
}

TEST(ConfigLoader, UnknownKeysFarFromAnyListTheValidOnes) {
  expectIssue(std::string("queue:\n  parallelism: 3\n") + kProviders, 2, 3, "queue.parallelism",
              "unknown key; valid keys are: retry_delay, max_retry_delay, max_in_flight");
  expectIssue(std::string("metrics:\n  port: 9090\n") + kProviders, 1, 1, "metrics",
              "valid keys are: server, listeners, tls, smtp, access, auth, senders, recipients, "
              "queue, providers, routes, tracker, admin, logging");
  expectIssue(std::string("tls:\n  cert: x\n") + kProviders, 2, 3, "tls.cert",
              "valid keys are: cert_file, key_file, pkcs12_file, pkcs12_password, "
              "pkcs12_password_file, pkcs12_password_credential");
}

TEST(ConfigLoader, DuplicateKeys) {
  expectIssue(std::string("smtp:\n  max_recipients: 5\n  max_recipients: 6\n") + kProviders, 3, 3,
              "smtp.max_recipients", "duplicate key; already given on line 2");
}

TEST(ConfigLoader, TypeErrorsAreIssuesNotCrashes) {
  const std::string p = kProviders;
  expectIssue("smtp:\n  max_recipients: {a: 1}\n" + p, 2, 19, "smtp.max_recipients",
              "expected an integer from 1 to 100000, got a mapping");
  expectIssue("smtp:\n  max_message_size: [1, 2]\n" + p, 2, 21, "smtp.max_message_size",
              "got a list");
  expectIssue("smtp:\n  max_recipients:\n" + p, 2, 3, "smtp.max_recipients", "got nothing");
  expectIssue("smtp: 5\n" + p, 1, 7, "smtp", "expected a mapping with the keys max_message_size");
  expectIssue("server: [a]\n" + p, 1, 9, "server", "got a list");
  expectIssue("listeners: 127.0.0.1:25\n" + p, 1, 12, "listeners", "expected a list of listeners");
  expectIssue("access:\n  open_relay: [true]\n" + p, 2, 15, "access.open_relay",
              "expected true or false, got a list");
  expectIssue("logging:\n  level: {x: 1}\n" + p, 2, 10, "logging.level", "got a mapping");
  expectIssue("- a\n- b\n", 1, 1, "", "expected a mapping with the sections server, listeners");
  expectIssue("just text\n", 1, 1, "", "got a scalar");
  expectIssue("? [a, b]\n: c\n" + p, 1, 3, "", "keys must be plain names, got a list");
}

TEST(ConfigLoader, MultipleIssuesAreCollectedInFileOrder) {
  const std::string yaml = R"(providers:
  - name: out
    type: outbox
smtp:
  max_recipients: 0
  max_mesage_size: 1MB
listeners:
  - address: 127.0.0.1:99999
    tls: ssl
)";
  const auto issues = issuesOf(yaml);
  ASSERT_EQ(issues.size(), 5u);
  EXPECT_EQ(issues[0].key, "providers[0].directory");
  EXPECT_EQ(issues[0].line, 2);
  EXPECT_EQ(issues[1].key, "smtp.max_recipients");
  EXPECT_EQ(issues[1].line, 5);
  EXPECT_EQ(issues[2].key, "smtp.max_mesage_size");
  EXPECT_EQ(issues[2].line, 6);
  EXPECT_EQ(issues[3].key, "listeners[0].address");
  EXPECT_EQ(issues[3].line, 8);
  EXPECT_EQ(issues[4].key, "listeners[0].tls");
  EXPECT_EQ(issues[4].line, 9);

  try {
    load(yaml);
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    std::string expected;
    for (const auto& i : issues) expected += (expected.empty() ? "" : "\n") + i.format();
    EXPECT_EQ(what, expected);
    EXPECT_NE(what.find("\ntest.yaml:9:10: listeners[0].tls: expected one of"), std::string::npos);
  }
}

TEST(ConfigLoader, YamlSyntaxErrorHasItsLine) {
  const ConfigIssue i = issueOf("server:\n  hostname: x\n state_dir: y\n");
  EXPECT_EQ(i.line, 3);
  EXPECT_EQ(i.column, 2);
  EXPECT_EQ(i.key, "");
  EXPECT_NE(i.message.find("YAML syntax error"), std::string::npos);

  const ConfigIssue j = issueOf(std::string(kProviders) + "access:\n  allowed_networks: [a, b\n");
  EXPECT_EQ(j.line, 5);
  EXPECT_NE(j.message.find("end of sequence flow not found"), std::string::npos);
}

TEST(ConfigLoader, OnlyOneDocument) {
  expectIssue(std::string(kProviders) + "---\nsmtp: {}\n", 4, 1, "",
              "only one YAML document is allowed");
}

TEST(ConfigLoader, RelativePathsResolveAgainstBaseDir) {
  const Config c = load(R"(server:
  state_dir: state/
providers:
  - {name: a, type: outbox, directory: ../var/./out}
  - {name: b, type: outbox, directory: /abs/x/../y}
)",
                        "/etc/mb");
  EXPECT_EQ(c.server.state_dir, "/etc/mb/state");
  EXPECT_EQ(c.providers[0].directory, "/etc/var/out");
  EXPECT_EQ(c.providers[1].directory, "/abs/y");
}

TEST(ConfigLoader, RelativeBaseDirIsMadeAbsolute) {
  const Config c = load("server: {state_dir: s}\n" + std::string(kProviders), "conf");
  EXPECT_EQ(c.server.state_dir, (stdfs::current_path() / "conf" / "s").lexically_normal());
}

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (stdfs::temp_directory_path() / "mb_config_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    stdfs::remove_all(dir_, ec);
  }
  stdfs::path write(const std::string& name, const std::string& content) {
    const auto file = dir_ / name;
    std::ofstream(file) << content;
    return file;
  }
  // Loads `yaml` as if it were the file test.yaml in dir_.
  Config loadHere(const std::string& yaml) {
    return loadConfigText(yaml + kProviders, kName, dir_);
  }
  std::vector<ConfigIssue> issuesHere(const std::string& yaml) {
    try {
      loadHere(yaml);
    } catch (const ConfigError& e) {
      return e.issues();
    }
    ADD_FAILURE() << "loaded without issues:\n" << yaml;
    return {};
  }
  ConfigIssue issueHere(const std::string& yaml) {
    auto issues = issuesHere(yaml);
    EXPECT_EQ(issues.size(), 1u) << [&] {
      std::string all;
      for (const auto& i : issues) all += i.format() + "\n";
      return all;
    }();
    return issues.empty() ? ConfigIssue{} : issues.front();
  }
  stdfs::path dir_;
};

TEST_F(ConfigFileTest, TlsPemFiles) {
  write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
  write("key.pem", "-----BEGIN PRIVATE KEY-----\n");
  Config c = loadHere("tls:\n  cert_file: cert.pem\n");
  EXPECT_EQ(c.tls.cert_file, dir_ / "cert.pem");
  EXPECT_EQ(c.tls.key_file, dir_ / "cert.pem");  // key and chain in one file
  EXPECT_TRUE(c.tls.pkcs12_file.empty());
  c = loadHere("tls:\n  cert_file: " + (dir_ / "cert.pem").string() + "\n  key_file: key.pem\n");
  EXPECT_EQ(c.tls.cert_file, dir_ / "cert.pem");
  EXPECT_EQ(c.tls.key_file, dir_ / "key.pem");
}

TEST_F(ConfigFileTest, TlsPkcs12File) {
  write("server.p12", "binary");
  write("p12.pass", "s3cret\n");
  Config c = loadHere("tls:\n  pkcs12_file: server.p12\n");
  EXPECT_EQ(c.tls.pkcs12_file, dir_ / "server.p12");
  EXPECT_TRUE(c.tls.cert_file.empty());
  EXPECT_TRUE(c.tls.key_file.empty());
  EXPECT_TRUE(c.tls.pkcs12_password.empty());
  c = loadHere("tls:\n  pkcs12_file: server.p12\n  pkcs12_password: inline-pw\n");
  EXPECT_EQ(c.tls.pkcs12_password.reveal(), "inline-pw");
  c = loadHere("tls:\n  pkcs12_file: server.p12\n  pkcs12_password_file: p12.pass\n");
  EXPECT_EQ(c.tls.pkcs12_password.reveal(), "s3cret");
  EXPECT_EQ(c.tls.pkcs12_password.source(), Secret::Source::File);
}

TEST_F(ConfigFileTest, TlsErrors) {
  write("cert.pem", "x");
  write("server.p12", "x");
  ConfigIssue i = issueHere("tls:\n  cert_file: cert.pem\n  pkcs12_file: server.p12\n");
  EXPECT_EQ(i.line, 3);
  EXPECT_EQ(i.column, 16);
  EXPECT_EQ(i.key, "tls.pkcs12_file");
  EXPECT_EQ(i.message,
            "cert_file and pkcs12_file exclude each other; give a PEM certificate (cert_file, "
            "key_file) or a PKCS#12 file, not both");

  i = issueHere("tls:\n  key_file: cert.pem\n");
  EXPECT_EQ(i.line, 2);
  EXPECT_EQ(i.column, 13);
  EXPECT_EQ(i.key, "tls.key_file");
  EXPECT_EQ(i.message, "key_file needs cert_file");
  i = issueHere("tls:\n  pkcs12_file: server.p12\n  key_file: cert.pem\n");
  EXPECT_EQ(i.key, "tls.key_file");
  EXPECT_EQ(i.message, "key_file needs cert_file; a PKCS#12 file holds its key itself");

  i = issueHere("tls:\n  cert_file: cert.pem\n  pkcs12_password: pw\n");
  EXPECT_EQ(i.line, 3);
  EXPECT_EQ(i.column, 20);
  EXPECT_EQ(i.key, "tls.pkcs12_password");
  EXPECT_EQ(i.message, "pkcs12_password needs pkcs12_file");
  i = issueHere("tls:\n  pkcs12_password_credential: p12\n");
  EXPECT_EQ(i.key, "tls.pkcs12_password_credential");
  EXPECT_EQ(i.message, "pkcs12_password_credential needs pkcs12_file");

  i = issueHere(
      "tls:\n  pkcs12_file: server.p12\n  pkcs12_password: a\n  pkcs12_password_file: b\n");
  EXPECT_EQ(i.line, 4);
  EXPECT_EQ(i.key, "tls.pkcs12_password_file");
  EXPECT_NE(i.message.find("set only one of"), std::string::npos);

  i = issueHere("tls:\n  cert_file: missing.pem\n");
  EXPECT_EQ(i.line, 2);
  EXPECT_EQ(i.column, 14);
  EXPECT_EQ(i.key, "tls.cert_file");
  EXPECT_EQ(i.message, "cannot read the file: open " + (dir_ / "missing.pem").string() +
                           ": No such file or directory");
  i = issueHere("tls:\n  cert_file: cert.pem\n  key_file: .\n");
  EXPECT_EQ(i.key, "tls.key_file");
  EXPECT_EQ(i.message, "cannot read the file: open " + dir_.string() + ": Is a directory");
  i = issueHere("tls:\n  pkcs12_file: /dev/null\n");
  EXPECT_EQ(i.message, "cannot read the file: /dev/null is not a regular file");
  if (::geteuid() != 0) {  // root reads anything
    stdfs::permissions(write("secret.pem", "x"), stdfs::perms::none);
    i = issueHere("tls:\n  cert_file: secret.pem\n");
    EXPECT_NE(i.message.find("Permission denied"), std::string::npos) << i.message;
  }

  i = issueHere("tls:\n  cert_flie: cert.pem\n");
  EXPECT_EQ(i.key, "tls.cert_flie");
  EXPECT_EQ(i.message, "unknown key; did you mean 'cert_file'?");
  // A misspelt cert_file is not also "key_file needs cert_file".
  EXPECT_EQ(issuesHere("tls:\n  cert_flie: cert.pem\n  key_file: cert.pem\n").size(), 1u);
}

TEST_F(ConfigFileTest, UsersFile) {
  write("users.yaml", std::string("# the users\n- name: printer\n  password_hash: '") + kHash +
                          "'\n  allowed_recipient_domains: [example.com]\n"
                          "- name: erp\n  password_hash: '" +
                          kHash + "'\n");
  const Config c = loadHere(std::string("auth:\n  users:\n    - name: scanner\n"
                                        "      password_hash: '") +
                            kHash + "'\n  users_file: users.yaml\n");
  EXPECT_EQ(c.auth.users_file, dir_ / "users.yaml");
  ASSERT_EQ(c.auth.users.size(), 3u);
  EXPECT_EQ(c.auth.users[0].name, "scanner");
  EXPECT_EQ(c.auth.users[1].name, "printer");
  EXPECT_EQ(c.auth.users[1].allowed_recipient_domains, std::vector<std::string>{"example.com"});
  EXPECT_EQ(c.auth.users[2].name, "erp");
  EXPECT_EQ(c.auth.users[2].password_hash, kHash);
}

TEST_F(ConfigFileTest, EmptyUsersFile) {
  write("users.yaml", "# nobody yet\n");
  EXPECT_TRUE(loadHere("auth:\n  users_file: users.yaml\n").auth.users.empty());
  write("users.yaml", "[]\n");
  EXPECT_TRUE(loadHere("auth:\n  users_file: users.yaml\n").auth.users.empty());
}

TEST_F(ConfigFileTest, UsersFileIssuesCarryItsNameAndLines) {
  const auto users =
      write("users.yaml", std::string("- name: printer\n  password_hash: '") + kHash +
                              "'\n- name: scanner\n  password_hash: x\n"
                              "- name: 'bad name'\n  password_hash: '" +
                              kHash + "'\n");
  const auto issues = issuesHere(std::string("smtp:\n  max_errors: 0\nauth:\n  users:\n"
                                             "    - name: scanner\n      password_hash: '") +
                                 kHash + "'\n  users_file: users.yaml\n");
  ASSERT_EQ(issues.size(), 4u);
  // The configuration's own issues first, then the users file's, each in line order.
  EXPECT_EQ(issues[0].format(),
            "test.yaml:2:15: smtp.max_errors: expected an integer from 1 to 1000, got 0");
  EXPECT_EQ(issues[1].format(), users.string() +
                                    ":3:9: [1].name: duplicate user name 'scanner'; auth.users[0] "
                                    "in test.yaml has it too");
  EXPECT_EQ(issues[2].format(), users.string() +
                                    ":4:18: [1].password_hash: not an argon2id hash; create one "
                                    "with `mailbridge hash-password`");
  EXPECT_EQ(issues[3].file, users.string());
  EXPECT_EQ(issues[3].line, 5);
  EXPECT_EQ(issues[3].column, 9);
  EXPECT_EQ(issues[3].key, "[2].name");
}

TEST_F(ConfigFileTest, UsersFileDuplicatesInsideIt) {
  const auto users = write("users.yaml", std::string("- name: a\n  password_hash: '") + kHash +
                                             "'\n- name: a\n  password_hash: '" + kHash + "'\n");
  const ConfigIssue i = issueHere("auth:\n  users_file: users.yaml\n");
  EXPECT_EQ(i.format(),
            users.string() + ":3:9: [1].name: duplicate user name 'a'; entry [0] has it too");
}

TEST_F(ConfigFileTest, UsersFileShapeErrors) {
  const auto users = write("users.yaml", "users:\n  - name: a\n");
  ConfigIssue i = issueHere("auth:\n  users_file: users.yaml\n");
  EXPECT_EQ(i.format(),
            users.string() + ":1:1: expected a list of users ('- name: ...'), got a mapping");
  write("users.yaml", "- name: a\n  password_hash: [x\n");
  i = issueHere("auth:\n  users_file: users.yaml\n");
  EXPECT_EQ(i.file, users.string());
  EXPECT_NE(i.message.find("YAML syntax error"), std::string::npos);
  write("users.yaml", "- {name: a, password_hash: 'x'}\n---\n- {name: b}\n");
  const auto issues = issuesHere("auth:\n  users_file: users.yaml\n");
  ASSERT_EQ(issues.size(), 2u);
  EXPECT_EQ(issues[0].line, 1);
  EXPECT_EQ(issues[0].key, "[0].password_hash");
  EXPECT_EQ(issues[1].line, 3);
  EXPECT_NE(issues[1].message.find("only one YAML document"), std::string::npos);
  i = issueHere("auth:\n  users_file: .\n");
  EXPECT_EQ(i.format(), "test.yaml:2:15: auth.users_file: cannot read the users file: open " +
                            dir_.string() + ": Is a directory");
}

TEST_F(ConfigFileTest, PathsResolveAgainstTheFilesDirectory) {
  stdfs::create_directories(dir_ / "etc");
  const auto file = dir_ / "etc" / "mailbridge.yaml";
  std::ofstream(file) << "server:\n  state_dir: ../state\nproviders:\n"
                         "  - {name: o, type: outbox, directory: out}\n";
  const Config c = loadConfigFile(file);
  EXPECT_EQ(c.source, file.string());
  EXPECT_EQ(c.server.state_dir, dir_ / "state");
  EXPECT_EQ(c.providers[0].directory, dir_ / "etc" / "out");
}

TEST_F(ConfigFileTest, IssuesNameTheFile) {
  const auto file = dir_ / "bad.yaml";
  std::ofstream(file) << "smtp: {max_recipients: 0}\n" << kProviders;
  try {
    loadConfigFile(file);
    ADD_FAILURE() << "loaded";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    EXPECT_EQ(e.issues()[0].file, file.string());
    EXPECT_EQ(std::string(e.what()).rfind(file.string() + ":1:24: smtp.max_recipients: ", 0), 0u)
        << e.what();
  }
}

TEST_F(ConfigFileTest, MissingFileIsOneIssueAtLineZero) {
  const auto file = dir_ / "nope.yaml";
  try {
    loadConfigFile(file);
    ADD_FAILURE() << "loaded";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    const ConfigIssue& i = e.issues()[0];
    EXPECT_EQ(i.file, file.string());
    EXPECT_EQ(i.line, 0);
    EXPECT_EQ(i.key, "");
    EXPECT_NE(i.message.find(file.string()), std::string::npos) << i.message;
    EXPECT_NE(i.message.find("No such file or directory"), std::string::npos) << i.message;
  }
}

TEST_F(ConfigFileTest, DirectoryInsteadOfFile) {
  try {
    loadConfigFile(dir_);
    ADD_FAILURE() << "loaded";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    EXPECT_NE(e.issues()[0].message.find("Is a directory"), std::string::npos);
  }
}

TEST(ConfigLoader, ExampleFileLoadsWithoutIssues) {
  const stdfs::path file = stdfs::path(MB_SOURCE_DIR) / "examples" / "mailbridge.yaml";
  const Config c = loadConfigFile(file);
  const Config defaults;
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].host, "127.0.0.1");
  EXPECT_EQ(c.access.anonymous_networks, defaults.access.anonymous_networks);
  EXPECT_EQ(c.access.allowed_networks, defaults.access.allowed_networks);
  EXPECT_FALSE(c.access.open_relay);
  // Apart from the marked examples, the file spells out the defaults.
  EXPECT_EQ(c.server.state_dir, defaults.server.state_dir);
  EXPECT_EQ(c.smtp.max_message_size, defaults.smtp.max_message_size);
  EXPECT_EQ(c.smtp.max_recipients, defaults.smtp.max_recipients);
  EXPECT_EQ(c.smtp.max_connections, defaults.smtp.max_connections);
  EXPECT_EQ(c.smtp.idle_timeout, defaults.smtp.idle_timeout);
  EXPECT_EQ(c.smtp.data_timeout, defaults.smtp.data_timeout);
  EXPECT_EQ(c.queue.retry_delay, defaults.queue.retry_delay);
  EXPECT_EQ(c.queue.max_retry_delay, defaults.queue.max_retry_delay);
  EXPECT_EQ(c.queue.max_in_flight, defaults.queue.max_in_flight);
  EXPECT_EQ(c.listeners[0].auth, ListenerConfig{}.auth);
  EXPECT_EQ(c.listeners[0].tls, ListenerConfig{}.tls);
  EXPECT_EQ(c.listeners[0].allow_plaintext_auth, ListenerConfig{}.allow_plaintext_auth);
  EXPECT_EQ(c.logging.level, defaults.logging.level);
  EXPECT_EQ(c.smtp.max_line_length, defaults.smtp.max_line_length);
  EXPECT_EQ(c.smtp.long_lines, defaults.smtp.long_lines);
  EXPECT_EQ(c.smtp.max_connections_per_ip, defaults.smtp.max_connections_per_ip);
  EXPECT_EQ(c.smtp.min_data_rate, defaults.smtp.min_data_rate);
  EXPECT_EQ(c.smtp.greeting_delay, defaults.smtp.greeting_delay);
  EXPECT_EQ(c.smtp.max_errors, defaults.smtp.max_errors);
  EXPECT_TRUE(c.tls.cert_file.empty());
  EXPECT_TRUE(c.tls.pkcs12_file.empty());
  EXPECT_TRUE(c.auth.users.empty());
  EXPECT_TRUE(c.auth.users_file.empty());
  EXPECT_EQ(c.auth.max_failures_per_ip, defaults.auth.max_failures_per_ip);
  EXPECT_EQ(c.auth.max_failures_per_user, defaults.auth.max_failures_per_user);
  EXPECT_EQ(c.auth.failure_window, defaults.auth.failure_window);
  EXPECT_EQ(c.auth.lockout, defaults.auth.lockout);
  EXPECT_EQ(c.auth.max_parallel_verifications, defaults.auth.max_parallel_verifications);
  EXPECT_TRUE(c.senders.allowed.empty());
  EXPECT_TRUE(c.senders.override_address.empty());
  EXPECT_TRUE(c.senders.default_address.empty());
  EXPECT_TRUE(c.recipients.allowed_domains.empty());
  EXPECT_EQ(c.tracker, defaults.tracker);
  ASSERT_EQ(c.providers.size(), 1u);
}

TEST(ConfigLoader, DemoFileLoads) {
  const stdfs::path src(MB_SOURCE_DIR);
  const Config c = loadConfigFile(src / "examples" / "demo.yaml");
  EXPECT_EQ(c.server.hostname, "localhost");
  EXPECT_EQ(c.server.state_dir, (src / "demo-state").lexically_normal());
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].host, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].port, 2525);
  EXPECT_EQ(c.listeners[0].tls, TlsMode::None);
  EXPECT_EQ(c.listeners[0].auth, AuthPolicy::None);
  const std::vector<std::string> loopback{"127.0.0.0/8", "::1/128"};
  EXPECT_EQ(c.access.allowed_networks, loopback);
  EXPECT_EQ(c.access.anonymous_networks, loopback);
  ASSERT_EQ(c.providers.size(), 1u);
  EXPECT_EQ(c.providers[0].type, ProviderType::Outbox);
  EXPECT_EQ(c.providers[0].directory, (src / "demo-state" / "outbox").lexically_normal());
  EXPECT_EQ(c.logging.level, "info");
  EXPECT_EQ(c.logging.format, LogFormat::Text);
}

}  // namespace
}  // namespace mb::config
