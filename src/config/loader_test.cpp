#include "config/loader.h"

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
  - address: "[::1]:2526"
    auth: none
smtp:
  max_message_size: 1.5MB
  max_recipients: 1000
  max_connections: 20
  idle_timeout: 2m
  data_timeout: 1h30m
  bare_lf: reject
access:
  allowed_networks: [10.0.0.0/8, "2001:db8::/32"]
  anonymous_networks: [10.1.0.0/16]
  open_relay: yes
queue:
  retry_delay: 30s
  max_retry_delay: 2h
  max_in_flight: 16
providers:
  - name: box-1
    type: outbox
    directory: /srv/outbox
  - name: box_2
    type: outbox
    directory: spool/second
logging:
  level: debug
  format: json
)");
  EXPECT_EQ(c.source, kName);
  EXPECT_EQ(c.server.hostname, "relay.example.com");
  EXPECT_EQ(c.server.state_dir, "/var/lib/mb");

  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].name, "inside");
  EXPECT_EQ(c.listeners[0].host, "0.0.0.0");
  EXPECT_EQ(c.listeners[0].port, 25);
  EXPECT_EQ(c.listeners[0].tls, TlsMode::None);
  EXPECT_EQ(c.listeners[0].auth, AuthPolicy::Required);
  EXPECT_EQ(c.listeners[1].name, "[::1]:2526");
  EXPECT_EQ(c.listeners[1].host, "::1");
  EXPECT_EQ(c.listeners[1].port, 2526);
  EXPECT_EQ(c.listeners[1].auth, AuthPolicy::None);

  EXPECT_EQ(c.smtp.max_message_size, 1572864u);
  EXPECT_EQ(c.smtp.max_recipients, 1000u);
  EXPECT_EQ(c.smtp.max_connections, 20u);
  EXPECT_EQ(c.smtp.idle_timeout, seconds(120));
  EXPECT_EQ(c.smtp.data_timeout, seconds(5400));
  EXPECT_EQ(c.smtp.bare_lf, BareLfPolicy::Reject);

  EXPECT_EQ(c.access.allowed_networks, (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32"}));
  EXPECT_EQ(c.access.anonymous_networks, (std::vector<std::string>{"10.1.0.0/16"}));
  EXPECT_TRUE(c.access.open_relay);

  EXPECT_EQ(c.queue.retry_delay, seconds(30));
  EXPECT_EQ(c.queue.max_retry_delay, seconds(7200));
  EXPECT_EQ(c.queue.max_in_flight, 16u);

  ASSERT_EQ(c.providers.size(), 2u);
  EXPECT_EQ(c.providers[0].name, "box-1");
  EXPECT_EQ(c.providers[0].type, ProviderType::Outbox);
  EXPECT_EQ(c.providers[0].directory, "/srv/outbox");
  EXPECT_EQ(c.providers[1].name, "box_2");
  EXPECT_EQ(c.providers[1].directory, "/etc/mailbridge/spool/second");

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
  EXPECT_EQ(c.access.allowed_networks, defaults.access.allowed_networks);
  EXPECT_EQ(c.access.anonymous_networks, defaults.access.anonymous_networks);
  EXPECT_FALSE(c.access.open_relay);
  EXPECT_EQ(c.queue.retry_delay, seconds(60));
  EXPECT_EQ(c.queue.max_retry_delay, seconds(1800));
  EXPECT_EQ(c.queue.max_in_flight, 8u);
  EXPECT_EQ(c.logging.level, "info");
  EXPECT_EQ(c.logging.format, LogFormat::Text);
}

TEST(ConfigLoader, EmptySectionsKeepDefaults) {
  const Config c = load(std::string("server:\nsmtp:\naccess:\nqueue:\nlogging:\n") + kProviders);
  EXPECT_EQ(c.smtp.max_recipients, 500u);
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
  expectIssue("listeners:\n  - address: 127.0.0.1:2525\n    tls: starttls\n" + p, 3, 10,
              "listeners[0].tls", "TLS listeners are not supported yet; use tls: none");
  expectIssue("listeners:\n  - address: 127.0.0.1:2525\n    tls: implicit\n" + p, 3, 10,
              "listeners[0].tls", "TLS listeners are not supported yet; use tls: none");
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

TEST(ConfigLoader, ProviderErrors) {
  expectIssue("server: {}\n", 0, 0, "providers", "required; add at least one provider");
  expectIssue("", 0, 0, "providers", "required");
  expectIssue("providers: []\n", 1, 12, "providers", "at least one provider is required");
  expectIssue("providers:\n  - name: x\n    type: graph\n", 3, 11, "providers[0].type",
              "unknown provider type 'graph'; supported types: outbox");
  expectIssue("providers:\n  - name: x\n    directory: /d\n", 2, 5, "providers[0].type",
              "required; supported types: outbox");
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
  expectIssue(std::string("tls:\n  cert: x\n") + kProviders, 1, 1, "tls",
              "valid keys are: server, listeners, smtp, access, queue, providers, logging");
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
    tls: starttls
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
    EXPECT_NE(what.find("\ntest.yaml:9:10: listeners[0].tls: TLS listeners"), std::string::npos);
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
  stdfs::path dir_;
};

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
  EXPECT_EQ(c.logging.level, defaults.logging.level);
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
