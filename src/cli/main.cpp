// mailbridge: the command line. Each subcommand loads what it needs and
// hands over to app/ (serve) or prints a result (check-config, version).

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "app/app.h"
#include "config/loader.h"
#include "demo_config.h"

namespace {

int printConfigError(const mb::config::ConfigError& e) {
  for (const auto& issue : e.issues()) std::cerr << issue.format() << '\n';
  std::cerr << e.issues().size() << (e.issues().size() == 1 ? " error" : " errors")
            << " in the configuration\n";
  return 1;
}

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

  auto* version = cli.add_subcommand("version", "Print the version and exit.");

  CLI11_PARSE(cli, argc, argv);

  if (version->parsed()) {
    std::cout << "mailbridge " << MB_VERSION << '\n';
    return 0;
  }

  if (check->parsed()) {
    try {
      const auto config = mb::config::loadConfigFile(check_path);
      std::cout << check_path << ": OK (" << config.listeners.size() << " listener"
                << (config.listeners.size() == 1 ? "" : "s") << ", " << config.providers.size()
                << " provider" << (config.providers.size() == 1 ? "" : "s") << ")\n";
      if (config.access.open_relay) {
        std::cout << "warning: access.open_relay is true: any client that can connect may relay\n";
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
    mb::app::App app(std::move(config));
    return app.run();
  }
  return 0;
}
