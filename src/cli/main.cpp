// mailbridge: the command line. Each subcommand loads what it needs and
// hands over to app/ (serve), to the running daemon (queue, in
// queue_command.cpp) or prints a result (check-config, hash-password,
// version).

#include <sodium.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "app/app.h"
#include "cli/oauth_command.h"
#include "cli/provider_command.h"
#include "cli/route_command.h"
#include "cli/terminal.h"
#include "cli/log_command.h"
#include "cli/queue_command.h"
#include "config/loader.h"
#include "demo_config.h"
#include "policy/user_store.h"

namespace {

int printConfigError(const mb::config::ConfigError& e) {
  for (const auto& issue : e.issues()) std::cerr << issue.format() << '\n';
  std::cerr << e.issues().size() << (e.issues().size() == 1 ? " error" : " errors")
            << " in the configuration\n";
  return 1;
}

// ---- hash-password ----------------------------------------------------------

int hashPassword() {
  using mb::cli::wipe;
  std::string password;
  if (mb::cli::prepareHiddenInput()) {
    auto first = mb::cli::promptHidden("Password: ");
    if (!first) {
      std::cerr << "hash-password: no password given\n";
      return 1;
    }
    auto second = mb::cli::promptHidden("Repeat the password: ");
    const bool same = second && *first == *second;
    if (second) wipe(*second);
    if (!same) {
      wipe(*first);
      std::cerr << "hash-password: the passwords do not match\n";
      return 1;
    }
    password = std::move(*first);
  } else if (auto line = mb::cli::readLine()) {
    password = std::move(*line);
  }
  if (password.empty()) {
    std::cerr << "hash-password: refusing an empty password\n";
    return 1;
  }
  auto hash = mb::policy::UserStore::hashPassword(password);
  wipe(password);
  if (!hash) {
    std::cerr << "hash-password: " << hash.error().message << '\n';
    return 1;
  }
  std::cout << *hash << '\n';
  return 0;
}

constexpr const char* kHashPasswordHelp = R"(
Reads a password from standard input and prints its argon2id hash (libsodium,
"interactive" cost: 64 MiB, about 0.1 s) on standard output. On a terminal it
asks twice without echo; otherwise it reads one line (the line end is not part
of the password). An empty password is refused.

Put the hash into the configuration (or the auth.users_file), in single quotes:

  auth:
    users:
      - name: scanner
        password_hash: '$argon2id$v=19$m=65536,t=2,p=1$...'

For example:  mailbridge hash-password < password.txt >> hashes.txt
)";

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "Mailbridge: an SMTP relay that accepts mail from devices and applications on the local "
      "network, queues it durably and delivers it through Microsoft Graph, the Gmail API or an "
      "upstream SMTP server.",
      "mailbridge"};
  cli.require_subcommand(1);

  std::string config_path;
  bool demo = false;
  auto* serve = cli.add_subcommand(
      "serve", "Run the relay in the foreground until SIGTERM or SIGINT (logs go to stderr).");
  auto* serve_config =
      serve->add_option("-c,--config", config_path, "Configuration file (YAML)")->check(CLI::ExistingFile);
  auto* serve_demo = serve->add_flag(
      "--demo", demo,
      "Use the built-in demo configuration: SMTP on 127.0.0.1:2525, mail written to "
      "./demo-state/outbox");
  serve_config->excludes(serve_demo);

  std::string check_path;
  auto* check = cli.add_subcommand(
      "check-config",
      "Validate a configuration file; prints every problem with its line and exits non-zero.");
  check->add_option("-c,--config", check_path, "Configuration file (YAML)")->required();

  auto* hash = cli.add_subcommand(
      "hash-password", "Hash a password for auth.users[].password_hash (reads standard input).");
  hash->footer(kHashPasswordHelp);

  auto* version = cli.add_subcommand("version", "Print the version and exit.");

  mb::cli::QueueCommand queue_cmd(cli);
  mb::cli::LogCommand log_cmd(cli);
  mb::cli::ProviderCommands provider_cmds(cli);
  mb::cli::OAuthCommand oauth_cmd(cli);
  mb::cli::RouteCommand route_cmd(cli);

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = cli.exit(e);
    // `queue` promises 2 for a usage error; the others keep CLI11's codes.
    return rc != 0 && (queue_cmd.parsed() || log_cmd.parsed() || provider_cmds.parsed() || oauth_cmd.parsed() || route_cmd.parsed())
               ? mb::cli::QueueCommand::kUsage
               : rc;
  }

  if (version->parsed()) {
    std::cout << "mailbridge " << MB_VERSION << '\n';
    return 0;
  }

  if (hash->parsed()) return hashPassword();

  if (queue_cmd.parsed()) return queue_cmd.run();

  if (log_cmd.parsed()) return log_cmd.run();

  if (provider_cmds.parsed()) return provider_cmds.run();

  if (oauth_cmd.parsed()) return oauth_cmd.run();

  if (route_cmd.parsed()) return route_cmd.run();

  if (check->parsed()) {
    try {
      const auto config = mb::config::loadConfigFile(check_path);
      std::cout << check_path << ": OK (" << config.listeners.size() << " listener"
                << (config.listeners.size() == 1 ? "" : "s") << ", " << config.providers.size()
                << " provider" << (config.providers.size() == 1 ? "" : "s") << ")\n";
      if (config.access.open_relay) {
        std::cout << "warning: access.open_relay is true: any client that can connect may relay\n";
      }
      for (const auto& l : config.listeners) {
        const bool entra_users = std::any_of(config.providers.begin(), config.providers.end(), [](const auto& p) {
          return p.auth_mode == mb::config::GraphAuthMode::UserPassword;
        });
        if (l.auth == mb::config::AuthPolicy::Required && config.auth.users.empty() && !entra_users) {
          std::cout << "warning: listener " << l.name
                    << " requires AUTH but no users are configured (auth.users, "
                       "auth.users_file): every client will be refused\n";
        }
      }
      return 0;
    } catch (const mb::config::ConfigError& e) {
      return printConfigError(e);
    }
  }

  if (serve->parsed()) {
    if (config_path.empty() && !demo) {
      std::cerr << "serve: give --config FILE, or --demo for the built-in demo configuration\n";
      return 2;
    }
    mb::config::Config config;
    try {
      config = demo ? mb::config::loadConfigText(mb::cli::kDemoConfig, "<built-in demo>",
                                                 std::filesystem::current_path() / "examples")
                    : mb::config::loadConfigFile(config_path);
    } catch (const mb::config::ConfigError& e) {
      return printConfigError(e);
    }
    mb::app::App::Reloader reload;
    if (!demo) reload = [config_path] { return mb::config::loadConfigFile(config_path); };
    mb::app::App app(std::move(config), mb::SystemClock::instance(), std::move(reload));
    return app.run();
  }
  return 0;
}
